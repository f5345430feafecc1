//! One event queue, host side: taking events off the g2h ring, putting events
//! on the h2g ring, waiting, and closing.
//!
//! The guest is untrusted. Per operation the host reads the guest's index
//! (g2h head, h2g tail) once and validates it against its own copy of the
//! index it owns (g2h tail, h2g head), reads each slot's `len` once and
//! validates it against `max_event_size`, and reaches guest memory only through
//! a slice of exactly one ring, so nothing outside the queue's rings is ever
//! touched. A ring that fails validation makes the operation fail with
//! `EvqError::Corrupt`; nothing panics.
//!
//! Host-side concurrency: any number of host threads may use a queue. Takers
//! serialise on `consumer` (the host's g2h tail), putters on `producer` (the
//! host's h2g head); no Python code ever runs while either is held.
//!
//! One interrupt per guest sleep: after publishing, the host interrupts the
//! guest if its waiting flag is set, unless it already did so and the guest's
//! own index has not moved since. The guest sleeps only on an empty h2g or a
//! full g2h ring. The host remembers the guest's index at an interrupt only if
//! the ring was, right then, neither (the guest may have taken everything just
//! published before the host looked): so while that index stands still the
//! guest cannot sleep, and it either has not slept yet or wakes from the
//! interrupt already sent. Without this, a producer that outpaces a waking
//! guest sends an interrupt for every event until the guest runs and lowers
//! its flag.
//!
//! Waiting without losing a wakeup (Dekker, as everywhere in vmrpc): a host
//! waiter spins (yielding the core) for `spin`, then raises the ring flag the
//! guest reads after it publishes (g2h `consumer_waiting` or h2g
//! `producer_waiting`), issues a full barrier, re-checks the ring, and only then
//! blocks. The guest publishes, issues a full barrier, reads the flag and rings
//! the queue's doorbell (an ioeventfd: `notify`). Several host threads may wait
//! on one queue (a taker and a putter typically), but one eventfd read wakes
//! one thread: so one waiter at a time polls the eventfd (the "poller"), and
//! every time it wakes it bumps `generation` and wakes the others through a
//! condition variable; each re-checks its own condition.

use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use guest_kmod_bindings::{ring_off, EvSlot, EvqInfo};
use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileMemory, VolatileSlice,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::wire::{Geometry, SLOT_HDR};
use super::EvqError;
use crate::rpc::wire::{ring_available, ring_free};
use crate::stats::Stats;

/// A view of guest memory (the payload of one event, or one ring).
pub type GuestSlice<'a> = VolatileSlice<'a, ()>;

/// What every queue of a VM shares: guest memory, the per-vCPU interrupt
/// eventfds (irqfds), the counters and the VM's stop signal.
pub struct VmLink {
    pub mem: GuestMemoryMmap,
    pub stats: Arc<Stats>,
    /// How long a host waiter polls before it blocks.
    pub spin: Duration,
    /// The VM's descriptors, until the VM closes (`release_fds`): queue
    /// objects that Python keeps must not keep them open.
    fds: RwLock<Option<LinkFds>>,
}

struct LinkFds {
    /// irqfd of vCPU i at index i.
    irqs: Vec<EventFd>,
    /// Becomes readable, and stays so, once the VM stops (never read here).
    vm_stop: Arc<EventFd>,
}

impl VmLink {
    pub fn new(
        mem: GuestMemoryMmap,
        irqs: Vec<EventFd>,
        stats: Arc<Stats>,
        vm_stop: Arc<EventFd>,
        spin: Duration,
    ) -> Self {
        VmLink {
            mem,
            stats,
            spin,
            fds: RwLock::new(Some(LinkFds { irqs, vm_stop })),
        }
    }

    fn fds(&self) -> RwLockReadGuard<'_, Option<LinkFds>> {
        read(&self.fds)
    }

    /// Closes the VM's descriptors, once every queue is closed. A waiter
    /// polling them holds the read lock, and every queue's `close` woke it.
    pub(crate) fn release_fds(&self) {
        release(&self.fds);
    }
}

/// What a host thread waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// An event to take (g2h not empty).
    Readable,
    /// Room to put an event (h2g not full).
    Writable,
}

/// The host's side of one ring: its own index (never read back from guest
/// memory) and the guest's index when the host last interrupted the guest for
/// this ring (see the module comment).
struct Side {
    index: u32,
    irq_at: Option<u32>,
}

