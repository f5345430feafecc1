/*
 * Guest threads (crates/vmm/src/devices/guest_threads.rs, vm/pool.rs): the
 * host schedules the personality's threads over the VM's vCPUs.  A 64-bit
 * write of the address of a struct lx_thread_spawn to LX_MMIO_THREAD +
 * LX_THREAD_SPAWN starts a thread at `rip` with `rsp`, `rdi` and GS base
 * `gs_base` (its other registers zero, its segments and FPU state the
 * caller's); the host answers 0 or -EAGAIN in `result`.  A write of the
 * address of the caller's slot state word to LX_MMIO_THREAD + LX_THREAD_EXIT
 * ends the calling thread: the host stores 0 in that word once the thread is
 * off its vCPU for good, and never runs it again.  LX_THREAD_SNAPSHOT: see
 * struct lx_snapshot_point.  A write (any value) to LX_MMIO_THREAD +
 * LX_THREAD_YIELD gives the caller's vCPU to a thread waiting for one, if any,
 * and queues the caller behind it (sched_yield).
 *
 * The CPU time of the threads' host threads (crates/vmm/src/vm/cpu_clock.rs),
 * in nanoseconds, by a 64-bit read of LX_MMIO_CPU_CLOCK plus: _THREAD, the
 * reading thread's; _ALL, every thread of the VM still running (getrusage).
 */
#ifndef LX_VCPU_ABI_H
#define LX_VCPU_ABI_H

#include <stdint.h>

#define LX_MMIO_THREAD (0xd0000000ull + 0x101000u)
#define LX_THREAD_SPAWN 0u
#define LX_THREAD_EXIT 8u
#define LX_THREAD_SNAPSHOT 16u
#define LX_THREAD_YIELD 24u
#define LX_MMIO_CPU_CLOCK (0xd0000000ull + 0x102000u)
#define LX_CPU_CLOCK_THREAD 0u
#define LX_CPU_CLOCK_ALL 8u

struct lx_thread_spawn {
	uint64_t rip, rsp, rdi, gs_base;
	int64_t result;
};

/*
 * A snapshot point (crates/vmm/src/vm/snapshot.rs): the program's only thread
 * writes this struct's address to LX_MMIO_THREAD + LX_THREAD_SNAPSHOT.  The VM
 * that took the snapshot stops there (or, when it cannot take one, the host
 * leaves `result` as the guest set it); a VM restored from the snapshot goes
 * on after the write with `result` = 1 and 32 fresh bytes of host entropy in
 * `seed`.
 */
struct lx_snapshot_point {
	int64_t result;
	uint8_t seed[32];
};
_Static_assert(sizeof(struct lx_snapshot_point) == 40, "the host reads 40 bytes");

#endif
