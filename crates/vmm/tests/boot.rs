//! Boots the guest images built by `make -C guest` (the Makefile builds them
//! before `cargo test`). Needs /dev/kvm.

mod common;
use common::image;

use std::time::Duration;

use vmm::{Vm, VmConfig, VmError, VmState};

fn console(vm: &Vm) -> String {
    String::from_utf8_lossy(&vm.console_from(0).0).into_owned()
}

#[test]
fn hello_prints_and_exits_zero() {
    require_kvm!();
    let mut cfg = VmConfig::new(image("hello"));
    cfg.args = vec!["one".into(), "two words".into()];
    let vm = Vm::new(cfg).unwrap();
    vm.start().unwrap();
    let code = vm.wait(Some(Duration::from_secs(20)));
    let out = console(&vm);
    assert_eq!(code.unwrap(), 0, "console: {out}");
    assert!(out.contains("hello from vmrpc guest"), "{out}");
    assert!(out.contains("arg[2]=two words"), "{out}");
    assert_eq!(vm.state(), VmState::Exited);
    let stats: std::collections::HashMap<_, _> = vm.stats().into_iter().collect();
    assert!(
        stats["exits_mmio"] > 0,
        "the console is memory-mapped: {stats:?}"
    );
}

#[test]
fn double_start_and_wait_before_start_are_errors() {
    require_kvm!();
    let vm = Vm::new(VmConfig::new(image("hello"))).unwrap();
    assert!(matches!(
        vm.wait(Some(Duration::from_millis(1))),
        Err(VmError::NotStarted)
    ));
    vm.start().unwrap();
    assert!(matches!(vm.start(), Err(VmError::AlreadyStarted)));
    vm.wait(Some(Duration::from_secs(20))).unwrap();
}

#[test]
fn smp_every_vcpu_checks_in() {
    require_kvm!();
    for n in [2, 4, 8] {
        let mut cfg = VmConfig::new(image("smp"));
        cfg.vcpus = n;
        let vm = Vm::new(cfg).unwrap();
        vm.start().unwrap();
        let code = vm.wait(Some(Duration::from_secs(20)));
        let out = console(&vm);
        assert_eq!(code.unwrap_or_else(|e| panic!("{e}: {out}")), 0, "{out}");
        for i in 0..n {
            assert!(out.contains(&format!("vcpu {i} of {n}")), "{out}");
        }
    }
}
