//! The RPC engine: one thread per VM that takes requests off every vCPU's ring,
//! validates them, and hands them to host modules.
//!
//! Sleeping without losing a wakeup (Dekker): the engine spins for `spin`, then
//! sets `host_sleeping`, issues a full barrier, and polls every ring once more
//! before it blocks on the doorbell eventfd. A guest publishes its request,
//! issues a full barrier, then reads `host_sleeping` and rings only if set. With
//! both barriers, at least one side sees the other's write: either the engine's
//! last poll finds the request, or the guest rings the doorbell. The eventfd
//! keeps a count, so a ring that lands before the engine blocks is not lost.

use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use guest_kmod_bindings::{
    ring_off, ReqDesc, RingHdr, SHARED_CHANS_IN_USE_OFFSET, SHARED_HOST_SLEEPING_OFFSET,
    VMRPC_EINVAL, VMRPC_ENOFUNC, VMRPC_RPC_RING_ENTRIES, VMRPC_SYS_BIND, VMRPC_SYS_HANDLE,
    VMRPC_SYS_OPEN_EVQ, VMRPC_SYS_UNBIND,
};
use vm_memory::ByteValued;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::channel::{Channel, Completion};
use super::registry::Registry;
use super::wire::{self, ValidReq};
use crate::evq::EvqHost;
use crate::ring::ring_available;
use crate::stats::Stats;
use crate::stop::StopToken;

const RING_HDR: u64 = std::mem::size_of::<RingHdr>() as u64;
const REQ_DESC: u64 = std::mem::size_of::<ReqDesc>() as u64;

/// What the engine thread tells the thread that stops it.
#[derive(Default)]
pub struct EngineLife {
    /// The engine is inside a host module's `call`.
    pub in_call: AtomicBool,
    /// The engine thread has left `run` and touches nothing of the VM's any more.
    done: Mutex<bool>,
    changed: std::sync::Condvar,
}

/// Marks the engine done when dropped (see `RpcHost::start`).
pub(super) struct DoneOnDrop(pub(super) Arc<EngineLife>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        self.0.set_done();
    }
}

impl EngineLife {
    fn set_done(&self) {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.changed.notify_all();
    }

    /// Waits up to `max` for the engine to finish; true if it has.
    pub(super) fn wait_done(&self, max: Duration) -> bool {
        let done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        let (done, _) = self
            .changed
            .wait_timeout_while(done, max, |d| !*d)
            .unwrap_or_else(PoisonError::into_inner);
        *done
    }
}

struct EngineChan {
    chan: Arc<Channel>,
    /// The host's own copy of the request ring's tail (never read back).
    tail: u32,
}

