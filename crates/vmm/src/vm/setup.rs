//! Building a VM's pieces before it runs: the KVM handle, guest memory and
//! the tables the boot protocol puts in it, the devices, and each vCPU's
//! initial state.

use std::sync::{Arc, Mutex, OnceLock};

use kvm_bindings::{
    kvm_mp_state, kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES, KVM_MP_STATE_RUNNABLE,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::arch::{cpuid, gdt, paging, vcpu_state};
use crate::bus::Buses;
use crate::devices::console::{ConsoleBuffer, ConsoleWrite, SerialConsole, SharedConsole};
use crate::devices::crash_report::CrashReport;
use crate::devices::debug_exit::DebugExit;
use crate::devices::yield_cpu::YieldCpu;
use crate::error::{kvm, VmError};
use crate::layout;
use crate::stats::Stats;
use guest_kmod_bindings as abi;

pub(super) fn kvm_handle() -> Result<&'static Kvm, VmError> {
    static KVM: OnceLock<Kvm> = OnceLock::new();
    if let Some(k) = KVM.get() {
        return Ok(k);
    }
    let k = Kvm::new().map_err(kvm("opening /dev/kvm"))?;
    Ok(KVM.get_or_init(|| k))
}

pub(super) fn supported_cpuid(kvm_fd: &Kvm) -> Result<&'static CpuId, VmError> {
    static CPUID: OnceLock<CpuId> = OnceLock::new();
    if let Some(c) = CPUID.get() {
        return Ok(c);
    }
    let c = kvm_fd
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm("KVM_GET_SUPPORTED_CPUID"))?;
    Ok(CPUID.get_or_init(|| c))
}

pub(super) fn register_memory(vm_fd: &VmFd, memory: &GuestMemoryMmap) -> Result<(), VmError> {
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
pub(super) fn write_boot_tables(
    memory: &GuestMemoryMmap,
    mem_size: u64,
    vcpus: u32,
    arena: bool,
) -> Result<u64, VmError> {
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
    paging::write_identity_map(memory, mem_size, arena).map_err(err)
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

/// The devices every VM has, all memory-mapped (the guest runs in ring 3,
/// see arch::vcpu_state): console, debug exit, yield, console-write, crash
/// report. Returns the console they write to.
pub(super) fn add_devices(
    buses: &mut Buses,
    memory: &GuestMemoryMmap,
    stats: &Arc<Stats>,
    console_limit: usize,
) -> Result<SharedConsole, VmError> {
    let console: SharedConsole = Arc::new(Mutex::new(ConsoleBuffer::new(console_limit)));
    let console_dev = Arc::new(SerialConsole::new(console.clone()));
    buses.mmio.insert(abi::VMRPC_MMIO_CONSOLE, 8, console_dev)?;
    buses
        .mmio
        .insert(abi::VMRPC_MMIO_DEBUG_EXIT, 4, Arc::new(DebugExit))?;
    let yield_dev = Arc::new(YieldCpu::new(stats.clone()));
    buses.mmio.insert(abi::VMRPC_MMIO_YIELD, 4, yield_dev)?;
    let console_write = Arc::new(ConsoleWrite::new(console.clone(), memory.clone()));
    buses
        .mmio
        .insert(abi::VMRPC_MMIO_CONSOLE_WRITE, 8, console_write)?;
    let crash_report = Arc::new(CrashReport::new(memory.clone()));
    buses.mmio.insert(abi::VMRPC_MMIO_CRASH, 8, crash_report)?;
    Ok(console)
}

/// Creates vCPU `index` of `vcpus` in long mode, ring 3, runnable, with its
/// CPUID, boot MSRs and software-enabled LAPIC (registers are set later,
/// once the boot info's address is known).
pub(super) fn create_vcpu(
    vm_fd: &VmFd,
    supported: &CpuId,
    (index, vcpus): (u32, u32),
    cr3: u64,
) -> Result<VcpuFd, VmError> {
    let vcpu = vm_fd
        .create_vcpu(index.into())
        .map_err(kvm("KVM_CREATE_VCPU"))?;
    vcpu.set_cpuid2(&cpuid::for_vcpu(supported, index, vcpus))
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
    Ok(vcpu)
}
