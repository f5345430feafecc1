/*
 * File-system calls: all outsourced to the files host module, which resolves
 * paths inside the mounts on the host (confined there; see
 * python/vmrpc/linux/files.py).  The guest only copies and checks the
 * program's arguments and translates fds to host handles.
 */
#include "linux.h"

#define PATH_MAX 4096
#define O_CREAT 0100
#define O_DIRECTORY 0200000
#define O_NOFOLLOW 0400000
#define AT_SYMLINK_NOFOLLOW 0x100
#define AT_REMOVEDIR 0x200
#define AT_EMPTY_PATH 0x1000
#define STAT_SIZE 144
#define STATX_SIZE 256

static char path1[PATH_MAX], path2[PATH_MAX];

/* Copies path argument `addr` into buf; an empty path is only fine with AT_EMPTY_PATH. */
static long get_path(uint64_t addr, char *buf, int allow_empty)
{
	long r = lx_user_str(addr, buf, PATH_MAX);

	if (r < 0)
		return r;
	if (!buf[0] && !allow_empty)
		return -ENOENT;
	return 0;
}

/* The common start of an *at call: dirfd to a host handle, path copied into path1. */
static long at_args(int64_t dirfd, uint64_t upath, int allow_empty, int64_t *dh)
{
	long r;

	*dh = lx_fd_dir_handle(dirfd);
	if (*dh < 0 && *dh != LX_AT_FDCWD)
		return *dh;
	r = get_path(upath, path1, allow_empty);
	/* /proc/self/exe leads to the program (the kernel's magic link does). */
	if (r == 0 && lx_exe_alias(path1, sizeof(path1)))
		*dh = LX_AT_FDCWD;
	return r;
}

static long out_bytes(uint32_t fn, int64_t a0, int64_t a1, int64_t a2, const char *path,
		      uint64_t dst, uint64_t size)
{
	static uint8_t tmp[STATX_SIZE];
	size_t got;
	long r;

	if (!lx_user_ok(dst, size))
		return -EFAULT;
	r = lx_host_path(fn, a0, a1, a2, path, NULL, tmp, size, &got);
	if (r < 0)
		return r;
	if (got != size)
		return -EIO;
	memcpy((void *)(uintptr_t)dst, tmp, size);
	return 0;
}

static long do_openat(int64_t dirfd, uint64_t upath, int flags, int mode)
{
	int64_t dh;
	long r;

	r = at_args(dirfd, upath, 0, &dh);
	if (r < 0)
		return r;
	r = lx_host_path(LXF_OPENAT, dh, flags, mode, path1, NULL, NULL, 0, NULL);
	if (r < 0)
		return r;
	return lx_fd_install_host(r, flags);
}

static long do_fstatat(int64_t dirfd, uint64_t upath, uint64_t st, int flags)
{
	int64_t dh;
	long r;

	r = at_args(dirfd, upath, flags & AT_EMPTY_PATH, &dh);
	if (r < 0)
		return r;
	return out_bytes(LXF_FSTATAT, dh, flags, 0, path1, st, STAT_SIZE);
}

static long do_statx(int64_t dirfd, uint64_t upath, int flags, unsigned mask, uint64_t st)
{
	int64_t dh;
	long r;

	r = at_args(dirfd, upath, flags & AT_EMPTY_PATH, &dh);
	if (r < 0)
		return r;
	return out_bytes(LXF_STATX, dh, flags, mask, path1, st, STATX_SIZE);
}

static long simple_path(uint32_t fn, int64_t dirfd, uint64_t upath, int64_t a1, int64_t a2)
{
	int64_t dh;
	long r;

	r = at_args(dirfd, upath, 0, &dh);
	if (r < 0)
		return r;
	return lx_host_path(fn, dh, a1, a2, path1, NULL, NULL, 0, NULL);
}

static long do_readlinkat(int64_t dirfd, uint64_t upath, uint64_t buf, uint64_t size)
{
	int64_t dh;
	size_t got;
	long r;

	if ((int64_t)size <= 0)
		return -EINVAL;
	if (size > PATH_MAX)
		size = PATH_MAX;
	if (!lx_user_ok(buf, size))
		return -EFAULT;
	r = get_path(upath, path1, 0);
	if (r == 0 && !strcmp(path1, "/proc/self/exe") && lx_exe_path()) {
		got = strlen(lx_exe_path()); /* readlink does not NUL-terminate */
		got = got < size ? got : size;
		memcpy((void *)(uintptr_t)buf, lx_exe_path(), got);
		return (long)got;
	}
	r = at_args(dirfd, upath, 0, &dh);
	if (r < 0)
		return r;
	r = lx_host_path(LXF_READLINKAT, dh, (int64_t)size, 0, path1, NULL, path2, size, &got);
	if (r < 0)
		return r;
	memcpy((void *)(uintptr_t)buf, path2, got);
	return (long)got;
}

