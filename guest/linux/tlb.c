/*
 * TLB shootdown, the cheap kind.  Rights removed from a page (munmap,
 * mprotect) take effect on a vCPU only after its TLB is flushed, which needs
 * ring 0 (the runtime's gate: tens of microseconds on PVM, emulated).  The vCPU
 * that narrows flushes at once and bumps a generation; every other vCPU
 * flushes when it sees a newer generation: at its next call that takes the
 * personality lock, or when a new thread starts on it.  A thread that makes no
 * such call keeps its stale entries meanwhile: it can still reach memory
 * another thread just unmapped or write-protected, until then.  Interrupting
 * it (an IPI) would be ring-0 work on every vCPU; see docs/linux.md.
 */
#include "linux.h"

static volatile uint64_t generation;
static uint64_t seen[VMRPC_MAX_VCPUS];

void lx_tlb_narrowed(void)
{
	unsigned cpu = rt_cpu_id();

	rt_flush_tlb();
	seen[cpu] = __atomic_add_fetch(&generation, 1, __ATOMIC_SEQ_CST);
}

void lx_tlb_catch_up(void)
{
	unsigned cpu = rt_cpu_id();
	uint64_t g = __atomic_load_n(&generation, __ATOMIC_ACQUIRE);

	if (seen[cpu] != g) {
		seen[cpu] = g;
		rt_flush_tlb();
	}
}
