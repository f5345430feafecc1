/*
 * The syscall trace (LinuxVM(trace=True), --trace): one LXF_TRACE record per
 * call with all six arguments and, for calls that take paths, the paths
 * themselves (copied from the program, checked like any path argument), so
 * the host can print open("/data/f", O_RDONLY) rather than two numbers.
 */
#include "linux.h"

#define TRACE_PATH_MAX 512

/* Which arguments (bit i: argument i) are paths, for the calls that have any. */
static unsigned path_args(uint64_t nr)
{
	switch (nr) {
	case __NR_open:
	case __NR_stat:
	case __NR_lstat:
	case __NR_access:
	case __NR_readlink:
	case __NR_unlink:
	case __NR_rmdir:
	case __NR_mkdir:
	case __NR_chdir:
	case __NR_truncate:
	case __NR_execve:
		return 1u << 0;
	case __NR_rename:
		return 1u << 0 | 1u << 1;
	case __NR_openat:
	case __NR_newfstatat:
	case __NR_statx:
	case __NR_faccessat:
	case __NR_faccessat2:
	case __NR_readlinkat:
	case __NR_unlinkat:
	case __NR_mkdirat:
		return 1u << 1;
	case __NR_renameat:
	case __NR_renameat2:
		return 1u << 1 | 1u << 3;
	default:
		return 0;
	}
}

void lx_trace(const struct lx_frame *f, long result, uint64_t ns)
{
	static uint8_t rec[5 * sizeof(uint64_t) + 2 * TRACE_PATH_MAX];
	const uint64_t args[6] = {f->rdi, f->rsi, f->rdx, f->r10, f->r8, f->r9};
	unsigned paths = path_args(f->nr);
	size_t len = 5 * sizeof(uint64_t);

	memcpy(rec, &args[1], len);
	for (unsigned i = 0; i < 6; i++) {
		char *p = (char *)rec + len;

		if (!(paths & (1u << i)))
			continue;
		/* Unreadable or too long: an empty path (the result says why). */
		if (lx_user_str(args[i], p, TRACE_PATH_MAX) < 0)
			p[0] = 0;
		len += strlen(p) + 1;
	}
	lx_host(LXF_TRACE, (int64_t)f->nr, result, (int64_t)ns, (int64_t)args[0], rec, len, NULL, 0,
		NULL);
}
