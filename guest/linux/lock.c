/*
 * The personality lock.  With more than one thread, every call that touches
 * the personality's shared state (fd table, pipes, memory bitmap, page tables,
 * brk, the host-call buffers, the trace) runs under this one lock; calls that
 * touch none (futex, time, exit, gettid...) do not take it (syscall.c).  A
 * call that waits (a pipe or a socket) lets it go around the wait
 * (lx_block_begin/end), so a thread blocked there holds nobody else.
 *
 * A three-state mutex on a futex word (0 free, 1 held, 2 held and maybe
 * waited for): uncontended, one atomic each way and no host exit.
 */
#include "linux.h"

#define SPINS 200

static volatile uint32_t word;
static uint8_t held_by[LX_MAX_THREADS]; /* 1 while that thread holds the lock */
/* Bumped when a guest-local fd may have become ready (pipes). */
static volatile uint32_t ready_seq;

void lx_lock(void)
{
	uint32_t c = 0;

	for (int i = 0; i < SPINS; i++) {
		c = 0;
		if (__atomic_compare_exchange_n(&word, &c, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
			goto done;
		cpu_relax();
	}
	if (c != 2)
		c = __atomic_exchange_n(&word, 2, __ATOMIC_ACQUIRE);
	while (c != 0) {
		lx_futex_wait(&word, 2, -1, 0xffffffffu);
		c = __atomic_exchange_n(&word, 2, __ATOMIC_ACQUIRE);
	}
done:
	held_by[lx_thread_slot()] = 1;
}

void lx_unlock(void)
{
	held_by[lx_thread_slot()] = 0;
	if (__atomic_exchange_n(&word, 0, __ATOMIC_RELEASE) == 2)
		lx_futex_wake(&word, 1);
}

int lx_block_begin(void)
{
	int held = held_by[lx_thread_slot()];

	if (held)
		lx_unlock();
	return held;
}

void lx_block_end(int held)
{
	if (held)
		lx_lock();
}

void lx_ready_changed(void)
{
	__atomic_add_fetch(&ready_seq, 1, __ATOMIC_SEQ_CST);
	lx_futex_wake(&ready_seq, 0x7fffffff);
}

long lx_ready_wait(int64_t timeout_ns)
{
	uint32_t seq = __atomic_load_n(&ready_seq, __ATOMIC_SEQ_CST);
	int held = lx_block_begin();
	long r = lx_futex_wait(&ready_seq, seq, timeout_ns, 0xffffffffu);

	lx_block_end(held);
	return r;
}
