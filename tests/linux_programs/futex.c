/* futex in a single-threaded program (tests/test_linux_futex.py): errno of each case. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* <linux/futex.h>'s values (musl-gcc has no kernel headers). */
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129
#define FUTEX_WAIT_BITSET_PRIVATE 137
#define FUTEX_BITSET_MATCH_ANY 0xffffffffu

static long futex(uint32_t *addr, int op, uint32_t val, const struct timespec *ts, uint32_t bits)
{
	return syscall(SYS_futex, addr, op, val, ts, NULL, bits);
}

static int err(long r)
{
	return r < 0 ? errno : 0;
}

int main(void)
{
	static uint32_t word = 5;
	struct timespec rel = {0, 2000000}, t0, t1, abs;

	int wake = (int)futex(&word, FUTEX_WAKE_PRIVATE, 1, NULL, 0);
	int changed = err(futex(&word, FUTEX_WAIT_PRIVATE, 4, NULL, 0));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int timed = err(futex(&word, FUTEX_WAIT_PRIVATE, 5, &rel, 0));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long waited = (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec);
	clock_gettime(CLOCK_MONOTONIC, &abs);
	abs.tv_nsec += 1000000;
	if (abs.tv_nsec >= 1000000000L) {
		abs.tv_sec++;
		abs.tv_nsec -= 1000000000L;
	}
	int bitset = err(futex(&word, FUTEX_WAIT_BITSET_PRIVATE, 5, &abs, FUTEX_BITSET_MATCH_ANY));
	int zero_bits = err(futex(&word, FUTEX_WAIT_BITSET_PRIVATE, 5, &abs, 0));
	int misaligned = err(futex((uint32_t *)((char *)&word + 1), FUTEX_WAIT_PRIVATE, 5, &rel, 0));
	printf("wake %d changed %d timed %d slept %d bitset %d zero %d misaligned %d\n", wake,
	       changed, timed, waited >= 2000000, bitset, zero_bits, misaligned);
	fflush(stdout);
	/* No timeout, nobody else: Linux would hang; the personality says EDEADLK. */
	printf("forever %d\n", err(futex(&word, FUTEX_WAIT_PRIVATE, 5, NULL, 0)));
	return 0;
}
