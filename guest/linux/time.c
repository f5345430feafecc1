/*
 * Time from the TSC: monotonic = TSC since the personality started (never goes
 * back: the TSC is invariant), realtime = the host's wall clock read once at
 * start (LXF_HELLO) plus the monotonic time since.  A sleep blocks the vCPU in
 * the host (futex.c) until SLEEP_SPIN_NS before its end, then spins on the TSC
 * for the rest: the host's wake-up is late by tens of microseconds.
 */
#include "linux.h"

#include "vdso/clock.h"

#define TIMER_ABSTIME 1
#define NS LX_NS
#define SLEEP_SPIN_NS 200000ll

struct lx_timespec {
	int64_t sec, nsec;
};
struct lx_timeval {
	int64_t sec, usec;
};

/* The parameter page of the vDSO (vdso_image.S): the vDSO reads the same
 * values, so its clocks and these system calls agree. */
extern struct lx_clock_params lx_clock;

void lx_time_init(int64_t wall_ns)
{
	uint64_t khz = rt_tsc_khz();

	lx_clock.tsc0 = rdtsc();
	lx_clock.wall0 = wall_ns;
	lx_clock.mult = khz ? (1000000ull << 32) / khz : 0;
}

static long clock_ns(int64_t clk, int64_t *ns)
{
	return lx_clock_read(&lx_clock, clk, ns) < 0 ? -EINVAL : 0;
}

static long put_ts(uint64_t addr, int64_t ns)
{
	struct lx_timespec *ts = (struct lx_timespec *)(uintptr_t)addr;

	if (!lx_user_ok(addr, sizeof(*ts)))
		return -EFAULT;
	ts->sec = ns / NS;
	ts->nsec = ns % NS;
	return 0;
}

static long get_ts(uint64_t addr, int64_t *ns)
{
	struct lx_timespec ts;

	if (!lx_user_ok(addr, sizeof(ts)))
		return -EFAULT;
	memcpy(&ts, (void *)(uintptr_t)addr, sizeof(ts));
	if (ts.sec < 0 || ts.nsec < 0 || ts.nsec >= NS)
		return -EINVAL;
	*ns = ts.sec > INT64_MAX / NS - 1 ? INT64_MAX / 2 : ts.sec * NS + ts.nsec;
	return 0;
}

static long sleep_until(int64_t clk, int64_t deadline)
{
	int64_t now;

	for (;;) {
		if (clock_ns(clk, &now) < 0)
			return -EINVAL;
		if (now >= deadline)
			return 0;
		if (deadline - now > SLEEP_SPIN_NS)
			lx_futex_sleep(deadline - now - SLEEP_SPIN_NS);
		else
			cpu_relax();
	}
}

static long nanosleep_common(int64_t clk, int flags, uint64_t req)
{
	int64_t ns, now;
	long r = get_ts(req, &ns);

	if (r < 0)
		return r;
	if (flags & TIMER_ABSTIME)
		return sleep_until(clk, ns);
	r = clock_ns(clk, &now);
	return r < 0 ? r : sleep_until(clk, now + ns);
}

long lx_time_syscall(struct lx_frame *f)
{
	int64_t ns;
	long r;

	switch (f->nr) {
	case __NR_clock_gettime:
		r = clock_ns((int64_t)f->rdi, &ns);
		return r < 0 ? r : put_ts(f->rsi, ns);
	case __NR_clock_getres:
		if (clock_ns((int64_t)f->rdi, &ns) < 0)
			return -EINVAL;
		return f->rsi ? put_ts(f->rsi, 1) : 0;
	case __NR_gettimeofday:
		if (f->rdi) {
			struct lx_timeval *tv = (struct lx_timeval *)(uintptr_t)f->rdi;
			if (!lx_user_ok(f->rdi, sizeof(*tv)))
				return -EFAULT;
			clock_ns(LX_CLOCK_REALTIME, &ns);
			tv->sec = ns / NS;
			tv->usec = ns % NS / 1000;
		}
		return 0;
	case __NR_time:
		clock_ns(LX_CLOCK_REALTIME, &ns);
		if (f->rdi) {
			if (!lx_user_ok(f->rdi, 8))
				return -EFAULT;
			*(int64_t *)(uintptr_t)f->rdi = ns / NS;
		}
		return ns / NS;
	case __NR_nanosleep:
		return nanosleep_common(LX_CLOCK_MONOTONIC, 0, f->rdi);
	case __NR_clock_nanosleep:
		return nanosleep_common((int64_t)f->rdi, (int)f->rsi, f->rdx);
	default:
		return LX_ENOSYS_MARK;
	}
}

/* For futex timeouts (futex.c): a clock's time now, and a timespec read from the program. */
long lx_clock_ns(int64_t clk, int64_t *ns)
{
	return clock_ns(clk, ns);
}

long lx_user_timespec(uint64_t addr, int64_t *ns)
{
	return get_ts(addr, ns);
}
