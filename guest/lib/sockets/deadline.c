/*
 * Time: deadlines and time left (in TSC ticks), and how long a call may wait.
 */
#include "internal.h"

static uint64_t tsc_per_ms(void)
{
	uint64_t khz = rt_tsc_khz();

	return khz ? khz : 2000000u; /* unknown: assume 2 GHz */
}

/* 0 means "no deadline". */
uint64_t deadline_in(int ms)
{
	return ms < 0 ? 0 : rdtsc() + (uint64_t)ms * tsc_per_ms() + 1;
}

int expired(uint64_t deadline)
{
	return deadline && rdtsc() >= deadline;
}

/* Milliseconds left (-1: no deadline), capped at cap_ms when cap_ms >= 0. */
int ms_left(uint64_t deadline, int cap_ms)
{
	int left;

	if (!deadline) {
		left = -1;
	} else {
		uint64_t now = rdtsc();
		uint64_t ms = now >= deadline ? 0 : (deadline - now) / tsc_per_ms();

		left = ms > 0x7fffffff ? 0x7fffffff : (int)ms;
	}
	if (cap_ms >= 0 && (left < 0 || left > cap_ms))
		left = cap_ms;
	return left;
}

/* How long a call on s may wait, in ms (-1: no limit). */
int wait_ms(const struct gsock *s, int flags, int send_side)
{
	if (s->nonblock || (flags & MSG_DONTWAIT))
		return 0;
	return send_side ? s->sndtimeo_ms : s->rcvtimeo_ms;
}

/* Can another vCPU, or another program (the loopback arena, arena.c), change
 * guest-local state while this one waits? */
int local_waiters_possible(void)
{
	return rt_cpu_count() > 1 || arena_present();
}
