/*
 * The vDSO the personality offers programs (AT_SYSINFO_EHDR): clock_gettime,
 * gettimeofday, time and clock_getres without a system call, as Linux's own
 * vDSO does, so glibc and musl read the clock in user space here too.  It
 * computes what time.c computes, from the parameters the personality writes in
 * the page before this image.  A clock it does not keep falls back to the real
 * system call (caught like any other).
 *
 * Built position independent and self-contained (no relocations, no libc);
 * vdso.ld lays it out as one loadable segment at address 0.
 */
#include "clock.h"

struct timespec_k {
	int64_t sec, nsec;
};
struct timeval_k {
	int64_t sec, usec;
};

/* Defined by vdso.ld at the page before the image. */
extern const volatile struct lx_clock_params lx_vdso_params __attribute__((visibility("hidden")));

static long fallback(long nr, long a, long b)
{
	long ret;

	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
	return ret;
}

int __vdso_clock_gettime(int clk, struct timespec_k *ts)
{
	int64_t ns;

	if (lx_clock_read(&lx_vdso_params, clk, &ns) < 0)
		return (int)fallback(228 /* clock_gettime */, clk, (long)ts);
	ts->sec = ns / LX_NS;
	ts->nsec = ns % LX_NS;
	return 0;
}

int __vdso_gettimeofday(struct timeval_k *tv, void *tz)
{
	int64_t ns;

	if (tz)
		return (int)fallback(96 /* gettimeofday */, (long)tv, (long)tz);
	if (tv) {
		lx_clock_read(&lx_vdso_params, LX_CLOCK_REALTIME, &ns);
		tv->sec = ns / LX_NS;
		tv->usec = ns % LX_NS / 1000;
	}
	return 0;
}

long __vdso_time(long *t)
{
	int64_t ns;

	lx_clock_read(&lx_vdso_params, LX_CLOCK_REALTIME, &ns);
	if (t)
		*t = ns / LX_NS;
	return ns / LX_NS;
}

int __vdso_clock_getres(int clk, struct timespec_k *res)
{
	int64_t ns;

	if (lx_clock_read(&lx_vdso_params, clk, &ns) < 0)
		return (int)fallback(229 /* clock_getres */, clk, (long)res);
	if (res) {
		res->sec = 0;
		res->nsec = 1;
	}
	return 0;
}

/* The names and version glibc and musl look up ("LINUX_2.6", as Linux exports). */
int clock_gettime(int, struct timespec_k *) __attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct timeval_k *, void *) __attribute__((weak, alias("__vdso_gettimeofday")));
long time(long *) __attribute__((weak, alias("__vdso_time")));
int clock_getres(int, struct timespec_k *) __attribute__((weak, alias("__vdso_clock_getres")));
