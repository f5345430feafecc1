//! The vmrpc guest <-> host ABI: boot, MMIO, rings, VM RPC and event queues.
//!
//! This file is the single source of the ABI. cbindgen turns it into
//! `guest/include/vmrpc/abi_gen.h` (`make abi`; a test fails when the committed
//! header differs), build.rs turns it into the table the Python package reads
//! its constants and layouts from. Types carry their C names, so the header,
//! the table and this file say the same words; `lib.rs` gives the VMM its Rust
//! names. The prose (boot protocol, MMIO map, ring protocol) is in
//! `guest/include/vmrpc/abi.h`.
//!
//! Integer literals carry their C type as a suffix (`_u32` becomes `u`, `_u64`
//! `ull` in C), so the C macros keep the types the guest code was written for.

#![allow(non_camel_case_types)]

/// Version of this ABI, in `vmrpc_boot_info.abi_version` and `vmrpc_shared_hdr.abi_version`.
pub const VMRPC_ABI_VERSION: u32 = 1_u32;

// ---- boot ------------------------------------------------------------------

/// `vmrpc_boot_info.magic`: "VMRB" (0x42524d56).
pub const VMRPC_BOOT_MAGIC: u32 = 0x4252_4d56_u32;

/// Where the VMM loads images (0x100000): ELF images are linked at this address.
pub const VMRPC_IMAGE_BASE: u64 = 0x10_0000_u64;

/// The VMM runs at most this many vCPUs per VM.
pub const VMRPC_MAX_VCPUS: u32 = 8_u32;

/// VM RPC channels a VM has at most: one per guest thread (a Linux program's
/// threads, LX_MAX_THREADS), or one per vCPU for bare guests.
pub const VMRPC_MAX_CHANNELS: u32 = 64_u32;

/// What the guest finds at the address in `rdi` when a vCPU starts.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_boot_info {
    /// VMRPC_BOOT_MAGIC
    pub magic: u32,
    /// VMRPC_ABI_VERSION
    pub abi_version: u32,
    /// Bytes of guest RAM, identity-mapped from GPA 0.
    pub mem_size: u64,
    pub vcpu_count: u32,
    pub argc: u32,
    /// GPA of char *argv[argc + 1], NULL-terminated.
    pub argv: u64,
    /// GPA of the VM RPC shared region (0: none).
    pub shared_base: u64,
    /// Bytes of the VM RPC shared region.
    pub shared_size: u64,
    /// First GPA the guest must not allocate from.
    pub heap_end: u64,
    /// TSC frequency as KVM reports it, 0 if unknown.
    pub tsc_khz: u64,
    /// GPA (and, identity-mapped, address) of the VM-wide loopback arena shared by
    /// every program of a multi-program Linux VM (docs/linux.md); 0: none.
    pub arena_base: u64,
    /// Bytes of the loopback arena.
    pub arena_size: u64,
    pub reserved: [u64; 6],
}

/// Ring-0 code selector for IDT gates (0x08); ring-3 selectors at entry are 0x23/0x1b.
pub const VMRPC_KERNEL_CS: u16 = 0x08;

// ---- MMIO ---------------------------------------------------------------------

