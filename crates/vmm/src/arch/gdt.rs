//! The flat GDT every vCPU starts with, and the KVM segment registers that match it.

use kvm_bindings::kvm_segment;

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

/// 64-bit code: present, ring 0, execute/read, L=1, 4 KiB granularity.
pub const CODE64: u64 = gdt_entry(0xa09b, 0, 0xfffff);
/// Data: present, ring 0, read/write, 32-bit default size, 4 KiB granularity.
pub const DATA: u64 = gdt_entry(0xc093, 0, 0xfffff);
/// A busy 64-bit TSS; VM entry on Intel requires a usable task register.
pub const TSS: u64 = gdt_entry(0x808b, 0, 0xfffff);

/// The table the VMM writes at `layout::GDT_START`.
pub const TABLE: [u64; crate::layout::GDT_ENTRIES] = [0, CODE64, DATA, TSS];

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
        let s = segment_from_entry(CODE64, 1);
        assert_eq!(s.selector, 8);
        assert_eq!((s.l, s.db, s.present, s.dpl, s.s, s.g), (1, 0, 1, 0, 1, 1));
        assert_eq!(s.type_, 0xb);
        assert_eq!(s.limit, 0xffff_ffff);
        assert_eq!(s.base, 0);
    }

    #[test]
    fn data_and_tss_segments() {
        let d = segment_from_entry(DATA, 2);
        assert_eq!((d.selector, d.type_, d.db, d.l, d.s), (16, 3, 1, 0, 1));
        let t = segment_from_entry(TSS, 3);
        assert_eq!((t.selector, t.type_, t.s, t.present), (24, 0xb, 0, 1));
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
