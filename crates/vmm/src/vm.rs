//! A VM: KVM objects, guest memory, devices, vCPU threads, and its lifecycle.
//!
//! Lifecycle: `new` (validated config, image checked, memory and vCPUs set up)
//! → `start` (one thread per vCPU) → the first of {guest exit, crash, kill,
//! timeout} decides the outcome and stops every vCPU → `wait` reports it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::{
    kvm_enable_cap, kvm_mp_state, kvm_userspace_memory_region, CpuId, KVM_CAP_SPLIT_IRQCHIP,
    KVM_MAX_CPUID_ENTRIES, KVM_MP_STATE_RUNNABLE,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::arch::{cpuid, gdt, paging, vcpu_state};
use crate::bus::Buses;
use crate::cgroup::{self, VmCgroup};
use crate::config::VmConfig;
use crate::devices::console::{ConsoleBuffer, ConsoleWrite, SerialConsole, SharedConsole};
use crate::devices::crash_report::CrashReport;
use crate::devices::debug_exit::DebugExit;
use crate::devices::yield_cpu::YieldCpu;
use crate::error::{kvm, VmError};
use crate::evq::{EventQueue, EvqHost, VmLink};
use crate::exception::GuestException;
use crate::image::Image;
use crate::kick;
use crate::rpc::module::HostModule;
use crate::rpc::RpcHost;
use crate::stats::Stats;
use crate::vcpu::{self, Registers};
use crate::{bootinfo, layout};
use guest_kmod_bindings as abi;

/// How a crashed or timed-out guest looked when it stopped.
#[derive(Debug, Clone)]
pub struct GuestFailure {
    pub vcpu: u32,
    pub reason: String,
    pub registers: Registers,
    pub console_tail: String,
    /// The exception the guest runtime reported, if the crash was one.
    pub exception: Option<GuestException>,
}

/// What ended the VM. The first one reported wins.
#[derive(Debug, Clone)]
pub enum Outcome {
    Exited(i32),
    Crashed(GuestFailure),
    Killed,
    TimedOut(GuestFailure),
}

/// Bytes of console output attached to failure reports.
const CONSOLE_TAIL: usize = 2048;
/// How often a stopping VM's vCPUs are kicked again while the owner waits.
const REKICK_INTERVAL: Duration = Duration::from_millis(10);
/// vCPU threads run little Rust code; a small stack keeps idle VMs cheap.
const VCPU_STACK_SIZE: usize = 512 << 10;

#[derive(Default)]
struct RunState {
    started: bool,
    outcome: Option<Outcome>,
    /// vCPU threads started and not yet finished.
    live: u32,
    /// Registers of each vCPU when its thread finished.
    last_regs: Vec<Registers>,
}

/// State shared by the vCPU threads and the owner.
pub struct VmShared {
    pub buses: Buses,
    pub stats: Arc<Stats>,
    pub console: SharedConsole,
    stop: AtomicBool,
    run: Mutex<RunState>,
    changed: Condvar,
    /// Threads to kick on stop; only threads not yet joined are listed.
    threads: Mutex<Vec<libc::pthread_t>>,
    /// Written on stop so the RPC engine wakes and exits. Never read: it stays
    /// readable, which is how event queue waiters (`evq::VmLink::vm_stop`) see
    /// that the VM stopped.
    engine_stop: Arc<EventFd>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl VmShared {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Records the outcome unless one was recorded already, then stops every vCPU.
    pub fn finish(&self, mut outcome: Outcome) {
        {
            let mut run = lock(&self.run);
            if run.outcome.is_none() {
                if let Outcome::Crashed(f) | Outcome::TimedOut(f) = &mut outcome {
                    f.console_tail = self.console_tail();
                }
                run.outcome = Some(outcome);
            }
            self.changed.notify_all();
        }
        self.stop.store(true, Ordering::Release);
        let _ = self.engine_stop.write(1);
        self.kick_all();
    }

    /// Signals every vCPU thread not yet joined (see `kick`).
    fn kick_all(&self) {
        for &t in lock(&self.threads).iter() {
            kick::kick(t);
        }
    }

    pub fn vcpu_stopped(&self, index: u32, regs: Registers) {
        let mut run = lock(&self.run);
        run.last_regs[index as usize] = regs;
        run.live -= 1;
        self.changed.notify_all();
    }

    fn console_tail(&self) -> String {
        String::from_utf8_lossy(&lock(&self.console).tail(CONSOLE_TAIL)).into_owned()
    }
}

/// Where a VM is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmState {
    Created,
    Running,
    Exited,
    Crashed,
    Killed,
}