/// The MMIO window (0xd0000000, 2 MiB), mapped uncached for ring 3.
pub const VMRPC_MMIO_BASE: u64 = 0xd000_0000_u64;
pub const VMRPC_MMIO_SIZE: u64 = 0x20_0000_u64;
/// 16550 UART registers, one byte apart (transmit holding register at offset 0).
pub const VMRPC_MMIO_CONSOLE: u64 = VMRPC_MMIO_BASE;
/// A 32-bit write ends the VM with that exit code.
pub const VMRPC_MMIO_DEBUG_EXIT: u64 = VMRPC_MMIO_BASE + 0x1000;
/// Any write wakes the host RPC engine (an ioeventfd: no exit to the VMM's user space).
pub const VMRPC_MMIO_DOORBELL: u64 = VMRPC_MMIO_BASE + 0x2000;
/// A 32-bit write of an event queue's queue_id wakes the host side of that queue.
pub const VMRPC_MMIO_EVQ_DOORBELL: u64 = VMRPC_MMIO_BASE + 0x3000;
/// A 64-bit write of VMRPC_CONSOLE_WRITE(gpa, len) appends guest memory
/// [gpa, gpa + len) to the console: one exit per line instead of one per byte.
pub const VMRPC_MMIO_CONSOLE_WRITE: u64 = VMRPC_MMIO_BASE + 0x5000;
/// A 64-bit write of the guest address of a struct vmrpc_crash_frame: the
/// runtime's exception handlers report a crash; the VMM ends the VM with it.
pub const VMRPC_MMIO_CRASH: u64 = VMRPC_MMIO_BASE + 0x6000;
/// A 32-bit write of N gives the host CPU away: the vCPU sleeps N microseconds
/// (at most VMRPC_YIELD_MAX_US; 0: just yields the host CPU).
pub const VMRPC_MMIO_YIELD: u64 = VMRPC_MMIO_BASE + 0x8000;
pub const VMRPC_YIELD_MAX_US: u32 = 4000_u32;
/// A 64-bit write of the guest address of a struct vmrpc_sockio_req: the vCPU's
/// own host thread moves bytes between a host socket of the "sockets" module
/// (its native data plane) and guest memory, and may wait for them, before the
/// write returns (`devices/sock_io.rs`). Large receives and sends take it: one
/// copy, on the vCPU's core, no RPC engine thread.
pub const VMRPC_MMIO_SOCKIO: u64 = VMRPC_MMIO_BASE + 0x9000;
/// The same request written at VMRPC_MMIO_SOCKIO + this offset may wait
/// (timeout_ms != 0): a Linux VM's thread pool gives the vCPU to another guest
/// thread meanwhile, so the writer must hold no spinlock and no per-vCPU state
/// across it (it may come back on another vCPU).
pub const VMRPC_SOCKIO_MAY_WAIT: u64 = 8;
/// vmrpc_sockio_req.flags: send [gpa, gpa + len) (else receive into it).
pub const VMRPC_SOCKIO_SEND: u32 = 1_u32;
/// Receive: leave the bytes queued (MSG_PEEK); never with a second buffer.
pub const VMRPC_SOCKIO_PEEK: u32 = 2_u32;
/// Receive: wait until the first buffer is full, end of stream or an error
/// (MSG_WAITALL); the timeout still applies.
pub const VMRPC_SOCKIO_WAITALL: u32 = 4_u32;
pub const VMRPC_SOCKIO_FLAGS: u32 = VMRPC_SOCKIO_SEND | VMRPC_SOCKIO_PEEK | VMRPC_SOCKIO_WAITALL;
/// Most bytes one request moves (len + len2); the guest loops for more.
pub const VMRPC_SOCKIO_MAX: u32 = 4_u32 << 20;
/// A 64-bit write of the guest address of a struct vmrpc_rpc_wait: the calling
/// thread waits in the host for an answer on its channel's response ring
/// (`rpc/wait.rs`). Its vCPU runs other guest threads meanwhile (M:N threads).
pub const VMRPC_MMIO_RPC_WAIT: u64 = VMRPC_MMIO_BASE + 0xa000;

/// A socket I/O exit (VMRPC_MMIO_SOCKIO). The host copies it once, validates
/// it, and writes only `result`. A receive fills [gpa, gpa + len) first and
/// only then, in the same system call, [gpa2, gpa2 + len2) (the guest's
/// read-ahead); a send takes len2 = 0.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_sockio_req {
    /// The guest's handle of the "sockets" module (bind_module).
    pub module: u32,
    /// The socket's handle in that module.
    pub handle: u32,
    /// VMRPC_SOCKIO_*.
    pub flags: u32,
    /// -1: wait without limit; 0: never wait (-EAGAIN); > 0: at most that long.
    pub timeout_ms: i32,
    pub gpa: u64,
    pub len: u32,
    pub len2: u32,
    pub gpa2: u64,
    /// Written by the host: bytes moved (0: end of stream), or -errno
    /// (-EOPNOTSUPP: not a native-data-plane socket, use the module's RPCs;
    /// -EINTR: the VM is stopping).
    pub result: i64,
}

