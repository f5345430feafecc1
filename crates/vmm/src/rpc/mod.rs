//! VM RPC, host side: the shared region, its channels (one per vCPU, or one
//! per guest thread), the module registry, the engine thread and the host-side
//! wait for an answer. The protocol itself is specified in abi.h.

pub mod channel;
pub mod engine;
pub mod module;
pub mod registry;
pub mod wait;
pub mod wire;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use guest_kmod_bindings::{
    SharedHdr, VMRPC_ABI_VERSION, VMRPC_MAX_PAYLOAD, VMRPC_MMIO_DOORBELL, VMRPC_RPC_RING_ENTRIES,
    VMRPC_SHARED_MAGIC,
};
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::bus::{BusDevice, DeviceAction};
use crate::evq::EvqHost;
use crate::layout;
use crate::stats::Stats;
use crate::stop::StopToken;
use channel::Channel;
use engine::{DoneOnDrop, Engine, EngineLife};
use registry::Registry;
use wait::RpcWaitDevice;

/// Why VM RPC could not be set up or started.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// the shared region's header could not be written
    #[error("guest memory: {0}")]
    Memory(String),
    /// an OS resource (eventfd, thread) could not be created
    #[error("{0}: {1}")]
    Os(&'static str, std::io::Error),
}

/// Runs the engine thread's body on that thread. `plain_engine_thread` just
/// calls it; an embedder whose host modules need a per-thread context passes
/// its own (the Python bindings: one Python thread state for the thread's
/// whole life, see `python::vm`).
pub type EngineThread = fn(Box<dyn FnOnce() + Send>);

/// The engine thread's body as is.
pub fn plain_engine_thread(body: Box<dyn FnOnce() + Send>) {
    body();
}

/// The doorbell register as a bus device, reached while no ioeventfd backs it.
///
/// The ioeventfd is registered lazily, after `RINGS_BEFORE_IOEVENTFD` rings:
/// registering it updates the VM's I/O bus, and tearing the VM down within the
/// next 8-20 ms waits for that update's grace period (`srcu_barrier` in
/// `kvm_destroy_vm`) on this workplace's host. A short-lived VM (a Linux
/// `busybox true` rings about ten times) would pay that at close for nothing;
/// until the threshold every ring exits to user space (an ordinary MMIO exit,
/// tens of microseconds) and lands here, which wakes the engine just the same.
struct DoorbellPort {
    doorbell: Arc<EventFd>,
    vm_fd: Arc<VmFd>,
    rings: AtomicU32,
}

/// Rings served by MMIO exits before the ioeventfd is registered: at ~30 µs an
/// exit, a busy VM pays at most ~2 ms once; one that rings fewer times never
/// pays the teardown wait.
const RINGS_BEFORE_IOEVENTFD: u32 = 64;

impl BusDevice for DoorbellPort {
    fn write(&self, _offset: u64, _data: &[u8]) -> DeviceAction {
        let _ = self.doorbell.write(1);
        if self.rings.fetch_add(1, Ordering::AcqRel) == RINGS_BEFORE_IOEVENTFD - 1 {
            let addr = IoEventAddress::Mmio(VMRPC_MMIO_DOORBELL);
            if let Err(e) = self
                .vm_fd
                .register_ioevent(&self.doorbell, &addr, NoDatamatch)
            {
                // Still correct without it: every ring then exits and lands here.
                log::warn!(target: "vmrpc::rpc", "doorbell ioeventfd not registered: {e}");
            }
        }
        DeviceAction::Continue
    }
}

/// How long stopping a VM waits for a host function that is still running
/// before it leaves the engine thread behind (see `RpcHost::join`).
const STUCK_CALL_GRACE: Duration = Duration::from_millis(200);

/// Everything a VM needs to serve VM RPC.
pub struct RpcHost {
    pub registry: Arc<Registry>,
    vm_fd: Arc<VmFd>,
    channels: Arc<[Arc<Channel>]>,
    mem: GuestMemoryMmap,
    shared_base: u64,
    doorbell: Arc<EventFd>,
    stop: StopToken,
    stats: Arc<Stats>,
    spin: Duration,
    engine: Mutex<Option<JoinHandle<()>>>,
    life: Arc<EngineLife>,
    /// The event queue arena: offset from `shared_base`, and size.
    evq_arena: (u64, u64),
    /// Request-ring tails the engine starts from (a restored VM's; else 0).
    resume_tails: Mutex<Vec<u32>>,
}

/// Where VM RPC stood when a snapshot was taken: per channel the request
/// ring's head (all taken: the host's tail) and the response ring's head, and
/// the guest's handles (`vm::snapshot`).
#[derive(Debug, Clone)]
pub struct RpcResume {
    heads: Vec<(u32, u32)>,
    handles: registry::HandleTable,
}

