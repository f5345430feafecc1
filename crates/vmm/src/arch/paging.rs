//! Identity page tables: GVA == GPA for all of guest RAM, nothing above it.
//! Page 0 is the exception: supervisor-only, so a NULL dereference faults.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{
    ARENA_BASE, ARENA_SIZE, LARGE_PAGE_SIZE, LOW_PT_START, MMIO_BASE, MMIO_SIZE, PDPT_START,
    PD_START, PML4_START,
};

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const LARGE: u64 = 1 << 7;
/// The guest runs in ring 3 (see `vcpu_state::long_mode_sregs`), so every page
/// is a user page; no SMAP/SMEP, so its ring-0 handlers reach them too.
const USER: u64 = 1 << 2;
const GIB: u64 = 1 << 30;

/// One page-table entry to write: (guest address of the entry, value).
pub type PageTableEntry = (u64, u64);

/// Page-level write-through and cache disable: the MMIO window is uncached.
const UNCACHED: u64 = (1 << 3) | (1 << 4);

const PAGE_SIZE: u64 = 0x1000;

/// The entries that identity-map `[0, mem_size)` and the MMIO window with
/// 2 MiB pages. RAM is a multiple of 2 MiB (the config checks it), so no page
/// reaches past RAM and any other access above it faults in the guest. The
/// first 2 MiB use 4 KiB pages instead, the first of them supervisor-only:
/// the GDT lives there (the CPU reads it with supervisor rights), and a guest
/// access to `[0, 4096)` from ring 3 (a NULL pointer) takes a page fault.
///
/// With `arena`, the loopback arena (`crate::arena`) is mapped too, identically,
/// like RAM.
pub fn identity_map_entries(mem_size: u64, arena: bool) -> Vec<PageTableEntry> {
    let ram = (0..mem_size / LARGE_PAGE_SIZE).map(|p| (p * LARGE_PAGE_SIZE, 0));
    let arena_pages = if arena {
        ARENA_SIZE / LARGE_PAGE_SIZE
    } else {
        0
    };
    let ram = ram.chain((0..arena_pages).map(|p| (ARENA_BASE + p * LARGE_PAGE_SIZE, 0)));
    let mmio =
        (0..MMIO_SIZE / LARGE_PAGE_SIZE).map(|p| (MMIO_BASE + p * LARGE_PAGE_SIZE, UNCACHED));
    let mut entries = vec![(PML4_START, PDPT_START | PRESENT | WRITABLE | USER)];
    let mut directories: Vec<u64> = Vec::new();
    for (addr, extra) in ram.chain(mmio) {
        let gib = addr / GIB;
        let pd = PD_START + gib * 0x1000;
        if !directories.contains(&gib) {
            directories.push(gib);
            entries.push((PDPT_START + gib * 8, pd | PRESENT | WRITABLE | USER));
        }
        let entry = pd + ((addr % GIB) / LARGE_PAGE_SIZE) * 8;
        if addr == 0 {
            entries.push((entry, LOW_PT_START | PRESENT | WRITABLE | USER));
            entries.extend(low_page_entries());
        } else {
            entries.push((entry, addr | PRESENT | WRITABLE | USER | LARGE | extra));
        }
    }
    entries
}

/// The 4 KiB page table of the first 2 MiB: page 0 without USER.
fn low_page_entries() -> impl Iterator<Item = PageTableEntry> {
    (0..LARGE_PAGE_SIZE / PAGE_SIZE).map(|i| {
        let user = if i == 0 { 0 } else { USER };
        (
            LOW_PT_START + i * 8,
            (i * PAGE_SIZE) | PRESENT | WRITABLE | user,
        )
    })
}

/// Writes the page tables into guest memory; returns the value for CR3.
pub fn write_identity_map(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    arena: bool,
) -> Result<u64, vm_memory::GuestMemoryError> {
    for (addr, value) in identity_map_entries(mem_size, arena) {
        mem.write_obj(value, GuestAddress(addr))?;
    }
    Ok(PML4_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the tables like the MMU does; returns the GPA and whether ring 3
    /// may access it (USER set at every level).
    fn walk(entries: &[PageTableEntry], gva: u64) -> Option<(u64, bool)> {
        let lookup = |addr: u64| entries.iter().find(|(a, _)| *a == addr).map(|(_, v)| *v);
        let pml4e = lookup(PML4_START + ((gva >> 39) & 0x1ff) * 8)?;
        let pdpte = lookup((pml4e & !0xfff) + ((gva >> 30) & 0x1ff) * 8)?;
        let pde = lookup((pdpte & !0xfff) + ((gva >> 21) & 0x1ff) * 8)?;
        let user = pml4e & pdpte & pde & USER != 0;
        if pde & LARGE != 0 {
            return Some(((pde & !0x1f_ffff & !0xfff) + (gva & 0x1f_ffff), user));
        }
        let pte = lookup((pde & !0xfff) + ((gva >> 12) & 0x1ff) * 8)?;
        Some(((pte & !0xfff) + (gva & 0xfff), user && pte & USER != 0))
    }

    fn translate(entries: &[PageTableEntry], gva: u64) -> Option<u64> {
        walk(entries, gva).map(|(gpa, _)| gpa)
    }

    #[test]
    fn page_zero_is_supervisor_only_and_the_rest_user() {
        let e = identity_map_entries(64 << 20, false);
        assert_eq!(walk(&e, 0), Some((0, false)));
        assert_eq!(walk(&e, 0xfff), Some((0xfff, false)));
        for gva in [0x1000, 0x7000, 0x10_0000, 0x1f_ffff, 0x20_0000, 0x3f_ffff] {
            assert_eq!(walk(&e, gva), Some((gva, true)), "{gva:#x}");
        }
    }

    #[test]
    fn maps_ram_identically_and_nothing_above() {
        let mem = 3 * GIB + 64 * (1 << 20);
        let e = identity_map_entries(mem, false);
        for gva in [0, 0x1000, 0x10_0000, 0x3f_ffff, GIB + 5, mem - 1] {
            assert_eq!(translate(&e, gva), Some(gva), "{gva:#x}");
        }
        assert_eq!(translate(&e, mem), None);
        assert_eq!(translate(&e, 0xdead_0000_0000), None);
        assert_eq!(translate(&e, MMIO_BASE + 0x1004), Some(MMIO_BASE + 0x1004));
        assert_eq!(translate(&e, MMIO_BASE + MMIO_SIZE), None);
        let small = identity_map_entries(64 << 20, false);
        assert_eq!(translate(&small, (64 << 20) - 1), Some((64 << 20) - 1));
        assert_eq!(translate(&small, 64 << 20), None);
        assert_eq!(translate(&small, MMIO_BASE), Some(MMIO_BASE));
        assert_eq!(translate(&small, ARENA_BASE), None);
        let shared = identity_map_entries(64 << 20, true);
        assert_eq!(translate(&shared, ARENA_BASE + 8), Some(ARENA_BASE + 8));
        let last = ARENA_BASE + ARENA_SIZE - 1;
        assert_eq!(translate(&shared, last), Some(last));
        assert_eq!(translate(&shared, last + 1), None);
    }

    #[test]
    fn tables_fit_below_the_boot_image() {
        let e = identity_map_entries(crate::layout::MAX_MEM_SIZE, true);
        let highest = e.iter().map(|(a, _)| *a).max().unwrap();
        assert!(highest < crate::layout::IMAGE_BASE);
        assert!(
            highest < 0xf000,
            "page directories overlap what follows them"
        );
    }
}
