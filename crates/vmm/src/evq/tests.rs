//! One queue's operations on plain memory (no KVM): slots, interrupts,
//! waiting, closing, and hostile ring contents.

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guest_kmod_bindings::ring_off;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::geometry::{Geometry, RING_HDR, SLOT_HDR};
use super::notify::IrqSkip;
use super::wait::lock;
use super::{CloseReason, EventQueue, EvqError, VmLink, Wait};
use crate::stats::Stats;
use crate::stop::StopToken;
use proptest::prelude::*;
use std::sync::atomic::AtomicBool;

const BASE: u64 = 0x1000;
const MEM: usize = 64 << 10;
const CANARY: u8 = 0xa5;

struct Fixture {
    mem: GuestMemoryMmap,
    q: Arc<EventQueue>,
    link: Arc<VmLink>,
    /// Duplicates of the link's irqfds (same counters), and its stop token.
    irqs: Vec<EventFd>,
    vm_stop: StopToken,
}

/// A queue at `BASE` in 64 KiB of plain memory (no KVM), the rest of which
/// is filled with a canary the host must never overwrite.
fn fixture(entries: u64, max: u64, spin: Duration) -> Fixture {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    mem.write_slice(&vec![CANARY; MEM], GuestAddress(0))
        .unwrap();
    let geo = Geometry::new(entries, max).unwrap();
    let g2h = GuestAddress(BASE);
    let h2g = GuestAddress(BASE + geo.ring_stride());
    for at in [g2h, h2g] {
        mem.write_obj(guest_kmod_bindings::RingHdr::default(), at)
            .unwrap();
    }
    let efd = || EventFd::new(EFD_NONBLOCK).unwrap();
    let irqs = vec![efd(), efd()];
    let vm_stop = StopToken::new().unwrap();
    let link = Arc::new(VmLink::new(
        mem.clone(),
        irqs.iter().map(|fd| fd.try_clone().unwrap()).collect(),
        Arc::new(Stats::default()),
        vm_stop.clone(),
        spin,
    ));
    let q = EventQueue::new("t".into(), 7, geo, (g2h, h2g), 0, link.clone()).unwrap();
    Fixture {
        mem,
        q: Arc::new(q),
        link,
        irqs,
        vm_stop,
    }
}

impl Fixture {
    fn g2h(&self, field: u64) -> GuestAddress {
        GuestAddress(self.q.g2h.0 + field)
    }
    fn h2g(&self, field: u64) -> GuestAddress {
        GuestAddress(self.q.h2g.0 + field)
    }
    /// Plays the guest producer: one event at free-running index `index`.
    fn guest_put(&self, index: u32, data: &[u8]) {
        let slot = self.q.g2h.0 + self.q.geo.slot_offset(index);
        self.mem
            .write_obj(data.len() as u32, GuestAddress(slot))
            .unwrap();
        self.mem
            .write_slice(data, GuestAddress(slot + SLOT_HDR))
            .unwrap();
        self.mem
            .store(index + 1, self.g2h(ring_off::HEAD), Ordering::Release)
            .unwrap();
    }
    /// Plays the guest consumer: the event at `index`, then moves the tail.
    fn guest_get(&self, index: u32) -> Vec<u8> {
        let slot = self.q.h2g.0 + self.q.geo.slot_offset(index);
        let len: u32 = self.mem.read_obj(GuestAddress(slot)).unwrap();
        let mut v = vec![0; len as usize];
        self.mem
            .read_slice(&mut v, GuestAddress(slot + SLOT_HDR))
            .unwrap();
        self.mem
            .store(index + 1, self.h2g(ring_off::TAIL), Ordering::Release)
            .unwrap();
        v
    }
    fn load(&self, at: GuestAddress) -> u32 {
        self.mem.load(at, Ordering::Acquire).unwrap()
    }
    fn take_all(&self) -> Result<Vec<Vec<u8>>, EvqError> {
        let mut out = Vec::new();
        self.q.take(usize::MAX, |p| {
            let mut v = vec![0; p.len()];
            p.copy_to(&mut v[..]);
            out.push(v);
        })?;
        Ok(out)
    }
    /// Bytes outside both rings that differ from the canary.
    fn canary_damage(&self) -> usize {
        let mut all = vec![0; MEM];
        self.mem.read_slice(&mut all, GuestAddress(0)).unwrap();
        let ring = self.q.geo.ring_bytes() as usize;
        let inside = |i: usize| {
            let g2h = self.q.g2h.0 as usize;
            let h2g = self.q.h2g.0 as usize;
            (g2h..g2h + ring).contains(&i) || (h2g..h2g + ring).contains(&i)
        };
        all.iter()
            .enumerate()
            .filter(|&(i, &b)| !inside(i) && b != CANARY)
            .count()
    }
}

