//! Fuzz target: see `clickwatch::fuzz::events`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clickwatch::fuzz::events(data));
