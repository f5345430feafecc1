/*
 * getrandom: a ChaCha20 keystream keyed by 32 bytes of host entropy
 * (vmrpc_linux_info.seed), the construction of Linux's own CRNG and of
 * arc4random.  Written here from RFC 8439's description.
 */
#include "linux.h"

static uint32_t key[8];
static uint64_t counter;
static uint8_t block[64];
static unsigned used = 64;

static uint32_t rotl(uint32_t v, int n)
{
	return (v << n) | (v >> (32 - n));
}

#define QR(a, b, c, d)                                                                             \
	do {                                                                                       \
		a += b; d ^= a; d = rotl(d, 16);                                                   \
		c += d; b ^= c; b = rotl(b, 12);                                                   \
		a += b; d ^= a; d = rotl(d, 8);                                                    \
		c += d; b ^= c; b = rotl(b, 7);                                                    \
	} while (0)

static void refill(void)
{
	uint32_t in[16] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574};
	uint32_t x[16];

	memcpy(&in[4], key, sizeof(key));
	in[12] = (uint32_t)counter;
	in[13] = (uint32_t)(counter >> 32);
	counter++;
	memcpy(x, in, sizeof(x));
	for (int i = 0; i < 10; i++) {
		QR(x[0], x[4], x[8], x[12]);
		QR(x[1], x[5], x[9], x[13]);
		QR(x[2], x[6], x[10], x[14]);
		QR(x[3], x[7], x[11], x[15]);
		QR(x[0], x[5], x[10], x[15]);
		QR(x[1], x[6], x[11], x[12]);
		QR(x[2], x[7], x[8], x[13]);
		QR(x[3], x[4], x[9], x[14]);
	}
	for (int i = 0; i < 16; i++)
		x[i] += in[i];
	memcpy(block, x, sizeof(block));
	used = 0;
}

void lx_rand_init(const uint8_t seed[32])
{
	memcpy(key, seed, sizeof(key));
}

void lx_rand_reseed(const uint8_t seed[32])
{
	lx_rand_init(seed);
	counter = 0;
	used = sizeof(block); /* the rest of the old block is the snapshot's */
}

long lx_getrandom(uint64_t buf, uint64_t len, unsigned flags)
{
	uint8_t *out = (uint8_t *)(uintptr_t)buf;

	if (flags & ~7u)
		return -EINVAL;
	if (len > 33554431)
		len = 33554431; /* Linux's per-call cap */
	if (!lx_user_ok(buf, len))
		return -EFAULT;
	for (uint64_t i = 0; i < len; i++) {
		if (used == 64)
			refill();
		out[i] = block[used];
		block[used++] = 0; /* no keystream byte is handed out twice */
	}
	return (long)len;
}
