//! `weir_host::fuzzing::state_object` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_host::fuzzing::state_object(data));
