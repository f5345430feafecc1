/* Sample statistics and BENCH lines for the benchmark guests. */
#include <vmrpc.h>
#include <vmrpc/bench.h>

/* The console UART's scratch register: a write exits to the VMM and does nothing. */
#define COM1_SCRATCH (VMRPC_MMIO_CONSOLE + 7u)

static void sift_down(uint64_t *v, size_t root, size_t n)
{
	for (;;) {
		size_t child = 2 * root + 1;
		uint64_t t;

		if (child >= n)
			return;
		if (child + 1 < n && v[child + 1] > v[child])
			child++;
		if (v[root] >= v[child])
			return;
		t = v[root];
		v[root] = v[child];
		v[child] = t;
		root = child;
	}
}

void bench_sort_u64(uint64_t *v, size_t n)
{
	size_t i;

	if (n < 2)
		return;
	for (i = n / 2; i-- > 0;)
		sift_down(v, i, n);
	for (i = n - 1; i > 0; i--) {
		uint64_t t = v[0];

		v[0] = v[i];
		v[i] = t;
		sift_down(v, 0, i);
	}
}

uint64_t bench_percentile(const uint64_t *sorted, size_t n, unsigned pct)
{
	size_t rank;

	if (!n)
		return 0;
	if (pct > 100)
		pct = 100;
	rank = (n * pct + 99) / 100; /* ceil(n * pct / 100) */
	return sorted[rank ? rank - 1 : 0];
}

void bench_report(const char *name, uint64_t *cycles, size_t n)
{
	uint64_t med, p99, min;
	int known = rt_tsc_khz() != 0;

	bench_sort_u64(cycles, n);
	med = bench_percentile(cycles, n, 50);
	p99 = bench_percentile(cycles, n, 99);
	min = n ? cycles[0] : 0;
	if (known) {
		med = rt_ns_from_tsc(med);
		p99 = rt_ns_from_tsc(p99);
		min = rt_ns_from_tsc(min);
	}
	printf("BENCH name=%s n=%zu median_ns=%llu p99_ns=%llu min_ns=%llu%s\n", name, n,
	       (unsigned long long)med, (unsigned long long)p99, (unsigned long long)min,
	       known ? "" : " unit=cycles");
}

int bench_exit_rtt(size_t n)
{
	uint64_t *samples;
	size_t i;

	if (n > ((size_t)1 << 32))
		return -1;
	samples = malloc(n * sizeof(*samples) + 1); /* +1: n == 0 still allocates */
	if (!samples)
		return -1;
	for (i = 0; i < n; i++) {
		uint64_t t0 = rdtsc();

		mmio_write8(COM1_SCRATCH, 0);
		samples[i] = rdtsc() - t0;
	}
	bench_report("exit_rtt", samples, n);
	free(samples);
	return 0;
}
