//! Fuzz target: see `clickwatch::fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clickwatch::fuzz::config(data));