fn kvm_handle() -> Result<&'static Kvm, VmError> {
    static KVM: OnceLock<Kvm> = OnceLock::new();
    if let Some(k) = KVM.get() {
        return Ok(k);
    }
    let k = Kvm::new().map_err(kvm("opening /dev/kvm"))?;
    Ok(KVM.get_or_init(|| k))
}

fn supported_cpuid(kvm_fd: &Kvm) -> Result<&'static CpuId, VmError> {
    static CPUID: OnceLock<CpuId> = OnceLock::new();
    if let Some(c) = CPUID.get() {
        return Ok(c);
    }
    let c = kvm_fd
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm("KVM_GET_SUPPORTED_CPUID"))?;
    Ok(CPUID.get_or_init(|| c))
}

pub struct Vm {
    config: VmConfig,
    shared: Arc<VmShared>,
    /// vCPUs set up by `new`, moved into their threads by `start`.
    pending: Mutex<Vec<VcpuFd>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    rpc: RpcHost,
    evq: Arc<EvqHost>,
    // Declared after everything that uses it: the VM fd goes before guest memory.
    _vm_fd: Arc<VmFd>,
    memory: GuestMemoryMmap,
    /// The cgroup holding the vCPU threads when `cpu_limit` is set. Declared
    /// last: it is removed after `Drop for Vm` has joined those threads and
    /// after the VM fd is closed, which stops KVM's own worker thread for this
    /// VM (`kvm-nx-lpage-recovery`, a thread of this process forked from the
    /// first vCPU to run, so it joins the VM's cgroup too).
    cgroup: Option<Arc<VmCgroup>>,
}

