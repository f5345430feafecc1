/*
 * The system-call dispatcher: each family answers the calls it knows or
 * LX_ENOSYS_MARK; what nobody knows is -ENOSYS, reported to the host once per
 * call so the VM's stats count it by name.
 */
#include "linux.h"

typedef long (*lx_family_fn)(struct lx_frame *f);

static const lx_family_fn families[] = {
	lx_net_syscall, /* first: it takes read/write on sockets */
	lx_fd_syscall,
	lx_fs_syscall,
	lx_time_syscall,
	lx_thread_syscall,
	lx_fork_syscall, /* before misc: getpid/getppid */
	lx_exec_syscall,
	lx_misc_syscall,
	lx_rusage_syscall,
	lx_wait_syscall,
	lx_futex_syscall,
	lx_rpc_syscall,
};

long lx_syscall(struct lx_frame *f);

static long dispatch(struct lx_frame *f)
{
	size_t i;
	long r;

	for (i = 0; i < RT_ARRAY_SIZE(families); i++) {
		r = families[i](f);
		if (r != LX_ENOSYS_MARK)
			return r;
	}
	lx_host(LXF_ENOSYS, (int64_t)f->nr, 0, 0, 0, NULL, 0, NULL, 0, NULL);
	return -ENOSYS;
}

/*
 * Calls that touch no shared state of the personality, or wait: never under
 * the personality lock (lock.c), which the others take once there are threads.
 */
static int lock_free(uint64_t nr)
{
	switch (nr) {
	case __NR_futex:
	case __NR_clock_gettime:
	case __NR_clock_nanosleep:
	case __NR_nanosleep:
	case __NR_gettimeofday:
	case __NR_time:
	case __NR_gettid:
	case __NR_getpid:
	case __NR_sched_yield:
	case __NR_exit:
	case __NR_exit_group:
	case __NR_set_robust_list:
	case __NR_set_tid_address:
		return 1;
	default:
		return 0;
	}
}

static long locked_dispatch(struct lx_frame *f)
{
	int lock = !lx_threads_alone() && !lock_free(f->nr);
	long r;

	if (lock) {
		lx_lock();
		lx_tlb_catch_up(); /* another thread may have removed rights */
	}
	r = dispatch(f);
	if (lock)
		lx_unlock();
	return r;
}

long lx_syscall(struct lx_frame *f)
{
	uint64_t t0;
	long r;

	if (!(lx_info->flags & LX_FLAG_TRACE))
		return f->nr == __NR_clock_gettime ? lx_time_syscall(f) : locked_dispatch(f);
	t0 = rdtsc();
	r = locked_dispatch(f);
	t0 = rt_ns_from_tsc(rdtsc() - t0);
	if (!lx_threads_alone()) {
		lx_lock(); /* the trace goes through the shared host-call buffers */
		lx_trace(f, r, t0);
		lx_unlock();
	} else {
		lx_trace(f, r, t0);
	}
	return r;
}
