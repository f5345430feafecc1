/*
 * RPC latency: argv[1] = module (default "echo"), argv[2] = iterations
 * (default 20000).  Times null calls (empty request) after a warm-up, then the
 * plain exit round trip for comparison.
 */
#include <vmrpc.h>
#include <vmrpc/bench.h>

#define WARMUP 1000

int main(int argc, char **argv)
{
	const char *module = argc > 1 ? argv[1] : "echo";
	long n = argc > 2 ? strtol(argv[2], NULL, 0) : 20000;
	uint64_t *samples;
	char name[64];
	int h;

	if (n <= 0 || n > 10000000) {
		printf("rpcbench: bad iteration count\n");
		return 2;
	}
	h = bind_module(module, VMRPC_VERSION(1, 0));
	if (h < 0) {
		printf("rpcbench: bind %s: %s (%d)\n", module, vmrpc_strerror(h), h);
		return 1;
	}
	samples = malloc((size_t)n * sizeof(*samples));
	if (!samples) {
		printf("rpcbench: out of memory for %ld samples\n", n);
		return 1;
	}
	for (int i = 0; i < WARMUP; i++) {
		long rc = perform_rpc(h, 0, NULL, 0, NULL, 0);

		if (rc < 0) {
			printf("rpcbench: warm-up call: %s (%ld)\n", vmrpc_strerror((int)rc), rc);
			return 1;
		}
	}
	for (long i = 0; i < n; i++) {
		uint64_t t0 = rdtsc();
		long rc = perform_rpc(h, 0, NULL, 0, NULL, 0);

		samples[i] = rdtsc() - t0;
		if (rc < 0) {
			printf("rpcbench: call %ld: %s (%ld)\n", i, vmrpc_strerror((int)rc), rc);
			return 1;
		}
	}
	snprintf(name, sizeof(name), "rpc_%s", module);
	bench_report(name, samples, (size_t)n);
	free(samples);
	if (bench_exit_rtt((size_t)n)) {
		printf("rpcbench: out of memory for the exit baseline\n");
		return 1;
	}
	return 0;
}
