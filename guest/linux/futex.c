/*
 * futex for a single-threaded program (static glibc's getaddrinfo and stdio
 * locks use it): nothing else runs, so a wake has nobody to wake and a wait on
 * a value that still matches can only end by its timeout.  Threads are part 3.
 */
#include "linux.h"

#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAKE_BITSET 10
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_CLOCK_REALTIME 256

static long futex_wait(uint64_t uaddr, uint32_t val, uint64_t uts)
{
	uint32_t now;
	int64_t ts[2];
	uint64_t until;

	if (!lx_user_ok(uaddr, sizeof(now)) || (uaddr & 3))
		return -EFAULT;
	memcpy(&now, (const void *)(uintptr_t)uaddr, sizeof(now));
	if (now != val)
		return -EAGAIN;
	if (!uts)
		return -EDEADLK; /* no other thread could ever wake it */
	if (!lx_user_ok(uts, sizeof(ts)))
		return -EFAULT;
	memcpy(ts, (const void *)(uintptr_t)uts, sizeof(ts));
	if (ts[0] < 0 || ts[1] < 0 || ts[1] >= 1000000000)
		return -EINVAL;
	/* A relative timeout (FUTEX_WAIT); an absolute one is treated alike, at most. */
	until = rdtsc() + rt_tsc_khz() * ((uint64_t)ts[0] * 1000 + (uint64_t)ts[1] / 1000000);
	while (rdtsc() < until)
		cpu_relax();
	return -ETIMEDOUT;
}

long lx_futex_syscall(struct lx_frame *f)
{
	int op;

	if (f->nr != __NR_futex)
		return LX_ENOSYS_MARK;
	op = (int)f->rsi & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
	switch (op) {
	case FUTEX_WAKE:
	case FUTEX_WAKE_BITSET:
		return 0; /* no waiters */
	case FUTEX_WAIT:
	case FUTEX_WAIT_BITSET:
		return futex_wait(f->rdi, (uint32_t)f->rdx, f->r10);
	default:
		return -ENOSYS;
	}
}