#[test]
fn guest_to_host_in_order_with_wrapping_indices() {
    let f = fixture(4, 16, Duration::ZERO);
    let mut next = 0u32;
    for round in 0..10u8 {
        for k in 0..3u8 {
            f.guest_put(next, &[round, k, 9][..(k as usize + 1)]);
            next += 1;
        }
        let got = f.take_all().unwrap();
        assert_eq!(got, vec![vec![round], vec![round, 1], vec![round, 2, 9]]);
        assert_eq!(f.load(f.g2h(ring_off::TAIL)), next);
    }
    assert_eq!(f.link.stats.events_guest_to_host.get(), 30);
    assert_eq!(f.link.stats.interrupts.get(), 0, "nobody asked for one");
    assert_eq!(f.take_all().unwrap(), Vec::<Vec<u8>>::new());
}

#[test]
fn take_respects_max_and_wakes_a_waiting_producer() {
    let f = fixture(8, 8, Duration::ZERO);
    for i in 0..8 {
        f.guest_put(i, &[i as u8]);
    }
    f.mem
        .store(1u32, f.g2h(ring_off::PRODUCER_VCPU), Ordering::Relaxed)
        .unwrap();
    f.mem
        .store(1u32, f.g2h(ring_off::PRODUCER_WAITING), Ordering::Relaxed)
        .unwrap();
    let mut seen = Vec::new();
    assert_eq!(f.q.take(5, |p| seen.push(p.len())).unwrap(), 5);
    assert_eq!(seen, [1; 5]);
    assert_eq!(f.irqs[1].read().unwrap(), 1);
    assert!(f.irqs[0].read().is_err(), "only the named vCPU");
    // A vCPU index the VM does not have interrupts nobody.
    f.mem
        .store(99u32, f.g2h(ring_off::PRODUCER_VCPU), Ordering::Relaxed)
        .unwrap();
    assert_eq!(f.take_all().unwrap().len(), 3);
    assert_eq!(f.link.stats.interrupts.get(), 1);
}

#[test]
fn host_to_guest_full_and_too_big() {
    let f = fixture(4, 8, Duration::ZERO);
    assert_eq!(f.q.put(&[b"a", b"b", b"c"]).unwrap(), 3);
    assert_eq!(f.q.put(&[b"d", b"e"]).unwrap(), 1, "only one slot left");
    assert_eq!(f.q.put(&[b"f"]).unwrap(), 0);
    assert!(!f.q.ready(Wait::Writable).unwrap());
    assert!(matches!(
        f.q.put(&[&[0u8; 9][..]]),
        Err(EvqError::TooBig { len: 9, max: 8, .. })
    ));
    assert_eq!(f.guest_get(0), b"a");
    assert!(f.q.ready(Wait::Writable).unwrap());
    f.mem
        .store(1u32, f.h2g(ring_off::CONSUMER_WAITING), Ordering::Relaxed)
        .unwrap();
    assert_eq!(f.q.put(&[b"f"]).unwrap(), 1);
    assert_eq!(f.irqs[0].read().unwrap(), 1, "consumer_vcpu is 0");
    assert_eq!(
        (1..5).map(|i| f.guest_get(i)).collect::<Vec<_>>(),
        [b"b", b"c", b"d", b"f"]
    );
    assert_eq!(f.link.stats.events_host_to_guest.get(), 5);
}

