//! One event queue, host side: where its rings are, the checks on what the
//! guest wrote into their headers, waiting, and closing. Moving events
//! through the slots is in `slots`, interrupting the guest in `notify`, the
//! bookkeeping of several host waiters in `wait`.
//!
//! Host-side concurrency: any number of host threads may use a queue. Takers
//! serialise on `consumer` (the host's g2h tail), putters on `producer` (the
//! host's h2g head); no Python code ever runs while either is held.
//!
//! Waiting without losing a wakeup (Dekker, as everywhere in vmrpc): a host
//! waiter spins (yielding the core) for `spin`, then raises the ring flag the
//! guest reads after it publishes (g2h `consumer_waiting` or h2g
//! `producer_waiting`), issues a full barrier, re-checks the ring, and only then
//! blocks. The guest publishes, issues a full barrier, reads the flag and rings
//! the queue's doorbell (an ioeventfd: `notify`).

use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use guest_kmod_bindings::{ring_off, EvqInfo};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::error::{CloseReason, EvqError, Wait};
use super::geometry::Geometry;
use super::link::{read, release, VmLink};
use super::notify::{wake_guest, GuestSlice, IrqSkip, Side};
use super::wait::{lock, poll_readable, WaitState};
use crate::ring::{ring_available, ring_free};

/// A queue's two eventfds.
struct QueueFds {
    /// The queue's doorbell: registered as an ioeventfd (datamatch = id).
    notify: EventFd,
    /// Written once on close and never read: wakes every host waiter for good.
    closed: EventFd,
}

pub struct EventQueue {
    pub(super) name: String,
    id: u32,
    pub(super) geo: Geometry,
    /// Guest addresses of the g2h and h2g ring headers.
    pub(super) g2h: GuestAddress,
    pub(super) h2g: GuestAddress,
    shared_base: u64,
    pub(super) link: Arc<VmLink>,
    /// The queue's eventfds, until `release_fds` (the VM closed or the queue
    /// was deleted): a queue object Python keeps must not hold descriptors of
    /// a VM that is gone. A poller holds the read lock while it polls them, so
    /// they are never closed under it.
    fds: RwLock<Option<QueueFds>>,
    closed: AtomicBool,
    close_reason: OnceLock<CloseReason>,
    /// The host's g2h tail.
    pub(super) consumer: Mutex<Side>,
    /// The host's h2g head.
    pub(super) producer: Mutex<Side>,
    waiters: WaitState,
    /// Test hooks that stop one side inside the wakeup protocol's windows.
    #[cfg(test)]
    pub(super) hooks: Mutex<TestHooks>,
}

#[cfg(test)]
#[derive(Default)]
pub(super) struct TestHooks {
    /// In `put`, after the head is published, before the guest's flag is read.
    pub(super) after_publish: Option<Box<dyn FnMut() + Send>>,
    /// In `wait`, after the last poll, before the host's flag is raised.
    pub(super) before_flag: Option<Box<dyn FnMut() + Send>>,
    /// In `block`, before it blocks on the queue's descriptors.
    pub(super) before_block: Option<Box<dyn FnMut() + Send>>,
}

pub(super) fn mem_err(e: vm_memory::VolatileMemoryError) -> EvqError {
    EvqError::Memory(e.to_string())
}

impl EventQueue {
    /// A queue over rings the caller placed at `g2h` and `h2g` (each
    /// `geo.ring_bytes()` long, inside guest memory) and zeroed.
    pub(crate) fn new(
        name: String,
        id: u32,
        geo: Geometry,
        (g2h, h2g): (GuestAddress, GuestAddress),
        shared_base: u64,
        link: Arc<VmLink>,
    ) -> Result<Self, EvqError> {
        let efd = || EventFd::new(EFD_NONBLOCK).map_err(|e| EvqError::Os("creating an eventfd", e));
        let q = EventQueue {
            name,
            id,
            geo,
            g2h,
            h2g,
            shared_base,
            link,
            fds: RwLock::new(Some(QueueFds {
                notify: efd()?,
                closed: efd()?,
            })),
            closed: AtomicBool::new(false),
            close_reason: OnceLock::new(),
            consumer: Mutex::new(Side::new()),
            producer: Mutex::new(Side::new()),
            waiters: WaitState::default(),
            #[cfg(test)]
            hooks: Mutex::new(TestHooks::default()),
        };
        // Both rings must be reachable as one slice each, or the queue is unusable.
        q.ring(g2h)?;
        q.ring(h2g)?;
        Ok(q)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    fn fds(&self) -> RwLockReadGuard<'_, Option<QueueFds>> {
        read(&self.fds)
    }