impl Vm {
    /// Builds a VM ready to start. Config and image are checked before any KVM
    /// object is created.
    pub fn new(config: VmConfig) -> Result<Vm, VmError> {
        config.validate()?;
        let mem_size = config.mem_size();
        let (shared_base, shared_size) = layout::shared_region(mem_size, config.vcpus);
        let image = Image::open(&config.image, shared_base)?;
        // Before any KVM object: a missing or unwritable hierarchy is a config error.
        let cgroup = match config.cpu_limit {
            Some(limit) => Some(Arc::new(VmCgroup::create(&cgroup::Parent::find()?, limit)?)),
            None => None,
        };
        kick::install_handler()
            .map_err(|e| VmError::Os("installing the vCPU kick handler", e.into()))?;

        let kvm_fd = kvm_handle()?;
        let vm_fd = Arc::new(kvm_fd.create_vm().map_err(kvm("KVM_CREATE_VM"))?);
        vm_fd
            .set_tss_address(layout::KVM_TSS_ADDRESS)
            .map_err(kvm("KVM_SET_TSS_ADDR"))?;
        enable_split_irqchip(&vm_fd)?;

        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), mem_size as usize)])
            .map_err(|e| VmError::Memory(e.to_string()))?;
        register_memory(&vm_fd, &memory)?;
        let entry = image.load(&memory)?;
        let cr3 = write_boot_tables(&memory, config.vcpus)?;

        let console: SharedConsole = Arc::new(Mutex::new(ConsoleBuffer::new(config.console_limit)));
        let mut buses = Buses::default();
        // Every device is memory-mapped: the guest runs in ring 3 (see arch::vcpu_state).
        let console_dev = Arc::new(SerialConsole::new(console.clone()));
        buses.mmio.insert(abi::VMRPC_MMIO_CONSOLE, 8, console_dev)?;
        buses
            .mmio
            .insert(abi::VMRPC_MMIO_DEBUG_EXIT, 4, Arc::new(DebugExit))?;
        let stats = Arc::new(Stats::default());
        let yield_dev = Arc::new(YieldCpu::new(stats.clone()));
        buses.mmio.insert(abi::VMRPC_MMIO_YIELD, 4, yield_dev)?;
        let console_write = Arc::new(ConsoleWrite::new(console.clone(), memory.clone()));
        buses
            .mmio
            .insert(abi::VMRPC_MMIO_CONSOLE_WRITE, 8, console_write)?;
        let crash_report = Arc::new(CrashReport::new(memory.clone()));
        buses.mmio.insert(abi::VMRPC_MMIO_CRASH, 8, crash_report)?;
        let engine_stop = Arc::new(
            EventFd::new(EFD_NONBLOCK).map_err(|e| VmError::Os("creating an eventfd", e))?,
        );
        // Linux threads block here (guest/linux/futex.c); unused by bare guests.
        let futex = crate::linux::futex::FutexDevice::new(
            memory.clone(),
            engine_stop.clone(),
            stats.clone(),
        );
        buses
            .mmio
            .insert(crate::linux::futex::MMIO_FUTEX, 8, Arc::new(futex))?;
        let rpc = RpcHost::new(
            &vm_fd,
            &memory,
            (shared_base, shared_size),
            config.vcpus,
            stats.clone(),
            engine_stop.clone(),
            Duration::from_micros(config.rpc_spin_us),
        )?;
        buses
            .mmio
            .insert(abi::VMRPC_MMIO_DOORBELL, 4, rpc.doorbell_device())?;
        let evq = Arc::new(new_evq_host(
            &vm_fd,
            &rpc,
            &memory,
            &config,
            &stats,
            &engine_stop,
        )?);
        buses
            .mmio
            .insert(abi::VMRPC_MMIO_EVQ_DOORBELL, 4, evq.doorbell_device())?;

        let supported = supported_cpuid(kvm_fd)?;
        let mut vcpus = Vec::with_capacity(config.vcpus as usize);
        let mut tsc_khz = 0;
        for index in 0..config.vcpus {
            let vcpu = vm_fd
                .create_vcpu(index.into())
                .map_err(kvm("KVM_CREATE_VCPU"))?;
            if index == 0 {
                tsc_khz = vcpu.get_tsc_khz().unwrap_or(0);
            }
            vcpu.set_cpuid2(&cpuid::for_vcpu(supported, index, config.vcpus))
                .map_err(kvm("KVM_SET_CPUID2"))?;
            vcpu.set_msrs(&vcpu_state::boot_msrs(index))
                .map_err(kvm("KVM_SET_MSRS"))?;
            // With the in-kernel LAPIC, application processors would wait for
            // INIT/SIPI; the boot protocol starts every vCPU at the entry point.
            vcpu.set_mp_state(kvm_mp_state {
                mp_state: KVM_MP_STATE_RUNNABLE,
            })
            .map_err(kvm("KVM_SET_MP_STATE"))?;
            enable_lapic(&vcpu)?;
            let sregs = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
            vcpu.set_sregs(&vcpu_state::long_mode_sregs(sregs, cr3, index))
                .map_err(kvm("KVM_SET_SREGS"))?;
            vcpus.push(vcpu);
        }
        let argv = config.guest_argv();
        let boot_info = bootinfo::write(
            &memory,
            &bootinfo::BootParams {
                mem_size,
                vcpu_count: config.vcpus,
                argv: &argv,
                shared_base,
                shared_size,
                tsc_khz: tsc_khz.into(),
            },
        )
        .map_err(|e| VmError::Memory(e.to_string()))?;
        for (index, vcpu) in vcpus.iter().enumerate() {
            let regs = vcpu_state::entry_regs(entry, boot_info, index as u32);
            vcpu.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))?;
        }

        let shared = Arc::new(VmShared {
            buses,
            stats,
            console,
            stop: AtomicBool::new(false),
            run: Mutex::new(RunState {
                last_regs: vec![Vec::new(); config.vcpus as usize],
                ..Default::default()
            }),
            changed: Condvar::new(),
            threads: Mutex::new(Vec::new()),
            engine_stop,
        });
        Ok(Vm {
            config,
            shared,
            pending: Mutex::new(vcpus),
            handles: Mutex::new(Vec::new()),
            rpc,
            evq,
            cgroup,
            _vm_fd: vm_fd,
            memory,
        })
    }

    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    pub fn shared(&self) -> &Arc<VmShared> {
        &self.shared
    }

    /// Sets one MSR on every vCPU; only before `start` (the Linux personality
    /// points `MSR_LSTAR` at its system-call entry this way).
    pub fn set_msr_before_start(&self, index: u32, data: u64) -> Result<(), VmError> {
        let pending = lock(&self.pending);
        if pending.is_empty() {
            return Err(VmError::AlreadyStarted);
        }
        let msrs = kvm_bindings::Msrs::from_entries(&[kvm_bindings::kvm_msr_entry {
            index,
            data,
            ..Default::default()
        }])
        .map_err(|e| VmError::Memory(format!("MSR list: {e:?}")))?;
        for vcpu in pending.iter() {
            vcpu.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
        }
        Ok(())
    }

    /// The directory of the cgroup holding the vCPU threads (`cpu_limit`).
    pub fn cgroup_path(&self) -> Option<&std::path::Path> {
        self.cgroup.as_deref().map(VmCgroup::path)
    }

    /// Starts one thread per vCPU.
    pub fn start(&self) -> Result<(), VmError> {
        let vcpus = {
            let mut run = lock(&self.shared.run);
            if run.started || run.outcome.is_some() {
                return Err(VmError::AlreadyStarted);
            }
            run.started = true;
            run.live = self.config.vcpus;
            std::mem::take(&mut *lock(&self.pending))
        };
        if let Err(e) = self.rpc.start(self.shared.clone(), self.evq.clone()) {
            lock(&self.shared.run).live = 0;
            self.shared.finish(Outcome::Killed);
            return Err(e);
        }
        let mut handles = lock(&self.handles);
        for (index, vcpu) in vcpus.into_iter().enumerate() {
            let shared = self.shared.clone();
            let cgroup = self.cgroup.clone();
            let (placed_tx, placed_rx) = std::sync::mpsc::sync_channel(1);
            let spawned = std::thread::Builder::new()
                .name(format!("vmrpc-vcpu{index}"))
                .stack_size(VCPU_STACK_SIZE)
                .spawn(move || {
                    // Enter the VM's cgroup before the first KVM_RUN, so that no
                    // guest instruction runs outside the budget.
                    let placed = cgroup.map_or(Ok(()), |c| c.enter_current_thread());
                    let ok = placed.is_ok();
                    let _ = placed_tx.send(placed);
                    if ok {
                        vcpu::run(vcpu, index as u32, shared);
                    } else {
                        shared.vcpu_stopped(index as u32, Vec::new());
                    }
                });
            match spawned {
                Ok(h) => {
                    use std::os::unix::thread::JoinHandleExt;
                    lock(&self.shared.threads).push(h.as_pthread_t());
                    handles.push(h);
                    // With a cgroup, returns only once every vCPU thread is in
                    // it; without one, does not wait for the threads at all.
                    let placed = match self.cgroup {
                        Some(_) => placed_rx.recv().unwrap_or(Ok(())),
                        None => Ok(()),
                    };
                    if let Err(e) = placed {
                        let missing = self.config.vcpus - index as u32 - 1;
                        lock(&self.shared.run).live -= missing;
                        drop(handles);
                        self.kill();
                        return Err(e.into());
                    }
                }
                Err(e) => {
                    // The threads not spawned will never report; account for them.
                    let missing = self.config.vcpus - index as u32;
                    lock(&self.shared.run).live -= missing;
                    drop(handles);
                    self.kill();
                    return Err(VmError::Os("spawning a vCPU thread", e));
                }
            }
        }
        Ok(())
    }

    /// Waits up to `max` for every vCPU to stop; true if they all have.
    pub fn wait_stopped(&self, max: Duration) -> bool {
        let deadline = Instant::now() + max;
        let mut run = lock(&self.shared.run);
        loop {
            if run.outcome.is_some() && run.live == 0 {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Once stopping, kick again now and then: a kick is a signal, and
            // this makes a lost one cost a few milliseconds instead of a hang.
            let slice = if run.outcome.is_some() {
                REKICK_INTERVAL
            } else {
                deadline - now
            };
            run = self
                .shared
                .changed
                .wait_timeout(run, slice.min(deadline - now))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            if run.outcome.is_some() && run.live > 0 {
                self.shared.kick_all();
            }
        }
        drop(run);
        self.join_threads();
        self.rpc.join();
        true
    }

    /// Waits for the guest to finish; on timeout, kills it and reports a timeout.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<i32, VmError> {
        if !lock(&self.shared.run).started {
            return Err(VmError::NotStarted);
        }
        let forever = Duration::from_secs(3600);
        let stopped = self.wait_stopped(timeout.unwrap_or(forever));
        if !stopped {
            self.time_out(timeout.unwrap_or(forever));
        }
        self.result()
    }

    /// Stops the VM as timed out (unless it already ended) and waits for the vCPUs.
    pub fn time_out(&self, after: Duration) {
        let failure = GuestFailure {
            vcpu: 0,
            reason: format!(
                "no exit within {:.3} s; the VM was killed",
                after.as_secs_f64()
            ),
            registers: Vec::new(),
            console_tail: String::new(),
            exception: None,
        };
        self.shared.finish(Outcome::TimedOut(failure));
        self.wait_stopped(Duration::MAX / 4);
        let mut run = lock(&self.shared.run);
        let regs = run.last_regs[0].clone();
        if let Some(Outcome::TimedOut(f)) = &mut run.outcome {
            f.registers = regs;
        }
    }

    /// The outcome, once the VM has stopped.
    pub fn result(&self) -> Result<i32, VmError> {
        match &lock(&self.shared.run).outcome {
            None => Err(VmError::NotStarted),
            Some(Outcome::Exited(code)) => Ok(*code),
            Some(Outcome::Crashed(f)) => Err(VmError::GuestCrashed(Box::new(self.symbolized(f)))),
            Some(Outcome::TimedOut(f)) => Err(VmError::GuestTimeout(Box::new(f.clone()))),
            Some(Outcome::Killed) => Err(VmError::Killed),
        }
    }

    /// A crash report with the faulting rip's source location from the image's
    /// DWARF (looked up here, on the owner's thread, not in the vCPU thread).
    fn symbolized(&self, f: &GuestFailure) -> GuestFailure {
        let mut f = f.clone();
        if let Some(e) = &mut f.exception {
            e.location = crate::symbolize::locate(&self.config.image, e.rip);
            f.reason = e.describe();
        }
        f
    }

    /// Stops every vCPU (idempotent; before `start` it just marks the VM killed).
    pub fn kill(&self) {
        self.shared.finish(Outcome::Killed);
        if lock(&self.shared.run).started {
            self.wait_stopped(Duration::MAX / 4);
        }
    }

    fn join_threads(&self) {
        let mut handles = lock(&self.handles);
        // Forget the pthread ids first: a joined thread must never be kicked.
        lock(&self.shared.threads).clear();
        for h in handles.drain(..) {
            if h.join().is_err() {
                log::error!("a vCPU thread panicked");
            }
        }
    }

    pub fn state(&self) -> VmState {
        let run = lock(&self.shared.run);
        match (&run.outcome, run.started, run.live) {
            (None, false, _) => VmState::Created,
            (None, true, _) | (Some(_), true, 1..) => VmState::Running,
            (Some(Outcome::Exited(_)), ..) => VmState::Exited,
            (Some(Outcome::Crashed(_)), ..) => VmState::Crashed,
            (Some(Outcome::Killed | Outcome::TimedOut(_)), ..) => VmState::Killed,
        }
    }

    pub fn exit_code(&self) -> Option<i32> {
        match lock(&self.shared.run).outcome {
            Some(Outcome::Exited(c)) => Some(c),
            _ => None,
        }
    }

    /// Console output since byte offset `pos`, and the next offset.
    pub fn console_from(&self, pos: u64) -> (Vec<u8>, u64) {
        lock(&self.shared.console).since(pos)
    }

    /// Registers a host module; guests can bind it from now on.
    pub fn register_module(
        &self,
        name: &str,
        version: u32,
        module: Arc<dyn HostModule>,
    ) -> Result<(), VmError> {
        Ok(self.rpc.registry.register(name, version, module)?)
    }

    /// Unregisters a host module (see `Registry::unregister` for in-flight calls).
    pub fn unregister_module(&self, name: &str, version: u32) -> Result<(), VmError> {
        Ok(self.rpc.registry.unregister(name, version)?)
    }

    /// (name, version) of the registered host modules.
    pub fn modules(&self) -> Vec<(String, u32)> {
        self.rpc.registry.list()
    }

    /// Creates an event queue the guest can open by name (see `evq`).
    pub fn make_ev_queue(
        &self,
        name: &str,
        capacity: u64,
        max_event_size: u64,
    ) -> Result<Arc<EventQueue>, VmError> {
        Ok(self.evq.make(name, capacity, max_event_size)?)
    }

    /// Deletes an event queue: pending and later operations on it fail, on
    /// both sides; its memory is not reused while the VM lives.
    pub fn del_ev_queue(&self, name: &str) -> Result<(), VmError> {
        Ok(self.evq.delete(name)?)
    }

    /// Names of the live event queues, sorted.
    pub fn ev_queues(&self) -> Vec<String> {
        self.evq.names()
    }

    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        let mut s = self.shared.stats.snapshot();
        s.push(("exits_total", self.shared.stats.exits_total()));
        s
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
        // Queues may outlive the VM (held from Python): make them fail cleanly.
        self.evq.close_all();
    }
}

