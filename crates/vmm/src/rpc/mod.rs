//! VM RPC, host side: the shared region, per-vCPU channels, the module registry
//! and the engine thread. The protocol itself is specified in abi.h.

pub mod channel;
pub mod engine;
pub mod module;
pub mod registry;
pub mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use guest_kmod_bindings::{
    SharedHdr, VMRPC_ABI_VERSION, VMRPC_IRQ_VECTOR, VMRPC_MAX_PAYLOAD, VMRPC_MMIO_DOORBELL,
    VMRPC_RPC_RING_ENTRIES, VMRPC_SHARED_MAGIC,
};
use kvm_bindings::{kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQ_ROUTING_MSI};
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::bus::{BusDevice, DeviceAction};
use crate::error::{kvm, VmError};
use crate::evq::EvqHost;
use crate::layout;
use crate::stats::Stats;
use crate::vm::VmShared;
use channel::Channel;
use engine::Engine;
use registry::Registry;

/// First GSI used for the per-vCPU MSI routes (above the IOAPIC pins that a
/// split irqchip reserves).
pub const FIRST_GSI: u32 = 24;
const MSI_ADDRESS_BASE: u32 = 0xfee0_0000;

/// The doorbell register as a bus device, reached while no ioeventfd backs it.
///
/// The ioeventfd is registered lazily, on the first ring: with any ioeventfd
/// registered, tearing a VM down costs 8-20 ms on this workplace's host (the
/// kernel synchronises its I/O bus), which VMs that never ring would pay for
/// nothing. The first ring exits to user space (an ordinary MMIO exit), wakes
/// the engine, and registers the ioeventfd so later rings do not exit.
struct DoorbellPort {
    doorbell: Arc<EventFd>,
    vm_fd: Arc<VmFd>,
    registered: AtomicBool,
}

