/*
 * Network system calls, served by the guest socket library (guest/lib/sockets/):
 * it specialises each socket to guest-local pipes (peer in this guest) or to a
 * host socket of the "sockets" host module, under the host's policy and audit,
 * exactly as for bare vmrpc guests.  A socket fd's open file holds the library's
 * descriptor.
 *
 * Everything the program passes by address (sockaddrs and their lengths,
 * msghdrs, iovec arrays, option values and lengths) is copied into the
 * personality before it is validated and used; data buffers are only
 * range-checked (their bytes are never interpreted here).
 */
#include "linux.h"
#include "net.h"

#define SIGPIPE 13
#define UIO_MAXIOV 1024
#define O_CLOEXEC 02000000
#define MAX_DGRAM 65536u
#define FIONREAD 0x541b
#define PASS_FLAGS (MSG_PEEK | MSG_DONTWAIT | MSG_WAITALL)

struct user_msghdr {
	uint64_t name;
	uint32_t namelen;
	uint32_t pad0;
	uint64_t iov, iovlen, control, controllen;
	int32_t flags;
	uint32_t pad1;
};

struct user_iovec {
	uint64_t base, len;
};

static struct user_iovec iov_copy[UIO_MAXIOV];
static uint8_t dgram_bounce[MAX_DGRAM];

long lib(long r)
{
	return r < 0 ? -(long)errno : r;
}

/*
 * The library descriptor behind fd, its O_NONBLOCK state synchronised from the
 * open file (fcntl and FIONBIO change it there).
 */
int64_t sock_of(int64_t fd, int *nonblock)
{
	int nb = 0;
	int64_t s;

	if (fd < 0 || fd > 0x7fffffff)
		return -EBADF;
	s = lx_fd_sock((int)fd, &nb);
	if (s < 0)
		return s;
	fcntl((int)s, F_SETFL, nb ? O_NONBLOCK : 0);
	if (nonblock)
		*nonblock = nb;
	return s;
}

int sock_type(int64_t s)
{
	int type = 0;
	socklen_t len = sizeof(type);

	getsockopt((int)s, SOL_SOCKET, SO_TYPE, &type, &len);
	return type;
}

/* ---- addresses ------------------------------------------------------------------ */

long addr_in(uint64_t uaddr, uint64_t ulen, struct sockaddr_storage *ss, socklen_t *len)
{
	if (ulen > MAX_ADDR)
		return -EINVAL;
	if (!uaddr || !lx_user_ok(uaddr, ulen))
		return -EFAULT;
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, (const void *)(uintptr_t)uaddr, ulen);
	*len = (socklen_t)ulen;
	return 0;
}

/* Reads the capacity the program gives for an address (before the call fills it). */
static long addr_cap(uint64_t uaddr, uint64_t ulenp, socklen_t *cap)
{
	int32_t n;

	*cap = 0;
	if (!uaddr)
		return 0;
	if (!lx_user_ok(ulenp, sizeof(n)) || !ulenp)
		return -EFAULT;
	memcpy(&n, (const void *)(uintptr_t)ulenp, sizeof(n));
	if (n < 0)
		return -EINVAL;
	*cap = (socklen_t)n;
	if (!lx_user_ok(uaddr, *cap < MAX_ADDR ? *cap : MAX_ADDR))
		return -EFAULT;
	return 0;
}

/* The socket behind fd, and the capacity of the address the call will return. */
int64_t sock_and_cap(int64_t fd, uint64_t uaddr, uint64_t ulenp, socklen_t *cap, int *nb)
{
	int64_t s = sock_of(fd, nb);
	long r;

	if (s < 0)
		return s;
	r = addr_cap(uaddr, ulenp, cap);
	return r < 0 ? r : s;
}

