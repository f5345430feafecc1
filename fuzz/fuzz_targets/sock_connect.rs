//! libFuzzer target: see `vmm::fuzzing::sock_connect`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmm::fuzzing::sock_connect(data));
