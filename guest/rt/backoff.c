/* Spin, then give the host CPU away: see vmrpc/backoff.h. */
#include <vmrpc.h>
#include <vmrpc/backoff.h>

/* Without a known TSC rate: about 50-100 us at 2-4 GHz. */
#define SPIN_CYCLES_UNKNOWN_RATE 200000u

static uint64_t spin_cycles(void)
{
	uint64_t khz = rt_tsc_khz();

	return khz ? khz * RT_BACKOFF_SPIN_US / 1000u : SPIN_CYCLES_UNKNOWN_RATE;
}

void rt_backoff_wait(struct rt_backoff *b)
{
	if (!b->sleep_us) {
		uint64_t now = rdtsc();

		if (!b->started)
			b->started = now;
		if (now - b->started < spin_cycles()) {
			for (uint32_t i = 0; i < b->pauses; i++)
				cpu_relax();
			if (b->pauses < RT_BACKOFF_MAX_PAUSES)
				b->pauses *= 2;
			return;
		}
		b->sleep_us = RT_BACKOFF_FIRST_SLEEP_US;
	}
	mmio_write32(VMRPC_MMIO_YIELD, b->sleep_us);
	b->sleep_us *= 2;
	if (b->sleep_us > VMRPC_YIELD_MAX_US)
		b->sleep_us = VMRPC_YIELD_MAX_US;
}
