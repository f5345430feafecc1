//! The guest-physical address layout: every fixed address the VMM writes or maps.
//!
//! Guest RAM starts at GPA 0 and is identity-mapped (GVA == GPA) by page tables
//! the VMM builds, so the guest can use any address below `mem_size` as a pointer.
//! Everything above RAM is left unmapped: a stray guest pointer faults instead of
//! reaching an MMIO window by accident.

/// Global descriptor table: null, kernel code and data, user data and code
/// (in the order SYSRET expects), then one 16-byte TSS descriptor per vCPU.
pub const GDT_START: u64 = 0x500;
pub const GDT_KERNEL_CODE_INDEX: u16 = 1;
const _: () = assert!(GDT_KERNEL_CODE_INDEX * 8 == guest_kmod_bindings::VMRPC_KERNEL_CS);
pub const GDT_KERNEL_DATA_INDEX: u16 = 2;
pub const GDT_USER_DATA_INDEX: u16 = 3;
pub const GDT_USER_CODE_INDEX: u16 = 4;
/// vCPU i's TSS descriptor takes GDT slots `GDT_TSS_INDEX + 2 * i` and the next.
pub const GDT_TSS_INDEX: u16 = 5;
/// Number of 8-byte GDT slots the VMM writes.
pub const GDT_ENTRIES: usize = GDT_TSS_INDEX as usize + 2 * MAX_VCPUS as usize;

/// The IDT page. The VMM points every vCPU's IDTR here and leaves it empty; the
/// guest runtime fills in the gates it needs (they are plain memory writes, so
/// it can do that from ring 3).
pub const IDT_START: u64 = 0x1000;
pub const IDT_LIMIT: u16 = 256 * 16 - 1;

/// One 64-bit TSS per vCPU, `TSS_STRIDE` apart. Only RSP0 matters: the stack an
/// interrupt or `int` from ring 3 switches to.
pub const TSS_START: u64 = 0x2000;
pub const TSS_STRIDE: u64 = 128;
pub const TSS_LIMIT: u32 = 103;

/// The page table that maps the first 2 MiB in 4 KiB pages, so that page 0 can
/// be supervisor-only: the CPU still reads the GDT there, while a NULL pointer
/// dereference in the (ring-3) guest faults.
pub const LOW_PT_START: u64 = 0x4000;

/// Per-vCPU pages the GS base points at: the first 8 bytes hold the vCPU index
/// (the guest reads it with one `%gs:0` load), the rest belongs to the guest
/// (the runtime puts its thread index, `rt_thread_id`, over bytes 4..8).
pub const PERCPU_START: u64 = 0x10000;
pub const PERCPU_SIZE: u64 = 0x1000;

/// Ring-0 stacks, one per vCPU, used only by interrupt and halt handlers.
pub const KERNEL_STACKS_START: u64 = 0x20000;
pub const KERNEL_STACK_SIZE: u64 = 0x4000;

const MAX_VCPUS: u32 = guest_kmod_bindings::VMRPC_MAX_VCPUS;

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

/// The device window: every device is memory-mapped, because the guest runs in
/// ring 3 where port I/O is not available (see `arch::vcpu_state`).
pub const MMIO_BASE: u64 = guest_kmod_bindings::VMRPC_MMIO_BASE;
pub const MMIO_SIZE: u64 = guest_kmod_bindings::VMRPC_MMIO_SIZE;
const _: () = assert!(
    MAX_MEM_SIZE <= MMIO_BASE,
    "RAM must end below the MMIO window"
);

/// The loopback arena of a multi-program Linux VM (`arena`): at the start of the
/// GiB that holds the MMIO window, above the largest RAM and below the window, so
/// it has the same address in every program's VM whatever their memory sizes.
pub const ARENA_BASE: u64 = MAX_MEM_SIZE;
pub const ARENA_SIZE: u64 = 64 << 20;
const _: () = assert!(ARENA_BASE + ARENA_SIZE <= MMIO_BASE);
const _: () = assert!(
    ARENA_BASE.is_multiple_of(LARGE_PAGE_SIZE) && ARENA_SIZE.is_multiple_of(LARGE_PAGE_SIZE)
);