pub struct Engine {
    chans: Vec<EngineChan>,
    /// Channels polled whatever `chans_in_use` says: the vCPUs' (a bare
    /// guest's every channel), at least one.
    always_polled: usize,
    /// The guest's `chans_in_use`: a Linux VM has 64 per-thread channels, and
    /// polling all of them on every pass cost a single-threaded program half
    /// its send throughput (benches/sockets.py, 2850 -> 1350 MiB/s).
    chans_in_use: GuestAddress,
    registry: Arc<Registry>,
    queues: Arc<EvqHost>,
    mem: GuestMemoryMmap,
    host_sleeping: GuestAddress,
    doorbell: Arc<EventFd>,
    stop: StopToken,
    stats: Arc<Stats>,
    spin: Duration,
    /// Request bytes, copied out of guest memory once.
    buf: Vec<u8>,
    /// `in_call` is raised while a host module runs (see `RpcHost::join`).
    life: Arc<EngineLife>,
    /// Test hook: runs after the last poll of a spin, before `host_sleeping`
    /// is raised, so a test can publish a request in exactly that window.
    #[cfg(test)]
    before_sleep_flag: Option<Box<dyn FnMut() + Send>>,
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        chans: &[Arc<Channel>],
        registry: Arc<Registry>,
        queues: Arc<EvqHost>,
        mem: GuestMemoryMmap,
        shared_base: u64,
        doorbell: Arc<EventFd>,
        stop: StopToken,
        stats: Arc<Stats>,
        spin: Duration,
        life: Arc<EngineLife>,
    ) -> Self {
        Engine {
            chans: chans
                .iter()
                .map(|c| EngineChan {
                    chan: c.clone(),
                    tail: 0,
                })
                .collect(),
            always_polled: chans
                .iter()
                .take_while(|c| c.irq().is_some())
                .count()
                .max(1),
            chans_in_use: GuestAddress(shared_base + SHARED_CHANS_IN_USE_OFFSET),
            registry,
            queues,
            mem,
            host_sleeping: GuestAddress(shared_base + SHARED_HOST_SLEEPING_OFFSET),
            doorbell,
            stop,
            stats,
            spin,
            buf: vec![0; guest_kmod_bindings::VMRPC_MAX_PAYLOAD as usize],
            life,
            #[cfg(test)]
            before_sleep_flag: None,
        }
    }

    fn set_sleeping(&self, v: u32) {
        let _ = self.mem.store(v, self.host_sleeping, Ordering::Release);
    }

    /// Serves requests until the VM's stop token is stopped.
    /// Starts from these request-ring tails (a VM restored from a snapshot).
    pub fn resume_tails(&mut self, tails: &[u32]) {
        for (chan, &tail) in self.chans.iter_mut().zip(tails) {
            chan.tail = tail;
        }
    }

    pub fn run(mut self) {
        let mut idle_since: Option<Instant> = None;
        while !self.stop.is_stopped() {
            if self.poll() {
                idle_since = None;
                continue;
            }
            if idle_since.get_or_insert_with(Instant::now).elapsed() < self.spin {
                // Yield rather than burn the core: if a vCPU thread shares this
                // core, a pure spin would keep it from making the very request
                // we are waiting for.
                std::thread::yield_now();
                continue;
            }
            #[cfg(test)]
            if let Some(hook) = &mut self.before_sleep_flag {
                hook();
            }
            self.set_sleeping(1);
            fence(Ordering::SeqCst);
            // The re-check: a request published before the flag was visible
            // came without a doorbell (the guest saw host_sleeping == 0).
            if self.poll() || self.stop.is_stopped() {
                self.set_sleeping(0);
                idle_since = None;
                continue;
            }
            self.stats.engine_sleeps.inc();
            self.sleep();
            self.set_sleeping(0);
            idle_since = None;
        }
    }

    /// Blocks until the guest rings the doorbell or the VM stops.
    fn sleep(&self) {
        let mut fds = [
            libc::pollfd {
                fd: self.doorbell.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n > 0 && fds[0].revents & libc::POLLIN != 0 {
            if let Ok(count) = self.doorbell.read() {
                self.stats.doorbells.add(count);
            }
        }
    }

    /// One pass over every channel in use; true if any request was taken.
    pub fn poll(&mut self) -> bool {
        let in_use: u32 = self
            .mem
            .load(self.chans_in_use, Ordering::Acquire)
            .unwrap_or(0);
        let polled = (in_use as usize)
            .max(self.always_polled)
            .min(self.chans.len());
        let mut did = false;
        for i in 0..polled {
            did |= self.poll_chan(i);
        }
        did
    }

    fn poll_chan(&mut self, i: usize) -> bool {
        let req_ring = self.chans[i].chan.req_ring;
        let mut tail = self.chans[i].tail;
        let head: u32 = self
            .mem
            .load(req_ring.unchecked_add(ring_off::HEAD), Ordering::Acquire)
            .unwrap_or(tail);
        let available = match ring_available(head, tail, VMRPC_RPC_RING_ENTRIES) {
            Some(n) => n,
            None => {
                // A head no well-behaved guest can write: resynchronise, answer nothing.
                self.stats.rpc_malformed.inc();
                self.chans[i].tail = head;
                let _ = self.mem.store(
                    head,
                    req_ring.unchecked_add(ring_off::TAIL),
                    Ordering::Release,
                );
                return false;
            }
        };
        if available == 0 {
            return false; // the common case on every pass: no Arc traffic for it
        }
        let chan = self.chans[i].chan.clone();
        let mut did = false;
        for _ in 0..available {
            // Take a request only if its answer has a slot waiting for it.
            if !chan.reserve() {
                break;
            }
            let slot = (tail % VMRPC_RPC_RING_ENTRIES) as u64;
            let at = chan.req_ring.unchecked_add(RING_HDR + slot * REQ_DESC);
            let desc: ReqDesc = self.mem.read_obj(at).unwrap_or_default();
            tail = tail.wrapping_add(1);
            let _ = self.mem.store(
                tail,
                chan.req_ring.unchecked_add(ring_off::TAIL),
                Ordering::Release,
            );
            did = true;
            match wire::validate_req(&desc) {
                Ok(req) => self.dispatch(&chan, req),
                Err((tag, code)) => {
                    self.stats.rpc_malformed.inc();
                    Completion::new(chan.clone(), tag, 0, 0).err(code);
                }
            }
        }
        self.chans[i].tail = tail;
        did
    }

    fn dispatch(&mut self, chan: &Arc<Channel>, req: ValidReq) {
        let done = Completion::new(chan.clone(), req.tag, req.resp_off, req.resp_cap);
        let payload = &mut self.buf[..req.req_len as usize];
        let at = chan.data.unchecked_add(req.req_off as u64);
        if chan.mem().read_slice(payload, at).is_err() {
            return done.err(VMRPC_EINVAL);
        }
        if req.handle == VMRPC_SYS_HANDLE {
            return system_call(&self.registry, &self.queues, req.function, payload, done);
        }
        match self.registry.lookup(req.handle) {
            Err(code) => done.err(code),
            Ok(reg) if !reg.module.has_function(req.function) => done.err(VMRPC_ENOFUNC),
            Ok(reg) => {
                self.life.in_call.store(true, Ordering::Release);
                reg.module.call(req.function, payload, done);
                self.life.in_call.store(false, Ordering::Release);
            }
        }
    }
}

/// The system module (handle 0): binding and unbinding, opening event queues.
fn system_call(
    registry: &Registry,
    queues: &EvqHost,
    function: u32,
    payload: &[u8],
    done: Completion,
) {
    let word = |p: &[u8]| {
        p.get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    match function {
        VMRPC_SYS_BIND => match word(payload) {
            Some(version) if payload.len() <= 4 + 255 => {
                match registry.bind(&payload[4..], version) {
                    Ok(handle) => done.ok(&handle.to_le_bytes()),
                    Err(code) => done.err(code),
                }
            }
            _ => done.err(VMRPC_EINVAL),
        },
        VMRPC_SYS_UNBIND => match word(payload) {
            Some(handle) if payload.len() == 4 => match registry.unbind(handle) {
                Ok(()) => done.ok(&[]),
                Err(code) => done.err(code),
            },
            _ => done.err(VMRPC_EINVAL),
        },
        // Request: the queue's name; answer: its struct vmrpc_evq_info.
        VMRPC_SYS_OPEN_EVQ => match queues.open(payload) {
            Ok(info) => done.ok(info.as_slice()),
            Err(code) => done.err(code),
        },
        _ => done.err(VMRPC_ENOFUNC),
    }
}

/// An engine over one vCPU channel in plain memory, without a VM: for the
/// unit tests and the fuzz harness. The built-in echo module is registered
/// and bound (`echo_handle`); KVM is needed only for the `VmFd` that event
/// queues keep.
#[cfg(any(test, feature = "fuzzing"))]
pub struct Rig {
    pub engine: Engine,
    pub chan: Arc<Channel>,
    pub echo_handle: u32,
    pub doorbell: Arc<EventFd>,
    pub stop: StopToken,
    pub stats: Arc<Stats>,
}

#[cfg(any(test, feature = "fuzzing"))]
impl Rig {
    /// The shared region at `shared`, its channel right after the header.
    pub fn new(mem: &GuestMemoryMmap, shared: u64, vm_fd: Arc<kvm_ioctls::VmFd>) -> Self {
        use crate::rpc::module::{Echo, ECHO_NAME};
        use guest_kmod_bindings::vmrpc_version;
        use vmm_sys_util::eventfd::EFD_NONBLOCK;

        let efd = || Arc::new(EventFd::new(EFD_NONBLOCK).expect("eventfd"));
        let stats = Arc::new(Stats::default());
        let base = shared + crate::layout::CHAN_OFFSET;
        let irq = EventFd::new(EFD_NONBLOCK).expect("eventfd");
        let chan = Arc::new(Channel::new(0, mem.clone(), base, Some(irq), stats.clone()));
        let registry = Arc::new(Registry::default());
        registry
            .register(ECHO_NAME, vmrpc_version(1, 0), Arc::new(Echo))
            .expect("register echo");
        let echo_handle = registry
            .bind(ECHO_NAME.as_bytes(), vmrpc_version(1, 0))
            .expect("bind echo");
        let (doorbell, stop) = (efd(), StopToken::new().expect("eventfd"));
        let link = crate::evq::VmLink::new(
            mem.clone(),
            Vec::new(),
            stats.clone(),
            stop.clone(),
            Duration::ZERO,
        );
        // An arena past the memory: no queue is made here.
        let queues = Arc::new(EvqHost::new(vm_fd, link, shared, (0x20_0000, 0x1000)));
        let engine = Engine::new(
            std::slice::from_ref(&chan),
            registry,
            queues,
            mem.clone(),
            shared,
            doorbell.clone(),
            stop.clone(),
            stats.clone(),
            Duration::ZERO,
            Arc::default(),
        );
        Rig {
            engine,
            chan,
            echo_handle,
            doorbell,
            stop,
            stats,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The engine's side of "no lost wakeup", on the real `Engine::run`. The
    //! guest is played by the test, in plain memory; KVM is needed only for
    //! the `VmFd` that event queues keep.
    //!
    //! Mutants this test kills (each applied by hand and seen to fail):
    //! - the re-check after raising `host_sleeping` removed (`if self.poll()
    //!   || self.stop.is_stopped()` -> `if self.stop.is_stopped()`): the engine sleeps on a request
    //!   nobody will ring for;
    //! - `host_sleeping` never raised (`set_sleeping(1)` removed): same, the
    //!   guest never rings. (Dropping a fence cannot be seen on x86 here;
    //!   `tests/wakeup_model.rs` covers the orderings.)
    use super::*;
    use guest_kmod_bindings::{RespDesc, VMRPC_CHAN_DATA_OFFSET};
    use std::sync::mpsc;

    const SHARED: u64 = 0x10_0000;
    const MEM: usize = 0x40_0000;

    struct Guest {
        mem: GuestMemoryMmap,
        chan: Arc<Channel>,
    }

    impl Guest {
        fn load(&self, at: GuestAddress) -> u32 {
            self.mem.load(at, Ordering::SeqCst).unwrap()
        }
        fn host_sleeping(&self) -> u32 {
            self.load(GuestAddress(SHARED + SHARED_HOST_SLEEPING_OFFSET))
        }
        fn resp_head(&self) -> u32 {
            self.load(self.chan.req_ring.unchecked_add(
                (guest_kmod_bindings::VMRPC_CHAN_RESP_RING_OFFSET as u64) + ring_off::HEAD,
            ))
        }
        /// Publishes request `index` (an echo of nothing) and, Dekker, reads
        /// the engine's flag after a full barrier: true if it must ring.
        fn publish(&self, index: u32, handle: u32) -> bool {
            let desc = ReqDesc {
                tag: 100 + index as u64,
                handle,
                function: 1,
                resp_off: 0,
                resp_cap: 8,
                ..Default::default()
            };
            let slot = (index % VMRPC_RPC_RING_ENTRIES) as u64;
            self.mem
                .write_obj(
                    desc,
                    self.chan.req_ring.unchecked_add(RING_HDR + slot * REQ_DESC),
                )
                .unwrap();
            self.mem
                .store(
                    index + 1,
                    self.chan.req_ring.unchecked_add(ring_off::HEAD),
                    Ordering::Release,
                )
                .unwrap();
            fence(Ordering::SeqCst);
            self.host_sleeping() != 0
        }
    }

    #[test]
    fn a_request_published_just_before_host_sleeping_is_raised_is_answered() {
        let Some(kvm) = crate::test_kvm::kvm_or_skip() else {
            return;
        };
        let vm_fd = Arc::new(kvm.create_vm().unwrap());
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
        let Rig {
            mut engine,
            chan,
            echo_handle: handle,
            doorbell,
            stop,
            stats,
        } = Rig::new(&mem, SHARED, vm_fd);
        // The engine stops in the window on its first way to sleep, until
        // the guest has published.
        let (at_window, in_window) = mpsc::channel::<()>();
        let (published, go_on) = mpsc::channel::<()>();
        let mut first = true;
        engine.before_sleep_flag = Some(Box::new(move || {
            if std::mem::take(&mut first) {
                at_window.send(()).unwrap();
                go_on.recv().unwrap();
            }
        }));
        let engine = std::thread::spawn(move || engine.run());
        let guest = Guest { mem, chan };
        assert_eq!(VMRPC_CHAN_DATA_OFFSET as u64, 4096);

        in_window.recv().unwrap();
        assert!(
            !guest.publish(0, handle),
            "the engine has not raised its flag: no doorbell"
        );
        published.send(()).unwrap();
        // Either the engine answers, or it goes to sleep: wait for whichever
        // comes first (the answer is written before any later sleep).
        while guest.resp_head() == 0 && stats.engine_sleeps.get() == 0 {
            std::thread::yield_now();
        }
        assert_eq!(
            guest.resp_head(),
            1,
            "lost wakeup: the engine slept on a pending request"
        );
        let resp: RespDesc =
            guest
                .mem
                .read_obj(guest.chan.req_ring.unchecked_add(
                    guest_kmod_bindings::VMRPC_CHAN_RESP_RING_OFFSET as u64 + RING_HDR,
                ))
                .unwrap();
        assert_eq!((resp.tag, resp.status), (100, 0));
        assert_eq!(doorbell.read().ok(), None, "nobody rang");

        // A request published while the engine sleeps is rung for, and answered.
        while stats.engine_sleeps.get() == 0 {
            std::thread::yield_now();
        }
        // It raised host_sleeping before it counted the sleep.
        assert!(
            guest.publish(1, handle),
            "the engine sleeps, so the guest must ring"
        );
        doorbell.write(1).unwrap();
        while guest.resp_head() < 2 {
            std::thread::yield_now();
        }
        stop.stop();
        engine.join().unwrap();
    }
}
