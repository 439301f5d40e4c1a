//! The timely dataflows, each a small function that reads top to bottom:
//! source → decode → windows → sinks. The logic they wrap lives in the
//! pure modules of `src/` (`window`, `alert`, `sources::ingest`).

pub mod batch;
pub mod kafka_source;
pub mod operators;
pub mod source;
pub mod speed;
