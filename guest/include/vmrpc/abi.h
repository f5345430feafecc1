/*
 * vmrpc guest <-> host ABI.  This header is the specification: the Rust mirror
 * in crates/guest-kmod-bindings must agree with it, and a test compiles this
 * header and compares every size and offset against the Rust side.
 *
 * Everything here is little-endian x86_64.  Guest-physical addresses (GPA) equal
 * guest-virtual addresses: the VMM identity-maps guest RAM.
 *
 * Boot protocol
 * -------------
 * Every vCPU starts in 64-bit long mode, in ring 3, at the ELF entry point with:
 *   rdi = GPA of struct vmrpc_boot_info (shared by all vCPUs, read-only by convention)
 *   rsi = index of this vCPU (0 .. vcpu_count-1); it is also the vCPU's x2APIC id
 *   rsp = 0: the guest sets up its own stack before any call
 *   rflags = 0x2: interrupts off (they stay off in ring 3; the runtime takes
 *            them only inside its ring-0 halt gate)
 *   CS = 0x23 (ring-3 64-bit code), SS/DS/ES/FS = 0x1b (ring-3 data)
 *   GS base = a 4 KiB per-vCPU page whose first 8 bytes hold the vCPU index;
 *             the rest of the page belongs to the guest
 *   IDTR = an empty 4 KiB IDT page the guest fills in (read its address with
 *          sidt); gates use the ring-0 code selector VMRPC_KERNEL_CS
 *   TR = this vCPU's TSS, whose RSP0 is a VMM-provided ring-0 stack: interrupts
 *        and `int` from ring 3 run their handlers on it
 *   the x2APIC is enabled and software-enabled (SVR = 0x1ff); EOI is a wrmsr to
 *   0x80b, so it must happen in a ring-0 handler
 *   every page is a user page; privileged instructions (hlt, wrmsr, lidt,
 *   in/out) need a ring-0 handler reached through an IDT gate, which is why
 *   every device is memory-mapped (below)
 *
 * Why ring 3: on PVM, this project's nested KVM, ring-0 guest code is emulated
 * instruction by instruction (about 4 us per loop iteration measured here) while
 * ring-3 code runs natively; on hardware KVM both are native.

 * MMIO map (the VMM maps this 2 MiB window uncached for ring 3)
 *   VMRPC_MMIO_CONSOLE     16550 UART registers, one byte apart (transmit
 *                          holding register at offset 0)
 *   VMRPC_MMIO_DEBUG_EXIT  a 32-bit write ends the VM with that exit code
 *   VMRPC_MMIO_CONSOLE_WRITE  a 64-bit write of VMRPC_CONSOLE_WRITE(gpa, len)
 *                          appends guest memory [gpa, gpa + len) to the console:
 *                          one exit per line instead of one per byte
 *   VMRPC_MMIO_DOORBELL    any write wakes the host RPC engine; backed by an
 *                          ioeventfd, so it does not exit to the VMM's user space
 *   VMRPC_MMIO_EVQ_DOORBELL  a 32-bit write of an event queue's queue_id wakes
 *                          the host side of that queue (see "Event queues")
 *   VMRPC_MMIO_CRASH       a 64-bit write of the guest address of a
 *                          struct vmrpc_crash_frame: the runtime's exception
 *                          handlers report a crash; the VMM ends the VM with it
 *   VMRPC_MMIO_YIELD       a 32-bit write of N gives the host CPU away: the
 *                          vCPU sleeps N microseconds (at most
 *                          VMRPC_YIELD_MAX_US; 0: just yields the host CPU).
 *                          For waits no interrupt can end (see vmrpc/backoff.h)
 *
 * VM RPC shared region (at boot_info.shared_base, boot_info.shared_size bytes)
 * ---------------------------------------------------------------------------
 *   [0, 4096)                           struct vmrpc_shared_hdr
 *   [chan_offset + i * chan_stride, ..) struct vmrpc_chan of vCPU i, followed by
 *                                       its data area (VMRPC_CHAN_DATA_OFFSET)
 *   [evq_offset, evq_offset + evq_size) event queue arena (host-managed)
 *
 * A call: the guest copies its request into its data area, pushes a
 * struct vmrpc_req_desc onto its request ring, and writes the doorbell only if
 * shared_hdr.host_sleeping is set (read after a full barrier).  The host pushes a
 * struct vmrpc_resp_desc onto the same vCPU's response ring and injects the
 * interrupt VMRPC_IRQ_VECTOR only if that ring's consumer_waiting is set (read
 * after a full barrier).  Both sides use the Dekker pattern: "publish, full
 * barrier, read the other side's sleep flag", so no wakeup is lost.
 *
 * Event queues (in the event queue arena)
 * ---------------------------------------
 * The host creates a queue (make_ev_queue) with a name, a capacity (a power of
 * two, 1..65536 events per direction) and a max_event_size (1..65528 bytes).
 * The guest finds it by name with the system call VMRPC_SYS_OPEN_EVQ, which
 * answers a struct vmrpc_evq_info; the guest validates it (both rings inside
 * the arena, slot_size == align8(8 + max_event_size)) before using it.
 *
 * A queue is two struct vmrpc_ring rings of `entries` slots, `slot_size` bytes
 * each, right after the ring header: g2h (the guest produces, the host
 * consumes) and h2g (the host produces, the guest consumes).  A slot is a
 * struct vmrpc_ev_slot (len = payload bytes, <= max_event_size) followed by the
 * payload.  head and tail are free-running as for every ring; the host keeps
 * its own copy of the index it owns and validates the one it reads (and every
 * len) on each operation.
 *
 * Notifications, Dekker style as above, only when the other side sleeps:
 *  - the guest, after publishing (head of g2h, or tail of h2g) and a full
 *    barrier, writes queue_id to VMRPC_MMIO_EVQ_DOORBELL if the host side set
 *    the flag it would wait on (g2h.consumer_waiting, h2g.producer_waiting);
 *    the VMM registers one ioeventfd per queue with datamatch = queue_id, so
 *    the write does not exit to the VMM's user space;
 *  - the host, after publishing (tail of g2h, head of h2g) and a full barrier,
 *    interrupts vCPU g2h.producer_vcpu if g2h.producer_waiting, or vCPU
 *    h2g.consumer_vcpu if h2g.consumer_waiting (VMRPC_IRQ_VECTOR).
 * A guest that waits sets its flag and *_vcpu, issues a full barrier,
 * re-checks the ring and `closed`, and halts with rt_halt_if_equal on the index
 * the other side moves (g2h.tail or h2g.head).
 *
 * Deletion (del_ev_queue): the host sets `closed` in both ring headers, then
 * interrupts the guest's waiting vCPUs and unregisters the doorbell.  Every
 * later guest operation returns VMRPC_ENOQUEUE, so does a later
 * VMRPC_SYS_OPEN_EVQ of the name.  The queue's memory is never handed to
 * another queue while the VM lives, so a guest that still holds pointers into
 * it reads only a closed queue.
 */
