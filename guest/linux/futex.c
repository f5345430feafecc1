/*
 * futex for a single-threaded program (threads, clone and real waits are the
 * next slice of part 3).  glibc and CPython call it on their locks even with
 * one thread: a wake finds no waiter; a wait whose word changed is EAGAIN; a
 * wait with a timeout sleeps it out (ETIMEDOUT); a wait without one could only
 * be ended by another thread, which does not exist, so it answers EDEADLK
 * instead of hanging the VM (as poll on a pipe nothing can fill does).
 */
#include "linux.h"

#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAKE_BITSET 10
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_CLOCK_REALTIME 256
#define CLOCK_REALTIME 0
#define CLOCK_MONOTONIC 1
#define TIMER_ABSTIME 1

static long wait(uint64_t uaddr, uint32_t val, uint64_t timeout, int absolute, int realtime)
{
	struct lx_frame sleep = {0};

	if (uaddr & 3)
		return -EINVAL;
	if (!lx_user_ok(uaddr, 4))
		return -EFAULT;
	if (*(volatile uint32_t *)(uintptr_t)uaddr != val)
		return -EAGAIN;
	if (!timeout)
		return -EDEADLK;
	/* Sleep until the timeout through clock_nanosleep (which checks the pointer). */
	sleep.nr = __NR_clock_nanosleep;
	sleep.rdi = realtime ? CLOCK_REALTIME : CLOCK_MONOTONIC;
	sleep.rsi = absolute ? TIMER_ABSTIME : 0;
	sleep.rdx = timeout;
	{
		long r = lx_time_syscall(&sleep);
		return r < 0 ? r : -ETIMEDOUT;
	}
}

long lx_futex_syscall(struct lx_frame *f)
{
	int op = (int)f->rsi & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
	int realtime = (f->rsi & FUTEX_CLOCK_REALTIME) != 0;

	if (f->nr != __NR_futex)
		return LX_ENOSYS_MARK;
	switch (op) {
	case FUTEX_WAKE:
	case FUTEX_WAKE_BITSET:
		return 0; /* one thread: nobody is waiting */
	case FUTEX_WAIT:
		return wait(f->rdi, (uint32_t)f->rdx, f->r10, 0, 0);
	case FUTEX_WAIT_BITSET:
		if (!(uint32_t)f->r9)
			return -EINVAL;
		return wait(f->rdi, (uint32_t)f->rdx, f->r10, 1, realtime);
	default:
		return -ENOSYS;
	}
}
