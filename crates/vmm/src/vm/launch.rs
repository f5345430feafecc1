//! Starting vCPU threads: all at `start`, or (`VmConfig::vcpus_on_demand`,
//! Linux VMs) vCPU 0 at `start` running the program's first thread, and the
//! others created by the thread pool (`pool`) when guest threads wait for one.
//! Each guest thread then has a host thread of its own (its carrier), started
//! here when the guest asks (`devices::guest_threads`).

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use kvm_bindings::CpuId;
use kvm_ioctls::{VcpuFd, VmFd};

use super::pool::{self, CarrierHost, Context, GuestThread, Pool};
use super::setup;
use super::shared::{lock, VmShared};
use crate::cgroup::VmCgroup;
use crate::error::{kvm, VmError};
use crate::stats::Stats;
use crate::vcpu;

/// vCPU threads run little Rust code; a small stack keeps idle VMs cheap.
const VCPU_STACK_SIZE: usize = 512 << 10;
/// Guest threads of one VM alive at once (the personality's own cap,
/// LX_MAX_THREADS, is lower; this bounds what a hostile guest costs the host).
const MAX_GUEST_THREADS: usize = 1024;
const EAGAIN: i64 = 11;

/// What creating vCPU `index` needs, kept for vCPUs created after `Vm::new`.
pub(super) struct VcpuRecipe {
    pub(super) stats: Arc<Stats>,
    pub(super) vm_fd: Arc<VmFd>,
    pub(super) supported: &'static CpuId,
    pub(super) vcpus: u32,
    pub(super) cr3: u64,
    pub(super) entry: u64,
    pub(super) boot_info: u64,
    /// MSRs set on every vCPU before start (`Vm::set_msr_before_start`).
    pub(super) msrs: Mutex<Vec<(u32, u64)>>,
}

impl VcpuRecipe {
    /// Creates vCPU `index` ready to run at the image's entry.
    pub(super) fn create(&self, index: u32) -> Result<VcpuFd, VmError> {
        let vcpu = setup::create_vcpu(&self.vm_fd, self.supported, (index, self.vcpus), self.cr3)?;
        self.stats.vcpus_created.inc();
        let regs = crate::arch::vcpu_state::entry_regs(self.entry, self.boot_info, index);
        vcpu.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))?;
        for &(msr, data) in lock(&self.msrs).iter() {
            set_msr(&vcpu, msr, data)?;
        }
        Ok(vcpu)
    }
}

/// Sets one MSR on one vCPU.
pub(super) fn set_msr(vcpu: &VcpuFd, index: u32, data: u64) -> Result<(), VmError> {
    let msrs = kvm_bindings::Msrs::from_entries(&[kvm_bindings::kvm_msr_entry {
        index,
        data,
        ..Default::default()
    }])
    .expect("one MSR entry always fits"); // as in arch::vcpu_state: not a guest-memory error
    vcpu.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
    Ok(())
}

/// The vCPU threads of one VM (or, with a thread pool, the guest threads'
/// carriers), and their join handles.
pub(super) struct Launcher {
    pub(super) shared: Arc<VmShared>,
    pub(super) cgroup: Option<Arc<VmCgroup>>,
    pub(super) recipe: VcpuRecipe,
    /// Linux VMs: the vCPUs guest threads share.
    pub(super) pool: Option<Arc<Pool>>,
    /// Join handles; held across a whole launch, so `join_threads` never
    /// misses a thread being started.
    threads: Mutex<Threads>,
}

#[derive(Default)]
struct Threads {
    handles: Vec<JoinHandle<()>>,
    /// Guest threads started, for their carriers' names.
    guest_threads: u32,
}

impl Threads {
    /// Joins the threads that have ended (carriers of ended guest threads),
    /// so a program that starts many threads in turn keeps few host threads.
    fn reap(&mut self, shared: &VmShared) {
        use std::os::unix::thread::JoinHandleExt;
        let (done, running): (Vec<_>, Vec<_>) =
            self.handles.drain(..).partition(|h| h.is_finished());
        self.handles = running;
        if done.is_empty() {
            return;
        }
        {
            // A joined thread must never be kicked: forget its pthread id first.
            let gone: Vec<_> = done.iter().map(|h| h.as_pthread_t()).collect();
            lock(&shared.threads).retain(|t| !gone.contains(t));
        }
        for h in done {
            if h.join().is_err() {
                log::error!("a guest thread's carrier panicked");
            }
        }
    }
}

impl Launcher {
    pub(super) fn new(
        shared: Arc<VmShared>,
        cgroup: Option<Arc<VmCgroup>>,
        recipe: VcpuRecipe,
        pool: Option<Arc<Pool>>,
    ) -> Self {
        Launcher {
            shared,
            cgroup,
            recipe,
            pool,
            threads: Mutex::new(Threads::default()),
        }
    }