#[test]
fn one_interrupt_per_guest_sleep() {
    let f = fixture(8, 8, Duration::ZERO);
    f.mem
        .store(1u32, f.h2g(ring_off::CONSUMER_WAITING), Ordering::Relaxed)
        .unwrap();
    for _ in 0..3 {
        assert_eq!(f.q.put(&[b"a"]).unwrap(), 1);
    }
    assert_eq!(
        f.link.stats.interrupts.get(),
        1,
        "the guest has not run yet"
    );
    // The guest woke, took one event and sleeps again: it needs a new interrupt.
    f.guest_get(0);
    assert_eq!(f.q.put(&[b"b"]).unwrap(), 1);
    assert_eq!(f.link.stats.interrupts.get(), 2);
    // The guest took everything before the host looked at its tail (it runs
    // concurrently): it may sleep at that tail, so that interrupt must not
    // silence the next one.
    let ring = f.q.ring(f.q.h2g).unwrap();
    let empty = |tail: u32| tail == 4;
    let mut irq_at = None;
    let wake = |irq_at: &mut Option<u32>| {
        f.q.wake(
            &ring,
            (ring_off::CONSUMER_WAITING, ring_off::CONSUMER_VCPU),
            Some(IrqSkip {
                index_off: ring_off::TAIL,
                irq_at,
                may_sleep_at: &empty,
            }),
        )
    };
    wake(&mut irq_at);
    wake(&mut irq_at);
    assert_eq!(f.link.stats.interrupts.get(), 3, "tail 1 < head 4: once");
    assert_eq!(irq_at, Some(1));
    for i in 1..4 {
        f.guest_get(i);
    }
    wake(&mut irq_at);
    assert_eq!(irq_at, None, "tail 4 == head 4: the guest may sleep");
    wake(&mut irq_at);
    assert_eq!(f.link.stats.interrupts.get(), 5);
    // Same for a producer waiting on a full g2h ring.
    f.irqs[0].read().unwrap();
    for i in 0..8 {
        f.guest_put(i, b"x");
    }
    f.mem
        .store(1u32, f.g2h(ring_off::PRODUCER_WAITING), Ordering::Relaxed)
        .unwrap();
    assert_eq!(f.q.take(1, |_| ()).unwrap(), 1);
    assert_eq!(f.q.take(1, |_| ()).unwrap(), 1);
    assert_eq!(f.link.stats.interrupts.get(), 6);
    f.guest_put(8, b"y");
    assert_eq!(f.q.take(1, |_| ()).unwrap(), 1);
    assert_eq!(f.link.stats.interrupts.get(), 7);
}

#[test]
fn wait_times_out_then_wakes_on_the_doorbell() {
    let f = fixture(4, 8, Duration::ZERO);
    let t0 = Instant::now();
    let deadline = Some(t0 + Duration::from_millis(30));
    assert!(!f.q.wait(Wait::Readable, deadline).unwrap());
    assert!(t0.elapsed() >= Duration::from_millis(30));
    assert_eq!(f.load(f.g2h(ring_off::CONSUMER_WAITING)), 0, "flag lowered");

    let (q, mem, g2h) = (f.q.clone(), f.mem.clone(), f.q.g2h);
    let guest = std::thread::spawn(move || {
        // Wait until the host asked for a doorbell, then publish and ring.
        let flag = GuestAddress(g2h.0 + ring_off::CONSUMER_WAITING);
        while mem.load::<u32>(flag, Ordering::SeqCst).unwrap() == 0 {
            std::thread::yield_now();
        }
        let slot = g2h.0 + RING_HDR;
        mem.write_obj(1u32, GuestAddress(slot)).unwrap();
        mem.store(1u32, GuestAddress(g2h.0 + ring_off::HEAD), Ordering::SeqCst)
            .unwrap();
        q.with_notify_fd(|fd| fd.write(1)).unwrap().unwrap();
    });
    assert!(f.q.wait(Wait::Readable, None).unwrap());
    guest.join().unwrap();
    assert_eq!(f.take_all().unwrap().len(), 1);
}

#[test]
fn a_spin_too_long_for_an_instant_ends_at_the_deadline() {
    let f = fixture(4, 8, Duration::MAX);
    let deadline = Instant::now() + Duration::from_millis(5);
    assert!(!f.q.wait(Wait::Readable, Some(deadline)).unwrap());
}

