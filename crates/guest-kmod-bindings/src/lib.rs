//! The vmrpc guest <-> host ABI, defined once, as `#[repr(C)]` Rust.
//!
//! `src/abi.rs` (boot, MMIO, rings, VM RPC, event queues) and
//! `src/socket_proto.rs` (the sockets host module's wire format) are the single
//! source of every ABI constant and structure:
//! - C: cbindgen writes them into `guest/include/vmrpc/abi_gen.h` and
//!   `socket_proto_gen.h`, which the hand-written SDK headers include (`make abi`;
//!   `tests/c_headers_are_generated.rs` fails when a committed header differs);
//! - Python: build.rs lists every constant and every field (offset, size, type)
//!   in [`table`], which the extension exports and `vmrpc.abi` turns into
//!   struct formats;
//! - `tests/abi_matches_header.rs` compiles the C headers and compares every
//!   entry of the table, and the few things C states by hand (function-like
//!   macros, limits written with `sizeof`), with this crate.
//!
//! The VMM uses the Rust names below; the C names are the types' own.

#![no_std]

pub mod abi;
pub mod socket_proto;
pub mod table;

pub use abi::*;

use core::mem::offset_of;

pub type BootInfo = vmrpc_boot_info;
pub type CrashFrame = vmrpc_crash_frame;
pub type RingHdr = vmrpc_ring;
pub type SharedHdr = vmrpc_shared_hdr;
pub type ReqDesc = vmrpc_req_desc;
pub type RespDesc = vmrpc_resp_desc;
pub type EvqInfo = vmrpc_evq_info;
pub type EvSlot = vmrpc_ev_slot;

/// `VMRPC_CONSOLE_WRITE(gpa, len)`: the console write command's encoding
/// (len, < 65536, in bits 48..63, the guest address below).
pub const fn vmrpc_console_write(gpa: u64, len: u64) -> u64 {
    (len << 48) | (gpa & 0xffff_ffff_ffff)
}

/// `VMRPC_VERSION(major, minor)`: a module version, `(major << 16) | minor`.
pub const fn vmrpc_version(major: u32, minor: u32) -> u32 {
    (major << 16) | (minor & 0xffff)
}

/// The inverse of [`vmrpc_version`]: `(major, minor)`.
pub const fn vmrpc_version_parts(version: u32) -> (u32, u32) {
    (version >> 16, version & 0xffff)
}

/// `VMRPC_EVQ_SLOT_SIZE(max_event_size)`: slot header plus payload, 8-aligned.
pub const fn vmrpc_evq_slot_size(max_event_size: u32) -> u32 {
    (max_event_size + size_of::<vmrpc_ev_slot>() as u32 + 7) & !7
}

/// Byte offsets of the ring header fields (the VMM accesses them atomically).
pub mod ring_off {
    use super::{offset_of, vmrpc_ring};

    pub const HEAD: u64 = offset_of!(vmrpc_ring, head) as u64;
    pub const PRODUCER_WAITING: u64 = offset_of!(vmrpc_ring, producer_waiting) as u64;
    pub const PRODUCER_VCPU: u64 = offset_of!(vmrpc_ring, producer_vcpu) as u64;
    pub const CLOSED: u64 = offset_of!(vmrpc_ring, closed) as u64;
    pub const TAIL: u64 = offset_of!(vmrpc_ring, tail) as u64;
    pub const CONSUMER_WAITING: u64 = offset_of!(vmrpc_ring, consumer_waiting) as u64;
    pub const CONSUMER_VCPU: u64 = offset_of!(vmrpc_ring, consumer_vcpu) as u64;
}

/// Offset of `vmrpc_shared_hdr.host_sleeping` (the VMM accesses it atomically).
pub const SHARED_HOST_SLEEPING_OFFSET: u64 = offset_of!(vmrpc_shared_hdr, host_sleeping) as u64;
pub const SHARED_CHANS_IN_USE_OFFSET: u64 = offset_of!(vmrpc_shared_hdr, chans_in_use) as u64;

// The layout facts the protocol relies on beyond the fields themselves.
const _: () = {
    assert!(size_of::<vmrpc_ring>() == 128);
    assert!(
        offset_of!(vmrpc_ring, tail) == 64,
        "the consumer's cache line"
    );
    assert!(
        offset_of!(vmrpc_shared_hdr, host_sleeping) == 64,
        "the host's cache line"
    );
    assert!(
        VMRPC_CHAN_REQ_RING_OFFSET as usize
            + size_of::<vmrpc_ring>()
            + VMRPC_RPC_RING_ENTRIES as usize * size_of::<vmrpc_req_desc>()
            <= VMRPC_CHAN_RESP_RING_OFFSET as usize,
        "the request ring fits"
    );
    assert!(
        VMRPC_CHAN_RESP_RING_OFFSET as usize
            + size_of::<vmrpc_ring>()
            + VMRPC_RPC_RING_ENTRIES as usize * size_of::<vmrpc_resp_desc>()
            <= VMRPC_CHAN_DATA_OFFSET as usize,
        "the response ring fits"
    );
    assert!(vmrpc_evq_slot_size(VMRPC_EVQ_MAX_EVENT_SIZE) == 65536);
};

#[cfg(feature = "vm-memory")]
mod byte_valued {
    use super::socket_proto::{
        vmrpc_sock_addr, vmrpc_sock_addr_resp, vmrpc_sock_buf_req, vmrpc_sock_connect_req,
        vmrpc_sock_handle_req, vmrpc_sock_resp, vmrpc_sock_sockopt_req,
    };
    use super::*;

    // SAFETY: every type below is #[repr(C)], made only of integers, with no
    // implicit padding (tests/abi_matches_header.rs checks that the fields of
    // each cover it without a gap), so any byte pattern is a valid value.
    unsafe impl vm_memory::ByteValued for vmrpc_boot_info {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for vmrpc_ring {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for vmrpc_shared_hdr {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for vmrpc_req_desc {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for vmrpc_resp_desc {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for vmrpc_evq_info {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for vmrpc_ev_slot {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for vmrpc_crash_frame {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for vmrpc_sockio_req {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for vmrpc_rpc_wait {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for vmrpc_sock_buf_req {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for vmrpc_sock_resp {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for vmrpc_sock_handle_req {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for vmrpc_sock_sockopt_req {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for vmrpc_sock_addr {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for vmrpc_sock_addr_resp {}
    // SAFETY: as above.
    unsafe impl vm_memory::ByteValued for vmrpc_sock_connect_req {}
}
