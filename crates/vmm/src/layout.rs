//! The guest-physical address layout: every fixed address the VMM writes or maps.
//!
//! Guest RAM starts at GPA 0 and is identity-mapped (GVA == GPA) by page tables
//! the VMM builds, so the guest can use any address below `mem_size` as a pointer.
//! Everything above RAM is left unmapped: a stray guest pointer faults instead of
//! reaching an MMIO window by accident.

/// Global descriptor table: null, 64-bit code, data, TSS (8 bytes each).
pub const GDT_START: u64 = 0x500;
/// Number of GDT entries the VMM writes.
pub const GDT_ENTRIES: usize = 4;
/// Selector indices inside the GDT.
pub const GDT_CODE_INDEX: u16 = 1;
pub const GDT_DATA_INDEX: u16 = 2;
pub const GDT_TSS_INDEX: u16 = 3;

/// Boot-info block (`struct vmrpc_boot_info`), followed in the same page by the
/// guest's argv pointer array and argument strings.
pub const BOOT_INFO_START: u64 = 0x7000;
/// The boot-info page ends here; arguments that do not fit are a config error.
pub const BOOT_INFO_END: u64 = 0x8000;

/// Page tables: one PML4, one PDPT, and one page directory per GiB of RAM
/// (2 MiB pages), so RAM up to `MAX_MEM_SIZE` needs at most four PDs.
pub const PML4_START: u64 = 0x9000;
pub const PDPT_START: u64 = 0xa000;
pub const PD_START: u64 = 0xb000;

/// Images are linked at 1 MiB, above everything the VMM places in low memory.
pub const IMAGE_BASE: u64 = guest_kmod_bindings::VMRPC_IMAGE_BASE;

/// Size of the large pages that identity-map RAM.
pub const LARGE_PAGE_SIZE: u64 = 2 << 20;

/// Guest RAM bounds. The upper bound keeps RAM below the 32-bit MMIO hole and
/// within four page directories.
pub const MIN_MEM_SIZE: u64 = 8 << 20;
pub const MAX_MEM_SIZE: u64 = 3 << 30;

/// KVM on Intel needs three pages for the real-mode TSS; placed above RAM and
/// below 4 GiB where no guest memory can be (the same spot other VMMs use).
pub const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// Bytes the host reserves for event queues inside the shared region.
pub const EVQ_ARENA_SIZE: u64 = 2 << 20;

/// Where the VM RPC shared region lives: at the top of RAM, 2 MiB aligned, sized
/// for `vcpus` channels plus the event queue arena. Returns `(base, size)`.
pub fn shared_region(mem_size: u64, vcpus: u32) -> (u64, u64) {
    let chans = vcpus as u64 * chan_stride();
    let size = (CHAN_OFFSET + chans + EVQ_ARENA_SIZE).next_multiple_of(LARGE_PAGE_SIZE);
    (mem_size - size, size)
}

/// Offset of vCPU 0's channel inside the shared region.
pub const CHAN_OFFSET: u64 = 0x1000;

/// Bytes between consecutive vCPU channels: rings, then the data area.
pub const fn chan_stride() -> u64 {
    (guest_kmod_bindings::VMRPC_CHAN_DATA_OFFSET + guest_kmod_bindings::VMRPC_CHAN_DATA_SIZE) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_region_fits_in_the_smallest_vm() {
        let (base, size) = shared_region(MIN_MEM_SIZE, guest_kmod_bindings::VMRPC_MAX_VCPUS);
        assert_eq!(base + size, MIN_MEM_SIZE);
        assert_eq!(base % LARGE_PAGE_SIZE, 0);
        // Room for an image and eight 64 KiB stacks below it.
        assert!(base >= IMAGE_BASE + (2 << 20));
        assert!(CHAN_OFFSET + 8 * chan_stride() + EVQ_ARENA_SIZE <= size);
    }
}
