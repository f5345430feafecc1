//! Runs a guest image from the command line, with the native echo module
//! registered: `cargo run --release --example run -- IMAGE [ARGS...]`.
//! Environment: VMRPC_VCPUS (default 1), VMRPC_SPIN_US (engine spin).

use std::sync::Arc;
use std::time::{Duration, Instant};

use guest_kmod_bindings::vmrpc_version;
use vmm::rpc::module::{Echo, ECHO_NAME};
use vmm::{Vm, VmConfig};

fn main() {
    let mut argv = std::env::args().skip(1);
    let image = argv.next().expect("usage: run IMAGE [ARGS...]");
    let mut cfg = VmConfig::new(image);
    cfg.args = argv.collect();
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    cfg.vcpus = env("VMRPC_VCPUS").unwrap_or(1) as u32;
    cfg.rpc_spin_us = env("VMRPC_SPIN_US").unwrap_or(cfg.rpc_spin_us);
    let t = Instant::now();
    let vm = Vm::new(cfg).unwrap_or_else(|e| panic!("{e}"));
    vm.register_module(ECHO_NAME, vmrpc_version(1, 0), Arc::new(Echo))
        .unwrap();
    vm.start().unwrap();
    let result = vm.wait(Some(Duration::from_secs(
        env("VMRPC_TIMEOUT").unwrap_or(120),
    )));
    print!("{}", String::from_utf8_lossy(&vm.console_from(0).0));
    eprintln!("result: {result:?} in {:?}", t.elapsed());
    for (k, v) in vm.stats() {
        eprintln!("  {k} = {v}");
    }
}
