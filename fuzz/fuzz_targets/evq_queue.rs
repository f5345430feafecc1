//! libFuzzer target: see `vmm::fuzzing::evq_queue`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmm::fuzzing::evq_queue(data));