impl RpcHost {
    /// Lays out the shared region and `chan_count` channels (at least one per
    /// vCPU); channel i < vCPUs answers a halted waiter through vCPU i's
    /// irqfd (`irqs[i]`, see `irq`), the others only wake host waiters.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vm_fd: &Arc<VmFd>,
        mem: &GuestMemoryMmap,
        (shared_base, shared_size): (u64, u64),
        chan_count: u32,
        irqs: Vec<EventFd>,
        stats: Arc<Stats>,
        stop: StopToken,
        spin: Duration,
    ) -> Result<Self, RpcError> {
        let vcpus = irqs.len() as u32;
        let chan_count = chan_count.max(vcpus);
        let chan_end = layout::CHAN_OFFSET + chan_count as u64 * layout::chan_stride();
        let hdr = SharedHdr {
            magic: VMRPC_SHARED_MAGIC,
            abi_version: VMRPC_ABI_VERSION,
            vcpu_count: vcpus,
            ring_entries: VMRPC_RPC_RING_ENTRIES,
            max_payload: VMRPC_MAX_PAYLOAD,
            chan_count,
            chan_offset: layout::CHAN_OFFSET,
            chan_stride: layout::chan_stride(),
            evq_offset: chan_end,
            evq_size: shared_size - chan_end,
            ..Default::default()
        };
        mem.write_obj(hdr, GuestAddress(shared_base))
            .map_err(|e| RpcError::Memory(e.to_string()))?;
        let doorbell = Arc::new(
            EventFd::new(EFD_NONBLOCK)
                .map_err(|e| RpcError::Os("creating the doorbell eventfd", e))?,
        );
        let mut irqs = irqs.into_iter();
        let channels = (0..chan_count)
            .map(|index| {
                let base = shared_base + layout::CHAN_OFFSET + index as u64 * layout::chan_stride();
                Arc::new(Channel::new(
                    index,
                    mem.clone(),
                    base,
                    irqs.next(),
                    stats.clone(),
                ))
            })
            .collect();
        Ok(RpcHost {
            registry: Arc::new(Registry::default()),
            vm_fd: vm_fd.clone(),
            channels,
            mem: mem.clone(),
            shared_base,
            doorbell,
            stop,
            stats,
            spin,
            engine: Mutex::new(None),
            life: Arc::new(EngineLife::default()),
            evq_arena: (chan_end, shared_size - chan_end),
            resume_tails: Mutex::new(Vec::new()),
        })
    }

    /// Where VM RPC stands, once the VM has stopped; None while a request is
    /// being answered.
    pub fn export(&self) -> Option<RpcResume> {
        let heads = self
            .channels
            .iter()
            .map(|c| c.quiescent_heads())
            .collect::<Option<Vec<_>>>()?;
        Some(RpcResume {
            heads,
            handles: self.registry.export_handles(),
        })
    }

    /// Takes up where `state` left off (before `start`, on a VM whose memory
    /// is the snapshot's and whose modules are registered).
    pub fn import(&self, state: &RpcResume) -> Result<(), String> {
        if state.heads.len() != self.channels.len() {
            return Err("the snapshot has a different number of vCPUs".into());
        }
        self.registry.import_handles(&state.handles)?;
        for (chan, &(_, resp)) in self.channels.iter().zip(&state.heads) {
            chan.resume_response_head(resp);
        }
        *self
            .resume_tails
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = state.heads.iter().map(|h| h.0).collect();
        Ok(())
    }

    /// The event queue arena as written in the shared header: (offset from the
    /// shared region's base, size).
    pub fn evq_arena(&self) -> (u64, u64) {
        self.evq_arena
    }

    pub fn shared_base(&self) -> u64 {
        self.shared_base
    }

    /// The doorbell register as a bus device (see `DoorbellPort`).
    pub fn doorbell_device(&self) -> Arc<dyn BusDevice> {
        Arc::new(DoorbellPort {
            doorbell: self.doorbell.clone(),
            vm_fd: self.vm_fd.clone(),
            rings: AtomicU32::new(0),
        })
    }

    /// The register a guest thread waits for its answer at (see `wait`).
    pub fn wait_device(&self) -> Arc<dyn BusDevice> {
        Arc::new(RpcWaitDevice::new(
            self.mem.clone(),
            self.channels.clone(),
            self.stop.clone(),
            self.stats.clone(),
        ))
    }

    /// Starts the engine thread (its body run through `thread`); it also
    /// answers VMRPC_SYS_OPEN_EVQ from `queues`, and ends once the VM's stop
    /// token is stopped.
    pub fn start(&self, queues: Arc<EvqHost>, thread: EngineThread) -> Result<(), RpcError> {
        let mut engine = Engine::new(
            &self.channels,
            self.registry.clone(),
            queues,
            self.mem.clone(),
            self.shared_base,
            self.doorbell.clone(),
            self.stop.clone(),
            self.stats.clone(),
            self.spin,
            self.life.clone(),
        );
        engine.resume_tails(
            &self
                .resume_tails
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let life = self.life.clone();
        let handle = std::thread::Builder::new()
            .name("vmrpc-engine".into())
            .spawn(move || {
                // Marks the engine done however it ends, a panic included.
                let _done = DoneOnDrop(life);
                thread(Box::new(move || engine.run()));
            })
            .map_err(|e| RpcError::Os("spawning the RPC engine thread", e))?;
        *self.engine.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(())
    }

    /// Waits for the engine thread (once the VM's stop token is stopped), but never for a
    /// host function that does not return: a sync Python function blocked for
    /// good would otherwise hang `close()` and interpreter exit. Such an
    /// engine is left behind, detached: it owns (through `Arc`s) everything
    /// it touches, guest memory included, so it stays memory-safe, and it
    /// exits as soon as the function returns, since the VM is stopping.
    pub fn join(&self) {
        let handle = self
            .engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(h) = handle else { return };
        // An engine outside a call sees the stop within one poll; one inside a
        // call gets a grace period, then is left behind.
        while !self.life.wait_done(STUCK_CALL_GRACE) {
            if self.life.in_call.load(Ordering::Acquire) {
                log::warn!(
                    target: "vmrpc::rpc",
                    "a host function has not returned {STUCK_CALL_GRACE:?} after the VM stopped; \
                     leaving the RPC engine thread behind"
                );
                return;
            }
        }
        if h.join().is_err() {
            log::error!(target: "vmrpc::rpc", "the RPC engine thread panicked");
        }
    }
}
