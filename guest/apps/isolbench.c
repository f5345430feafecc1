/*
 * Victim of the CPU isolation benchmark (benches/isolation.py): null RPCs to
 * module argv[1] (default "echo") for argv[2] milliseconds (default 2000), at
 * most MAX_SAMPLES of them.  Prints the BENCH line (median, p99, min) and the
 * worst call, which is what a noisy neighbour shows first.
 */
#include <vmrpc.h>
#include <vmrpc/bench.h>

#define WARMUP 200
#define MAX_SAMPLES 1000000

int main(int argc, char **argv)
{
	const char *module = argc > 1 ? argv[1] : "echo";
	long ms = argc > 2 ? strtol(argv[2], NULL, 0) : 2000;
	uint64_t khz = rt_tsc_khz();
	uint64_t *samples, end;
	size_t n = 0;
	int h;

	if (ms <= 0 || ms > 600000 || !khz) {
		printf("isolbench: bad duration or unknown TSC rate\n");
		return 2;
	}
	h = bind_module(module, VMRPC_VERSION(1, 0));
	if (h < 0) {
		printf("isolbench: bind %s: %s (%d)\n", module, vmrpc_strerror(h), h);
		return 1;
	}
	samples = malloc(MAX_SAMPLES * sizeof(*samples));
	if (!samples) {
		printf("isolbench: out of memory\n");
		return 1;
	}
	for (int i = 0; i < WARMUP; i++)
		if (perform_rpc(h, 0, NULL, 0, NULL, 0) < 0)
			return 1;
	end = rdtsc() + khz * (uint64_t)ms;
	while (n < MAX_SAMPLES && rdtsc() < end) {
		uint64_t t0 = rdtsc();
		long rc = perform_rpc(h, 0, NULL, 0, NULL, 0);

		samples[n++] = rdtsc() - t0;
		if (rc < 0) {
			printf("isolbench: call %zu: %s (%ld)\n", n, vmrpc_strerror((int)rc), rc);
			return 1;
		}
	}
	bench_report("rpc_null", samples, n); /* sorts the samples */
	printf("WORST max_ns=%llu\n", (unsigned long long)rt_ns_from_tsc(samples[n - 1]));
	free(samples);
	return 0;
}