/// A wait for an answer (VMRPC_MMIO_RPC_WAIT). The host copies it once,
/// checks the channel, and returns when that channel's response ring head
/// (the host's own copy) is no longer `seen_head`, or the VM stops. Only
/// `result` is written back: 0, VMRPC_EINVAL (no such channel) or
/// VMRPC_ESHUTDOWN (the VM is stopping).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_rpc_wait {
    /// The caller's channel (index into the shared region's channels).
    pub channel: u32,
    /// The response ring head the caller saw (equal to its tail: nothing to read).
    pub seen_head: u32,
    pub result: i64,
}

/// What a ring-0 exception handler of the runtime saw (guest/rt/irq.S builds it
/// on the ring-0 stack, lowest address first): the general registers of the
/// faulting code, cr2, the vector, the error code (0 for vectors without one),
/// then the frame the CPU pushed. The VMM copies it once and only reports it.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_crash_frame {
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

/// Interrupt vector the host uses to wake a vCPU waiting for a response or event.
pub const VMRPC_IRQ_VECTOR: u32 = 0x40_u32;

// ---- rings ----------------------------------------------------------------------

/// A single-producer single-consumer ring. head and tail are free-running
/// counters (wrap at 2^32); entry k lives at slot k % entries, right after this
/// header. The number of entries and the entry size are fixed by the host and
/// never read back from shared memory by the host. The producer owns cache
/// line 0, the consumer cache line 1. Both sides access the fields with atomic
/// loads and stores.
///
/// producer_waiting / consumer_waiting: "I am about to sleep; notify me". A
/// side sets its flag, issues a full barrier, re-checks the ring, and only then
/// sleeps. The other side, after publishing, issues a full barrier and reads
/// the flag. The *_vcpu fields name the vCPU to interrupt when the guest is
/// that side.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_ring {
    /// Written by the producer.
    pub head: u32,
    /// The producer is blocked on a full ring.
    pub producer_waiting: u32,
    pub producer_vcpu: u32,
    /// Host-written: 1 once the event queue is deleted (0 for the RPC rings).
    pub closed: u32,
    pub _pad0: [u32; 12],
    /// Written by the consumer.
    pub tail: u32,
    /// The consumer is blocked on an empty ring.
    pub consumer_waiting: u32,
    pub consumer_vcpu: u32,
    pub _pad1: [u32; 13],
}

// ---- VM RPC -----------------------------------------------------------------------

/// `vmrpc_shared_hdr.magic`: "VMRS" (0x53524d56).
pub const VMRPC_SHARED_MAGIC: u32 = 0x5352_4d56_u32;
/// Bytes per request and per response; every payload limit derives from it.
pub const VMRPC_MAX_PAYLOAD: u32 = 65536_u32;
pub const VMRPC_RPC_RING_ENTRIES: u32 = 8_u32;

/// The head of the VM RPC shared region (at boot_info.shared_base).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_shared_hdr {
    /// VMRPC_SHARED_MAGIC
    pub magic: u32,
    pub abi_version: u32,
    pub vcpu_count: u32,
    /// VMRPC_RPC_RING_ENTRIES
    pub ring_entries: u32,
    /// VMRPC_MAX_PAYLOAD
    pub max_payload: u32,
    /// Channels in the region (>= vcpu_count, <= VMRPC_MAX_CHANNELS): one per
    /// vCPU for bare guests, one per guest thread for Linux programs.
    pub chan_count: u32,
    /// Offset of channel 0.
    pub chan_offset: u64,
    /// Bytes between consecutive channels.
    pub chan_stride: u64,
    /// The event queue arena.
    pub evq_offset: u64,
    pub evq_size: u64,
    /// Written by the guest: 1 + the highest channel it has set up. The RPC
    /// engine polls channels below max(this, vcpu_count) only, so a Linux VM's
    /// 64 per-thread channels cost a single-threaded program nothing. Clamped
    /// by the host; a guest that lowers it only stops its own calls.
    pub chans_in_use: u32,
    pub _pad1: u32,
    /// Cache line 1, written by the host only. 1: the RPC engine sleeps, ring
    /// the doorbell.
    pub host_sleeping: u32,
    pub _pad2: [u32; 15],
}

