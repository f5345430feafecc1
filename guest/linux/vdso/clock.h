/*
 * The clock both the personality (time.c, for system calls) and the vDSO
 * (vdso.c, called by the program without a system call) compute, from the same
 * parameters, so the two never disagree and monotonic time never goes back
 * whichever path a program mixes.  Plain inline C: no runtime, no SSE.
 */
#ifndef LX_VDSO_CLOCK_H
#define LX_VDSO_CLOCK_H

#include <stdint.h>

#define LX_CLOCK_REALTIME 0
#define LX_CLOCK_MONOTONIC 1
#define LX_CLOCK_PROCESS_CPUTIME_ID 2
#define LX_CLOCK_THREAD_CPUTIME_ID 3
#define LX_CLOCK_MONOTONIC_RAW 4
#define LX_CLOCK_REALTIME_COARSE 5
#define LX_CLOCK_MONOTONIC_COARSE 6
#define LX_CLOCK_BOOTTIME 7
#define LX_NS 1000000000ll

/* Written once by the personality before the program starts, then only read:
 * the page before the vDSO image (vdso.ld's lx_vdso_params). */
struct lx_clock_params {
	uint64_t tsc0;  /* the TSC when the personality started: monotonic 0 */
	int64_t wall0;  /* the host's wall clock then, in ns since the epoch */
	uint64_t mult;  /* ns = cycles * mult >> 32 (one multiply, no division) */
};

static inline int64_t lx_clock_mono_ns(const volatile struct lx_clock_params *p)
{
	uint32_t lo, hi;

	/* rdtscp waits for earlier instructions, like the runtime's lfence; rdtsc. */
	__asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi) : : "rcx");
	return (int64_t)(((unsigned __int128)((((uint64_t)hi << 32) | lo) - p->tsc0) * p->mult) >> 32);
}

/* The time of `clk` in ns; -1 for a clock this personality does not keep. */
static inline int lx_clock_read(const volatile struct lx_clock_params *p, int64_t clk, int64_t *ns)
{
	switch (clk) {
	case LX_CLOCK_REALTIME:
	case LX_CLOCK_REALTIME_COARSE:
		*ns = p->wall0 + lx_clock_mono_ns(p);
		return 0;
	case LX_CLOCK_MONOTONIC:
	case LX_CLOCK_MONOTONIC_RAW:
	case LX_CLOCK_MONOTONIC_COARSE:
	case LX_CLOCK_BOOTTIME:
	case LX_CLOCK_PROCESS_CPUTIME_ID:
	case LX_CLOCK_THREAD_CPUTIME_ID:
		*ns = lx_clock_mono_ns(p);
		return 0;
	default:
		return -1;
	}
}

#endif