/* Stores an address truncated to cap, and its full length, like the kernel. */
void addr_out(const struct sockaddr_storage *ss, socklen_t got, uint64_t uaddr,
	      uint64_t ulenp, socklen_t cap)
{
	uint32_t full = got;

	if (!uaddr)
		return;
	memcpy((void *)(uintptr_t)uaddr, ss, cap < got ? cap : got);
	memcpy((void *)(uintptr_t)ulenp, &full, sizeof(full));
}

/* ---- data ------------------------------------------------------------------------------ */

/* EPIPE without MSG_NOSIGNAL ends the program as SIGPIPE's default action would. */
static long epipe(long r, int flags)
{
	if (r == -EPIPE && !(flags & MSG_NOSIGNAL) && !lx_sig_caught(SIGPIPE))
		lx_exit_killed(SIGPIPE);
	return r;
}

static long send_to(int64_t s, const uint8_t *buf, uint64_t len, int flags, int nb,
		    const struct sockaddr_storage *to, socklen_t tolen)
{
	int f = (flags & PASS_FLAGS) | (nb ? MSG_DONTWAIT : 0);
	int dgram = sock_type(s) == SOCK_DGRAM;
	long r;

	if (len > 0x7ffff000)
		len = 0x7ffff000; /* Linux's largest single transfer */
	if (to && dgram)
		r = sendto((int)s, buf, len, f, (const struct sockaddr *)to, tolen);
	else
		r = send((int)s, buf, len, f);
	if (dgram && r >= 0)
		lx_dns_pump(); /* it may have been a query to the VM's resolver */
	return epipe(lib(r), flags);
}

static long recv_from(int64_t s, uint8_t *buf, uint64_t len, int flags, int nb,
		      struct sockaddr_storage *from, socklen_t *fromlen)
{
	int f = (flags & PASS_FLAGS) | (nb ? MSG_DONTWAIT : 0);

	long r;
	/* Other threads' calls run while this one waits, unless it fills a shared buffer. */
	int held = lx_user_ok((uint64_t)(uintptr_t)buf, len) ? lx_block_begin() : 0;

	if (len > 0x7ffff000)
		len = 0x7ffff000;
	if (from && sock_type(s) == SOCK_DGRAM) {
		r = recvfrom((int)s, buf, len, f, (struct sockaddr *)from, fromlen);
	} else {
		if (fromlen)
			*fromlen = 0; /* a stream has no per-message source */
		r = recv((int)s, buf, len, f);
	}
	r = lib(r); /* read errno before taking the lock again */
	lx_block_end(held);
	return r;
}

static long do_sendto(int64_t fd, uint64_t buf, uint64_t len, int flags, uint64_t uaddr,
		      uint64_t ulen)
{
	struct sockaddr_storage ss;
	socklen_t alen = 0;
	int nb = 0;
	int64_t s = sock_of(fd, &nb);
	long r;

	if (s < 0)
		return s;
	if (!lx_user_ok(buf, len))
		return -EFAULT;
	if (uaddr) {
		r = addr_in(uaddr, ulen, &ss, &alen);
		if (r < 0)
			return r;
	}
	return send_to(s, (const uint8_t *)(uintptr_t)buf, len, flags, nb, uaddr ? &ss : NULL,
		       alen);
}

static long do_recvfrom(int64_t fd, uint64_t buf, uint64_t len, int flags, uint64_t uaddr,
			uint64_t ulenp)
{
	struct sockaddr_storage ss;
	socklen_t cap, got = MAX_ADDR;
	int nb = 0;
	int64_t s = sock_and_cap(fd, uaddr, ulenp, &cap, &nb);
	long r;

	if (s < 0)
		return s;
	if (!lx_user_ok(buf, len))
		return -EFAULT;
	r = recv_from(s, (uint8_t *)(uintptr_t)buf, len, flags, nb, uaddr ? &ss : NULL,
		      uaddr ? &got : NULL);
	if (r >= 0)
		addr_out(&ss, got, uaddr, ulenp, cap);
	return r;
}

