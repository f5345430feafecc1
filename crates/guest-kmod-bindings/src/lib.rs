//! The vmrpc guest <-> host ABI as `#[repr(C)]` Rust.
//!
//! `guest/include/vmrpc/abi.h` is the single source of truth; this crate mirrors
//! it, and `tests/abi_matches_header.rs` compiles the header with the system C
//! compiler and checks every size, offset and constant against these definitions.

#![no_std]

pub const VMRPC_ABI_VERSION: u32 = 1;

// ---- boot -------------------------------------------------------------------

pub const VMRPC_BOOT_MAGIC: u32 = 0x4252_4d56;
pub const VMRPC_IMAGE_BASE: u64 = 0x10_0000;
pub const VMRPC_MAX_VCPUS: u32 = 8;
pub const VMRPC_KERNEL_CS: u16 = 0x08;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BootInfo {
    pub magic: u32,
    pub abi_version: u32,
    pub mem_size: u64,
    pub vcpu_count: u32,
    pub argc: u32,
    pub argv: u64,
    pub shared_base: u64,
    pub shared_size: u64,
    pub heap_end: u64,
    pub tsc_khz: u64,
    pub reserved: [u64; 8],
}

// ---- MMIO ---------------------------------------------------------------------

pub const VMRPC_MMIO_BASE: u64 = 0xd000_0000;
pub const VMRPC_MMIO_SIZE: u64 = 0x20_0000;
pub const VMRPC_MMIO_CONSOLE: u64 = VMRPC_MMIO_BASE;
pub const VMRPC_MMIO_DEBUG_EXIT: u64 = VMRPC_MMIO_BASE + 0x1000;
pub const VMRPC_MMIO_DOORBELL: u64 = VMRPC_MMIO_BASE + 0x2000;
pub const VMRPC_MMIO_CONSOLE_WRITE: u64 = VMRPC_MMIO_BASE + 0x5000;

/// `VMRPC_CONSOLE_WRITE(gpa, len)`: the console write command's encoding.
pub const fn vmrpc_console_write(gpa: u64, len: u64) -> u64 {
    (len << 48) | (gpa & 0xffff_ffff_ffff)
}
pub const VMRPC_MMIO_EVQ_DOORBELL: u64 = VMRPC_MMIO_BASE + 0x3000;
pub const VMRPC_MMIO_CRASH: u64 = VMRPC_MMIO_BASE + 0x6000;

/// `struct vmrpc_crash_frame`: what the runtime's exception handler saw.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CrashFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub cr2: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}
pub const VMRPC_MMIO_YIELD: u64 = VMRPC_MMIO_BASE + 0x8000;
pub const VMRPC_YIELD_MAX_US: u32 = 4000;
pub const VMRPC_IRQ_VECTOR: u32 = 0x40;

// ---- rings ----------------------------------------------------------------------

/// Header of a single-producer single-consumer ring; entries follow it.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RingHdr {
    pub head: u32,
    pub producer_waiting: u32,
    pub producer_vcpu: u32,
    /// Host-written: 1 once the event queue is deleted.
    pub closed: u32,
    pub _pad0: [u32; 12],
    pub tail: u32,
    pub consumer_waiting: u32,
    pub consumer_vcpu: u32,
    pub _pad1: [u32; 13],
}

/// Byte offsets of the ring header fields (the VMM accesses them atomically).
pub mod ring_off {
    pub const HEAD: u64 = 0;
    pub const PRODUCER_WAITING: u64 = 4;
    pub const PRODUCER_VCPU: u64 = 8;
    pub const CLOSED: u64 = 12;
    pub const TAIL: u64 = 64;
    pub const CONSUMER_WAITING: u64 = 68;
    pub const CONSUMER_VCPU: u64 = 72;
}

// ---- VM RPC -----------------------------------------------------------------------

pub const VMRPC_SHARED_MAGIC: u32 = 0x5352_4d56;
pub const VMRPC_MAX_PAYLOAD: u32 = 65536;
pub const VMRPC_RPC_RING_ENTRIES: u32 = 8;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SharedHdr {
    pub magic: u32,
    pub abi_version: u32,
    pub vcpu_count: u32,
    pub ring_entries: u32,
    pub max_payload: u32,
    pub _pad0: u32,
    pub chan_offset: u64,
    pub chan_stride: u64,
    pub evq_offset: u64,
    pub evq_size: u64,
    pub _pad1: [u32; 2],
    pub host_sleeping: u32,
    pub _pad2: [u32; 15],
}

