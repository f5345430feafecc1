/* Time conversion and a PRNG. */
#include "internal.h"

uint64_t rt_tsc_khz(void)
{
	return rt_bootinfo ? rt_bootinfo->tsc_khz : 0;
}

uint64_t rt_ns_from_tsc(uint64_t cycles)
{
	uint64_t khz = rt_tsc_khz();

	if (!khz)
		return 0;
	/* ns = cycles * 10^6 / khz, split so the product cannot overflow 64 bits
	 * (avoids 128-bit division and so libgcc). */
	return cycles / khz * 1000000u + cycles % khz * 1000000u / khz;
}

uint64_t rt_rand64(uint64_t *state)
{
	uint64_t x = *state;

	if (!x)
		x = 0x9E3779B97F4A7C15ull;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1Dull;
}