/* Copies and checks an iovec array; returns the total length or -errno. */
static long iov_in(uint64_t uiov, uint64_t cnt)
{
	uint64_t total = 0;

	if (cnt > UIO_MAXIOV)
		return -EINVAL;
	if (!lx_user_ok(uiov, cnt * sizeof(struct user_iovec)))
		return -EFAULT;
	memcpy(iov_copy, (const void *)(uintptr_t)uiov, cnt * sizeof(struct user_iovec));
	for (uint64_t i = 0; i < cnt; i++) {
		if (iov_copy[i].len > 0x7fffffffu || total + iov_copy[i].len > 0x7fffffffu)
			return -EINVAL;
		if (!lx_user_ok(iov_copy[i].base, iov_copy[i].len))
			return -EFAULT;
		total += iov_copy[i].len;
	}
	return (long)total;
}

/*
 * Sends the copied iovecs: a datagram is gathered into one message, a stream
 * sends piece by piece and stops at the first short send.
 */
static long send_iov(int64_t s, uint64_t cnt, uint64_t total, int flags, int nb,
		     const struct sockaddr_storage *to, socklen_t tolen)
{
	uint64_t done = 0;

	if (sock_type(s) == SOCK_DGRAM) {
		if (total > MAX_DGRAM)
			return -EMSGSIZE;
		for (uint64_t i = 0; i < cnt; i++) {
			memcpy(dgram_bounce + done, (const void *)(uintptr_t)iov_copy[i].base,
			       iov_copy[i].len);
			done += iov_copy[i].len;
		}
		return send_to(s, dgram_bounce, total, flags, nb, to, tolen);
	}
	for (uint64_t i = 0; i < cnt; i++) {
		long r;

		if (!iov_copy[i].len)
			continue;
		r = send_to(s, (const uint8_t *)(uintptr_t)iov_copy[i].base, iov_copy[i].len, flags,
			    nb || done, NULL, 0);
		if (r < 0)
			return done ? (long)done : r;
		done += (uint64_t)r;
		if ((uint64_t)r < iov_copy[i].len)
			break;
	}
	return (long)done;
}

/*
 * Receives into the copied iovecs: one datagram scattered over them, or stream
 * bytes; only the first piece of a stream may wait (the rest takes what is there).
 */
static long recv_iov(int64_t s, uint64_t cnt, uint64_t total, int flags, int nb,
		     struct sockaddr_storage *from, socklen_t *fromlen)
{
	uint64_t done = 0;
	long r;

	if (sock_type(s) == SOCK_DGRAM) {
		r = recv_from(s, dgram_bounce, total < MAX_DGRAM ? total : MAX_DGRAM, flags, nb, from,
			      fromlen);
		for (uint64_t i = 0; r > 0 && i < cnt && done < (uint64_t)r; i++) {
			uint64_t n = (uint64_t)r - done < iov_copy[i].len ? (uint64_t)r - done
									 : iov_copy[i].len;
			memcpy((void *)(uintptr_t)iov_copy[i].base, dgram_bounce + done, n);
			done += n;
		}
		return r;
	}
	if (fromlen)
		*fromlen = 0;
	for (uint64_t i = 0; i < cnt; i++) {
		if (!iov_copy[i].len)
			continue;
		r = recv_from(s, (uint8_t *)(uintptr_t)iov_copy[i].base, iov_copy[i].len, flags,
			      nb || done, NULL, NULL);
		if (r < 0)
			return done ? (long)done : r;
		done += (uint64_t)r;
		if ((uint64_t)r < iov_copy[i].len)
			break;
	}
	return (long)done;
}

static long msg_in(uint64_t umsg, struct user_msghdr *m)
{
	if (!lx_user_ok(umsg, sizeof(*m)) || !umsg)
		return -EFAULT;
	memcpy(m, (const void *)(uintptr_t)umsg, sizeof(*m));
	if (m->iovlen > UIO_MAXIOV)
		return -EMSGSIZE; /* Linux's answer for a message (readv/writev: EINVAL) */
	return iov_in(m->iov, m->iovlen);
}

