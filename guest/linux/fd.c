/*
 * The fd table.  A guest fd points at an open file (shared by dup), which is
 * a host handle of the files module, one end of an in-guest pipe, or a socket
 * (net.c; `host` is then the guest socket library's descriptor).
 * Data of host files goes through the files module in LX_CHUNK pieces (fileio.c).
 */
#include "linux.h"
#include "fd.h"

/* POLL*, O_NONBLOCK, F_GETFL/F_SETFL and struct pollfd come from vmrpc/socket.h (Linux values). */
#define MAX_FDS 256
#define MAX_OFILES 256

#define O_ACCMODE 3
#define O_WRONLY 1
#define O_RDWR 2
#define O_CLOEXEC 02000000
#define F_DUPFD 0
#define F_GETFD 1
#define F_SETFD 2
#define F_DUPFD_CLOEXEC 1030
#define FD_CLOEXEC 1
#define TCGETS 0x5401
#define TIOCGWINSZ 0x5413
#define FIONBIO 0x5421
#define FIOCLEX 0x5451
#define FIONCLEX 0x5450
#define SIGPIPE 13

enum { OF_FREE, OF_HOST, OF_PIPE_R, OF_PIPE_W, OF_SOCK, OF_EPOLL };

struct fdent {
	struct ofile *of;
	int cloexec;
};

static struct fdent fds[MAX_FDS];
static struct ofile ofiles[MAX_OFILES];
static uint8_t bounce[LX_CHUNK];

static struct ofile *of_new(int kind)
{
	for (int i = 0; i < MAX_OFILES; i++) {
		if (ofiles[i].kind == OF_FREE) {
			memset(&ofiles[i], 0, sizeof(ofiles[i]));
			ofiles[i].kind = kind;
			return &ofiles[i];
		}
	}
	return NULL;
}

static void of_put(struct ofile *of)
{
	if (--of->refs > 0)
		return;
	if (of->kind == OF_HOST)
		lx_host(LXF_CLOSE, of->host, 0, 0, 0, NULL, 0, NULL, 0, NULL);
	else if (of->kind == OF_SOCK)
		lx_net_release(of->host);
	else if (of->kind == OF_EPOLL)
		lx_epoll_release(of->host);
	if (of->kind == OF_PIPE_R || of->kind == OF_PIPE_W) {
		lx_pipe_close_end(of->pipe, of->kind == OF_PIPE_W);
		lx_ready_changed(); /* a waiting peer sees EOF / EPIPE */
	}
	of->kind = OF_FREE;
}

/*
 * Waits for a pipe to change (another thread reads, writes or closes), the
 * personality lock released meanwhile; with one thread nothing could change
 * it: EDEADLK.  0 to look again, or -errno.
 */
static long pipe_wait(struct ofile *of)
{
	if (of->flags & O_NONBLOCK)
		return -EAGAIN;
	if (lx_threads_alone())
		return -EDEADLK;
	of->refs++; /* the fd may be closed meanwhile: keep the pipe end */
	lx_ready_wait(-1);
	of_put(of);
	return of->kind == OF_FREE ? -EBADF : 0;
}

static struct ofile *get(int64_t fd)
{
	if (fd < 0 || fd >= MAX_FDS)
		return NULL;
	return fds[fd].of;
}

static long install(struct ofile *of, int min, int cloexec)
{
	for (int fd = min; fd < MAX_FDS; fd++) {
		if (!fds[fd].of) {
			fds[fd].of = of;
			fds[fd].cloexec = cloexec;
			of->refs++;
			return fd;
		}
	}
	return -EMFILE;
}

void lx_fd_init(void)
{
	/* fds 0, 1, 2: the host's stdin, stdout and stderr handles. */
	for (int fd = 0; fd < 3; fd++) {
		struct ofile *of = of_new(OF_HOST);
		of->host = fd;
		of->flags = fd == 0 ? 0 : O_WRONLY;
		install(of, fd, 0);
	}
}

int64_t lx_fd_host(int fd)
{
	struct ofile *of = get(fd);

	if (!of)
		return -EBADF;
	return of->kind == OF_HOST ? of->host : -EINVAL;
}

int64_t lx_fd_dir_handle(int64_t fd)
{
	struct ofile *of;

	if (fd == LX_AT_FDCWD)
		return LX_AT_FDCWD;
	of = get(fd);
	if (!of)
		return -EBADF;
	return of->kind == OF_HOST ? of->host : -ENOTDIR;
}

long lx_fd_install_host(int64_t h, int flags)
{
	struct ofile *of = of_new(OF_HOST);
	long fd;

	if (!of) {
		lx_host(LXF_CLOSE, h, 0, 0, 0, NULL, 0, NULL, 0, NULL);
		return -ENFILE;
	}
	of->host = h;
	of->flags = flags & ~O_CLOEXEC;
	fd = install(of, 0, !!(flags & O_CLOEXEC));
	if (fd < 0) {
		of->refs = 1;
		of_put(of);
	}
	return fd;
}