static long do_renameat(int64_t olddir, uint64_t oldp, int64_t newdir, uint64_t newp, int flags)
{
	int64_t oh = lx_fd_dir_handle(olddir), nh = lx_fd_dir_handle(newdir);
	long r;

	if (oh < 0 && oh != LX_AT_FDCWD)
		return oh;
	if (nh < 0 && nh != LX_AT_FDCWD)
		return nh;
	r = get_path(oldp, path1, 0);
	if (r == 0)
		r = get_path(newp, path2, 0);
	if (r < 0)
		return r;
	return lx_host_path(LXF_RENAMEAT, oh, nh, flags, path1, path2, NULL, 0, NULL);
}

static long handle_call(uint32_t fn, int64_t fd, int64_t a1, int64_t a2)
{
	int64_t h = lx_fd_host((int)fd);

	if (h < 0)
		return h == -EINVAL ? -ESPIPE : h;
	return lx_host(fn, h, a1, a2, 0, NULL, 0, NULL, 0, NULL);
}

/*
 * Record locks are taken by the host on its own descriptor of the file
 * (python/vmrpc/linux/locks.py), so host processes see them.  struct flock is
 * copied in, sent as is (the host checks its fields), and copied back for the
 * GETLK forms.
 */
#define FLOCK_SIZE 32 /* struct flock on x86-64 (locks.py FLOCK) */

long lx_fs_lock(int64_t fd, int cmd, uint64_t uflock)
{
	uint8_t lk[FLOCK_SIZE], out[FLOCK_SIZE];
	int64_t h = lx_fd_host((int)fd);
	size_t got = 0;
	long r;

	if (h < 0)
		return h == -EINVAL ? -EINVAL : h; /* a pipe or socket: no record locks here */
	if (!lx_user_ok(uflock, sizeof(lk)))
		return -EFAULT;
	memcpy(lk, (const void *)(uintptr_t)uflock, sizeof(lk));
	r = lx_host(LXF_LOCK, h, cmd, 0, 0, lk, sizeof(lk), out, sizeof(out), &got);
	if (r < 0)
		return r;
	if (got != sizeof(out))
		return -EIO;
	if (cmd == F_GETLK || cmd == F_OFD_GETLK)
		memcpy((void *)(uintptr_t)uflock, out, sizeof(out));
	return 0;
}

static long do_fstat(int64_t fd, uint64_t st)
{
	static uint8_t tmp[STAT_SIZE];
	int64_t h = lx_fd_host((int)fd);
	size_t got;
	long r;

	if (h == -EINVAL) {
		/* A pipe: S_IFIFO, everything else zero. */
		if (!lx_user_ok(st, STAT_SIZE))
			return -EFAULT;
		memset((void *)(uintptr_t)st, 0, STAT_SIZE);
		*(uint32_t *)(uintptr_t)(st + 24) = 0010600;
		return 0;
	}
	if (h < 0)
		return h;
	if (!lx_user_ok(st, STAT_SIZE))
		return -EFAULT;
	r = lx_host(LXF_FSTAT, h, 0, 0, 0, NULL, 0, tmp, sizeof(tmp), &got);
	if (r < 0)
		return r;
	if (got != STAT_SIZE)
		return -EIO;
	memcpy((void *)(uintptr_t)st, tmp, STAT_SIZE);
	return 0;
}

static long do_getdents(int64_t fd, uint64_t buf, uint64_t count)
{
	int64_t h = lx_fd_host((int)fd);
	size_t got;
	long r;

	if (h < 0)
		return h == -EINVAL ? -ENOTDIR : h;
	if (count > LX_CHUNK)
		count = LX_CHUNK;
	if (!lx_user_ok(buf, count))
		return -EFAULT;
	r = lx_host(LXF_GETDENTS, h, (int64_t)count, 0, 0, NULL, 0, (void *)(uintptr_t)buf, count,
		    &got);
	return r < 0 ? r : (long)got;
}

static long do_getcwd(uint64_t buf, uint64_t size)
{
	size_t got;
	long r;

	if (!lx_user_ok(buf, size))
		return -EFAULT;
	r = lx_host(LXF_GETCWD, 0, 0, 0, 0, NULL, 0, path1, sizeof(path1) - 1, &got);
	if (r < 0)
		return r;
	if (got + 1 > size)
		return -ERANGE;
	path1[got] = 0;
	memcpy((void *)(uintptr_t)buf, path1, got + 1);
	return (long)got + 1;
}

