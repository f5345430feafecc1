//! Interrupting the guest after the host published, once per guest sleep.
//!
//! After publishing, the host interrupts the guest if its waiting flag is
//! set, unless it already did so and the guest's own index has not moved
//! since. The guest sleeps only on an empty h2g or a full g2h ring. The host
//! remembers the guest's index at an interrupt only if the ring was, right
//! then, neither (the guest may have taken everything just published before
//! the host looked): so while that index stands still the guest cannot sleep,
//! and it either has not slept yet or wakes from the interrupt already sent.
//! Without this, a producer that outpaces a waking guest sends an interrupt
//! for every event until the guest runs and lowers its flag.

use std::sync::atomic::{fence, Ordering};

use vm_memory::{Bytes, VolatileSlice};

use super::link::VmLink;

/// A view of guest memory (the payload of one event, or one ring).
pub type GuestSlice<'a> = VolatileSlice<'a, ()>;

/// The host's side of one ring: its own index (never read back from guest
/// memory) and the guest's index when the host last interrupted the guest for
/// this ring.
pub(super) struct Side {
    pub(super) index: u32,
    pub(super) irq_at: Option<u32>,
}

impl Side {
    pub(super) fn new() -> Self {
        Side {
            index: 0,
            irq_at: None,
        }
    }
}

/// How `wake_guest` avoids a second interrupt for one guest sleep: where the
/// guest's own index is in the ring header, the host's memory of it at the last
/// interrupt, and whether the guest may sleep at a given value of it.
pub(super) struct IrqSkip<'a> {
    pub(super) index_off: u64,
    pub(super) irq_at: &'a mut Option<u32>,
    pub(super) may_sleep_at: &'a dyn Fn(u32) -> bool,
}

/// Wakes the guest side of queue `queue` if it sleeps on `ring`, after this
/// side published (`waiting_off`/`vcpu_off`: the guest's flag and vCPU
/// fields). With `skip`, no second interrupt is sent while the guest's index
/// stands still.
pub(super) fn wake_guest(
    link: &VmLink,
    queue: &str,
    ring: &GuestSlice<'_>,
    (waiting_off, vcpu_off): (u64, u64),
    skip: Option<IrqSkip<'_>>,
) {
    fence(Ordering::SeqCst);
    let waiting: u32 = ring
        .load(waiting_off as usize, Ordering::Relaxed)
        .unwrap_or(0);
    if waiting == 0 {
        return;
    }
    if let Some(skip) = skip {
        let index: u32 = ring
            .load(skip.index_off as usize, Ordering::Relaxed)
            .unwrap_or(0);
        if *skip.irq_at == Some(index) {
            return;
        }
        *skip.irq_at = (!(skip.may_sleep_at)(index)).then_some(index);
    }
    let vcpu: u32 = ring
        .load(vcpu_off as usize, Ordering::Relaxed)
        .unwrap_or(u32::MAX);
    link.interrupt(queue, vcpu);
}
