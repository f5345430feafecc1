//! Event queues end to end with the guest apps (no Python involved). Needs
//! /dev/kvm and the images of `make -C guest`.

mod common;
use common::image;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmm::evq::{EventQueue, EvqError, Wait};
use vmm::{Vm, VmConfig, VmError};

fn new_vm(name: &str, args: &[&str], spin_us: u64) -> Vm {
    let mut cfg = VmConfig::new(image(name));
    cfg.args = args.iter().map(|s| s.to_string()).collect();
    cfg.rpc_spin_us = spin_us;
    Vm::new(cfg).unwrap()
}

fn console(vm: &Vm) -> String {
    String::from_utf8_lossy(&vm.console_from(0).0).into_owned()
}

fn finish(vm: &Vm) -> (i32, String, HashMap<&'static str, u64>) {
    let code = vm.wait(Some(Duration::from_secs(30)));
    let out = console(vm);
    let code = code.unwrap_or_else(|e| panic!("{e}\nconsole:\n{out}"));
    (code, out, vm.stats().into_iter().collect())
}

/// The payload of guest/apps/evq_pattern.h.
fn expected(seq: u64, size: usize) -> Vec<u8> {
    let mut v = seq.to_le_bytes().to_vec();
    v.extend((8..size).map(|i| (seq.wrapping_mul(31).wrapping_add(i as u64)) as u8));
    v
}

fn take_until(q: &EventQueue, n: usize, out: &mut Vec<Vec<u8>>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < n {
        let got = q
            .take(n - out.len(), |p| {
                let mut v = vec![0; p.len()];
                p.copy_to(&mut v[..]);
                out.push(v);
            })
            .unwrap();
        if got == 0 {
            assert!(q.wait(Wait::Readable, Some(deadline)).unwrap(), "timed out");
        }
    }
}

#[test]
fn guest_to_host_in_order_both_spinning_and_sleeping() {
    require_kvm!();
    for spin_us in [0, 200] {
        let vm = new_vm("evq_produce", &["q", "20000", "40"], spin_us);
        let q = vm.make_ev_queue("q", 16, 64).unwrap();
        vm.start().unwrap();
        let mut events = Vec::new();
        take_until(&q, 20000, &mut events);
        for (k, ev) in events.iter().enumerate() {
            assert_eq!(ev, &expected(k as u64, 40), "event {k}");
        }
        let (code, out, stats) = finish(&vm);
        assert_eq!(code, 0, "{out}");
        assert_eq!(stats["events_guest_to_host"], 20000);
        if spin_us == 0 {
            assert!(
                stats["evq_doorbells"] > 0,
                "a host that never spins is woken: {stats:?}"
            );
        }
    }
}

/// Neither side polls: every empty or full ring puts one side to sleep, so
/// every doorbell and interrupt path runs thousands of times; a lost wakeup
/// hangs the test (and fails it at the timeout).
#[test]
fn no_lost_wakeups_when_both_sides_sleep_at_once() {
    require_kvm!();
    let vm = new_vm("evq_produce", &["q", "30000", "16", "0"], 0);
    let q = vm.make_ev_queue("q", 2, 16).unwrap();
    vm.start().unwrap();
    let mut events = Vec::new();
    take_until(&q, 30000, &mut events);
    assert!(events
        .iter()
        .enumerate()
        .all(|(k, ev)| ev == &expected(k as u64, 16)));
    let (code, out, stats) = finish(&vm);
    assert_eq!(code, 0, "{out}");
    assert!(
        stats["evq_doorbells"] > 0 && stats["interrupts"] > 0,
        "{stats:?}"
    );

    let vm = new_vm("evq_consume", &["q", "30000", "0"], 0);
    let q = vm.make_ev_queue("q", 2, 16).unwrap();
    vm.start().unwrap();
    for k in 0..30000u64 {
        while q.put(&[expected(k, 16)]).unwrap() == 0 {
            assert!(q
                .wait(
                    Wait::Writable,
                    Some(Instant::now() + Duration::from_secs(20))
                )
                .unwrap());
        }
    }
    let (code, out, stats) = finish(&vm);
    assert_eq!(code, 0, "{out}");
    assert!(stats["interrupts"] > 0, "{stats:?}");
}

