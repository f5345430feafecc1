//! Baselines for the benchmarks (benches/): the cost of raw KVM operations,
//! measured in the same run as vmrpc's own numbers because absolute times are
//! noisy on this kind of host.

use std::time::Instant;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::error::{kvm, VmError};

/// Where the one-byte real-mode guest (`hlt`) is placed.
const CODE_AT: u64 = 0x1000;
const HLT: u8 = 0xf4;

/// One cycle of the bare minimum: create a VM with 64 KiB of memory and one
/// vCPU, run it until it executes `hlt`, destroy everything. Returns nanoseconds.
pub fn raw_kvm_cycle(kvm_fd: &Kvm) -> Result<u64, VmError> {
    let start = Instant::now();
    let vm = kvm_fd.create_vm().map_err(kvm("KVM_CREATE_VM"))?;
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)])
        .map_err(|e| VmError::Memory(e.to_string()))?;
    mem.write_obj(HLT, GuestAddress(CODE_AT))
        .map_err(|e| VmError::Memory(e.to_string()))?;
    let region = mem.iter().next().expect("one region");
    let host = region
        .get_host_address(vm_memory::MemoryRegionAddress(0))
        .map_err(|e| VmError::Memory(e.to_string()))?;
    let r = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: region.len(),
        userspace_addr: host as u64,
    };
    // SAFETY: `mem` outlives `vm` (declared before it is dropped at the end of
    // this function, after the VM fd).
    unsafe { vm.set_user_memory_region(r) }.map_err(kvm("KVM_SET_USER_MEMORY_REGION"))?;
    let mut vcpu = vm.create_vcpu(0).map_err(kvm("KVM_CREATE_VCPU"))?;
    let mut sregs = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;
    let mut regs = vcpu.get_regs().map_err(kvm("KVM_GET_REGS"))?;
    regs.rip = CODE_AT;
    regs.rflags = 0x2;
    vcpu.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))?;
    loop {
        match vcpu.run().map_err(kvm("KVM_RUN"))? {
            VcpuExit::Hlt => break,
            VcpuExit::IoOut(..)
            | VcpuExit::IoIn(..)
            | VcpuExit::MmioRead(..)
            | VcpuExit::MmioWrite(..) => {}
            other => {
                return Err(VmError::Memory(format!(
                    "baseline guest: unexpected exit {other:?}"
                )))
            }
        }
    }
    drop(vcpu);
    drop(vm);
    drop(mem);
    Ok(start.elapsed().as_nanos() as u64)
}
