//! Inputs of the speed layer. Each source yields raw messages with their
//! partition and position; [`ingest`] turns them into classified records.
//! Files and stdin are one partition each (SPEC §3); Kafka comes later and
//! plugs into the same [`ingest::Ingestor`].

pub mod ingest;
pub mod lines;
