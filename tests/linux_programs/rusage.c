/*
 * getrusage checked against bounds that hold on Linux and in vmrpc alike
 * (tests/test_linux_rusage.py runs it both ways): prints "ok <check>" or
 * "FAIL <check> <values>" per check.  Nothing here depends on how fast the
 * machine is: CPU is burnt until the thread's own clock says so.  With an
 * argument (KiB), ru_maxrss is also checked to stay below it, last: natively
 * Linux carries the peak of the process that exec'd it (pytest's) over, so
 * the test passes the VM's memory size in the VM only.
 */
#define _GNU_SOURCE /* RUSAGE_THREAD */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#define BURN_US 20000 /* CPU time each burner waits to see on its own clock */
#define TOUCH_MIB 32

static int failures;

static void check(const char *name, int ok, long long a, long long b)
{
	if (ok)
		printf("ok %s\n", name);
	else {
		printf("FAIL %s %lld %lld\n", name, a, b);
		failures++;
	}
}

static long long us(struct timeval tv)
{
	return (long long)tv.tv_sec * 1000000 + tv.tv_usec;
}

static long long mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long long usage_us(int who)
{
	struct rusage ru;
	if (getrusage(who, &ru) != 0)
		return -1;
	return us(ru.ru_utime) + us(ru.ru_stime);
}

/* Spins until this thread's own getrusage shows BURN_US more of CPU time (or
 * ten seconds of wall time pass: then the clock is broken). */
static long long burn(void)
{
	long long start = usage_us(RUSAGE_THREAD), deadline = mono_us() + 10000000;
	volatile uint64_t x = 0;

	while (usage_us(RUSAGE_THREAD) - start < BURN_US && mono_us() < deadline)
		for (int i = 0; i < 100000; i++)
			x += (uint64_t)i * 7;
	return usage_us(RUSAGE_THREAD) - start;
}

static void *burner(void *arg)
{
	*(long long *)arg = burn();
	return NULL;
}

int main(int argc, char **argv)
{
	struct rusage ru, zero;
	long long t0 = mono_us(), self0 = usage_us(RUSAGE_SELF), burnt, self1, thread1, wall;
	long long in_thread = 0;
	pthread_t t;
	char *p;

	check("self-starts-sane", self0 >= 0, self0, 0);
	burnt = burn();
	check("thread-clock-advances", burnt >= BURN_US, burnt, BURN_US);
	thread1 = usage_us(RUSAGE_THREAD);
	self1 = usage_us(RUSAGE_SELF);
	wall = mono_us() - t0;
	check("self-covers-the-burn", self1 - self0 >= BURN_US, self1 - self0, BURN_US);
	check("thread-within-self", thread1 <= self1, thread1, self1);
	/* One thread so far: its CPU time cannot exceed the wall time (+ a tick). */
	check("self-within-wall", self1 - self0 <= wall + 10000, self1 - self0, wall);

	pthread_create(&t, NULL, burner, &in_thread);
	pthread_join(t, NULL);
	check("other-thread-burns", in_thread >= BURN_US, in_thread, BURN_US);
	check("self-adds-the-other-thread", usage_us(RUSAGE_SELF) - self1 >= in_thread,
	      usage_us(RUSAGE_SELF) - self1, in_thread);

	p = mmap(NULL, TOUCH_MIB << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	check("mmap", p != MAP_FAILED, 0, 0);
	if (p != MAP_FAILED)
		memset(p, 1, TOUCH_MIB << 20);
	getrusage(RUSAGE_SELF, &ru);
	check("maxrss-covers-what-was-touched", ru.ru_maxrss >= TOUCH_MIB * 1024, ru.ru_maxrss,
	      TOUCH_MIB * 1024);
	if (p != MAP_FAILED)
		munmap(p, TOUCH_MIB << 20);
	getrusage(RUSAGE_SELF, &ru);
	check("maxrss-is-a-peak", ru.ru_maxrss >= TOUCH_MIB * 1024, ru.ru_maxrss, TOUCH_MIB * 1024);

	memset(&zero, 0, sizeof(zero));
	memset(&ru, 0xff, sizeof(ru));
	check("children", getrusage(RUSAGE_CHILDREN, &ru) == 0 && ru.ru_utime.tv_sec == 0 &&
				  ru.ru_utime.tv_usec == 0 && ru.ru_stime.tv_usec == 0,
	      ru.ru_utime.tv_usec, ru.ru_stime.tv_usec);
	errno = 0;
	check("bad-who-einval", getrusage(7, &ru) == -1 && errno == EINVAL, errno, EINVAL);
	errno = 0;
	check("bad-pointer-efault", getrusage(RUSAGE_SELF, (struct rusage *)8) == -1 && errno == EFAULT,
	      errno, EFAULT);
	if (argc > 1) {
		long limit = atol(argv[1]);
		getrusage(RUSAGE_SELF, &ru);
		check("maxrss-below-limit", ru.ru_maxrss > 0 && ru.ru_maxrss < limit, ru.ru_maxrss, limit);
	}
	return failures ? 1 : 0;
}