/// The VM's event queues, wired to its memory, irqfds and stop signal. Host
/// waiters poll for as long as the RPC engine does (`rpc_spin_us`).
fn new_evq_host(
    vm_fd: &Arc<VmFd>,
    rpc: &RpcHost,
    memory: &GuestMemoryMmap,
    config: &VmConfig,
    stats: &Arc<Stats>,
    stop: &Arc<EventFd>,
) -> Result<EvqHost, VmError> {
    let irqs = (0..config.vcpus)
        .map(|i| {
            rpc.irq(i)
                .ok_or(VmError::Memory(format!("no irqfd for vCPU {i}")))?
                .try_clone()
                .map_err(|e| VmError::Os("duplicating an irqfd", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let link = VmLink::new(
        memory.clone(),
        irqs,
        stats.clone(),
        stop.clone(),
        Duration::from_micros(config.rpc_spin_us),
    );
    Ok(EvqHost::new(
        vm_fd.clone(),
        link,
        rpc.shared_base(),
        rpc.evq_arena(),
    ))
}

fn register_memory(vm_fd: &VmFd, memory: &GuestMemoryMmap) -> Result<(), VmError> {
    for (slot, region) in memory.iter().enumerate() {
        let host = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(|e| VmError::Memory(e.to_string()))?;
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the region is a live mapping owned by `memory`, which the Vm
        // keeps until after the VM fd is closed (field order in `Vm`).
        unsafe { vm_fd.set_user_memory_region(r) }.map_err(kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

/// GDT, per-vCPU TSS and per-CPU pages, and page tables; returns CR3.
fn write_boot_tables(memory: &GuestMemoryMmap, vcpus: u32) -> Result<u64, VmError> {
    let err = |e: vm_memory::GuestMemoryError| VmError::Memory(e.to_string());
    for (i, entry) in gdt::table().iter().enumerate() {
        memory
            .write_obj(*entry, GuestAddress(layout::GDT_START + 8 * i as u64))
            .map_err(err)?;
    }
    for vcpu in 0..vcpus {
        let stack_top = layout::KERNEL_STACKS_START + (vcpu as u64 + 1) * layout::KERNEL_STACK_SIZE;
        memory
            .write_slice(
                &gdt::tss_bytes(stack_top),
                GuestAddress(gdt::tss_address(vcpu)),
            )
            .map_err(err)?;
        let percpu = layout::PERCPU_START + vcpu as u64 * layout::PERCPU_SIZE;
        memory
            .write_obj(vcpu as u64, GuestAddress(percpu))
            .map_err(err)?;
    }
    paging::write_identity_map(memory).map_err(err)
}

/// An in-kernel local APIC per vCPU and nothing else: the VMM needs the LAPIC
/// for MSIs (irqfd) and in-kernel `hlt`, but no PIC or IOAPIC. Measured on this
/// workplace's host, a full KVM_CREATE_IRQCHIP adds 7-19 ms to every VM's life
/// (at memslot registration or at destruction); the split irqchip adds nothing.
fn enable_split_irqchip(vm_fd: &VmFd) -> Result<(), VmError> {
    let mut cap = kvm_enable_cap {
        cap: KVM_CAP_SPLIT_IRQCHIP,
        ..Default::default()
    };
    // Routes reserved for a user-space IOAPIC; MSI routes use GSIs from here on.
    cap.args[0] = crate::rpc::FIRST_GSI as u64;
    vm_fd
        .enable_cap(&cap)
        .map_err(kvm("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)"))
}

/// Software-enables the local APIC (SVR bit 8, spurious vector 0xff), which a
/// ring-3 guest cannot do itself.
fn enable_lapic(vcpu: &VcpuFd) -> Result<(), VmError> {
    const SVR: usize = 0xf0;
    let mut lapic = vcpu.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?;
    let value: u32 = 0x100 | 0xff;
    for (i, b) in value.to_le_bytes().iter().enumerate() {
        lapic.regs[SVR + i] = *b as libc::c_char;
    }
    vcpu.set_lapic(&lapic).map_err(kvm("KVM_SET_LAPIC"))
}
