//! Initial registers, segment registers and MSRs of a vCPU entering in long mode.

use kvm_bindings::{kvm_msr_entry, kvm_regs, kvm_sregs, Msrs};

use super::gdt;
use crate::layout;

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

pub const MSR_IA32_APIC_BASE: u32 = 0x1b;
const APIC_DEFAULT_BASE: u64 = 0xfee0_0000;
const APIC_BASE_BSP: u64 = 1 << 8;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ENABLE: u64 = 1 << 11;

/// General registers at entry: `rdi` = boot info, `rsi` = vCPU index (the boot
/// protocol in abi.h), interrupts off.
pub fn entry_regs(entry: u64, boot_info: u64, index: u32) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rdi: boot_info,
        rsi: index as u64,
        rflags: 0x2,
        ..Default::default()
    }
}

/// Long mode with paging rooted at `cr3`, flat segments from the VMM's GDT.
/// Starts from KVM's current sregs so fields we do not own keep their values.
pub fn long_mode_sregs(mut sregs: kvm_sregs, cr3: u64) -> kvm_sregs {
    let code = gdt::segment_from_entry(gdt::CODE64, layout::GDT_CODE_INDEX);
    let data = gdt::segment_from_entry(gdt::DATA, layout::GDT_DATA_INDEX);
    let tss = gdt::segment_from_entry(gdt::TSS, layout::GDT_TSS_INDEX);
    sregs.gdt.base = layout::GDT_START;
    sregs.gdt.limit = (layout::GDT_ENTRIES * 8 - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
    sregs.cr3 = cr3;
    sregs.cr4 = CR4_PAE;
    sregs.efer = EFER_LME | EFER_LMA;
    sregs
}

/// The local APIC in x2APIC mode; vCPU 0 is the bootstrap processor.
pub fn apic_base(index: u32) -> u64 {
    let bsp = if index == 0 { APIC_BASE_BSP } else { 0 };
    APIC_DEFAULT_BASE | APIC_BASE_ENABLE | APIC_BASE_X2APIC | bsp
}

pub fn boot_msrs(index: u32) -> Msrs {
    let entries = [kvm_msr_entry {
        index: MSR_IA32_APIC_BASE,
        data: apic_base(index),
        ..Default::default()
    }];
    Msrs::from_entries(&entries).expect("one MSR entry always fits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_mode_bits() {
        let s = long_mode_sregs(kvm_sregs::default(), 0x9000);
        assert_eq!(s.cr3, 0x9000);
        assert_ne!(s.cr0 & CR0_PG, 0);
        assert_ne!(s.cr0 & CR0_PE, 0);
        assert_ne!(s.cr4 & CR4_PAE, 0);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.cs.l, 1);
        assert_eq!(s.cs.selector, 8);
        assert_eq!(s.ss.selector, 16);
        assert_eq!(s.gdt.limit, 31);
    }

    #[test]
    fn entry_registers_follow_the_boot_protocol() {
        let r = entry_regs(0x10_0000, 0x7000, 3);
        assert_eq!(
            (r.rip, r.rdi, r.rsi, r.rflags, r.rsp),
            (0x10_0000, 0x7000, 3, 2, 0)
        );
    }

    #[test]
    fn only_vcpu0_is_bsp() {
        assert_ne!(apic_base(0) & APIC_BASE_BSP, 0);
        assert_eq!(apic_base(1) & APIC_BASE_BSP, 0);
        assert_ne!(apic_base(1) & APIC_BASE_X2APIC, 0);
    }
}
