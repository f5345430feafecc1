//! Starting vCPU threads: all at `start`, or (`VmConfig::vcpus_on_demand`)
//! vCPU 0 at `start` and each other one when the guest first asks for it.
//!
//! A Linux program's threads each need a vCPU, but most programs never make a
//! thread: creating and booting vCPUs they never use cost start-up time (the
//! runtime's ring-0 boot of each vCPU is emulated on PVM) and a host thread
//! each. With vCPUs on demand, the personality reads `MMIO_VCPU_START + 4 * i`
//! before it hands vCPU `i` its first thread (guest/linux/thread.c): the read
//! creates and launches that vCPU (if it is not running yet) and answers 0, or
//! 1 when it cannot (index out of range, VM stopping, KVM refused).

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;

use kvm_bindings::CpuId;
use kvm_ioctls::{VcpuFd, VmFd};

use super::setup;
use super::shared::{lock, VmShared};
use crate::bus::{BusDevice, DeviceAction};
use crate::cgroup::VmCgroup;
use crate::error::{kvm, VmError};
use crate::stats::Stats;
use crate::vcpu;

/// The vCPU start register block (`LX_MMIO_VCPU_START`, guest/linux/vcpu_abi.h):
/// one 32-bit register per vCPU, next to the futex device.
pub const MMIO_VCPU_START: u64 = guest_kmod_bindings::VMRPC_MMIO_BASE + 0x10_1000;
/// Bytes of the register block (one u32 per possible vCPU).
pub const MMIO_VCPU_START_LEN: u64 = 4 * guest_kmod_bindings::VMRPC_MAX_VCPUS as u64;

/// vCPU threads run little Rust code; a small stack keeps idle VMs cheap.
const VCPU_STACK_SIZE: usize = 512 << 10;

/// Why the guest's request for a vCPU is refused (it reads 1).
#[derive(Debug, thiserror::Error)]
pub enum VcpuStartError {
    /// the register names no vCPU of this VM
    #[error("no vCPU at register offset {0:#x}")]
    NoSuchVcpu(u64),
    /// not started yet, or stopping: no vCPU starts any more
    #[error("the VM is not running")]
    NotRunning,
    /// KVM or the host refused
    #[error(transparent)]
    Vm(#[from] VmError),
}

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

/// The vCPU threads of one VM: who runs, and their join handles.
pub(super) struct Launcher {
    pub(super) shared: Arc<VmShared>,
    pub(super) cgroup: Option<Arc<VmCgroup>>,
    pub(super) recipe: VcpuRecipe,
    /// Join handles, and which vCPUs were launched. Held across a whole
    /// launch, so `join_threads` never misses a thread being started.
    threads: Mutex<Threads>,
}

#[derive(Default)]
struct Threads {
    handles: Vec<JoinHandle<()>>,
    launched: u32,
}

impl Launcher {
    pub(super) fn new(
        shared: Arc<VmShared>,
        cgroup: Option<Arc<VmCgroup>>,
        recipe: VcpuRecipe,
    ) -> Self {
        Launcher {
            shared,
            cgroup,
            recipe,
            threads: Mutex::new(Threads::default()),
        }
    }

    /// Launches the vCPUs made by `Vm::new` (indices `0..`), counted in `live`
    /// by the caller. On failure the ones not launched are uncounted again.
    pub(super) fn launch_all(&self, vcpus: Vec<VcpuFd>) -> Result<(), VmError> {
        let mut threads = lock(&self.threads);
        let total = vcpus.len() as u32;
        for (index, vcpu) in vcpus.into_iter().enumerate() {
            let index = index as u32;
            if let Err(e) = self.launch(&mut threads, index, vcpu) {
                // The vCPUs after this one were never launched: they will never report.
                lock(&self.shared.run).live -= total - index - 1;
                return Err(e);
            }
        }
        Ok(())
    }

