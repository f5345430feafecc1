//! CPUID as the guest sees it: KVM's supported set minus what guests may not use.
//!
//! Guests run with general registers only. Under PVM, XSAVE-family instructions
//! fail with an internal error, so XSAVE/AVX are hidden outright; x2APIC is
//! advertised because the VMM puts the local APIC in x2APIC mode.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

const LEAF1_ECX_FMA: u32 = 1 << 12;
const LEAF1_ECX_X2APIC: u32 = 1 << 21;
const LEAF1_ECX_XSAVE: u32 = 1 << 26;
const LEAF1_ECX_OSXSAVE: u32 = 1 << 27;
const LEAF1_ECX_AVX: u32 = 1 << 28;
const LEAF1_ECX_F16C: u32 = 1 << 29;
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
const LEAF7_EBX_AVX2: u32 = 1 << 5;
/// AVX-512 F, DQ, IFMA, PF, ER, CD, BW, VL.
const LEAF7_EBX_AVX512: u32 =
    (1 << 16) | (1 << 17) | (1 << 21) | (1 << 26) | (1 << 27) | (1 << 28) | (1 << 30) | (1 << 31);
const XSAVE_LEAF: u32 = 0xd;
const TOPOLOGY_LEAVES: [u32; 2] = [0xb, 0x1f];

/// Adjusts one entry for vCPU `index` of `count`.
pub fn filter_entry(e: &mut kvm_cpuid_entry2, index: u32, count: u32) {
    match e.function {
        1 => {
            e.ecx &= !(LEAF1_ECX_XSAVE | LEAF1_ECX_OSXSAVE | LEAF1_ECX_AVX | LEAF1_ECX_F16C);
            e.ecx &= !LEAF1_ECX_FMA;
            e.ecx |= LEAF1_ECX_X2APIC | LEAF1_ECX_HYPERVISOR;
            // EBX[31:24] initial APIC id, EBX[23:16] logical processors per package.
            e.ebx = (e.ebx & 0x0000_ffff) | (index << 24) | ((count & 0xff) << 16);
        }
        7 if e.index == 0 => {
            e.ebx &= !(LEAF7_EBX_AVX2 | LEAF7_EBX_AVX512);
        }
        XSAVE_LEAF => {
            e.eax = 0;
            e.ebx = 0;
            e.ecx = 0;
            e.edx = 0;
        }
        f if TOPOLOGY_LEAVES.contains(&f) => {
            // EDX of every topology sub-leaf is the x2APIC id.
            e.edx = index;
        }
        _ => {}
    }
}

/// The CPUID table for vCPU `index` of `count`, derived from KVM's supported set.
pub fn for_vcpu(supported: &CpuId, index: u32, count: u32) -> CpuId {
    let mut cpuid = supported.clone();
    for e in cpuid.as_mut_slice() {
        filter_entry(e, index, count);
    }
    cpuid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: u32::MAX,
            ebx: u32::MAX,
            ecx: u32::MAX,
            edx: u32::MAX,
            ..Default::default()
        }
    }

    #[test]
    fn hides_xsave_and_avx_advertises_x2apic() {
        let mut e = entry(1, 0);
        filter_entry(&mut e, 3, 4);
        assert_eq!(
            e.ecx & (LEAF1_ECX_XSAVE | LEAF1_ECX_OSXSAVE | LEAF1_ECX_AVX),
            0
        );
        assert_ne!(e.ecx & LEAF1_ECX_X2APIC, 0);
        assert_eq!(e.ebx >> 24, 3);
        assert_eq!((e.ebx >> 16) & 0xff, 4);
        let mut x = entry(XSAVE_LEAF, 1);
        filter_entry(&mut x, 0, 1);
        assert_eq!((x.eax, x.ebx, x.ecx, x.edx), (0, 0, 0, 0));
        let mut s = entry(7, 0);
        filter_entry(&mut s, 0, 1);
        assert_eq!(s.ebx & LEAF7_EBX_AVX2, 0);
    }

    #[test]
    fn topology_leaves_carry_the_x2apic_id() {
        let mut e = entry(0xb, 1);
        filter_entry(&mut e, 6, 8);
        assert_eq!(e.edx, 6);
    }
}
