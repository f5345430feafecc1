//! A VM: KVM objects, guest memory, devices, vCPU threads, and its lifecycle.
//!
//! Lifecycle: `new` (validated config, image checked, memory and vCPUs set up)
//! → `start` (one thread per vCPU) → the first of {guest exit, crash, kill,
//! timeout} decides the outcome and stops every vCPU → `wait` reports it.
//!
//! `setup` builds the pieces, `shared` is what the vCPU threads see of the VM,
//! `launch` starts the vCPU threads (all at `start`, or on demand).

mod cpu_clock;
mod launch;
mod pool;
mod setup;
mod shared;
mod snapshot;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kvm_ioctls::{VcpuFd, VmFd};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::arena::LoopbackArena;
use crate::bus::Buses;
use crate::cgroup::{self, VmCgroup};
use crate::config::VmConfig;
use crate::devices::futex::{FutexDevice, MMIO_FUTEX, MMIO_FUTEX_LEN};
use crate::devices::guest_threads::{GuestThreadDevice, MMIO_THREAD, MMIO_THREAD_LEN};
use crate::devices::sock_io::{SockIoDevice, MMIO_SOCKIO, MMIO_SOCKIO_LEN};
use crate::error::{kvm, VmError};
use crate::evq::{EventQueue, EvqHost, VmLink};
use crate::image::Image;
use crate::rpc::module::HostModule;
use crate::rpc::{EngineThread, RpcHost};
use crate::stats::Stats;
use crate::stop::StopToken;
use crate::{bootinfo, irq, kick, layout};
use cpu_clock::CpuClockDevice;
use guest_kmod_bindings as abi;
use launch::{Launcher, VcpuRecipe};
use pool::Pool;
use shared::lock;

pub use crate::outcome::{GuestFailure, Outcome};
pub use cpu_clock::{MMIO_CPU_CLOCK, MMIO_CPU_CLOCK_LEN};
pub use shared::VmShared;
pub use snapshot::Snapshot;

/// How often a stopping VM's vCPUs are kicked again while the owner waits.
const REKICK_INTERVAL: Duration = Duration::from_millis(10);

/// Where a VM is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmState {
    Created,
    Running,
    Exited,
    Crashed,
    Killed,
}

pub struct Vm {
    config: VmConfig,
    shared: Arc<VmShared>,
    /// vCPUs set up by `new`, moved into their threads by `start`.
    pending: Mutex<Vec<VcpuFd>>,
    /// Starts the vCPU threads and joins them (holds the recipe for vCPUs
    /// created on demand, and the cgroup).
    launcher: Arc<Launcher>,
    rpc: RpcHost,
    evq: Arc<EvqHost>,
    // Declared after everything that uses it: the VM fd goes before guest memory.
    _vm_fd: Arc<VmFd>,
    memory: GuestMemoryMmap,
    /// The cgroup holding the vCPU threads when `cpu_limit` is set (the
    /// launcher holds it too). Declared last: it is removed after `Drop for
    /// Vm` has joined those threads and after the VM fd is closed, which stops
    /// KVM's own worker thread for this VM (`kvm-nx-lpage-recovery`, a thread
    /// of this process forked from the first vCPU to run, so it joins the VM's
    /// cgroup too).
    cgroup: Option<Arc<VmCgroup>>,
}

impl Vm {
    /// Builds a VM ready to start. Config and image are checked before any KVM
    /// object is created.
    pub fn new(config: VmConfig) -> Result<Vm, VmError> {
        Vm::with_arena(config, None)
    }

