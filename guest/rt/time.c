/* clock() and the sleeps, all from the TSC (invariant; its rate is in boot info). */
#include <time.h>
#include <unistd.h>

#include "internal.h"

static uint64_t boot_tsc;

void rt_time_init(void)
{
	boot_tsc = rdtsc();
}

clock_t clock(void)
{
	if (!rt_tsc_khz())
		return (clock_t)-1;
	return (clock_t)(rt_ns_from_tsc(rdtsc() - boot_tsc) / (1000000000 / CLOCKS_PER_SEC));
}

/* Spins (pause) for `us` microseconds; the runtime has no timer interrupt to sleep on. */
static int spin_us(uint64_t us)
{
	uint64_t khz = rt_tsc_khz(), start = rdtsc(), cycles;

	if (!khz)
		return -1;
	cycles = us / 1000 * khz + us % 1000 * khz / 1000;
	while (rdtsc() - start < cycles)
		cpu_relax();
	return 0;
}

int usleep(unsigned long usec)
{
	if (spin_us(usec) < 0) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

unsigned sleep(unsigned seconds)
{
	spin_us((uint64_t)seconds * 1000000u);
	return 0;
}
