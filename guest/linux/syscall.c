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
	lx_misc_syscall,
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

long lx_syscall(struct lx_frame *f)
{
	uint64_t t0;
	long r;

	if (!(lx_info->flags & LX_FLAG_TRACE))
		return f->nr == __NR_clock_gettime ? lx_time_syscall(f) : dispatch(f);
	t0 = rdtsc();
	r = dispatch(f);
	lx_trace(f, r, rt_ns_from_tsc(rdtsc() - t0));
	return r;
}
