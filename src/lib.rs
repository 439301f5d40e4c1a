//! clickwatch: a real-time e-commerce clickstream pipeline on timely and
//! differential dataflow. See `../shared/SPEC.md` for the contract and the
//! README for how to run it.

pub mod event;
pub mod window;