static long do_sendmsg(int64_t fd, uint64_t umsg, int flags)
{
	struct user_msghdr m;
	struct sockaddr_storage ss;
	socklen_t alen = 0;
	int nb = 0;
	int64_t s = sock_of(fd, &nb);
	long total, r;

	if (s < 0)
		return s;
	total = msg_in(umsg, &m);
	if (total < 0)
		return total;
	if (m.controllen)
		return -EOPNOTSUPP; /* no ancillary data (no fd passing without AF_UNIX) */
	if (m.name) {
		r = addr_in(m.name, m.namelen, &ss, &alen);
		if (r < 0)
			return r;
	}
	return send_iov(s, m.iovlen, (uint64_t)total, flags, nb, m.name ? &ss : NULL, alen);
}

static long do_recvmsg(int64_t fd, uint64_t umsg, int flags)
{
	struct user_msghdr m;
	struct sockaddr_storage ss;
	socklen_t got = MAX_ADDR;
	int nb = 0;
	int64_t s = sock_of(fd, &nb);
	long total, r;

	if (s < 0)
		return s;
	total = msg_in(umsg, &m);
	if (total < 0)
		return total;
	if (m.name && !lx_user_ok(m.name, m.namelen < MAX_ADDR ? m.namelen : MAX_ADDR))
		return -EFAULT;
	r = recv_iov(s, m.iovlen, (uint64_t)total, flags, nb, m.name ? &ss : NULL,
		     m.name ? &got : NULL);
	if (r < 0)
		return r;
	/* Write back only the out fields, into the program's own msghdr. */
	if (m.name) {
		memcpy((void *)(uintptr_t)m.name, &ss, m.namelen < got ? m.namelen : got);
		((struct user_msghdr *)(uintptr_t)umsg)->namelen = got;
	}
	((struct user_msghdr *)(uintptr_t)umsg)->controllen = 0;
	((struct user_msghdr *)(uintptr_t)umsg)->flags = 0;
	return r;
}

/* sendmmsg / recvmmsg: one message at a time; after the first, only what is ready. */
static long do_mmsg(int64_t fd, uint64_t uvec, uint64_t vlen, int flags, int send)
{
	const uint64_t size = sizeof(struct user_msghdr) + 8; /* struct mmsghdr */
	uint64_t i;

	if (vlen > UIO_MAXIOV)
		vlen = UIO_MAXIOV;
	if (!lx_user_ok(uvec, vlen * size))
		return -EFAULT;
	for (i = 0; i < vlen; i++) {
		uint64_t msg = uvec + i * size;
		int f = flags | (i && !send ? MSG_DONTWAIT : 0);
		long r = send ? do_sendmsg(fd, msg, f) : do_recvmsg(fd, msg, f);
		uint32_t n = (uint32_t)r;

		if (r < 0)
			return i ? (long)i : r;
		memcpy((void *)(uintptr_t)(msg + sizeof(struct user_msghdr)), &n, sizeof(n));
	}
	return (long)i;
}

/*
 * FIONREAD on a socket: what a peek finds now (a datagram's size; for a stream,
 * up to MAX_DGRAM bytes).  Other requests and other fds are fd.c's.
 */
static long do_fionread(int64_t fd, uint64_t uarg)
{
	int64_t s = sock_of(fd, NULL);
	long r;
	int32_t n;

	if (s < 0)
		return LX_ENOSYS_MARK;
	if (!uarg || !lx_user_ok(uarg, sizeof(n)))
		return -EFAULT;
	r = lib(recv((int)s, dgram_bounce, MAX_DGRAM, MSG_PEEK | MSG_DONTWAIT));
	if (r == -EAGAIN)
		r = 0;
	if (r < 0)
		return r;
	n = (int32_t)r;
	memcpy((void *)(uintptr_t)uarg, &n, sizeof(n));
	return 0;
}

