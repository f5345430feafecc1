/*
 * Inline x86_64 helpers for freestanding guests: MMIO, TSC, barriers and
 * waiting for interrupts.  Everything is a single instruction (or a few), so
 * it lives in the header where the compiler can inline it.
 *
 * Guests run in ring 3 with interrupts off (see the boot protocol in
 * vmrpc/abi.h): MMIO, rdtsc and pause work directly; hlt goes through the
 * runtime's ring-0 call (rt_halt_if_equal); port I/O, cli/sti and MSRs are out
 * of reach.
 */
#ifndef VMRPC_CPU_H
#define VMRPC_CPU_H

#include <stdint.h>

/* Device registers are memory-mapped (vmrpc/abi.h); volatile keeps each access. */
static inline void mmio_write8(uint64_t addr, uint8_t v)
{
	*(volatile uint8_t *)(uintptr_t)addr = v;
}

static inline void mmio_write32(uint64_t addr, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)addr = v;
}

static inline void mmio_write64(uint64_t addr, uint64_t v)
{
	*(volatile uint64_t *)(uintptr_t)addr = v;
}

static inline uint8_t mmio_read8(uint64_t addr)
{
	return *(volatile uint8_t *)(uintptr_t)addr;
}

/* lfence keeps rdtsc from being executed before earlier instructions finish,
 * so a timed region cannot leak out of its measurement. */
static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" : : : "memory");
}

/* Full barrier: orders earlier stores before later loads (Dekker pattern). */
static inline void rt_mb(void)
{
	__asm__ volatile("mfence" : : : "memory");
}

/* Compiler-only barrier. */
static inline void rt_barrier(void)
{
	__asm__ volatile("" : : : "memory");
}

/*
 * Calls into the runtime's ring-0 code.  A ring-3 guest reaches ring 0 through
 * an exception: `ud2` followed by an operation byte, decoded by the #UD handler
 * (rt/irq.S), which skips both and returns.  (Software interrupts would be the
 * textbook way, but PVM does not deliver `int n` from ring 3; exceptions it
 * delivers through the guest's IDT like hardware does.)
 */
#define RT_CALL_HALT 1 /* halt until an interrupt if *rdi == esi */
#define RT_CALL_PARK 2 /* halt forever */
#define RT_CALL_FLUSH_TLB 3 /* reload CR3 */

/*
 * Sleeps until an interrupt, but only if *word still equals `seen` when
 * checked in ring 0 with interrupts off.  Ring 3 runs with interrupts off, so
 * the check and the halt cannot be separated by the wakeup: if the other side
 * changes *word after the check, it also sends the interrupt (it read our
 * "waiting" flag after publishing), which stays pending until the handler's
 * `sti; hlt`, and sti's one-instruction shadow makes that pair atomic.
 * Returns after the interrupt, or at once if *word changed.
 */
static inline void rt_halt_if_equal(const volatile uint32_t *word, uint32_t seen)
{
	__asm__ volatile("ud2; .byte 1" : : "D"(word), "S"(seen) : "memory");
}

/*
 * Flushes this vCPU's TLB (CR3 reload in ring 0): a ring-3 guest that edits
 * its page tables (the Linux personality's mprotect) calls it after removing
 * rights, which stale TLB entries would otherwise keep granting.
 */
static inline void rt_flush_tlb(void)
{
	__asm__ volatile("ud2; .byte 3" : : : "memory");
}

#endif /* VMRPC_CPU_H */