#[test]
fn two_host_waiters_share_one_doorbell() {
    let f = fixture(2, 8, Duration::ZERO);
    assert_eq!(f.q.put(&[b"x", b"y"]).unwrap(), 2);
    let reader = {
        let q = f.q.clone();
        std::thread::spawn(move || q.wait(Wait::Readable, None))
    };
    let writer = {
        let q = f.q.clone();
        std::thread::spawn(move || q.wait(Wait::Writable, None))
    };
    // Both flags up means both threads are about to block (or blocked).
    while f.load(f.g2h(ring_off::CONSUMER_WAITING)) == 0
        || f.load(f.h2g(ring_off::PRODUCER_WAITING)) == 0
    {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(20));
    // The guest frees a slot and rings once: the writer must wake even if
    // the reader is the thread that read the eventfd.
    f.guest_get(0);
    f.q.with_notify_fd(|fd| fd.write(1)).unwrap().unwrap();
    assert!(writer.join().unwrap().unwrap());
    f.guest_put(0, b"z");
    f.q.with_notify_fd(|fd| fd.write(1)).unwrap().unwrap();
    assert!(reader.join().unwrap().unwrap());
}

#[test]
fn close_wakes_everyone_and_marks_the_rings() {
    let f = fixture(4, 8, Duration::ZERO);
    for (ring, waiting, vcpu) in [
        (f.q.g2h, ring_off::PRODUCER_WAITING, ring_off::PRODUCER_VCPU),
        (f.q.h2g, ring_off::CONSUMER_WAITING, ring_off::CONSUMER_VCPU),
    ] {
        f.mem
            .store(1u32, GuestAddress(ring.0 + waiting), Ordering::Relaxed)
            .unwrap();
        f.mem
            .store(1u32, GuestAddress(ring.0 + vcpu), Ordering::Relaxed)
            .unwrap();
    }
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let q = f.q.clone();
            std::thread::spawn(move || q.wait(Wait::Readable, None))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    f.q.close(CloseReason::Deleted);
    for w in waiters {
        assert!(matches!(w.join().unwrap(), Err(EvqError::Closed { .. })));
    }
    assert_eq!(f.load(f.g2h(ring_off::CLOSED)), 1);
    assert_eq!(f.load(f.h2g(ring_off::CLOSED)), 1);
    assert_eq!(f.irqs[1].read().unwrap(), 2, "both guest waiters");
    assert!(matches!(f.q.put(&[b"a"]), Err(EvqError::Closed { .. })));
    assert!(matches!(f.take_all(), Err(EvqError::Closed { .. })));
}

#[test]
fn a_stopped_vm_ends_waits_that_cannot_complete() {
    let f = fixture(4, 8, Duration::ZERO);
    f.vm_stop.stop();
    assert!(matches!(
        f.q.wait(Wait::Readable, None),
        Err(EvqError::VmStopped { .. })
    ));
    // What is already there can still be taken.
    f.guest_put(0, b"late");
    assert!(f.q.wait(Wait::Readable, None).unwrap());
    assert_eq!(f.take_all().unwrap(), vec![b"late".to_vec()]);
}

#[test]
fn a_bad_length_stops_the_batch_before_it() {
    let f = fixture(8, 8, Duration::ZERO);
    f.guest_put(0, b"ok");
    f.guest_put(1, b"max_size"); // exactly max_event_size: valid
    f.guest_put(2, b"ok2");
    let slot = f.q.g2h.0 + f.q.geo.slot_offset(2);
    f.mem.write_obj(9u32, GuestAddress(slot)).unwrap();
    assert_eq!(
        f.take_all().unwrap(),
        vec![b"ok".to_vec(), b"max_size".to_vec()]
    );
    let err = f.take_all().unwrap_err();
    assert!(
        err.to_string()
            .contains("has length 9, more than max_event_size 8"),
        "{err}"
    );
    assert_eq!(f.load(f.g2h(ring_off::TAIL)), 2, "the bad event stays");
}

