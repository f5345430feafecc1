//! Initial registers, segment registers and MSRs of a vCPU entering in long mode.

use kvm_bindings::{kvm_msr_entry, kvm_regs, kvm_sregs, Msrs};

use super::gdt;
use crate::layout;

const CR0_PE: u64 = 1 << 0;
/// MP with EM clear: x87/SSE instructions run (and honour TS), as architected.
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
/// The OS saves SSE state (fxsave/fxrstor) and handles SIMD exceptions: without
/// these, SSE instructions raise #UD on hardware KVM (PVM runs them anyway).
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

pub const MSR_IA32_APIC_BASE: u32 = 0x1b;
pub const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MTRR_ENABLE: u64 = 1 << 11;
const MTRR_TYPE_WB: u64 = 6;
const APIC_DEFAULT_BASE: u64 = 0xfee0_0000;
const APIC_BASE_BSP: u64 = 1 << 8;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ENABLE: u64 = 1 << 11;

/// RFLAGS at entry: interrupts off (only the reserved bit 1 set).
const ENTRY_RFLAGS: u64 = 0x2;
/// Requested privilege level of every selector the guest starts with.
/// (IOPL stays 0: PVM does not let ring 3 do port I/O, so devices are MMIO.)
const RPL3: u16 = 3;

/// General registers at entry: `rdi` = boot info, `rsi` = vCPU index (the boot
/// protocol in abi.h), interrupts off.
pub fn entry_regs(entry: u64, boot_info: u64, index: u32) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rdi: boot_info,
        rsi: index as u64,
        rflags: ENTRY_RFLAGS,
        ..Default::default()
    }
}

/// Long mode with paging rooted at `cr3`, entering in ring 3 on flat user
/// segments, with vCPU `index`'s TSS, the VMM's IDT page and GS based at the
/// vCPU's per-CPU page.
///
/// Why ring 3: guest code runs in user mode with a small ring-0 path for
/// interrupts and `hlt`. On PVM (this workplace's nested KVM) ring-0 guest code
/// is emulated instruction by instruction, thousands of times slower than ring
/// 3, which runs natively; on hardware KVM both are native and the design costs
/// nothing measurable.
pub fn long_mode_sregs(mut sregs: kvm_sregs, cr3: u64, index: u32) -> kvm_sregs {
    let mut code = gdt::segment_from_entry(gdt::USER_CODE, layout::GDT_USER_CODE_INDEX);
    let mut data = gdt::segment_from_entry(gdt::USER_DATA, layout::GDT_USER_DATA_INDEX);
    code.selector |= RPL3;
    data.selector |= RPL3;
    let [tss_lo, _] = gdt::tss_descriptor(gdt::tss_address(index), layout::TSS_LIMIT);
    let tss = gdt::segment_from_entry(tss_lo, gdt::tss_index(index));
    let mut gs = data;
    gs.base = layout::PERCPU_START + index as u64 * layout::PERCPU_SIZE;
    sregs.gdt.base = layout::GDT_START;
    sregs.gdt.limit = (layout::GDT_ENTRIES * 8 - 1) as u16;
    sregs.idt.base = layout::IDT_START;
    sregs.idt.limit = layout::IDT_LIMIT;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = gs;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_PG;
    sregs.cr3 = cr3;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.efer = EFER_LME | EFER_LMA;
    sregs
}

/// The local APIC in x2APIC mode; vCPU 0 is the bootstrap processor.
pub fn apic_base(index: u32) -> u64 {
    let bsp = if index == 0 { APIC_BASE_BSP } else { 0 };
    APIC_DEFAULT_BASE | APIC_BASE_ENABLE | APIC_BASE_X2APIC | bsp
}

pub fn boot_msrs(index: u32) -> Msrs {
    let entries = [
        kvm_msr_entry {
            index: MSR_IA32_APIC_BASE,
            data: apic_base(index),
            ..Default::default()
        },
        // MTRRs on, default type write-back: KVM's reset value leaves them off,
        // which makes all guest memory uncacheable where the hypervisor honours
        // guest MTRRs (PVM's shadow paging does).
        kvm_msr_entry {
            index: MSR_MTRR_DEF_TYPE,
            data: MTRR_ENABLE | MTRR_TYPE_WB,
            ..Default::default()
        },
    ];
    Msrs::from_entries(&entries).expect("two MSR entries always fit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_mode_bits() {
        let s = long_mode_sregs(kvm_sregs::default(), 0x9000, 2);
        assert_eq!(s.cr3, 0x9000);
        assert_ne!(s.cr0 & CR0_PG, 0);
        assert_ne!(s.cr0 & CR0_PE, 0);
        assert_ne!(s.cr4 & CR4_PAE, 0);
        assert_eq!(
            s.cr4 & (CR4_OSFXSR | CR4_OSXMMEXCPT),
            CR4_OSFXSR | CR4_OSXMMEXCPT
        );
        assert_ne!(s.cr0 & CR0_MP, 0);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.cs.l, 1);
        assert_eq!((s.cs.selector, s.cs.dpl), (0x23, 3));
        assert_eq!((s.ss.selector, s.ss.dpl), (0x1b, 3));
        assert_eq!(s.gs.base, layout::PERCPU_START + 2 * layout::PERCPU_SIZE);
        assert_eq!(s.tr.selector, (layout::GDT_TSS_INDEX + 4) * 8);
        assert_eq!(s.tr.base, layout::TSS_START + 2 * layout::TSS_STRIDE);
        assert_eq!(s.idt.base, layout::IDT_START);
    }

    #[test]
    fn entry_registers_follow_the_boot_protocol() {
        let r = entry_regs(0x10_0000, 0x7000, 3);
        assert_eq!((r.rip, r.rdi, r.rsi, r.rsp), (0x10_0000, 0x7000, 3, 0));
        assert_eq!(r.rflags, 0x2, "interrupts off");
    }

    #[test]
    fn only_vcpu0_is_bsp() {
        assert_ne!(apic_base(0) & APIC_BASE_BSP, 0);
        assert_eq!(apic_base(1) & APIC_BASE_BSP, 0);
        assert_ne!(apic_base(1) & APIC_BASE_X2APIC, 0);
    }
}
