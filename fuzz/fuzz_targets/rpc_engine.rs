//! libFuzzer target: see `vmm::fuzzing::rpc_engine`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmm::fuzzing::rpc_engine(data));
