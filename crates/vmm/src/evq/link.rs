//! What every event queue of a VM shares: guest memory, the counters, the
//! per-vCPU interrupt eventfds (irqfds) and the VM's stop token; and how a
//! queue object that outlives its VM lets go of the VM's descriptors.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::stats::Stats;
use crate::stop::StopToken;

pub struct VmLink {
    pub mem: GuestMemoryMmap,
    pub stats: Arc<Stats>,
    /// How long a host waiter polls before it blocks.
    pub spin: Duration,
    /// The VM's descriptors, until the VM closes (`release_fds`): queue
    /// objects that Python keeps must not keep them open.
    fds: RwLock<Option<LinkFds>>,
}

pub(super) struct LinkFds {
    /// irqfd of vCPU i at index i.
    irqs: Vec<EventFd>,
    /// The VM's stop token: its eventfd wakes blocked waiters.
    pub(super) stop: StopToken,
}

/// Descriptors that close before their owner goes away: `None` once released.
pub(super) fn read<T>(slot: &RwLock<Option<T>>) -> RwLockReadGuard<'_, Option<T>> {
    slot.read().unwrap_or_else(PoisonError::into_inner)
}

/// Closes the descriptors in `slot`, after every reader (a poller) let go.
pub(super) fn release<T>(slot: &RwLock<Option<T>>) {
    let taken = slot.write().unwrap_or_else(PoisonError::into_inner).take();
    drop(taken);
}

impl VmLink {
    pub fn new(
        mem: GuestMemoryMmap,
        irqs: Vec<EventFd>,
        stats: Arc<Stats>,
        stop: StopToken,
        spin: Duration,
    ) -> Self {
        VmLink {
            mem,
            stats,
            spin,
            fds: RwLock::new(Some(LinkFds { irqs, stop })),
        }
    }

    pub(super) fn fds(&self) -> RwLockReadGuard<'_, Option<LinkFds>> {
        read(&self.fds)
    }

    /// Closes the VM's descriptors, once every queue is closed. A waiter
    /// polling them holds the read lock, and every queue's `close` woke it.
    pub(crate) fn release_fds(&self) {
        release(&self.fds);
    }

    /// True once the VM stopped (or is gone, its descriptors released).
    pub(super) fn vm_stopped(&self) -> bool {
        self.fds().as_ref().is_none_or(|f| f.stop.is_stopped())
    }

    /// Interrupts the vCPU the guest named as waiting on `queue`. The guest
    /// chooses the index, so it is only used to pick one of this VM's irqfds:
    /// an index outside the VM means the guest misses its own wakeup, nothing
    /// more.
    pub(super) fn interrupt(&self, queue: &str, vcpu: u32) {
        let fds = self.fds();
        match fds.as_ref().and_then(|f| f.irqs.get(vcpu as usize)) {
            Some(fd) => {
                self.stats.interrupts.inc();
                if let Err(e) = fd.write(1) {
                    log::error!(target: "vmrpc::evq", "queue {queue:?}: irqfd write failed: {e}");
                }
            }
            None => {
                log::debug!(target: "vmrpc::evq", "queue {queue:?}: guest named vCPU {vcpu} as waiting; no such vCPU");
            }
        }
    }
}