/// The host waiter's side of "no lost wakeup", on the real `wait`: the
/// guest publishes an event after the host's last poll and before it
/// raises `consumer_waiting`, so the guest sees no flag and rings no
/// doorbell. Only the re-check after raising the flag can find it.
///
/// Mutants killed (applied by hand, each seen to fail): the re-check moved
/// after `block` (the host blocks with the event already there; it would
/// wake only at its deadline, or never without one); a `block` call added
/// right after the flag is raised, before the loop (caught because the
/// hook is inside `block`, not at its call site).
#[test]
fn an_event_published_before_the_host_flag_is_found_by_the_recheck() {
    let f = fixture(4, 8, Duration::ZERO);
    let (mem, g2h) = (f.mem.clone(), f.q.g2h);
    let slot = g2h.0 + f.q.geo.slot_offset(0);
    let rang = Arc::new(AtomicBool::new(false));
    let guest_rang = rang.clone();
    lock(&f.q.hooks).before_flag = Some(Box::new(move || {
        // Plays the guest producer: publish, full barrier, read the flag.
        mem.write_obj(1u32, GuestAddress(slot)).unwrap();
        mem.store(
            1u32,
            GuestAddress(g2h.0 + ring_off::HEAD),
            Ordering::Release,
        )
        .unwrap();
        fence(Ordering::SeqCst);
        let flag: u32 = mem
            .load(
                GuestAddress(g2h.0 + ring_off::CONSUMER_WAITING),
                Ordering::SeqCst,
            )
            .unwrap();
        guest_rang.store(flag != 0, Ordering::SeqCst);
    }));
    lock(&f.q.hooks).before_block = Some(Box::new(|| {
        panic!("lost wakeup: the host blocks although the event is there")
    }));
    // Empty at the first poll; the deadline only bounds a broken wait.
    let deadline = Instant::now() + Duration::from_millis(300);
    assert!(f.q.wait(Wait::Readable, Some(deadline)).unwrap());
    assert!(
        !rang.load(Ordering::SeqCst),
        "no flag was up: the guest did not ring"
    );
    assert_eq!(f.link.stats.evq_doorbells.get(), 0);
    assert_eq!(f.load(f.g2h(ring_off::CONSUMER_WAITING)), 0, "flag lowered");
}

/// One interrupt per guest sleep, on the real `put`, with the guest
/// stopped inside the host's window (after the head is published, before
/// the host reads the guest's flag and tail).
///
/// Mutants killed (applied by hand, each seen to fail):
/// - no skip rule at all (`skip` passed as `None` in `put`): an interrupt
///   per event while the guest has not run, 3 instead of 1;
/// - the skip rule without `may_sleep_at` (the tail is always remembered):
///   the guest that took everything inside the window and then slept gets
///   no interrupt for the next event, a lost wakeup.
#[test]
fn exactly_one_interrupt_per_guest_sleep_on_the_real_put() {
    let f = fixture(8, 8, Duration::ZERO);
    let irqs = || f.link.stats.interrupts.get();
    // The guest consumer sleeps on an empty ring (flag up, vCPU 0).
    f.mem
        .store(1u32, f.h2g(ring_off::CONSUMER_WAITING), Ordering::SeqCst)
        .unwrap();
    for _ in 0..3 {
        assert_eq!(f.q.put(&[b"a"]).unwrap(), 1);
    }
    assert_eq!(
        irqs(),
        1,
        "the guest has not run: one interrupt for its one sleep"
    );
    // It wakes, takes all three and sleeps again on the empty ring.
    for i in 0..3 {
        f.guest_get(i);
    }
    assert_eq!(f.q.put(&[b"b"]).unwrap(), 1);
    assert_eq!(irqs(), 2, "a new sleep, a new interrupt");

    // Inside the window of the next put, the guest takes everything (so
    // the host reads a tail equal to its head), then sleeps right there.
    f.guest_get(3);
    let (mem, h2g, slot_len) = (f.mem.clone(), f.q.h2g, f.q.geo.slot_offset(4));
    let mut once = true;
    lock(&f.q.hooks).after_publish = Some(Box::new(move || {
        if std::mem::take(&mut once) {
            let _len: u32 = mem.read_obj(GuestAddress(h2g.0 + slot_len)).unwrap();
            mem.store(5u32, GuestAddress(h2g.0 + ring_off::TAIL), Ordering::SeqCst)
                .unwrap();
        }
    }));
    assert_eq!(f.q.put(&[b"c"]).unwrap(), 1);
    let after_window = irqs();
    // The guest is asleep at tail 5 == head 5; the next event must wake it.
    assert_eq!(f.q.put(&[b"d"]).unwrap(), 1);
    assert_eq!(
        irqs(),
        after_window + 1,
        "lost wakeup: the sleeping guest got no interrupt"
    );
}

