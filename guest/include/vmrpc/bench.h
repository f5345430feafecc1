/*
 * Benchmark helpers shared by the benchmark guests: sample statistics and the
 * one-line BENCH report the host-side tooling parses:
 *   BENCH name=<name> n=<n> median_ns=<x> p99_ns=<y> min_ns=<z>
 * (values are TSC cycles and the line ends in " unit=cycles" when the TSC
 * frequency is unknown).
 */
#ifndef VMRPC_BENCH_H
#define VMRPC_BENCH_H

#include <stddef.h>
#include <stdint.h>

/* Sorts ascending, in place (heapsort: no recursion, no extra memory). */
void bench_sort_u64(uint64_t *v, size_t n);
/* Nearest-rank percentile (0..100) of sorted samples; 0 if n == 0. */
uint64_t bench_percentile(const uint64_t *sorted, size_t n, unsigned pct);
/* Sorts the TSC-cycle samples in place and prints the BENCH line. */
void bench_report(const char *name, uint64_t *cycles, size_t n);
/*
 * Times n round trips of an MMIO write that exits to the VMM's user space and
 * does nothing else (the console UART's scratch register) and reports them as
 * "exit_rtt".  Returns 0, or -1 if the samples could not be allocated.
 */
int bench_exit_rtt(size_t n);

#endif /* VMRPC_BENCH_H */