/// Whether `[gpa, gpa + len)` lies in the loopback arena's range.
pub fn in_arena(gpa: u64, len: u64) -> bool {
    gpa >= ARENA_BASE
        && gpa
            .checked_add(len)
            .is_some_and(|end| end <= ARENA_BASE + ARENA_SIZE)
}

/// Bytes the host reserves for event queues inside the shared region.
pub const EVQ_ARENA_SIZE: u64 = 2 << 20;

/// Where the VM RPC shared region lives: at the top of RAM, 2 MiB aligned, sized
/// for `channels` channels (`VmConfig::rpc_channels`) plus the event queue
/// arena. Returns `(base, size)`. Channels nobody uses are never touched, so
/// they cost address space, not host memory.
pub fn shared_region(mem_size: u64, channels: u32) -> (u64, u64) {
    let size = shared_region_size(channels);
    (mem_size.saturating_sub(size), size)
}

/// The shared region's size for `channels` channels.
pub fn shared_region_size(channels: u32) -> u64 {
    let chans = channels as u64 * chan_stride();
    (CHAN_OFFSET + chans + EVQ_ARENA_SIZE).next_multiple_of(LARGE_PAGE_SIZE)
}

/// The least RAM a VM with `channels` channels needs: the shared region, and
/// below it the low areas and room for an image (4 MiB, as `MIN_MEM_SIZE`
/// leaves with eight channels).
pub fn min_mem_size(channels: u32) -> u64 {
    MIN_MEM_SIZE.max(shared_region_size(channels) + (4 << 20))
}

/// Offset of channel 0 inside the shared region.
pub const CHAN_OFFSET: u64 = 0x1000;

/// Bytes between consecutive channels: rings, then the data area.
pub const fn chan_stride() -> u64 {
    (guest_kmod_bindings::VMRPC_CHAN_DATA_OFFSET + guest_kmod_bindings::VMRPC_CHAN_DATA_SIZE) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_memory_areas_do_not_overlap() {
        let max = MAX_VCPUS as u64;
        let areas = [
            (GDT_START, GDT_ENTRIES as u64 * 8),
            (IDT_START, IDT_LIMIT as u64 + 1),
            (TSS_START, max * TSS_STRIDE),
            (LOW_PT_START, 0x1000),
            (BOOT_INFO_START, BOOT_INFO_END - BOOT_INFO_START),
            (PML4_START, 0x1000),
            (PDPT_START, 0x1000),
            (PD_START, 4 * 0x1000),
            (PERCPU_START, max * PERCPU_SIZE),
            (KERNEL_STACKS_START, max * KERNEL_STACK_SIZE),
        ];
        for (i, a) in areas.iter().enumerate() {
            assert!(a.0 + a.1 <= IMAGE_BASE, "area {i} reaches the image");
            for b in &areas[i + 1..] {
                assert!(
                    a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0,
                    "{a:x?} overlaps {b:x?}"
                );
            }
        }
    }

    #[test]
    fn shared_region_fits_in_the_smallest_vm() {
        let (base, size) = shared_region(MIN_MEM_SIZE, guest_kmod_bindings::VMRPC_MAX_VCPUS);
        assert_eq!(base + size, MIN_MEM_SIZE);
        assert_eq!(base % LARGE_PAGE_SIZE, 0);
        // Room for an image and eight 64 KiB stacks below it.
        assert!(base >= IMAGE_BASE + (2 << 20));
        assert!(CHAN_OFFSET + 8 * chan_stride() + EVQ_ARENA_SIZE <= size);
        assert_eq!(min_mem_size(8), MIN_MEM_SIZE);
    }

    #[test]
    fn a_channel_per_guest_thread_fits_in_its_minimum() {
        let channels = guest_kmod_bindings::VMRPC_MAX_CHANNELS;
        let mem = min_mem_size(channels);
        let (base, size) = shared_region(mem, channels);
        assert_eq!(base + size, mem);
        assert!(base >= IMAGE_BASE + (2 << 20));
        assert!(CHAN_OFFSET + channels as u64 * chan_stride() + EVQ_ARENA_SIZE <= size);
    }
}