    /// Runs `f` on the doorbell eventfd; `None` once the fds are released.
    pub(crate) fn with_notify_fd<R>(&self, f: impl FnOnce(&EventFd) -> R) -> Option<R> {
        self.fds().as_ref().map(|fds| f(&fds.notify))
    }

    /// Closes both eventfds, after `close` (and after the doorbell's ioeventfd
    /// is unregistered, if it still can be). Waits for a poller to return:
    /// `close` already woke it. Idempotent.
    pub(crate) fn release_fds(&self) {
        debug_assert!(self.is_closed());
        release(&self.fds);
    }

    /// What the guest gets from VMRPC_SYS_OPEN_EVQ.
    pub fn info(&self) -> EvqInfo {
        EvqInfo {
            queue_id: self.id,
            entries: self.geo.entries,
            max_event_size: self.geo.max_event_size,
            slot_size: self.geo.slot_size,
            g2h_offset: self.g2h.0 - self.shared_base,
            h2g_offset: self.h2g.0 - self.shared_base,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(super) fn check_open(&self) -> Result<(), EvqError> {
        if !self.is_closed() {
            return Ok(());
        }
        let reason = self
            .close_reason
            .get()
            .copied()
            .unwrap_or(CloseReason::Deleted);
        Err(EvqError::Closed {
            name: self.name.clone(),
            reason,
        })
    }

    /// One ring as a bounds-checked slice: every access goes through it, so
    /// none can leave the ring whatever the guest wrote.
    pub(super) fn ring(&self, at: GuestAddress) -> Result<GuestSlice<'_>, EvqError> {
        self.link
            .mem
            .get_slice(at, self.geo.ring_bytes() as usize)
            .map_err(|e| EvqError::Memory(e.to_string()))
    }

    pub(super) fn corrupt(&self, what: String) -> EvqError {
        EvqError::Corrupt {
            name: self.name.clone(),
            what,
        }
    }

    /// Events ready in g2h, from the guest's head and the host's tail.
    pub(super) fn available(&self, head: u32, tail: u32) -> Result<u32, EvqError> {
        ring_available(head, tail, self.geo.entries).ok_or_else(|| {
            self.corrupt(format!(
                "guest-to-host head {head} is not within {} events of tail {tail}",
                self.geo.entries
            ))
        })
    }

    /// Free slots in h2g, from the host's head and the guest's tail.
    pub(super) fn free(&self, head: u32, tail: u32) -> Result<u32, EvqError> {
        ring_free(head, tail, self.geo.entries).ok_or_else(|| {
            self.corrupt(format!(
                "host-to-guest tail {tail} is not within {} events behind head {head}",
                self.geo.entries
            ))
        })
    }

    /// Wakes the guest if it sleeps on `ring` (see `notify::wake_guest`).
    pub(super) fn wake(&self, ring: &GuestSlice<'_>, flag: (u64, u64), skip: Option<IrqSkip<'_>>) {
        wake_guest(&self.link, &self.name, ring, flag, skip);
    }

    // ---- waiting ---------------------------------------------------------------------

    /// True if `what` can be done now. Fails if the queue is closed or corrupt.
    pub fn ready(&self, what: Wait) -> Result<bool, EvqError> {
        self.check_open()?;
        match what {
            Wait::Readable => {
                let tail = lock(&self.consumer).index;
                let head: u32 = self
                    .ring(self.g2h)?
                    .load(ring_off::HEAD as usize, Ordering::Acquire)
                    .map_err(mem_err)?;
                Ok(self.available(head, tail)? > 0)
            }
            Wait::Writable => {
                let head = lock(&self.producer).index;
                let tail: u32 = self
                    .ring(self.h2g)?
                    .load(ring_off::TAIL as usize, Ordering::Acquire)
                    .map_err(mem_err)?;
                Ok(self.free(head, tail)? > 0)
            }
        }
    }

    /// Waits until `what` can be done (true) or `deadline` passes (false).
    /// Fails with `Closed` if the queue is closed before or meanwhile, and with
    /// `VmStopped` if the VM stops while the condition does not hold (nobody
    /// could ever make it hold then).
    pub fn wait(&self, what: Wait, deadline: Option<Instant>) -> Result<bool, EvqError> {
        if self.ready(what)? {
            return Ok(true);
        }
        // rpc_spin_us comes from the user: a spin too long for an Instant
        // (u64::MAX µs) spins until the deadline, it must not panic.
        let now = Instant::now();
        let spin_end = now
            .checked_add(self.link.spin)
            .or_else(|| now.checked_add(Duration::from_secs(1 << 32)))
            .unwrap_or(now);
        let spin_end = deadline.map_or(spin_end, |d| d.min(spin_end));
        while Instant::now() < spin_end {
            // Yield rather than spin hard: a vCPU thread that shares this core
            // is the one that will make the condition true.
            std::thread::yield_now();
            if self.ready(what)? {
                return Ok(true);
            }
        }
        #[cfg(test)]
        if let Some(hook) = &mut lock(&self.hooks).before_flag {
            hook();
        }
        let _flag = self.waiters.raise(what, |v| self.set_wait_flag(what, v))?;
        loop {
            // Dekker: the flag is visible before we look at the ring again.
            fence(Ordering::SeqCst);
            if self.ready(what)? {
                return Ok(true);
            }
            if self.link.vm_stopped() {
                return Err(EvqError::VmStopped {
                    name: self.name.clone(),
                    what,
                });
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            self.block(deadline);
        }
    }

    /// Blocks until the doorbell rings, the queue closes, the VM stops, or
    /// `deadline`; one thread polls the eventfds, the others wait for it.
    fn block(&self, deadline: Option<Instant>) {
        // In `block` itself, not at its call site: whatever path reaches a
        // block goes through the hook.
        #[cfg(test)]
        if let Some(hook) = &mut lock(&self.hooks).before_block {
            hook();
        }
        self.waiters.block(deadline, || {
            let fds = self.fds();
            let link = self.link.fds();
            // Released: the queue is closed, and the caller sees that next.
            if let (Some(own), Some(link)) = (fds.as_ref(), link.as_ref()) {
                let watched = [
                    own.notify.as_raw_fd(),
                    own.closed.as_raw_fd(),
                    link.stop.as_raw_fd(),
                ];
                if poll_readable(&watched, deadline)[0] {
                    if let Ok(count) = own.notify.read() {
                        self.link.stats.evq_doorbells.add(count);
                    }
                }
            }
        });
    }

    /// Diagnostics: the ring header words as they are in guest memory now, and
    /// the host's own indices (`host_g2h_tail`, `host_h2g_head`).
    pub fn ring_state(&self) -> Vec<(String, u32)> {
        let fields = [
            ("head", ring_off::HEAD),
            ("producer_waiting", ring_off::PRODUCER_WAITING),
            ("producer_vcpu", ring_off::PRODUCER_VCPU),
            ("closed", ring_off::CLOSED),
            ("tail", ring_off::TAIL),
            ("consumer_waiting", ring_off::CONSUMER_WAITING),
            ("consumer_vcpu", ring_off::CONSUMER_VCPU),
        ];
        let mut out = vec![
            ("host_g2h_tail".to_owned(), lock(&self.consumer).index),
            ("host_h2g_head".to_owned(), lock(&self.producer).index),
        ];
        for (dir, at) in [("g2h", self.g2h), ("h2g", self.h2g)] {
            if let Ok(ring) = self.ring(at) {
                for (name, off) in fields {
                    let v = ring.load(off as usize, Ordering::Acquire).unwrap_or(0);
                    out.push((format!("{dir}_{name}"), v));
                }
            }
        }
        out
    }

    // ---- closing ---------------------------------------------------------------------

    /// Marks both rings closed and wakes every waiter, guest and host. Later
    /// host operations fail with `Closed`, guest ones get VMRPC_ENOQUEUE.
    /// Idempotent.
    pub fn close(&self, reason: CloseReason) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.close_reason.set(reason);
        for (at, waiting, vcpu) in [
            (
                self.g2h,
                ring_off::PRODUCER_WAITING,
                ring_off::PRODUCER_VCPU,
            ),
            (
                self.h2g,
                ring_off::CONSUMER_WAITING,
                ring_off::CONSUMER_VCPU,
            ),
        ] {
            if let Ok(ring) = self.ring(at) {
                let _ = ring.store(1u32, ring_off::CLOSED as usize, Ordering::Release);
                // Dekker with a guest about to sleep: it sets its flag, fences,
                // and re-checks `closed`; we publish `closed`, fence, read the flag.
                self.wake(&ring, (waiting, vcpu), None);
            }
        }
        if let Some(fds) = self.fds().as_ref() {
            let _ = fds.closed.write(1);
        }
        self.waiters.wake_all();
    }

    /// Raises (1) or lowers (0) the ring flag that asks the guest for a
    /// doorbell when it makes `what` possible.
    fn set_wait_flag(&self, what: Wait, value: u32) -> Result<(), EvqError> {
        let (at, off) = match what {
            Wait::Readable => (self.g2h, ring_off::CONSUMER_WAITING),
            Wait::Writable => (self.h2g, ring_off::PRODUCER_WAITING),
        };
        self.ring(at)?
            .store(value, off as usize, Ordering::SeqCst)
            .map_err(mem_err)
    }
}
