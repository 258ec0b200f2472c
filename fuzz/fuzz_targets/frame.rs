//! `weir_host::fuzzing::frame` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_host::fuzzing::frame(data));