    /// `new`, mapping `arena`, the loopback arena this VM shares with the other
    /// programs of a multi-program Linux VM (`crate::arena`), at `layout::ARENA_BASE`.
    pub fn with_arena(config: VmConfig, arena: Option<Arc<LoopbackArena>>) -> Result<Vm, VmError> {
        config.validate()?;
        let mem_size = config.mem_size();
        let (shared_base, shared_size) = layout::shared_region(mem_size, config.rpc_channels());
        let image = Image::open(&config.image, shared_base)?;
        // Before any KVM object: a missing or unwritable hierarchy is a config error.
        let cgroup = match config.cpu_limit {
            Some(limit) => Some(Arc::new(VmCgroup::create(&cgroup::Parent::find()?, limit)?)),
            None => None,
        };
        kick::install_handler()
            .map_err(|e| VmError::Os("installing the vCPU kick handler", e.into()))?;

        let kvm_fd = setup::kvm_handle()?;
        let vm_fd = Arc::new(kvm_fd.create_vm().map_err(kvm("KVM_CREATE_VM"))?);
        vm_fd
            .set_tss_address(layout::KVM_TSS_ADDRESS)
            .map_err(kvm("KVM_SET_TSS_ADDR"))?;
        irq::enable_split_irqchip(&vm_fd)?;

        let mut memory =
            GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), mem_size as usize)])
                .map_err(|e| VmError::Memory(e.to_string()))?;
        if let Some(arena) = &arena {
            memory = memory
                .insert_region(arena.region())
                .map_err(|e| VmError::Memory(e.to_string()))?;
        }
        setup::register_memory(&vm_fd, &memory)?;
        let entry = image.load(&memory)?;
        let cr3 = setup::write_boot_tables(&memory, mem_size, config.vcpus, arena.is_some())?;

        let stats = Arc::new(Stats::default());
        let mut buses = Buses::default();
        let console = setup::add_devices(&mut buses, &memory, &stats, config.console_limit)?;
        let stop = StopToken::new().map_err(|e| VmError::Os("creating an eventfd", e))?;
        let spin = Duration::from_micros(config.rpc_spin_us);
        let irqs = irq::per_vcpu_irqfds(&vm_fd, config.vcpus)?;
        // Event queues interrupt the same vCPUs, through duplicates.
        let evq_irqs = irqs
            .iter()
            .map(|fd| fd.try_clone())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| VmError::Os("duplicating an irqfd", e))?;
        // Linux threads block here (guest/linux/futex.c); unused by bare guests.
        let arena_futexes = arena.as_ref().map(|a| a.futexes());
        let futex = FutexDevice::new(memory.clone(), stop.clone(), stats.clone(), arena_futexes);
        buses
            .mmio
            .insert(MMIO_FUTEX, MMIO_FUTEX_LEN, Arc::new(futex))?;
        // Linux guest threads start and end here (`pool`); unused by bare guests.
        let guest_threads = GuestThreadDevice::new(memory.clone());
        buses
            .mmio
            .insert(MMIO_THREAD, MMIO_THREAD_LEN, Arc::new(guest_threads))?;
        // The vCPU threads' CPU time, for the guest's getrusage (`cpu_clock`).
        let cpu_clock = Arc::new(CpuClockDevice::default());
        buses
            .mmio
            .insert(MMIO_CPU_CLOCK, MMIO_CPU_CLOCK_LEN, cpu_clock.clone())?;
        let rpc = RpcHost::new(
            &vm_fd,
            &memory,
            (shared_base, shared_size),
            config.rpc_channels(),
            irqs,
            stats.clone(),
            stop.clone(),
            spin,
        )?;
        buses
            .mmio
            .insert(abi::VMRPC_MMIO_DOORBELL, 4, rpc.doorbell_device())?;
        // Linux threads wait for their answers here (`rpc::wait`).
        buses
            .mmio
            .insert(abi::VMRPC_MMIO_RPC_WAIT, 8, rpc.wait_device())?;
        // Large socket receives and sends of the guest's socket library, on
        // the vCPU's own thread, for the modules' native data planes.
        let sock_io = SockIoDevice::new(
            memory.clone(),
            rpc.registry.clone(),
            stop.clone(),
            stats.clone(),
        );
        buses
            .mmio
            .insert(MMIO_SOCKIO, MMIO_SOCKIO_LEN, Arc::new(sock_io))?;
        // Host waiters poll for as long as the RPC engine does (`rpc_spin_us`).
        let link = VmLink::new(memory.clone(), evq_irqs, stats.clone(), stop.clone(), spin);
        let evq = Arc::new(EvqHost::new(
            vm_fd.clone(),
            link,
            rpc.shared_base(),
            rpc.evq_arena(),
        ));
        buses
            .mmio
            .insert(abi::VMRPC_MMIO_EVQ_DOORBELL, 4, evq.doorbell_device())?;

        let supported = setup::supported_cpuid(kvm_fd)?;
        let mut recipe = VcpuRecipe {
            stats: stats.clone(),
            vm_fd: vm_fd.clone(),
            supported,
            vcpus: config.vcpus,
            cr3,
            entry,
            boot_info: 0,
            msrs: Mutex::new(Vec::new()),
        };
        // vCPU 0 first: the boot info needs its TSC frequency.
        let first = recipe.create(0)?;
        let tsc_khz = first.get_tsc_khz().unwrap_or(0);
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
                arena: arena
                    .is_some()
                    .then_some((layout::ARENA_BASE, layout::ARENA_SIZE)),
            },
        )
        .map_err(|e| VmError::Memory(e.to_string()))?;
        recipe.boot_info = boot_info;
        let regs = crate::arch::vcpu_state::entry_regs(entry, boot_info, 0);
        first.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))?;
        let mut vcpus = vec![first];
        if !config.vcpus_on_demand {
            for index in 1..config.vcpus {
                vcpus.push(recipe.create(index)?);
            }
        }

        let shared = Arc::new(VmShared::new(buses, stats, console, stop, config.vcpus));
        let pool = config
            .vcpus_on_demand
            .then(|| Pool::new(memory.clone(), config.vcpus, &shared.stop));
        let launcher = Arc::new(Launcher::new(shared.clone(), cgroup.clone(), recipe, pool));
        cpu_clock.bind(&shared);
        Ok(Vm {
            config,
            shared,
            pending: Mutex::new(vcpus),
            launcher,
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

    /// Sets one MSR on every vCPU, those created on demand later included;
    /// only before `start` (the Linux personality points `MSR_LSTAR` at its
    /// system-call entry this way).
    pub fn set_msr_before_start(&self, index: u32, data: u64) -> Result<(), VmError> {
        let pending = lock(&self.pending);
        if pending.is_empty() {
            return Err(VmError::AlreadyStarted);
        }
        for vcpu in pending.iter() {
            launch::set_msr(vcpu, index, data)?;
        }
        lock(&self.launcher.recipe.msrs).push((index, data));
        Ok(())
    }

    /// The snapshot of this VM, which must have stopped at its snapshot
    /// point (`wait` says `Killed` then); it can be taken once (`snapshot`).
    pub fn take_snapshot(&self) -> Result<Arc<Snapshot>, VmError> {
        let fail = |why: &str| VmError::Snapshot(why.into());
        {
            let run = lock(&self.shared.run);
            if !run.started || run.live != 0 {
                return Err(fail("the VM is still running"));
            }
        }
        let vcpu = lock(&self.shared.captured).take().ok_or_else(|| {
            fail("the VM did not stop at a snapshot point (it exited, crashed or was killed)")
        })?;
        let queues = self.evq.names();
        if !queues.is_empty() {
            let why = format!("event queues {queues:?} exist (a snapshot keeps none)");
            return Err(VmError::Snapshot(why));
        }
        let rpc = self
            .rpc
            .export()
            .ok_or_else(|| fail("an RPC was being answered"))?;
        Snapshot::take(&self.memory, self.shape(), vcpu, rpc).map(Arc::new)
    }

    /// Makes this VM (created, not started, with the snapshot's configuration
    /// and host modules registered) go on from `snap`'s snapshot point.
    pub fn restore(&self, snap: &Snapshot) -> Result<(), VmError> {
        let pending = lock(&self.pending);
        let fd = pending.first().ok_or(VmError::AlreadyStarted)?;
        snap.restore(&self.memory, self.shape(), fd, &self.rpc)
    }

    /// Records which pages this VM, started from `snap` and stopped, touched
    /// (`Snapshot::record_working_set`); returns their count.
    pub fn record_working_set(&self, snap: &Snapshot) -> Result<usize, VmError> {
        snap.record_working_set(&self.memory)
    }

    /// What a snapshot and the VM started from it must agree on.
    fn shape(&self) -> (u64, u32, &std::path::Path) {
        (
            self.config.mem_size(),
            self.config.vcpus,
            &self.config.image,
        )
    }

    /// The directory of the cgroup holding the vCPU threads (`cpu_limit`).
    pub fn cgroup_path(&self) -> Option<&std::path::Path> {
        self.cgroup.as_deref().map(VmCgroup::path)
    }

    /// Starts the RPC engine and one thread per vCPU (with `vcpus_on_demand`,
    /// vCPU 0 only; the guest asks for the others, see `launch`).
    pub fn start(&self) -> Result<(), VmError> {
        self.start_with(crate::rpc::plain_engine_thread)
    }

    /// `start`, with the RPC engine's thread body run through `engine_thread`
    /// (the Python bindings give that thread a Python thread state).
    pub fn start_with(&self, engine_thread: EngineThread) -> Result<(), VmError> {
        let vcpus = {
            let mut run = lock(&self.shared.run);
            if run.started || run.outcome.is_some() {
                return Err(VmError::AlreadyStarted);
            }
            let vcpus = std::mem::take(&mut *lock(&self.pending));
            run.started = true;
            run.live = vcpus.len() as u32;
            vcpus
        };
        if let Err(e) = self.rpc.start(self.evq.clone(), engine_thread) {
            lock(&self.shared.run).live = 0;
            self.shared.finish(Outcome::Killed);
            return Err(e.into());
        }
        if let Err(e) = self.launcher.launch_all(vcpus) {
            self.kill();
            return Err(e);
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
        self.launcher.join_threads();
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