    /// Launches the vCPUs made by `Vm::new` (indices `0..`), counted in `live`
    /// by the caller. On failure the ones not launched are uncounted again.
    /// With a pool, vCPU 0 runs the program's first guest thread.
    pub(super) fn launch_all(self: &Arc<Self>, vcpus: Vec<VcpuFd>) -> Result<(), VmError> {
        let mut threads = lock(&self.threads);
        let total = vcpus.len() as u32;
        for (index, vcpu) in vcpus.into_iter().enumerate() {
            let index = index as u32;
            let launched = if self.pool.is_some() {
                threads.guest_threads += 1;
                let (me, launcher) = (GuestThread::new(None), self.clone());
                self.spawn(&mut threads, format!("vmrpc-vcpu{index}"), move |placed| {
                    if placed {
                        pool::carrier(launcher, me, Some(vcpu));
                    } else {
                        launcher.shared.carrier_stopped(None);
                    }
                })
            } else {
                let shared = self.shared.clone();
                self.spawn(&mut threads, format!("vmrpc-vcpu{index}"), move |placed| {
                    if placed {
                        vcpu::run(vcpu, index, shared);
                    } else {
                        shared.vcpu_stopped(index, Vec::new());
                    }
                })
            };
            if let Err(e) = launched {
                // The vCPUs after this one were never launched: they will never report.
                lock(&self.shared.run).live -= total - index - 1;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Starts a guest thread (`devices::guest_threads`) from `ctx` on a
    /// carrier of its own; 0, or -EAGAIN when the VM stops or has
    /// `MAX_GUEST_THREADS` already.
    fn start_guest_thread(self: &Arc<Self>, ctx: Context) -> i64 {
        let mut threads = lock(&self.threads);
        threads.reap(&self.shared);
        if threads.handles.len() >= MAX_GUEST_THREADS {
            return -EAGAIN;
        }
        {
            let mut run = lock(&self.shared.run);
            if !run.started || run.outcome.is_some() {
                return -EAGAIN;
            }
            run.live += 1;
        }
        threads.guest_threads += 1;
        let (me, launcher) = (GuestThread::new(Some(ctx)), self.clone());
        let n = threads.guest_threads;
        let spawned = self.spawn(&mut threads, format!("vmrpc-thread{n}"), move |placed| {
            if placed {
                pool::carrier(launcher, me, None);
            } else {
                launcher.shared.carrier_stopped(None);
            }
        });
        match spawned {
            Ok(()) => 0,
            Err(e) => {
                log::debug!("guest thread not started: {e}");
                -EAGAIN
            }
        }
    }

    /// Runs `body` on a thread of its own: the one way a vCPU or carrier
    /// thread starts. The caller has counted it in the run state's `live`.
    /// `body(false)`: the thread could not enter the VM's cgroup and must
    /// only report that it stopped. With a cgroup, returns once the thread is
    /// in it; without one, does not wait for the thread at all. If no thread
    /// starts, it is uncounted here.
    fn spawn(
        &self,
        threads: &mut Threads,
        name: String,
        body: impl FnOnce(bool) + Send + 'static,
    ) -> Result<(), VmError> {
        use std::os::unix::thread::JoinHandleExt;
        let cgroup = self.cgroup.clone();
        let (placed_tx, placed_rx) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name(name)
            .stack_size(VCPU_STACK_SIZE)
            .spawn(move || {
                // Enter the VM's cgroup before the first KVM_RUN, so that no
                // guest instruction runs outside the budget.
                let placed = cgroup.map_or(Ok(()), |c| c.enter_current_thread());
                let ok = placed.is_ok();
                let _ = placed_tx.send(placed);
                body(ok);
            });
        let handle = match spawned {
            Ok(h) => h,
            Err(e) => {
                let mut run = lock(&self.shared.run);
                run.live -= 1;
                self.shared.changed.notify_all();
                return Err(VmError::Os("spawning a vCPU thread", e));
            }
        };
        lock(&self.shared.threads).push(handle.as_pthread_t());
        threads.handles.push(handle);
        if self.cgroup.is_some() {
            placed_rx.recv().unwrap_or(Ok(()))?;
        }
        Ok(())
    }

    /// Joins every vCPU thread; only once they have all stopped (`live` is 0
    /// and the outcome is decided, so no launch can follow).
    pub(super) fn join_threads(&self) {
        let mut threads = lock(&self.threads);
        // Forget the pthread ids first: a joined thread must never be kicked.
        lock(&self.shared.threads).clear();
        for h in threads.handles.drain(..) {
            if h.join().is_err() {
                log::error!("a vCPU thread panicked");
            }
        }
    }
}

impl CarrierHost for Launcher {
    fn shared(&self) -> &VmShared {
        &self.shared
    }

    fn pool(&self) -> Option<&Pool> {
        self.pool.as_deref()
    }

    fn create_vcpu(&self, index: u32) -> Result<VcpuFd, VmError> {
        self.recipe.create(index)
    }

    fn spawn_guest_thread(self: &Arc<Self>, ctx: Context) -> i64 {
        self.start_guest_thread(ctx)
    }
}
