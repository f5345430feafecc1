/*
 * Back-off for waits that no interrupt can end: a spinlock another vCPU holds,
 * a flag another vCPU sets.  Waits the host can end (an RPC response, an event
 * queue) spin briefly and then halt until the host's interrupt instead.
 *
 *	struct rt_backoff b = RT_BACKOFF_INIT;
 *	while (!ready())
 *		rt_backoff_wait(&b);
 *
 * Each call first spins with pause, in batches that double up to
 * RT_BACKOFF_MAX_PAUSES (cheap for a wait that ends within microseconds, and
 * light on the contended cache line).  After RT_BACKOFF_SPIN_US of spinning the
 * vCPU gives the host CPU away instead (VMRPC_MMIO_YIELD), for times that double
 * from RT_BACKOFF_FIRST_SLEEP_US up to VMRPC_YIELD_MAX_US: a waiter that waits
 * long costs its host a few percent of a CPU instead of a whole one, and a
 * preempted lock holder on an overcommitted host gets the CPU back.
 */
#ifndef VMRPC_BACKOFF_H
#define VMRPC_BACKOFF_H

#include <stdint.h>

#define RT_BACKOFF_SPIN_US 50u
#define RT_BACKOFF_MAX_PAUSES 64u
#define RT_BACKOFF_FIRST_SLEEP_US 10u

struct rt_backoff {
	uint64_t started;  /* TSC at the first call; 0 before it */
	uint32_t pauses;   /* pauses of the next spin batch */
	uint32_t sleep_us; /* next host sleep; 0 while still spinning */
};

#define RT_BACKOFF_INIT { 0, 1, 0 }

void rt_backoff_wait(struct rt_backoff *b);

#endif /* VMRPC_BACKOFF_H */
