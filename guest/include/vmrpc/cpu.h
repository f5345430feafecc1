/*
 * Inline x86_64 helpers for freestanding guests: port I/O, MSRs, TSC,
 * barriers and interrupt-flag control.  Everything is a single instruction
 * (or a few), so it lives in the header where the compiler can inline it.
 */
#ifndef VMRPC_CPU_H
#define VMRPC_CPU_H

#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %w1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %w1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %w1" : : "a"(v), "Nd"(port) : "memory");
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %w1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr) : "memory");
	return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32))
			 : "memory");
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

static inline void rt_irq_disable(void)
{
	__asm__ volatile("cli" : : : "memory");
}

static inline void rt_irq_enable(void)
{
	__asm__ volatile("sti" : : : "memory");
}

/*
 * sti takes effect only after the following instruction, so no interrupt can
 * be delivered between sti and hlt: a wakeup that became pending while
 * interrupts were off is taken at (and ends) the hlt instead of being lost.
 */
static inline void rt_irq_enable_and_halt(void)
{
	__asm__ volatile("sti; hlt" : : : "memory");
}

/* Returns nonzero if interrupts are enabled (RFLAGS.IF). */
static inline int rt_irq_enabled(void)
{
	uint64_t flags;
	__asm__ volatile("pushfq; popq %0" : "=r"(flags) : : "memory");
	return (flags >> 9) & 1;
}

static inline uint64_t read_cr3(void)
{
	uint64_t v;
	__asm__ volatile("mov %%cr3, %0" : "=r"(v));
	return v;
}

#endif /* VMRPC_CPU_H */
