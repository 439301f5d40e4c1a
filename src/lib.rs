//! clickwatch: a real-time e-commerce clickstream pipeline on timely and
//! differential dataflow. See `../shared/SPEC.md` for the contract and the
//! README for how to run it.

pub mod alert;
pub mod archive;
pub mod batch;
pub mod config;
pub mod event;
pub mod kafka;
pub mod metrics;
pub mod serve;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod window;

pub mod cli;
pub mod commands;
#[path = "../dataflows/mod.rs"]
pub mod dataflows;
pub mod fuzz;
pub mod generate;
pub mod progress;
