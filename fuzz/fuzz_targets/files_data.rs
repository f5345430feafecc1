//! libFuzzer target: see `vmm::fuzzing::files_data`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmm::fuzzing::files_data(data));