#ifndef VMRPC_ABI_H
#define VMRPC_ABI_H

#include <stdint.h>

#define VMRPC_ABI_VERSION 1u

/* ---- boot ---------------------------------------------------------------- */

#define VMRPC_BOOT_MAGIC 0x42524d56u /* "VMRB" */

/* Where the VMM loads images: ELF images are linked at this address. */
#define VMRPC_IMAGE_BASE 0x100000ull

/* The VMM runs at most this many vCPUs per VM. */
#define VMRPC_MAX_VCPUS 8u

struct vmrpc_boot_info {
	uint32_t magic;        /* VMRPC_BOOT_MAGIC */
	uint32_t abi_version;  /* VMRPC_ABI_VERSION */
	uint64_t mem_size;     /* bytes of guest RAM, identity-mapped from GPA 0 */
	uint32_t vcpu_count;
	uint32_t argc;
	uint64_t argv;         /* GPA of char *argv[argc + 1], NULL-terminated */
	uint64_t shared_base;  /* GPA of the VM RPC shared region (0: none) */
	uint64_t shared_size;  /* bytes */
	uint64_t heap_end;     /* first GPA the guest must not allocate from */
	uint64_t tsc_khz;      /* TSC frequency as KVM reports it, 0 if unknown */
	uint64_t reserved[8];
};

/* Ring-0 code selector for IDT gates; ring-3 selectors at entry are 0x23/0x1b. */
#define VMRPC_KERNEL_CS 0x08u

/* ---- MMIO ----------------------------------------------------------------- */

#define VMRPC_MMIO_BASE 0xd0000000ull
#define VMRPC_MMIO_SIZE 0x200000ull
#define VMRPC_MMIO_CONSOLE (VMRPC_MMIO_BASE + 0x0000u)
#define VMRPC_MMIO_DEBUG_EXIT (VMRPC_MMIO_BASE + 0x1000u)
#define VMRPC_MMIO_DOORBELL (VMRPC_MMIO_BASE + 0x2000u)
#define VMRPC_MMIO_CONSOLE_WRITE (VMRPC_MMIO_BASE + 0x5000u)
/* Console write command: len (< 65536) in bits 48..63, guest address below. */
#define VMRPC_CONSOLE_WRITE(gpa, len) (((uint64_t)(len) << 48) | ((uint64_t)(gpa) & 0xffffffffffffull))
#define VMRPC_MMIO_EVQ_DOORBELL (VMRPC_MMIO_BASE + 0x3000u)
#define VMRPC_MMIO_CRASH (VMRPC_MMIO_BASE + 0x6000u)

