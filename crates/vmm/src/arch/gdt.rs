//! The flat GDT every vCPU starts with, and the KVM segment registers that match it.

use kvm_bindings::kvm_segment;

use crate::layout;

/// Packs a GDT descriptor. `flags` holds the access byte in bits 0..8 and the
/// granularity/size nibble in bits 12..16, as in the Intel SDM figure 3-8.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    let flags = flags as u64;
    ((base & 0xff00_0000) << (56 - 24))
        | ((flags & 0x0000_f0ff) << 40)
        | ((limit & 0x000f_0000) << (48 - 16))
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

/// Kernel (ring 0) 64-bit code: present, execute/read, L=1, 4 KiB granularity.
pub const KERNEL_CODE: u64 = gdt_entry(0xa09b, 0, 0xfffff);
/// Kernel data: present, read/write, 4 KiB granularity.
pub const KERNEL_DATA: u64 = gdt_entry(0xc093, 0, 0xfffff);
/// User (ring 3) data, DPL 3.
pub const USER_DATA: u64 = gdt_entry(0xc0f3, 0, 0xfffff);
/// User (ring 3) 64-bit code, DPL 3.
pub const USER_CODE: u64 = gdt_entry(0xa0fb, 0, 0xfffff);
/// Access byte of a busy 64-bit TSS (VM entry wants a usable, busy TR).
const TSS_BUSY: u16 = 0x8b;

/// The 16-byte system descriptor of a TSS at `base`, as two GDT slots.
pub fn tss_descriptor(base: u64, limit: u32) -> [u64; 2] {
    [gdt_entry(TSS_BUSY, base as u32, limit), base >> 32]
}

/// The table the VMM writes at `layout::GDT_START`: flat kernel and user
/// segments, then one TSS per vCPU.
pub fn table() -> [u64; layout::GDT_ENTRIES] {
    let mut t = [0u64; layout::GDT_ENTRIES];
    t[layout::GDT_KERNEL_CODE_INDEX as usize] = KERNEL_CODE;
    t[layout::GDT_KERNEL_DATA_INDEX as usize] = KERNEL_DATA;
    t[layout::GDT_USER_DATA_INDEX as usize] = USER_DATA;
    t[layout::GDT_USER_CODE_INDEX as usize] = USER_CODE;
    for vcpu in 0..guest_kmod_bindings::VMRPC_MAX_VCPUS {
        let at = tss_index(vcpu) as usize;
        t[at..at + 2].copy_from_slice(&tss_descriptor(tss_address(vcpu), layout::TSS_LIMIT));
    }
    t
}

/// GDT slot of vCPU `vcpu`'s TSS descriptor.
pub fn tss_index(vcpu: u32) -> u16 {
    layout::GDT_TSS_INDEX + 2 * vcpu as u16
}

/// Guest address of vCPU `vcpu`'s TSS.
pub fn tss_address(vcpu: u32) -> u64 {
    layout::TSS_START + vcpu as u64 * layout::TSS_STRIDE
}

/// A 64-bit TSS whose RSP0 is `rsp0`, with no I/O bitmap (devices are MMIO).
pub fn tss_bytes(rsp0: u64) -> [u8; 104] {
    let mut tss = [0u8; 104];
    tss[4..12].copy_from_slice(&rsp0.to_le_bytes());
    // I/O map base at the limit: "no bitmap".
    tss[102..104].copy_from_slice(&104u16.to_le_bytes());
    tss
}

/// Decodes a descriptor into the KVM segment register that caches it.
pub fn segment_from_entry(entry: u64, index: u16) -> kvm_segment {
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0x000f_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base,
        limit,
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_segment_is_long_mode_ring0() {
        let s = segment_from_entry(KERNEL_CODE, 1);
        assert_eq!(s.selector, 8);
        assert_eq!((s.l, s.db, s.present, s.dpl, s.s, s.g), (1, 0, 1, 0, 1, 1));
        assert_eq!(s.type_, 0xb);
        assert_eq!(s.limit, 0xffff_ffff);
        assert_eq!(s.base, 0);
    }

    #[test]
    fn data_and_tss_segments() {
        let d = segment_from_entry(KERNEL_DATA, 2);
        assert_eq!((d.selector, d.type_, d.db, d.l, d.s), (16, 3, 1, 0, 1));
        let u = segment_from_entry(USER_CODE, 4);
        assert_eq!((u.dpl, u.l, u.type_), (3, 1, 0xb));
        let ud = segment_from_entry(USER_DATA, 3);
        assert_eq!((ud.dpl, ud.type_), (3, 3));
        let [lo, hi] = tss_descriptor(0x1234_5678_9abc, 103);
        let t = segment_from_entry(lo, 5);
        assert_eq!(
            (t.selector, t.type_, t.s, t.present, t.limit),
            (40, 0xb, 0, 1, 103)
        );
        assert_eq!(t.base | (hi << 32), 0x1234_5678_9abc);
    }

    #[test]
    fn entry_round_trips_base_and_limit() {
        let e = gdt_entry(0x0093, 0x1234_5678, 0xabcde);
        let s = segment_from_entry(e, 5);
        assert_eq!(s.base, 0x1234_5678);
        assert_eq!(s.limit, 0xabcde);
        assert_eq!(s.g, 0);
    }
}