/// How `wake_guest` avoids a second interrupt for one guest sleep: where the
/// guest's own index is in the ring header, the host's memory of it at the last
/// interrupt, and whether the guest may sleep at a given value of it.
struct IrqSkip<'a> {
    index_off: u64,
    irq_at: &'a mut Option<u32>,
    may_sleep_at: &'a dyn Fn(u32) -> bool,
}

/// A queue's two eventfds.
struct QueueFds {
    /// The queue's doorbell: registered as an ioeventfd (datamatch = id).
    notify: EventFd,
    /// Written once on close and never read: wakes every host waiter for good.
    closed: EventFd,
}

/// Why a queue is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Deleted,
    VmClosed,
}

#[derive(Default)]
struct Waiters {
    /// A host thread is blocked in poll() on `notify`.
    polling: bool,
    /// Bumped every time the poller returns; the others re-check then.
    generation: u64,
    /// Host threads waiting for each `Wait`; the ring flag is set while > 0.
    readers: u32,
    writers: u32,
}

pub struct EventQueue {
    name: String,
    id: u32,
    geo: Geometry,
    /// Guest addresses of the g2h and h2g ring headers.
    g2h: GuestAddress,
    h2g: GuestAddress,
    shared_base: u64,
    link: Arc<VmLink>,
    /// The queue's eventfds, until `release_fds` (the VM closed or the queue
    /// was deleted): a queue object Python keeps must not hold descriptors of
    /// a VM that is gone. A poller holds the read lock while it polls them, so
    /// they are never closed under it.
    fds: RwLock<Option<QueueFds>>,
    closed: AtomicBool,
    close_reason: OnceLock<CloseReason>,
    /// The host's g2h tail.
    consumer: Mutex<Side>,
    /// The host's h2g head.
    producer: Mutex<Side>,
    waiters: Mutex<Waiters>,
    woken: Condvar,
    /// Test hooks that stop one side inside the wakeup protocol's windows.
    #[cfg(test)]
    hooks: Mutex<TestHooks>,
}

#[cfg(test)]
#[derive(Default)]
struct TestHooks {
    /// In `put`, after the head is published, before the guest's flag is read.
    after_publish: Option<Box<dyn FnMut() + Send>>,
    /// In `wait`, after the last poll, before the host's flag is raised.
    before_flag: Option<Box<dyn FnMut() + Send>>,
    /// In `wait`, when it is about to block.
    before_block: Option<Box<dyn FnMut() + Send>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Descriptors that close before their owner goes away: `None` once released.
fn read<T>(slot: &RwLock<Option<T>>) -> RwLockReadGuard<'_, Option<T>> {
    slot.read().unwrap_or_else(PoisonError::into_inner)
}

/// Closes the descriptors in `slot`, after every reader (a poller) let go.
fn release<T>(slot: &RwLock<Option<T>>) {
    let taken = slot.write().unwrap_or_else(PoisonError::into_inner).take();
    drop(taken);
}

fn mem_err(e: vm_memory::VolatileMemoryError) -> EvqError {
    EvqError::Memory(e.to_string())
}

