//! Fuzz target: see `clickwatch::fuzz::collect`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clickwatch::fuzz::collect(data));