/// A request: what the guest pushes onto its request ring.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_req_desc {
    /// Echoed in the response.
    pub tag: u64,
    /// From bind_module; 0 is the system module.
    pub handle: u32,
    pub function: u32,
    /// Request bytes: data area [req_off, req_off + req_len).
    pub req_off: u32,
    pub req_len: u32,
    /// Response buffer: data area [resp_off, resp_off + resp_cap).
    pub resp_off: u32,
    pub resp_cap: u32,
}

/// A response: what the host pushes onto the vCPU's response ring.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_resp_desc {
    /// The request's tag.
    pub tag: u64,
    /// >= 0: response length; < 0: VMRPC_E*.
    pub status: i32,
    pub _pad: u32,
}

/// Per-vCPU channel: each ring's entries follow its header directly.
pub const VMRPC_CHAN_REQ_RING_OFFSET: u32 = 0_u32;
pub const VMRPC_CHAN_RESP_RING_OFFSET: u32 = 512_u32;
pub const VMRPC_CHAN_DATA_OFFSET: u32 = 4096_u32;
pub const VMRPC_CHAN_DATA_SIZE: u32 = 2 * VMRPC_MAX_PAYLOAD;

/// The system module: handle 0, always bound.
pub const VMRPC_SYS_HANDLE: u32 = 0_u32;
/// req: u32 version, then the name (no NUL); resp: u32 handle.
pub const VMRPC_SYS_BIND: u32 = 0_u32;
/// req: u32 handle; resp: empty.
pub const VMRPC_SYS_UNBIND: u32 = 1_u32;
/// req: the queue name; resp: struct vmrpc_evq_info.
pub const VMRPC_SYS_OPEN_EVQ: u32 = 2_u32;

/// No module of that name and compatible version.
pub const VMRPC_ENOMODULE: i32 = -1;
/// The module has no such function.
pub const VMRPC_ENOFUNC: i32 = -2;
/// The host function raised; the host logged it.
pub const VMRPC_EHOSTFN: i32 = -3;
/// Request larger than VMRPC_MAX_PAYLOAD.
pub const VMRPC_ETOOBIG: i32 = -4;
/// The module was unregistered.
pub const VMRPC_EGONE: i32 = -5;
/// The handle is not bound (never was, or unbound).
pub const VMRPC_EBADHANDLE: i32 = -6;
/// Malformed request (bad offsets, lengths, arguments).
pub const VMRPC_EINVAL: i32 = -7;
/// The response is larger than resp_cap.
pub const VMRPC_ERANGE: i32 = -8;
/// The VM is stopping.
pub const VMRPC_ESHUTDOWN: i32 = -9;
/// The VMM offers no VM RPC (no shared region).
pub const VMRPC_ENODEV: i32 = -10;
/// Event queue full (non-blocking put).
pub const VMRPC_EFULL: i32 = -11;
/// Event queue empty (non-blocking get).
pub const VMRPC_EEMPTY: i32 = -12;
/// No event queue of that name, or it was deleted.
pub const VMRPC_ENOQUEUE: i32 = -13;
/// A per-VM limit is reached (bound module handles: 4096).
pub const VMRPC_ELIMIT: i32 = -14;
/// The host function exceeded its time limit.
pub const VMRPC_ETIMEDOUT: i32 = -15;

// ---- event queues (host-created, in the event queue arena) ------------------------

pub const VMRPC_EVQ_MAX_ENTRIES: u32 = 65536_u32;
/// Payload bytes per event at most: a slot (header and payload) fits 64 KiB.
pub const VMRPC_EVQ_MAX_EVENT_SIZE: u32 = 65536_u32 - 8;

/// What VMRPC_SYS_OPEN_EVQ answers: where a queue's rings are.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_evq_info {
    pub queue_id: u32,
    /// Per direction, a power of two.
    pub entries: u32,
    /// Payload bytes per event.
    pub max_event_size: u32,
    /// Bytes per ring slot: 8-byte header + payload, 8-aligned.
    pub slot_size: u32,
    /// Guest->host ring, from shared_base.
    pub g2h_offset: u64,
    /// Host->guest ring, from shared_base.
    pub h2g_offset: u64,
}

/// Each event-ring slot starts with this header; the payload follows.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_ev_slot {
    pub len: u32,
    pub _pad: u32,
}
