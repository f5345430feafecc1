/*
 * Baseline for the RPC benchmarks: the round-trip cost of a port write that
 * exits to the VMM's user space.  argv[1] = iterations (default 10000).
 */
#include <vmrpc.h>
#include <vmrpc/bench.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? strtol(argv[1], NULL, 0) : 10000;

	if (n <= 0 || n > 10000000) {
		printf("exitbench: bad iteration count\n");
		return 2;
	}
	if (bench_exit_rtt((size_t)n)) {
		printf("exitbench: out of memory for %ld samples\n", n);
		return 1;
	}
	return 0;
}