/* A new fd of kind OF_SOCK or OF_EPOLL over object `obj` (released if it fails). */
static long install_obj(int kind, int64_t obj, int flags)
{
	struct ofile *of = of_new(kind);
	long fd;

	if (!of) {
		if (kind == OF_SOCK)
			lx_net_release(obj);
		else
			lx_epoll_release(obj);
		return -ENFILE;
	}
	of->host = obj;
	of->flags = O_RDWR | (flags & O_NONBLOCK);
	fd = install(of, 0, !!(flags & O_CLOEXEC));
	if (fd < 0) {
		of->refs = 1;
		of_put(of);
	}
	return fd;
}

long lx_fd_install_sock(int64_t sock, int flags)
{
	return install_obj(OF_SOCK, sock, flags);
}

long lx_fd_install_epoll(int64_t ep, int flags)
{
	return install_obj(OF_EPOLL, ep, flags);
}

int64_t lx_fd_sock(int fd, int *nonblock)
{
	struct ofile *of = get(fd);

	if (!of)
		return -EBADF;
	if (of->kind != OF_SOCK)
		return -ENOTSOCK;
	if (nonblock)
		*nonblock = !!(of->flags & O_NONBLOCK);
	return of->host;
}

int64_t lx_fd_epoll(int fd)
{
	struct ofile *of = get(fd);

	if (!of)
		return -EBADF;
	return of->kind == OF_EPOLL ? of->host : -EINVAL;
}

static long do_close(int64_t fd)
{
	struct ofile *of = get(fd);

	if (!of)
		return -EBADF;
	fds[fd].of = NULL;
	of_put(of);
	return 0;
}

long lx_fd_close(int64_t fd)
{
	return do_close(fd);
}

/* ---- fork (fork.c) ---------------------------------------------------------- */

/* The parent's fd table comes back after its child; the open files are shared. */
void lx_fd_fork_keep(void)
{
	lx_fork_keep(fds, sizeof(fds));
}

/* The child's table is a copy: one more reference on each open file. */
void lx_fd_fork_hold(void)
{
	for (int fd = 0; fd < MAX_FDS; fd++)
		if (fds[fd].of)
			fds[fd].of->refs++;
}

/* The child ended: its fds close (what the parent still holds stays open). */
void lx_fd_close_all(void)
{
	for (int fd = 0; fd < MAX_FDS; fd++)
		if (fds[fd].of)
			do_close(fd);
}

/* exec (exec.c): close-on-exec fds close; the others stay, flags and all. */
void lx_fd_exec(void)
{
	for (int fd = 0; fd < MAX_FDS; fd++)
		if (fds[fd].of && fds[fd].cloexec)
			do_close(fd);
}

/* ---- data ------------------------------------------------------------------ */
static long pipe_read(struct ofile *of, uint8_t *dst, uint64_t len)
{
	uint64_t n;

	if (!len)
		return 0;
	while (!(n = lx_pipe_take(of->pipe, dst, len))) {
		long r;

		if (!lx_pipe_writers(of->pipe))
			return 0;
		r = pipe_wait(of);
		if (r < 0)
			return r;
	}
	lx_ready_changed();
	return (long)n;
}

static long pipe_write(struct ofile *of, const uint8_t *src, uint64_t len)
{
	uint64_t n;

	for (;;) {
		long r;

		if (!lx_pipe_readers(of->pipe))
			return -EPIPE; /* SIGPIPE is not delivered in part 1 */
		n = lx_pipe_put(of->pipe, src, len);
		if (n || !len)
			break;
		r = pipe_wait(of);
		if (r < 0)
			return r;
	}
	lx_ready_changed();
	return (long)n;
}

static long do_read(int64_t fd, uint64_t buf, uint64_t len, int64_t off)
{
	struct ofile *of = get(fd);

	if (!of)
		return -EBADF;
	if (!lx_user_ok(buf, len))
		return -EFAULT;
	if ((of->flags & O_ACCMODE) == O_WRONLY && of->kind == OF_HOST)
		return -EBADF;
	if (of->kind == OF_HOST)
		return host_read(of, (uint8_t *)(uintptr_t)buf, len, off);
	if (off >= 0)
		return -ESPIPE;
	if (of->kind == OF_PIPE_R)
		return pipe_read(of, (uint8_t *)(uintptr_t)buf, len);
	return -EBADF;
}

