//! VM RPC end to end with the native echo module (no Python involved).

mod common;
use common::image;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use guest_kmod_bindings::vmrpc_version;
use vmm::rpc::module::{Echo, ECHO_NAME};
use vmm::{Vm, VmConfig};

fn run(
    name: &str,
    vcpus: u32,
    args: &[&str],
    spin_us: u64,
) -> (i32, String, HashMap<&'static str, u64>) {
    let mut cfg = VmConfig::new(image(name));
    cfg.vcpus = vcpus;
    cfg.args = args.iter().map(|s| s.to_string()).collect();
    cfg.rpc_spin_us = spin_us;
    let vm = Vm::new(cfg).unwrap();
    vm.register_module(ECHO_NAME, vmrpc_version(1, 0), Arc::new(Echo))
        .unwrap();
    vm.start().unwrap();
    let code = vm.wait(Some(Duration::from_secs(60)));
    let out = String::from_utf8_lossy(&vm.console_from(0).0).into_owned();
    let code = code.unwrap_or_else(|e| panic!("{e}\nconsole:\n{out}"));
    (code, out, vm.stats().into_iter().collect())
}

#[test]
fn echo_round_trips_with_spinning_engine() {
    require_kvm!();
    let (code, out, stats) = run("rpc_echo", 1, &["echo", "2000", "100"], 1_000_000);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("rpc_echo ok calls=2000"), "{out}");
    assert!(stats["rpcs"] >= 2001, "{stats:?}");
}

#[test]
fn echo_round_trips_with_sleeping_engine() {
    require_kvm!();
    let (code, out, stats) = run("rpc_echo", 1, &["echo", "300", "4096"], 0);
    assert_eq!(code, 0, "{out}");
    assert!(
        stats["doorbells"] > 0,
        "a sleeping engine must be woken: {stats:?}"
    );
}

#[test]
fn four_vcpus_get_their_own_answers() {
    require_kvm!();
    let (code, out, _) = run("rpc_smp", 4, &["300"], 50);
    assert_eq!(code, 0, "{out}");
    for cpu in 0..4 {
        assert!(out.contains(&format!("cpu {cpu} ok")), "{out}");
    }
}
