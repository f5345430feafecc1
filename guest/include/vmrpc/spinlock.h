/* A test-and-test-and-set spinlock; fine for the handful of vCPUs we run. */
#ifndef VMRPC_SPINLOCK_H
#define VMRPC_SPINLOCK_H

#include <stdint.h>
#include <vmrpc/backoff.h>
#include <vmrpc/cpu.h>

typedef struct {
	volatile uint32_t locked;
} rt_spinlock_t;

#define RT_SPINLOCK_INIT { 0 }

static inline void rt_spin_init(rt_spinlock_t *l)
{
	__atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
}

static inline int rt_spin_trylock(rt_spinlock_t *l)
{
	return __atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE) == 0;
}

static inline void rt_spin_lock(rt_spinlock_t *l)
{
	struct rt_backoff b = RT_BACKOFF_INIT;

	while (!rt_spin_trylock(l)) {
		/* Wait with plain loads so the cache line stays shared; a long wait
		 * (a preempted or stuck holder) gives the host CPU away. */
		while (__atomic_load_n(&l->locked, __ATOMIC_RELAXED))
			rt_backoff_wait(&b);
	}
}

static inline void rt_spin_unlock(rt_spinlock_t *l)
{
	__atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
}

#endif /* VMRPC_SPINLOCK_H */
