//! x86_64 entry state: everything the VMM writes so a vCPU starts in long mode.

pub mod cpuid;
pub mod gdt;
pub mod paging;
pub mod vcpu_state;