/// A slot with a huge length after valid events, on every path that
/// copies payloads out (`take_into` for Python, `take` for native
/// consumers): the valid events come out, then the corruption is
/// reported, and no length is ever used to size a copy before it is
/// checked.
#[test]
fn a_huge_length_after_valid_events() {
    for huge in [u32::MAX, 0x8000_0000, 65536, 9] {
        let f = fixture(8, 8, Duration::ZERO);
        f.guest_put(0, b"one");
        f.guest_put(1, b"two!");
        f.guest_put(2, b"x");
        let slot = f.q.g2h.0 + f.q.geo.slot_offset(2);
        f.mem.write_obj(huge, GuestAddress(slot)).unwrap();
        let (mut buf, mut lens) = (Vec::new(), Vec::new());
        assert_eq!(f.q.take_into(usize::MAX, &mut buf, &mut lens).unwrap(), 2);
        assert_eq!(
            (buf.as_slice(), lens.as_slice()),
            (&b"onetwo!"[..], &[3, 4][..])
        );
        for _ in 0..2 {
            let err = f.q.take_into(usize::MAX, &mut buf, &mut lens).unwrap_err();
            assert!(matches!(err, EvqError::Corrupt { .. }), "{err}");
            assert!(
                err.to_string().contains(&format!("has length {huge}")),
                "{err}"
            );
            assert!(buf.is_empty() && lens.is_empty());
            assert!(f.q.take(1, |_| panic!("no payload")).is_err());
        }
        assert_eq!(f.load(f.g2h(ring_off::TAIL)), 2, "the bad event stays");
        assert_eq!(f.link.stats.events_guest_to_host.get(), 2);
        assert_eq!(f.canary_damage(), 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the guest writes into the ring headers and slot lengths, the
    /// host returns events of valid lengths or an error, never panics, and
    /// never writes outside the queue's rings.
    #[test]
    fn hostile_rings_never_escape(
        shift in 0u32..5,
        max in 1u64..64,
        g2h_head in prop_oneof![any::<u32>(), 0u32..20],
        h2g_tail in prop_oneof![any::<u32>(), (u32::MAX - 20)..=u32::MAX, 0u32..3],
        // Around max_event_size (< 64) mostly, so valid and invalid lengths both occur.
        lens in proptest::collection::vec(prop_oneof![3 => 0u32..=128, 1 => any::<u32>()], 16),
        waiting: u32,
        vcpu: u32,
    ) {
        let f = fixture(1 << shift, max, Duration::ZERO);
        let entries = 1u32 << shift;
        for i in 0..entries {
            let slot = f.q.g2h.0 + f.q.geo.slot_offset(i);
            f.mem.write_obj(lens[i as usize], GuestAddress(slot)).unwrap();
        }
        f.mem.store(g2h_head, f.g2h(ring_off::HEAD), Ordering::Relaxed).unwrap();
        f.mem.store(h2g_tail, f.h2g(ring_off::TAIL), Ordering::Relaxed).unwrap();
        for (ring, w, v) in [
            (f.q.g2h, ring_off::PRODUCER_WAITING, ring_off::PRODUCER_VCPU),
            (f.q.h2g, ring_off::CONSUMER_WAITING, ring_off::CONSUMER_VCPU),
        ] {
            f.mem.store(waiting, GuestAddress(ring.0 + w), Ordering::Relaxed).unwrap();
            f.mem.store(vcpu, GuestAddress(ring.0 + v), Ordering::Relaxed).unwrap();
        }

        let head_ok = g2h_head <= entries;
        match f.take_all() {
            Ok(evs) => {
                prop_assert!(head_ok);
                prop_assert!(evs.len() <= g2h_head as usize);
                prop_assert!(evs.iter().all(|e| e.len() as u64 <= max));
            }
            Err(EvqError::Corrupt { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
        prop_assert_eq!(f.q.ready(Wait::Readable).is_err(), !head_ok);

        // The host's h2g head is 0: the guest's tail may lag it by at most `entries`.
        let tail_ok = 0u32.wrapping_sub(h2g_tail) <= entries;
        let put = f.q.put(&[vec![1u8; max as usize]]);
        prop_assert_eq!(put.is_ok(), tail_ok, "{:?}", put);
        prop_assert_eq!(f.canary_damage(), 0);
    }
}