/*
 * What a ring-0 exception handler of the runtime saw (guest/rt/irq.S builds it
 * on the ring-0 stack, lowest address first): the general registers of the
 * faulting code, cr2, the vector, the error code (0 for vectors without one),
 * then the frame the CPU pushed.  The VMM copies it once and only reports it.
 */
struct vmrpc_crash_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t cr2;
	uint64_t vector;
	uint64_t error_code;
	uint64_t rip, cs, rflags, rsp, ss;
};
#define VMRPC_MMIO_YIELD (VMRPC_MMIO_BASE + 0x8000u)
#define VMRPC_YIELD_MAX_US 4000u

/* Interrupt vector the host uses to wake a vCPU waiting for a response or event. */
#define VMRPC_IRQ_VECTOR 0x40u

/* ---- rings ----------------------------------------------------------------- */

/*
 * A single-producer single-consumer ring.  head and tail are free-running
 * counters (wrap at 2^32); entry k lives at slot k % entries.  The number of
 * entries and the entry size are fixed by the host and never read back from
 * shared memory by the host.  The producer owns cache line 0, the consumer
 * cache line 1.
 *
 * producer_waiting / consumer_waiting: "I am about to sleep; notify me".  A side
 * sets its flag, issues a full barrier, re-checks the ring, and only then sleeps.
 * The other side, after publishing, issues a full barrier and reads the flag.
 * waiting_vcpu fields name the vCPU to interrupt when the guest is that side.
 * closed is written by the host only (event queues; 0 for the RPC rings).
 */
struct vmrpc_ring {
	volatile uint32_t head;             /* written by the producer */
	volatile uint32_t producer_waiting; /* producer blocked on a full ring */
	volatile uint32_t producer_vcpu;
	volatile uint32_t closed;           /* host-written: 1 once the queue is deleted */
	uint32_t _pad0[12];
	volatile uint32_t tail;             /* written by the consumer */
	volatile uint32_t consumer_waiting; /* consumer blocked on an empty ring */
	volatile uint32_t consumer_vcpu;
	uint32_t _pad1[13];
	/* entries follow */
};

/* ---- VM RPC ------------------------------------------------------------------ */

#define VMRPC_SHARED_MAGIC 0x53524d56u /* "VMRS" */
#define VMRPC_MAX_PAYLOAD 65536u       /* bytes per request and per response */
#define VMRPC_RPC_RING_ENTRIES 8u

struct vmrpc_shared_hdr {
	uint32_t magic;          /* VMRPC_SHARED_MAGIC */
	uint32_t abi_version;
	uint32_t vcpu_count;
	uint32_t ring_entries;   /* VMRPC_RPC_RING_ENTRIES */
	uint32_t max_payload;    /* VMRPC_MAX_PAYLOAD */
	uint32_t _pad0;
	uint64_t chan_offset;    /* offset of vCPU 0's struct vmrpc_chan */
	uint64_t chan_stride;    /* bytes between consecutive channels */
	uint64_t evq_offset;     /* event queue arena */
	uint64_t evq_size;
	uint32_t _pad1[2];
	/* cache line 1, written by the host only */
	volatile uint32_t host_sleeping; /* 1: the RPC engine sleeps, ring the doorbell */
	uint32_t _pad2[15];
};

struct vmrpc_req_desc {
	uint64_t tag;       /* echoed in the response */
	uint32_t handle;    /* from bind_module; 0 is the system module */
	uint32_t function;
	uint32_t req_off;   /* request bytes: data area [req_off, req_off + req_len) */
	uint32_t req_len;
	uint32_t resp_off;  /* response buffer: data area [resp_off, resp_off + resp_cap) */
	uint32_t resp_cap;
};

struct vmrpc_resp_desc {
	uint64_t tag;       /* the request's tag */
	int32_t status;     /* >= 0: response length; < 0: VMRPC_E* */
	uint32_t _pad;
};

/* Per-vCPU channel; each ring's entries follow its header directly. */
#define VMRPC_CHAN_REQ_RING_OFFSET 0u
#define VMRPC_CHAN_RESP_RING_OFFSET 512u
#define VMRPC_CHAN_DATA_OFFSET 4096u
#define VMRPC_CHAN_DATA_SIZE (2u * VMRPC_MAX_PAYLOAD)

