/*
 * vmrpc guest <-> host ABI: the protocol in prose (this comment), the
 * function-like macros, and, through vmrpc/abi_gen.h, every constant and
 * structure.  Those are defined once, in Rust, in
 * crates/guest-kmod-bindings/src/abi.rs; cbindgen generates vmrpc/abi_gen.h
 * from it (`make abi`), and tests fail when the committed header differs or
 * when a compiled value here disagrees with the Rust one.
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
 *   GS base = a 4 KiB per-vCPU page whose first 4 bytes hold the vCPU index;
 *             the rest of the page belongs to the guest (the runtime keeps its
 *             thread index in the next 4, see rt_thread_id)
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
 *   [chan_offset + i * chan_stride, ..) channel i (i < chan_count): its rings,
 *                                       then its data area (VMRPC_CHAN_DATA_OFFSET).
 *                                       A thread uses channel rt_thread_id():
 *                                       bare guests one per vCPU, a Linux
 *                                       program one per thread
 *   [evq_offset, evq_offset + evq_size) event queue arena (host-managed)
 *
 * A call: the guest copies its request into its data area, pushes a
 * struct vmrpc_req_desc onto its request ring, and writes the doorbell only if
 * shared_hdr.host_sleeping is set (read after a full barrier).  The host pushes a
 * struct vmrpc_resp_desc onto the same channel's response ring and injects the
 * interrupt VMRPC_IRQ_VECTOR (into vCPU i, for channel i < vcpu_count) only if
 * that ring's consumer_waiting is set (read after a full barrier).  Both sides
 * use the Dekker pattern: "publish, full barrier, read the other side's sleep
 * flag", so no wakeup is lost.  A thread whose vCPU has other threads to run
 * waits in the host instead (VMRPC_MMIO_RPC_WAIT): no flag, no interrupt; the
 * host compares the head under the lock it posts answers with.
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

#include "abi_gen.h"

/* Console write command: len (< 65536) in bits 48..63, guest address below. */
#define VMRPC_CONSOLE_WRITE(gpa, len) (((uint64_t)(len) << 48) | ((uint64_t)(gpa) & 0xffffffffffffull))

/*
 * Versions are (major << 16) | minor.  bind_module(name, v) succeeds when a module
 * of that name is registered with the same major and a minor >= v's minor.
 */
#define VMRPC_VERSION(major, minor) ((((uint32_t)(major)) << 16) | ((uint32_t)(minor) & 0xffffu))

/* Ring slot size for a max_event_size: slot header plus payload, 8-aligned. */
#define VMRPC_EVQ_SLOT_SIZE(max_event_size) \
	(((uint32_t)(max_event_size) + (uint32_t)sizeof(struct vmrpc_ev_slot) + 7u) & ~7u)

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
