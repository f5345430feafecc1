/*
 * getrusage (docs/linux.md, "Resource usage").  CPU time is the host's: each
 * vCPU runs on a host thread, and the host reads that thread's CPU clock
 * (crates/vmm/src/vm/cpu_clock.rs) with one MMIO read.  That clock counts the
 * program's instructions and the VMM's work in that thread alike, so all of
 * it is ru_utime and ru_stime stays 0.  ru_maxrss is the peak the program has
 * had mapped (mem.c), in KiB.  RUSAGE_CHILDREN: no children, all zeros.
 */
#include "linux.h"
#include "vcpu_abi.h"

#define RUSAGE_SELF 0
#define RUSAGE_CHILDREN (-1)
#define RUSAGE_THREAD 1

struct lx_rusage {
	int64_t utime_sec, utime_usec;
	int64_t stime_sec, stime_usec;
	int64_t maxrss, ixrss, idrss, isrss, minflt, majflt, nswap;
	int64_t inblock, oublock, msgsnd, msgrcv, nsignals, nvcsw, nivcsw;
};
_Static_assert(sizeof(struct lx_rusage) == 144, "Linux's struct rusage on x86-64");

static long do_getrusage(int64_t who, uint64_t addr)
{
	struct lx_rusage ru = {0};
	uint64_t ns = 0;

	if (who != RUSAGE_SELF && who != RUSAGE_CHILDREN && who != RUSAGE_THREAD)
		return -EINVAL;
	if (!lx_user_ok(addr, sizeof(ru)))
		return -EFAULT;
	if (who == RUSAGE_THREAD)
		ns = *(volatile uint64_t *)(uintptr_t)(LX_MMIO_CPU_CLOCK + LX_CPU_CLOCK_THREAD);
	else if (who == RUSAGE_SELF)
		ns = *(volatile uint64_t *)(uintptr_t)(LX_MMIO_CPU_CLOCK + LX_CPU_CLOCK_ALL);
	if (who != RUSAGE_CHILDREN) {
		ru.utime_sec = (int64_t)(ns / 1000000000u);
		ru.utime_usec = (int64_t)(ns % 1000000000u / 1000u);
		ru.maxrss = (int64_t)(lx_mem_mapped_peak() / 1024u);
	}
	memcpy((void *)(uintptr_t)addr, &ru, sizeof(ru));
	return 0;
}

long lx_rusage_syscall(struct lx_frame *f)
{
	if (f->nr == __NR_getrusage)
		return do_getrusage((int64_t)(int)f->rdi, f->rsi);
	return LX_ENOSYS_MARK;
}