    /// The guest asks for vCPU `index`: creates and launches it unless it runs
    /// already. Refused once the VM stops (its outcome is decided).
    pub(super) fn ensure_running(&self, index: u32) -> Result<(), VcpuStartError> {
        if index >= self.recipe.vcpus {
            return Err(VcpuStartError::NoSuchVcpu(u64::from(index) * 4));
        }
        let mut threads = lock(&self.threads);
        if threads.launched & (1 << index) != 0 {
            return Ok(());
        }
        {
            let mut run = lock(&self.shared.run);
            if !run.started || run.outcome.is_some() {
                return Err(VcpuStartError::NotRunning);
            }
            run.live += 1;
        }
        let vcpu = match self.recipe.create(index) {
            Ok(v) => v,
            Err(e) => {
                self.shared.vcpu_stopped(index, Vec::new());
                return Err(e.into());
            }
        };
        Ok(self.launch(&mut threads, index, vcpu)?)
    }

    /// Runs `vcpu` (its registers already set) on a thread of its own: the
    /// one way a vCPU starts. The caller has counted it in the run state's
    /// `live`. With a cgroup, returns once the thread is in it; without one,
    /// does not wait for the thread at all. On failure the vCPU is already
    /// accounted for (it stopped, or never ran).
    fn launch(&self, threads: &mut Threads, index: u32, vcpu: VcpuFd) -> Result<(), VmError> {
        use std::os::unix::thread::JoinHandleExt;
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
                    vcpu::run(vcpu, index, shared);
                } else {
                    shared.vcpu_stopped(index, Vec::new());
                }
            });
        let handle = match spawned {
            Ok(h) => h,
            Err(e) => {
                self.shared.vcpu_stopped(index, Vec::new());
                return Err(VmError::Os("spawning a vCPU thread", e));
            }
        };
        threads.launched |= 1 << index;
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

/// The guest side of on-demand vCPUs (see the module documentation).
#[derive(Default)]
pub struct VcpuStartDevice {
    launcher: OnceLock<Weak<Launcher>>,
}

impl VcpuStartDevice {
    pub(super) fn bind(&self, launcher: &Arc<Launcher>) {
        let _ = self.launcher.set(Arc::downgrade(launcher));
    }

    fn start(&self, offset: u64) -> Result<(), VcpuStartError> {
        let launcher = self
            .launcher
            .get()
            .and_then(Weak::upgrade)
            .ok_or(VcpuStartError::NotRunning)?;
        // A misaligned or out-of-range register names no vCPU.
        let index = u32::try_from(offset / 4)
            .ok()
            .filter(|_| offset.is_multiple_of(4))
            .ok_or(VcpuStartError::NoSuchVcpu(offset))?;
        launcher.ensure_running(index)
    }
}

impl BusDevice for VcpuStartDevice {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let answer: u32 = match self.start(offset) {
            Ok(()) => 0,
            Err(e) => {
                log::debug!("guest asked for a vCPU at {offset:#x}: {e}");
                1
            }
        };
        let bytes = answer.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(i).copied().unwrap_or(0);
        }
    }

    fn write(&self, _offset: u64, _data: &[u8]) -> DeviceAction {
        DeviceAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_header_names_the_same_register_block() {
        let header = include_str!("../../../../guest/linux/vcpu_abi.h");
        let offset = MMIO_VCPU_START - guest_kmod_bindings::VMRPC_MMIO_BASE;
        assert!(
            header.contains(&format!("(0xd0000000ull + {offset:#x}u)")),
            "guest/linux/vcpu_abi.h disagrees with MMIO_VCPU_START"
        );
        assert_eq!(guest_kmod_bindings::VMRPC_MMIO_BASE, 0xd000_0000);
    }

    #[test]
    fn an_unbound_device_or_a_bad_register_is_refused_not_a_panic() {
        let d = VcpuStartDevice::default();
        let mut data = [0u8; 4];
        d.read(0, &mut data);
        assert_eq!(u32::from_le_bytes(data), 1, "no VM behind it");
        assert!(matches!(d.start(3), Err(VcpuStartError::NotRunning)));
        let mut wide = [0xffu8; 8];
        d.read(4, &mut wide);
        assert_eq!(wide, [1, 0, 0, 0, 0, 0, 0, 0]);
    }
}