long lx_fs_syscall(struct lx_frame *f)
{
	int64_t a0 = (int64_t)(int32_t)f->rdi; /* dirfd or fd, where it is one */

	switch (f->nr) {
	case __NR_open:
		return do_openat(LX_AT_FDCWD, f->rdi, (int)f->rsi, (int)f->rdx);
	case __NR_creat:
		return do_openat(LX_AT_FDCWD, f->rdi, O_CREAT | 01 | 01000, (int)f->rsi);
	case __NR_openat:
		return do_openat(a0, f->rsi, (int)f->rdx, (int)f->r10);
	case __NR_stat:
		return do_fstatat(LX_AT_FDCWD, f->rdi, f->rsi, 0);
	case __NR_lstat:
		return do_fstatat(LX_AT_FDCWD, f->rdi, f->rsi, AT_SYMLINK_NOFOLLOW);
	case __NR_newfstatat:
		if ((f->r10 & AT_EMPTY_PATH) && lx_user_ok(f->rsi, 1) && !*(char *)(uintptr_t)f->rsi)
			return do_fstat(a0, f->rdx);
		return do_fstatat(a0, f->rsi, f->rdx, (int)f->r10);
	case __NR_fstat:
		return do_fstat(a0, f->rsi);
	case __NR_statx:
		return do_statx(a0, f->rsi, (int)f->rdx, (unsigned)f->r10, f->r8);
	case __NR_lseek:
		return handle_call(LXF_LSEEK, a0, (int64_t)f->rsi, (int64_t)f->rdx);
	case __NR_getdents64:
		return do_getdents(a0, f->rsi, f->rdx);
	case __NR_ftruncate:
		return handle_call(LXF_FTRUNCATE, a0, (int64_t)f->rsi, 0);
	case __NR_fsync:
	case __NR_fdatasync:
		return handle_call(LXF_FSYNC, a0, 0, 0);
	case __NR_access:
		return simple_path(LXF_FACCESSAT, LX_AT_FDCWD, f->rdi, (int64_t)f->rsi, 0);
	case __NR_faccessat:
		return simple_path(LXF_FACCESSAT, a0, f->rsi, (int64_t)f->rdx, 0);
	case __NR_faccessat2:
		return simple_path(LXF_FACCESSAT, a0, f->rsi, (int64_t)f->rdx, (int64_t)f->r10);
	case __NR_readlink:
		return do_readlinkat(LX_AT_FDCWD, f->rdi, f->rsi, f->rdx);
	case __NR_readlinkat:
		return do_readlinkat(a0, f->rsi, f->rdx, f->r10);
	case __NR_unlink:
		return simple_path(LXF_UNLINKAT, LX_AT_FDCWD, f->rdi, 0, 0);
	case __NR_rmdir:
		return simple_path(LXF_UNLINKAT, LX_AT_FDCWD, f->rdi, AT_REMOVEDIR, 0);
	case __NR_unlinkat:
		return simple_path(LXF_UNLINKAT, a0, f->rsi, (int64_t)f->rdx, 0);
	case __NR_mkdir:
		return simple_path(LXF_MKDIRAT, LX_AT_FDCWD, f->rdi, (int64_t)f->rsi, 0);
	case __NR_mkdirat:
		return simple_path(LXF_MKDIRAT, a0, f->rsi, (int64_t)f->rdx, 0);
	case __NR_rename:
		return do_renameat(LX_AT_FDCWD, f->rdi, LX_AT_FDCWD, f->rsi, 0);
	case __NR_renameat:
		return do_renameat(a0, f->rsi, (int32_t)f->rdx, f->r10, 0);
	case __NR_renameat2:
		return do_renameat(a0, f->rsi, (int32_t)f->rdx, f->r10, (int)f->r8);
	case __NR_getcwd:
		return do_getcwd(f->rdi, f->rsi);
	case __NR_chdir:
		lx_fork_cwd_changing(); /* a forked child's cd is not its parent's */
		return simple_path(LXF_CHDIR, LX_AT_FDCWD, f->rdi, 0, 0);
	case __NR_fchdir: {
		int64_t h = lx_fd_host((int)a0);
		lx_fork_cwd_changing();
		if (h < 0)
			return h == -EINVAL ? -ENOTDIR : h;
		return lx_host_path(LXF_CHDIR, h, 0, 0, "", NULL, NULL, 0, NULL);
	}
	default:
		return LX_ENOSYS_MARK;
	}
}