/* read/write/readv/writev on a socket fd; LX_ENOSYS_MARK for other fds (fd.c's). */
static long sock_rw(struct lx_frame *f)
{
	int nb = 0;
	int64_t s = sock_of((int32_t)f->rdi, &nb);
	long total;

	if (s < 0)
		return LX_ENOSYS_MARK;
	switch (f->nr) {
	case __NR_read:
	case __NR_write:
		if (!lx_user_ok(f->rsi, f->rdx))
			return -EFAULT;
		if (f->nr == __NR_read)
			return recv_from(s, (uint8_t *)(uintptr_t)f->rsi, f->rdx, 0, nb, NULL, NULL);
		return send_to(s, (const uint8_t *)(uintptr_t)f->rsi, f->rdx, 0, nb, NULL, 0);
	default:
		total = iov_in(f->rsi, f->rdx);
		if (total < 0)
			return total;
		if (f->nr == __NR_readv)
			return recv_iov(s, f->rdx, (uint64_t)total, 0, nb, NULL, NULL);
		return send_iov(s, f->rdx, (uint64_t)total, 0, nb, NULL, 0);
	}
}

long lx_net_syscall(struct lx_frame *f)
{
	int64_t fd = (int64_t)(int32_t)f->rdi;

	switch (f->nr) {
	case __NR_read:
	case __NR_write:
	case __NR_readv:
	case __NR_writev:
		return sock_rw(f);
	case __NR_ioctl:
		return f->rsi == FIONREAD ? do_fionread(fd, f->rdx) : LX_ENOSYS_MARK;
	case __NR_socket:
		return do_socket((int)f->rdi, (int)f->rsi, (int)f->rdx);
	case __NR_socketpair:
		return do_socketpair((int)f->rdi, (int)f->rsi, (int)f->rdx, f->r10);
	case __NR_bind:
		return do_bind(fd, f->rsi, (uint32_t)f->rdx);
	case __NR_listen:
		return do_listen(fd, (int)f->rsi);
	case __NR_accept:
		return do_accept(fd, f->rsi, f->rdx, 0);
	case __NR_accept4:
		return do_accept(fd, f->rsi, f->rdx, (int)f->r10);
	case __NR_connect:
		return do_connect(fd, f->rsi, (uint32_t)f->rdx);
	case __NR_shutdown:
		return do_shutdown(fd, (int)f->rsi);
	case __NR_getsockname:
		return do_name(fd, f->rsi, f->rdx, 0);
	case __NR_getpeername:
		return do_name(fd, f->rsi, f->rdx, 1);
	case __NR_setsockopt:
		return do_setsockopt(fd, (int)f->rsi, (int)f->rdx, f->r10, (uint32_t)f->r8);
	case __NR_getsockopt:
		return do_getsockopt(fd, (int)f->rsi, (int)f->rdx, f->r10, f->r8);
	case __NR_sendto:
		return do_sendto(fd, f->rsi, f->rdx, (int)f->r10, f->r8, (uint32_t)f->r9);
	case __NR_recvfrom:
		return do_recvfrom(fd, f->rsi, f->rdx, (int)f->r10, f->r8, f->r9);
	case __NR_sendmsg:
		return do_sendmsg(fd, f->rsi, (int)f->rdx);
	case __NR_recvmsg:
		return do_recvmsg(fd, f->rsi, (int)f->rdx);
	case __NR_sendmmsg:
		return do_mmsg(fd, f->rsi, (uint32_t)f->rdx, (int)f->r10, 1);
	case __NR_recvmmsg:
		/* The timeout (r8) bounds the whole batch on Linux; only the first waits here. */
		return do_mmsg(fd, f->rsi, (uint32_t)f->rdx, (int)f->r10, 0);
	default:
		return LX_ENOSYS_MARK;
	}
}