impl BusDevice for DoorbellPort {
    fn write(&self, _offset: u64, _data: &[u8]) -> DeviceAction {
        let _ = self.doorbell.write(1);
        if !self.registered.swap(true, Ordering::AcqRel) {
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

/// The engine thread's body. Inside Python, the thread keeps one Python thread
/// state for its whole life (attach once, then release the GIL while it runs):
/// otherwise every call into a Python host module would create and destroy a
/// thread state, which measured here as most of a Python RPC's cost.
#[cfg(feature = "python")]
fn run_engine(engine: Engine, vm: Arc<VmShared>) {
    pyo3::Python::attach(|py| py.detach(move || engine.run(vm)));
}

#[cfg(not(feature = "python"))]
fn run_engine(engine: Engine, vm: Arc<VmShared>) {
    engine.run(vm);
}

/// How long stopping a VM waits for a host function that is still running
/// before it leaves the engine thread behind (see `RpcHost::join`).
const STUCK_CALL_GRACE: Duration = Duration::from_millis(200);

/// What the engine thread tells the thread that stops it.
#[derive(Default)]
pub struct EngineLife {
    /// The engine is inside a host module's `call`.
    pub in_call: AtomicBool,
    /// The engine thread has left `run` and touches nothing of the VM's any more.
    done: Mutex<bool>,
    changed: std::sync::Condvar,
}

struct DoneOnDrop(Arc<EngineLife>);

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
    fn wait_done(&self, max: Duration) -> bool {
        let done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        let (done, _) = self
            .changed
            .wait_timeout_while(done, max, |d| !*d)
            .unwrap_or_else(PoisonError::into_inner);
        *done
    }
}

/// Everything a VM needs to serve VM RPC.
pub struct RpcHost {
    pub registry: Arc<Registry>,
    vm_fd: Arc<VmFd>,
    channels: Vec<Arc<Channel>>,
    mem: GuestMemoryMmap,
    shared_base: u64,
    doorbell: Arc<EventFd>,
    stop: Arc<EventFd>,
    stats: Arc<Stats>,
    spin: Duration,
    engine: Mutex<Option<JoinHandle<()>>>,
    life: Arc<EngineLife>,
    /// The event queue arena: offset from `shared_base`, and size.
    evq_arena: (u64, u64),
}

impl RpcHost {
    /// Lays out the shared region, wires the doorbell (ioeventfd) and one MSI
    /// route plus irqfd per vCPU.
    pub fn new(
        vm_fd: &Arc<VmFd>,
        mem: &GuestMemoryMmap,
        (shared_base, shared_size): (u64, u64),
        vcpus: u32,
        stats: Arc<Stats>,
        stop: Arc<EventFd>,
        spin: Duration,
    ) -> Result<Self, VmError> {
        let os = |what| move |e: std::io::Error| VmError::Os(what, e);
        let chan_end = layout::CHAN_OFFSET + vcpus as u64 * layout::chan_stride();
        let hdr = SharedHdr {
            magic: VMRPC_SHARED_MAGIC,
            abi_version: VMRPC_ABI_VERSION,
            vcpu_count: vcpus,
            ring_entries: VMRPC_RPC_RING_ENTRIES,
            max_payload: VMRPC_MAX_PAYLOAD,
            chan_offset: layout::CHAN_OFFSET,
            chan_stride: layout::chan_stride(),
            evq_offset: chan_end,
            evq_size: shared_size - chan_end,
            ..Default::default()
        };
        mem.write_obj(hdr, GuestAddress(shared_base))
            .map_err(|e| VmError::Memory(e.to_string()))?;

        let doorbell =
            Arc::new(EventFd::new(EFD_NONBLOCK).map_err(os("creating the doorbell eventfd"))?);

        let mut routes = Vec::new();
        let mut channels = Vec::new();
        for index in 0..vcpus {
            let mut route = kvm_irq_routing_entry {
                gsi: FIRST_GSI + index,
                type_: KVM_IRQ_ROUTING_MSI,
                ..Default::default()
            };
            // Physical destination mode, fixed delivery, edge: the vCPU's x2APIC id is its index.
            route.u.msi.address_lo = MSI_ADDRESS_BASE | (index << 12);
            route.u.msi.data = VMRPC_IRQ_VECTOR;
            routes.push(route);
            let irq = EventFd::new(EFD_NONBLOCK).map_err(os("creating an irqfd"))?;
            let base = shared_base + layout::CHAN_OFFSET + index as u64 * layout::chan_stride();
            channels.push(Arc::new(Channel::new(
                index,
                mem.clone(),
                base,
                irq,
                stats.clone(),
            )));
        }
        let table = KvmIrqRouting::from_entries(&routes)
            .map_err(|_| VmError::Memory("too many MSI routes".into()))?;
        vm_fd
            .set_gsi_routing(&table)
            .map_err(kvm("KVM_SET_GSI_ROUTING"))?;
        for (index, chan) in channels.iter().enumerate() {
            vm_fd
                .register_irqfd(chan.irq(), FIRST_GSI + index as u32)
                .map_err(kvm("KVM_IRQFD"))?;
        }
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
        })
    }

    /// The irqfd that interrupts vCPU `vcpu` (VMRPC_IRQ_VECTOR), if it exists.
    pub fn irq(&self, vcpu: u32) -> Option<&EventFd> {
        self.channels.get(vcpu as usize).map(|c| c.irq())
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
            registered: AtomicBool::new(false),
        })
    }

    /// Starts the engine thread; it also answers VMRPC_SYS_OPEN_EVQ from `queues`.
    pub fn start(&self, vm: Arc<VmShared>, queues: Arc<EvqHost>) -> Result<(), VmError> {
        let engine = Engine::new(
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
        let life = self.life.clone();
        let handle = std::thread::Builder::new()
            .name("vmrpc-engine".into())
            .spawn(move || {
                // Marks the engine done however it ends, a panic included.
                let _done = DoneOnDrop(life);
                run_engine(engine, vm);
            })
            .map_err(|e| VmError::Os("spawning the RPC engine thread", e))?;
        *self.engine.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(())
    }

    /// Wakes the engine so it sees that the VM stops.
    pub fn wake_for_stop(&self) {
        let _ = self.stop.write(1);
    }

    /// Waits for the engine thread (after `wake_for_stop`), but never for a
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