/* The system module: handle 0, always bound. */
#define VMRPC_SYS_HANDLE 0u
#define VMRPC_SYS_BIND 0u      /* req: u32 version, then the name (no NUL); resp: u32 handle */
#define VMRPC_SYS_UNBIND 1u    /* req: u32 handle; resp: empty */
#define VMRPC_SYS_OPEN_EVQ 2u  /* req: the queue name; resp: struct vmrpc_evq_info */

/*
 * Versions are (major << 16) | minor.  bind_module(name, v) succeeds when a module
 * of that name is registered with the same major and a minor >= v's minor.
 */
#define VMRPC_VERSION(major, minor) ((((uint32_t)(major)) << 16) | ((uint32_t)(minor) & 0xffffu))

/* Error codes: perform_rpc and friends return these (negative) values. */
#define VMRPC_ENOMODULE -1   /* no module of that name and compatible version */
#define VMRPC_ENOFUNC -2     /* the module has no such function */
#define VMRPC_EHOSTFN -3     /* the host function raised; the host logged it */
#define VMRPC_ETOOBIG -4     /* request larger than VMRPC_MAX_PAYLOAD */
#define VMRPC_EGONE -5       /* the module was unregistered */
#define VMRPC_EBADHANDLE -6  /* the handle is not bound (never was, or unbound) */
#define VMRPC_EINVAL -7      /* malformed request (bad offsets, lengths, arguments) */
#define VMRPC_ERANGE -8      /* the response is larger than resp_cap */
#define VMRPC_ESHUTDOWN -9   /* the VM is stopping */
#define VMRPC_ENODEV -10     /* the VMM offers no VM RPC (no shared region) */
#define VMRPC_EFULL -11      /* event queue full (non-blocking put) */
#define VMRPC_EEMPTY -12     /* event queue empty (non-blocking get) */
#define VMRPC_ENOQUEUE -13   /* no event queue of that name, or it was deleted */
#define VMRPC_ELIMIT -14     /* a per-VM limit is reached (bound module handles: 4096) */
#define VMRPC_ETIMEDOUT -15  /* the host function exceeded its time limit */

/* ---- event queues (host-created, in the event queue arena) ------------------- */

#define VMRPC_EVQ_MAX_ENTRIES 65536u
#define VMRPC_EVQ_MAX_EVENT_SIZE (65536u - 8u)
/* Ring slot size for a max_event_size: slot header plus payload, 8-aligned. */
#define VMRPC_EVQ_SLOT_SIZE(max_event_size) (((uint32_t)(max_event_size) + 8u + 7u) & ~7u)

struct vmrpc_evq_info {
	uint32_t queue_id;
	uint32_t entries;         /* per direction, a power of two */
	uint32_t max_event_size;  /* payload bytes per event */
	uint32_t slot_size;       /* bytes per ring slot: 8-byte header + payload, 8-aligned */
	uint64_t g2h_offset;      /* guest->host ring, from shared_base */
	uint64_t h2g_offset;      /* host->guest ring, from shared_base */
};

/* Each event-ring slot starts with this header; the payload follows. */
struct vmrpc_ev_slot {
	uint32_t len;
	uint32_t _pad;
};

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(struct vmrpc_boot_info) == 128, "boot info size");
_Static_assert(sizeof(struct vmrpc_ring) == 128, "ring header size");
_Static_assert(__builtin_offsetof(struct vmrpc_ring, closed) == 12, "ring closed word");
_Static_assert(__builtin_offsetof(struct vmrpc_ring, tail) == 64, "consumer cache line");
_Static_assert(sizeof(struct vmrpc_shared_hdr) == 128, "shared header size");
_Static_assert(sizeof(struct vmrpc_req_desc) == 32, "request descriptor size");
_Static_assert(sizeof(struct vmrpc_resp_desc) == 16, "response descriptor size");
_Static_assert(sizeof(struct vmrpc_evq_info) == 32, "event queue info size");
_Static_assert(sizeof(struct vmrpc_ev_slot) == 8, "event slot header size");
_Static_assert(VMRPC_CHAN_REQ_RING_OFFSET + sizeof(struct vmrpc_ring) +
		       VMRPC_RPC_RING_ENTRIES * sizeof(struct vmrpc_req_desc) <=
		       VMRPC_CHAN_RESP_RING_OFFSET,
	       "request ring fits");
_Static_assert(VMRPC_CHAN_RESP_RING_OFFSET + sizeof(struct vmrpc_ring) +
		       VMRPC_RPC_RING_ENTRIES * sizeof(struct vmrpc_resp_desc) <=
		       VMRPC_CHAN_DATA_OFFSET,
	       "response ring fits");
#endif

#endif /* VMRPC_ABI_H */