/// poll(2) on `fds` until one is readable or `until`; returns the revents.
fn poll_readable(fds: &[&EventFd], until: Option<Instant>) -> Vec<bool> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let timeout = until.map_or(-1, |u| {
        let left = u.saturating_duration_since(Instant::now());
        // Round up so a sub-millisecond wait does not become a busy loop.
        left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
    });
    // SAFETY: `pfds` is a valid, exclusively borrowed array of pollfd for the
    // duration of the call, and its length is passed with it.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
    pfds.iter()
        .map(|p| n > 0 && p.revents & libc::POLLIN != 0)
        .collect()
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
            consumer: Mutex::new(Side {
                index: 0,
                irq_at: None,
            }),
            producer: Mutex::new(Side {
                index: 0,
                irq_at: None,
            }),
            waiters: Mutex::new(Waiters::default()),
            woken: Condvar::new(),
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

    fn check_open(&self) -> Result<(), EvqError> {
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

    /// One ring as a bounds-checked slice: every access below goes through it,
    /// so none can leave the ring whatever the guest wrote.
    fn ring(&self, at: GuestAddress) -> Result<GuestSlice<'_>, EvqError> {
        self.link
            .mem
            .get_slice(at, self.geo.ring_bytes() as usize)
            .map_err(|e| EvqError::Memory(e.to_string()))
    }

    fn corrupt(&self, what: String) -> EvqError {
        EvqError::Corrupt {
            name: self.name.clone(),
            what,
        }
    }

    /// Events ready in g2h, from the guest's head and the host's tail.
    fn available(&self, head: u32, tail: u32) -> Result<u32, EvqError> {
        ring_available(head, tail, self.geo.entries).ok_or_else(|| {
            self.corrupt(format!(
                "guest-to-host head {head} is not within {} events of tail {tail}",
                self.geo.entries
            ))
        })
    }

    /// Free slots in h2g, from the host's head and the guest's tail.
    fn free(&self, head: u32, tail: u32) -> Result<u32, EvqError> {
        ring_free(head, tail, self.geo.entries).ok_or_else(|| {
            self.corrupt(format!(
                "host-to-guest tail {tail} is not within {} events behind head {head}",
                self.geo.entries
            ))
        })
    }

    /// Interrupts the vCPU the guest named as waiting. The guest chooses the
    /// index, so it is only used to pick one of this VM's irqfds: an index
    /// outside the VM means the guest misses its own wakeup, nothing more.
    fn interrupt(&self, vcpu: u32) {
        let fds = self.link.fds();
        match fds.as_ref().and_then(|f| f.irqs.get(vcpu as usize)) {
            Some(fd) => {
                self.link.stats.interrupts.inc();
                if let Err(e) = fd.write(1) {
                    log::error!(target: "vmrpc::evq", "queue {:?}: irqfd write failed: {e}", self.name);
                }
            }
            None => {
                log::debug!(target: "vmrpc::evq", "queue {:?}: guest named vCPU {vcpu} as waiting; no such vCPU", self.name);
            }
        }
    }

    /// Wakes the guest side if it sleeps on `ring`, after this side published
    /// (`waiting_off`/`vcpu_off`: the guest's flag and vCPU fields). With
    /// `skip` (the offset of the guest's index, the host's memory of it, and
    /// whether the guest may sleep at a given index of its own), no second
    /// interrupt is sent while the guest's index stands still.
    fn wake_guest(
        &self,
        ring: &GuestSlice<'_>,
        waiting_off: u64,
        vcpu_off: u64,
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
        self.interrupt(vcpu);
    }

    // ---- guest -> host ---------------------------------------------------------------

    /// Takes up to `max` events off the g2h ring, handing each payload to `sink`
    /// (a view of guest memory valid for the call only; copy it out). Returns
    /// how many were taken; 0 if the ring is empty. `sink` runs with the
    /// consumer lock held: it must not call back into this queue.
    ///
    /// A slot with an impossible length stops the batch before it: the events
    /// before it are taken, and the next call reports the corruption.
    pub fn take(
        &self,
        max: usize,
        mut sink: impl FnMut(GuestSlice<'_>),
    ) -> Result<usize, EvqError> {
        self.check_open()?;
        let mut side = lock(&self.consumer);
        let ring = self.ring(self.g2h)?;
        let head: u32 = ring
            .load(ring_off::HEAD as usize, Ordering::Acquire)
            .map_err(mem_err)?;
        let avail = self.available(head, side.index)?;
        let want = avail.min(u32::try_from(max).unwrap_or(u32::MAX));
        let mut tail = side.index;
        let mut taken = 0u32;
        let mut bad = None;
        while taken < want {
            let off = self.geo.slot_offset(tail);
            let slot: EvSlot = ring.read_obj(off as usize).map_err(mem_err)?;
            let Some(len) = self.geo.valid_len(slot.len) else {
                bad = Some(self.corrupt(format!(
                    "guest-to-host event {tail} has length {}, more than max_event_size {}",
                    slot.len, self.geo.max_event_size
                )));
                break;
            };
            let payload = ring
                .get_slice((off + SLOT_HDR) as usize, len)
                .map_err(mem_err)?;
            sink(payload);
            tail = tail.wrapping_add(1);
            taken += 1;
        }
        if taken > 0 {
            side.index = tail;
            ring.store(tail, ring_off::TAIL as usize, Ordering::Release)
                .map_err(mem_err)?;
            self.link.stats.events_guest_to_host.add(taken.into());
            // The guest producer sleeps only on a full ring.
            let entries = self.geo.entries;
            let full = |head: u32| head.wrapping_sub(tail) == entries;
            self.wake_guest(
                &ring,
                ring_off::PRODUCER_WAITING,
                ring_off::PRODUCER_VCPU,
                Some(IrqSkip {
                    index_off: ring_off::HEAD,
                    irq_at: &mut side.irq_at,
                    may_sleep_at: &full,
                }),
            );
        }
        match bad {
            Some(e) if taken == 0 => Err(e),
            _ => Ok(taken as usize),
        }
    }

    /// Takes up to `max` events into `buf` (payloads back to back) and `lens`
    /// (one length per event), both cleared first. Returns the count.
    pub fn take_into(
        &self,
        max: usize,
        buf: &mut Vec<u8>,
        lens: &mut Vec<usize>,
    ) -> Result<usize, EvqError> {
        buf.clear();
        lens.clear();
        self.take(max, |payload| {
            let at = buf.len();
            buf.resize(at + payload.len(), 0);
            payload.copy_to(&mut buf[at..]);
            lens.push(payload.len());
        })
    }

    // ---- host -> guest ---------------------------------------------------------------

    /// Puts as many of `events` as fit, in order, and returns how many; 0 if
    /// the ring is full. Every length is checked before anything is written.
    pub fn put<B: AsRef<[u8]>>(&self, events: &[B]) -> Result<usize, EvqError> {
        if let Some(big) = events
            .iter()
            .find(|e| e.as_ref().len() > self.geo.max_event_size as usize)
        {
            return Err(EvqError::TooBig {
                name: self.name.clone(),
                len: big.as_ref().len(),
                max: self.geo.max_event_size,
            });
        }
        self.check_open()?;
        let mut side = lock(&self.producer);
        let ring = self.ring(self.h2g)?;
        let tail: u32 = ring
            .load(ring_off::TAIL as usize, Ordering::Acquire)
            .map_err(mem_err)?;
        let free = self.free(side.index, tail)?;
        let n = events.len().min(free as usize);
        let mut head = side.index;
        for event in &events[..n] {
            let data = event.as_ref();
            let off = self.geo.slot_offset(head) as usize;
            let slot = EvSlot {
                len: data.len() as u32,
                _pad: 0,
            };
            ring.write_obj(slot, off).map_err(mem_err)?;
            ring.write_slice(data, off + SLOT_HDR as usize)
                .map_err(mem_err)?;
            head = head.wrapping_add(1);
        }
        if n > 0 {
            side.index = head;
            // Release: the slots are visible before the head that publishes them.
            ring.store(head, ring_off::HEAD as usize, Ordering::Release)
                .map_err(mem_err)?;
            self.link.stats.events_host_to_guest.add(n as u64);
            #[cfg(test)]
            if let Some(hook) = &mut lock(&self.hooks).after_publish {
                hook();
            }
            // The guest consumer sleeps only on an empty ring.
            let empty = |tail: u32| tail == head;
            self.wake_guest(
                &ring,
                ring_off::CONSUMER_WAITING,
                ring_off::CONSUMER_VCPU,
                Some(IrqSkip {
                    index_off: ring_off::TAIL,
                    irq_at: &mut side.irq_at,
                    may_sleep_at: &empty,
                }),
            );
        }
        Ok(n)
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

    /// True once the VM stopped (or is gone, its descriptors released).
    fn vm_stopped(&self) -> bool {
        match self.link.fds().as_ref() {
            Some(link) => poll_readable(&[&link.vm_stop], Some(Instant::now()))[0],
            None => true,
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
        let _flag = WaitFlag::raise(self, what)?;
        loop {
            // Dekker: the flag is visible before we look at the ring again.
            fence(Ordering::SeqCst);
            if self.ready(what)? {
                return Ok(true);
            }
            if self.vm_stopped() {
                return Err(EvqError::VmStopped {
                    name: self.name.clone(),
                    what,
                });
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            #[cfg(test)]
            if let Some(hook) = &mut lock(&self.hooks).before_block {
                hook();
            }
            self.block(deadline);
        }
    }

    /// Blocks until the doorbell rings, the queue closes, the VM stops, or
    /// `deadline`; one thread polls the eventfd, the others wait for it.
    fn block(&self, deadline: Option<Instant>) {
        let mut w = lock(&self.waiters);
        if w.polling {
            let generation = w.generation;
            let cond = |w: &mut Waiters| w.polling && w.generation == generation;
            match deadline {
                None => drop(self.woken.wait_while(w, cond)),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    drop(self.woken.wait_timeout_while(w, left, cond));
                }
            }
            return;
        }
        w.polling = true;
        drop(w);
        {
            let fds = self.fds();
            let link = self.link.fds();
            // Released: the queue is closed, and the caller sees that next.
            if let (Some(own), Some(link)) = (fds.as_ref(), link.as_ref()) {
                let fired = poll_readable(&[&own.notify, &own.closed, &link.vm_stop], deadline);
                if fired[0] {
                    if let Ok(count) = own.notify.read() {
                        self.link.stats.evq_doorbells.add(count);
                    }
                }
            }
        }
        let mut w = lock(&self.waiters);
        w.polling = false;
        w.generation = w.generation.wrapping_add(1);
        self.woken.notify_all();
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
                self.wake_guest(&ring, waiting, vcpu, None);
            }
        }
        if let Some(fds) = self.fds().as_ref() {
            let _ = fds.closed.write(1);
        }
        let w = lock(&self.waiters);
        self.woken.notify_all();
        drop(w);
    }
}