static long do_write(int64_t fd, uint64_t buf, uint64_t len, int64_t off)
{
	struct ofile *of = get(fd);

	if (!of)
		return -EBADF;
	if (!lx_user_ok(buf, len))
		return -EFAULT;
	if (of->kind == OF_HOST)
		return host_write(of, (const uint8_t *)(uintptr_t)buf, len, off);
	if (off >= 0)
		return -ESPIPE;
	if (of->kind == OF_PIPE_W)
		return pipe_write(of, (const uint8_t *)(uintptr_t)buf, len);
	return -EBADF;
}

long lx_fd_pread_into(int fd, void *dst, uint64_t len, int64_t off)
{
	struct ofile *of = get(fd);

	if (!of || of->kind != OF_HOST)
		return -EBADF;
	return host_read(of, dst, len, off);
}

struct iovec {
	uint64_t base, len;
};

/* writev gathers small pieces into one host call (musl's stdio writes two). */
static long do_writev(int64_t fd, uint64_t iov_addr, uint64_t cnt, int64_t off)
{
	const struct iovec *iov = (const struct iovec *)(uintptr_t)iov_addr;
	struct ofile *of = get(fd);
	uint64_t fill = 0, total = 0;

	if (!of)
		return -EBADF;
	if (cnt > 1024)
		return -EINVAL;
	if (!lx_user_ok(iov_addr, cnt * sizeof(*iov)))
		return -EFAULT;
	for (uint64_t i = 0; i < cnt; i++) {
		struct iovec v = iov[i];
		if (!lx_user_ok(v.base, v.len))
			return total ? (long)total : -EFAULT;
		if (of->kind != OF_HOST || v.len > LX_CHUNK - fill) {
			long r;
			if (fill) {
				r = host_write(of, bounce, fill, off < 0 ? off : off + (int64_t)total);
				if (r < 0)
					return total ? (long)total : r;
				total += (uint64_t)r;
				if ((uint64_t)r < fill)
					return (long)total;
				fill = 0;
			}
			r = do_write(fd, v.base, v.len, off < 0 ? off : off + (int64_t)total);
			if (r < 0)
				return total ? (long)total : r;
			total += (uint64_t)r;
			if ((uint64_t)r < v.len)
				return (long)total;
			continue;
		}
		memcpy(bounce + fill, (void *)(uintptr_t)v.base, v.len);
		fill += v.len;
	}
	if (fill) {
		long r = host_write(of, bounce, fill, off < 0 ? off : off + (int64_t)total);
		if (r < 0)
			return total ? (long)total : r;
		total += (uint64_t)r;
	}
	return (long)total;
}

static long do_readv(int64_t fd, uint64_t iov_addr, uint64_t cnt, int64_t off)
{
	const struct iovec *iov = (const struct iovec *)(uintptr_t)iov_addr;
	uint64_t total = 0;

	if (cnt > 1024)
		return -EINVAL;
	if (!lx_user_ok(iov_addr, cnt * sizeof(*iov)))
		return -EFAULT;
	for (uint64_t i = 0; i < cnt; i++) {
		struct iovec v = iov[i];
		long r = do_read(fd, v.base, v.len, off < 0 ? off : off + (int64_t)total);
		if (r < 0)
			return total ? (long)total : r;
		total += (uint64_t)r;
		if ((uint64_t)r < v.len)
			break;
	}
	return (long)total;
}

/* ---- fd management ----------------------------------------------------------- */

static long do_dup3(int64_t oldfd, int64_t newfd, int flags)
{
	struct ofile *of = get(oldfd);

	if (!of || newfd < 0 || newfd >= MAX_FDS)
		return -EBADF;
	if (flags & ~O_CLOEXEC)
		return -EINVAL;
	if (oldfd == newfd)
		return -EINVAL;
	if (fds[newfd].of)
		do_close(newfd);
	return install(of, (int)newfd, !!(flags & O_CLOEXEC));
}

static long do_fcntl(int64_t fd, int cmd, uint64_t arg)
{
	struct ofile *of = get(fd);

	if (!of)
		return -EBADF;
	switch (cmd) {
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
		if (arg >= MAX_FDS)
			return -EINVAL;
		return install(of, (int)arg, cmd == F_DUPFD_CLOEXEC);
	case F_GETFD:
		return fds[fd].cloexec ? FD_CLOEXEC : 0;
	case F_SETFD:
		fds[fd].cloexec = !!(arg & FD_CLOEXEC);
		return 0;
	case F_GETFL:
		return of->flags;
	case F_SETFL:
		of->flags = (of->flags & O_ACCMODE) | ((int)arg & O_NONBLOCK);
		return 0;
	case F_GETLK:
	case F_SETLK:
	case F_SETLKW:
	case F_OFD_GETLK:
	case F_OFD_SETLK:
	case F_OFD_SETLKW:
		return lx_fs_lock(fd, cmd, arg);
	default:
		return -EINVAL;
	}
}