/// Offset of `SharedHdr::host_sleeping`.
pub const SHARED_HOST_SLEEPING_OFFSET: u64 = 64;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReqDesc {
    pub tag: u64,
    pub handle: u32,
    pub function: u32,
    pub req_off: u32,
    pub req_len: u32,
    pub resp_off: u32,
    pub resp_cap: u32,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RespDesc {
    pub tag: u64,
    pub status: i32,
    pub _pad: u32,
}

pub const VMRPC_CHAN_REQ_RING_OFFSET: u32 = 0;
pub const VMRPC_CHAN_RESP_RING_OFFSET: u32 = 512;
pub const VMRPC_CHAN_DATA_OFFSET: u32 = 4096;
pub const VMRPC_CHAN_DATA_SIZE: u32 = 2 * VMRPC_MAX_PAYLOAD;

pub const VMRPC_SYS_HANDLE: u32 = 0;
pub const VMRPC_SYS_BIND: u32 = 0;
pub const VMRPC_SYS_UNBIND: u32 = 1;
pub const VMRPC_SYS_OPEN_EVQ: u32 = 2;

/// `(major << 16) | minor`, as `VMRPC_VERSION` in the header.
pub const fn vmrpc_version(major: u32, minor: u32) -> u32 {
    (major << 16) | (minor & 0xffff)
}

pub const VMRPC_ENOMODULE: i32 = -1;
pub const VMRPC_ENOFUNC: i32 = -2;
pub const VMRPC_EHOSTFN: i32 = -3;
pub const VMRPC_ETOOBIG: i32 = -4;
pub const VMRPC_EGONE: i32 = -5;
pub const VMRPC_EBADHANDLE: i32 = -6;
pub const VMRPC_EINVAL: i32 = -7;
pub const VMRPC_ERANGE: i32 = -8;
pub const VMRPC_ESHUTDOWN: i32 = -9;
pub const VMRPC_ENODEV: i32 = -10;
pub const VMRPC_EFULL: i32 = -11;
pub const VMRPC_EEMPTY: i32 = -12;
pub const VMRPC_ENOQUEUE: i32 = -13;
pub const VMRPC_ELIMIT: i32 = -14;
pub const VMRPC_ETIMEDOUT: i32 = -15;

// ---- event queues ---------------------------------------------------------------------

pub const VMRPC_EVQ_MAX_ENTRIES: u32 = 65536;
pub const VMRPC_EVQ_MAX_EVENT_SIZE: u32 = 65536 - 8;

/// Ring slot size for a `max_event_size`, as `VMRPC_EVQ_SLOT_SIZE` in the header.
pub const fn vmrpc_evq_slot_size(max_event_size: u32) -> u32 {
    (max_event_size + 8 + 7) & !7
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EvqInfo {
    pub queue_id: u32,
    pub entries: u32,
    pub max_event_size: u32,
    pub slot_size: u32,
    pub g2h_offset: u64,
    pub h2g_offset: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EvSlot {
    pub len: u32,
    pub _pad: u32,
}

#[cfg(feature = "vm-memory")]
mod byte_valued {
    // SAFETY: every type below is #[repr(C)], made only of integers, with no
    // implicit padding (each size is asserted against the C header in tests), so
    // any byte pattern is a valid value.
    unsafe impl vm_memory::ByteValued for super::BootInfo {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for super::RingHdr {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for super::SharedHdr {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for super::ReqDesc {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for super::RespDesc {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for super::EvqInfo {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for super::EvSlot {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for super::CrashFrame {}
}

/// The few items of `guest/include/vmrpc/socket_proto.h` (the socket
/// outsourcing wire format) that the VMM's native socket data plane reads.
pub mod socket_proto {
    pub const VMRPC_SOCK_FN_SEND: u32 = 13;
    pub const VMRPC_SOCK_FN_RECV: u32 = 14;
    pub const VMRPC_SOCK_FN_SEND_BUF: u32 = 17;
    pub const VMRPC_SOCK_FN_RECV_BUF: u32 = 18;
    pub const VMRPC_SOCK_MAX_RECV: u32 = 65536 - 8;
    pub const VMRPC_SOCK_MAX_BUF: u32 = 1 << 20;

    /// `struct vmrpc_sock_buf_req`: SEND_BUF / RECV_BUF, a buffer in guest memory.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
    pub struct BufReq {
        pub handle: u32,
        pub len: u32,
        pub gpa: u64,
    }

    /// `struct vmrpc_sock_wait_req`: the request of SEND (data follows) and RECV.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
    pub struct WaitReq {
        pub handle: u32,
        pub flags: u32,
        pub timeout_ms: i32,
        pub arg: u32,
    }

    /// `struct vmrpc_sock_resp`: the head of every answer; `result < 0` is `-errno`.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
    pub struct Resp {
        pub result: i32,
        pub aux: u32,
    }
}