/// The ring flag that asks the guest for a doorbell, raised while at least one
/// host thread waits for that condition.
struct WaitFlag<'a> {
    q: &'a EventQueue,
    what: Wait,
}

impl<'a> WaitFlag<'a> {
    fn flag_location(q: &EventQueue, what: Wait) -> (GuestAddress, u64) {
        match what {
            Wait::Readable => (q.g2h, ring_off::CONSUMER_WAITING),
            Wait::Writable => (q.h2g, ring_off::PRODUCER_WAITING),
        }
    }

    fn set(q: &EventQueue, what: Wait, value: u32) -> Result<(), EvqError> {
        let (at, off) = Self::flag_location(q, what);
        q.ring(at)?
            .store(value, off as usize, Ordering::SeqCst)
            .map_err(mem_err)
    }

    fn raise(q: &'a EventQueue, what: Wait) -> Result<Self, EvqError> {
        let mut w = lock(&q.waiters);
        let count = match what {
            Wait::Readable => &mut w.readers,
            Wait::Writable => &mut w.writers,
        };
        *count += 1;
        if *count == 1 {
            if let Err(e) = Self::set(q, what, 1) {
                *count -= 1;
                return Err(e);
            }
        }
        Ok(WaitFlag { q, what })
    }
}

impl Drop for WaitFlag<'_> {
    fn drop(&mut self) {
        let mut w = lock(&self.q.waiters);
        let count = match self.what {
            Wait::Readable => &mut w.readers,
            Wait::Writable => &mut w.writers,
        };
        *count -= 1;
        if *count == 0 {
            let _ = Self::set(self.q, self.what, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evq::wire::RING_HDR;
    use proptest::prelude::*;
    use std::sync::atomic::AtomicBool;

    const BASE: u64 = 0x1000;
    const MEM: usize = 64 << 10;
    const CANARY: u8 = 0xa5;

    struct Fixture {
        mem: GuestMemoryMmap,
        q: Arc<EventQueue>,
        link: Arc<VmLink>,
        /// Duplicates of the link's irqfds and stop eventfd (same counters).
        irqs: Vec<EventFd>,
        vm_stop: Arc<EventFd>,
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
        let vm_stop = Arc::new(efd());
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
            f.q.wake_guest(
                &ring,
                ring_off::CONSUMER_WAITING,
                ring_off::CONSUMER_VCPU,
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
        f.vm_stop.write(1).unwrap();
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
        f.guest_put(1, b"ok2");
        let slot = f.q.g2h.0 + f.q.geo.slot_offset(1);
        f.mem.write_obj(9u32, GuestAddress(slot)).unwrap();
        assert_eq!(f.take_all().unwrap(), vec![b"ok".to_vec()]);
        let err = f.take_all().unwrap_err();
        assert!(
            err.to_string()
                .contains("has length 9, more than max_event_size 8"),
            "{err}"
        );
        assert_eq!(f.load(f.g2h(ring_off::TAIL)), 1, "the bad event stays");
    }

    /// The host waiter's side of "no lost wakeup", on the real `wait`: the
    /// guest publishes an event after the host's last poll and before it
    /// raises `consumer_waiting`, so the guest sees no flag and rings no
    /// doorbell. Only the re-check after raising the flag can find it.
    ///
    /// Mutant killed (applied by hand, seen to fail): the re-check moved
    /// after `block` (the host blocks with the event already there; it would
    /// wake only at its deadline, or never without one).
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
}