static long do_pipe2(uint64_t out, int flags)
{
	int *fdp = (int *)(uintptr_t)out;
	struct pipe *p;
	struct ofile *r, *w;
	long a, b;

	if (!lx_user_ok(out, 2 * sizeof(int)))
		return -EFAULT;
	if (flags & ~(O_CLOEXEC | O_NONBLOCK))
		return -EINVAL;
	for (int fd = 0, free_fds = 0; free_fds < 2; fd++) {
		if (fd == MAX_FDS)
			return -EMFILE;
		free_fds += !fds[fd].of;
	}
	r = of_new(OF_PIPE_R);
	w = r ? of_new(OF_PIPE_W) : NULL;
	p = w ? lx_pipe_new() : NULL;
	if (!p) {
		if (r)
			r->kind = OF_FREE;
		if (w)
			w->kind = OF_FREE;
		return -ENFILE;
	}
	r->pipe = w->pipe = p;
	r->flags = flags & O_NONBLOCK;
	w->flags = O_WRONLY | (flags & O_NONBLOCK);
	/* Two free slots were counted above, so neither install can fail. */
	a = install(r, 0, !!(flags & O_CLOEXEC));
	b = install(w, 0, !!(flags & O_CLOEXEC));
	fdp[0] = (int)a;
	fdp[1] = (int)b;
	return 0;
}

/* ---- readiness ----------------------------------------------------------------- */

/*
 * Readiness of a guest-local fd (wait.c asks the socket library for sockets).
 * Host files (regular files, the captured stdio) are always ready.
 */
int lx_fd_ready(int fd, int events)
{
	struct ofile *of = get(fd);

	if (!of)
		return POLLNVAL;
	if (of->kind == OF_HOST)
		return events & (POLLIN | POLLOUT);
	if (of->kind == OF_SOCK || of->kind == OF_EPOLL)
		return 0; /* wait.c: sockets; an epoll fd in a poll set is never ready */
	return lx_pipe_ready(of->pipe, of->kind == OF_PIPE_W, events);
}

static long do_ioctl(int64_t fd, uint64_t req, uint64_t arg)
{
	struct ofile *of = get(fd);

	if (!of)
		return -EBADF;
	switch (req) {
	case TCGETS:
	case TIOCGWINSZ:
		return -ENOTTY; /* stdio is captured by the host, not a terminal */
	case FIONBIO:
		if (!lx_user_ok(arg, 4))
			return -EFAULT;
		of->flags = *(int *)(uintptr_t)arg ? of->flags | O_NONBLOCK : of->flags & ~O_NONBLOCK;
		return 0;
	case FIOCLEX:
	case FIONCLEX:
		fds[fd].cloexec = req == FIOCLEX;
		return 0;
	default:
		return -ENOTTY;
	}
}

long lx_fd_syscall(struct lx_frame *f)
{
	int64_t fd = (int64_t)(int32_t)f->rdi;

	switch (f->nr) {
	case __NR_read:
		return do_read(fd, f->rsi, f->rdx, -1);
	case __NR_write:
		return do_write(fd, f->rsi, f->rdx, -1);
	case __NR_pread64:
		return (int64_t)f->r10 < 0 ? -EINVAL : do_read(fd, f->rsi, f->rdx, (int64_t)f->r10);
	case __NR_pwrite64:
		return (int64_t)f->r10 < 0 ? -EINVAL : do_write(fd, f->rsi, f->rdx, (int64_t)f->r10);
	case __NR_readv:
		return do_readv(fd, f->rsi, f->rdx, -1);
	case __NR_writev:
		return do_writev(fd, f->rsi, f->rdx, -1);
	case __NR_preadv:
		return do_readv(fd, f->rsi, f->rdx, (int64_t)f->r10);
	case __NR_pwritev:
		return do_writev(fd, f->rsi, f->rdx, (int64_t)f->r10);
	case __NR_close:
		return do_close(fd);
	case __NR_dup: {
		struct ofile *of = get(fd);
		return of ? install(of, 0, 0) : -EBADF;
	}
	case __NR_dup2:
		if (!get(fd))
			return -EBADF;
		return fd == (int64_t)(int32_t)f->rsi ? fd : do_dup3(fd, (int32_t)f->rsi, 0);
	case __NR_dup3:
		return do_dup3(fd, (int32_t)f->rsi, (int)f->rdx);
	case __NR_fcntl:
		return do_fcntl(fd, (int)f->rsi, f->rdx);
	case __NR_pipe:
		return do_pipe2(f->rdi, 0);
	case __NR_pipe2:
		return do_pipe2(f->rdi, (int)f->rsi);
	case __NR_ioctl:
		return do_ioctl(fd, f->rsi, f->rdx);
	default:
		return LX_ENOSYS_MARK;
	}
}