#[test]
fn host_to_guest_in_order() {
    require_kvm!();
    let vm = new_vm("evq_consume", &["q", "20000"], 50);
    let q = vm.make_ev_queue("q", 8, 100).unwrap();
    vm.start().unwrap();
    for k in 0..20000u64 {
        let ev = expected(k, 8 + (k % 93) as usize);
        while q.put(&[&ev]).unwrap() == 0 {
            q.wait(Wait::Writable, None).unwrap();
        }
    }
    let (code, out, stats) = finish(&vm);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("evq_consume ok n=20000"), "{out}");
    assert_eq!(stats["events_host_to_guest"], 20000);
}

#[test]
fn echo_round_trips_and_unknown_queues_are_enoqueue() {
    require_kvm!();
    let vm = new_vm("evq_echo", &["q"], 50);
    let q = vm.make_ev_queue("q", 4, 16).unwrap();
    vm.start().unwrap();
    let mut back = Vec::new();
    for k in 0..100u8 {
        let ev = vec![k; (k % 16) as usize];
        while q.put(&[&ev]).unwrap() == 0 {
            q.wait(Wait::Writable, None).unwrap();
        }
        take_until(&q, back.len() + 1, &mut back);
        assert_eq!(back.last().unwrap(), &ev);
    }
    q.put(&[b"quit"]).unwrap();
    let (code, out, _) = finish(&vm);
    assert_eq!(
        (code, out.contains("evq_echo ok n=100")),
        (0, true),
        "{out}"
    );

    let vm = new_vm("evq_consume", &["nope", "1"], 50);
    vm.make_ev_queue("other", 4, 16).unwrap();
    vm.start().unwrap();
    let (code, out, _) = finish(&vm);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("ENOQUEUE"), "{out}");
}

#[test]
fn deleting_a_queue_in_use_fails_both_sides() {
    require_kvm!();
    let vm = new_vm("evq_consume", &["q", "5"], 50);
    let q = vm.make_ev_queue("q", 4, 16).unwrap();
    vm.start().unwrap();
    // Wait until the guest opened the queue and blocks in get_event.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !console(&vm).contains("evq_consume ready") {
        assert!(Instant::now() < deadline, "{}", console(&vm));
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    let waiter = {
        let q = q.clone();
        std::thread::spawn(move || q.wait(Wait::Readable, None))
    };
    std::thread::sleep(Duration::from_millis(20));
    vm.del_ev_queue("q").unwrap();
    assert!(matches!(
        waiter.join().unwrap(),
        Err(EvqError::Closed { .. })
    ));
    let (code, out, _) = finish(&vm);
    assert_eq!(
        code, 3,
        "the guest's get_event returns VMRPC_ENOQUEUE: {out}"
    );
    assert!(matches!(q.put(&[b"x"]), Err(EvqError::Closed { .. })));
    assert!(matches!(
        vm.del_ev_queue("q"),
        Err(VmError::EventQueue(EvqError::NotFound(_)))
    ));
}

#[test]
fn the_arena_is_never_reused() {
    require_kvm!();
    let vm = new_vm("hello", &[], 50);
    let a = vm.make_ev_queue("a", 1024, 256).unwrap();
    let info_a = a.info();
    vm.del_ev_queue("a").unwrap();
    let b = vm.make_ev_queue("a", 1024, 256).unwrap();
    let info_b = b.info();
    assert!(info_b.g2h_offset >= info_a.h2g_offset + 128 + 1024 * 264);
    assert!(info_b.queue_id > info_a.queue_id);
    // Fill the arena: the error says what happened.
    let mut last = None;
    for i in 0..100 {
        match vm.make_ev_queue(&format!("fill{i}"), 1024, 256) {
            Ok(q) => last = Some(q),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("arena full"), "{msg}");
                assert!(last.is_some());
                return;
            }
        }
    }
    panic!("a 2 MiB arena cannot hold 100 queues of 540 KiB");
}

#[test]
fn queues_outlive_their_vm_as_closed() {
    require_kvm!();
    let q: Arc<EventQueue>;
    {
        let vm = new_vm("hello", &[], 50);
        q = vm.make_ev_queue("q", 4, 16).unwrap();
    }
    assert!(q.is_closed());
    assert!(matches!(q.put(&[b"x"]), Err(EvqError::Closed { .. })));
}
