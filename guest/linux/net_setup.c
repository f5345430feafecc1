/*
 * Socket setup and options for Linux programs: socket, bind, listen, accept,
 * socketpair, connect (and the outcome of a non-blocking connect, kept for SO_ERROR),
 * shutdown, the socket's names, setsockopt and getsockopt.  The helpers and the
 * rules for copying the program's arguments are net.c's (see there).
 */
#include "linux.h"
#include "net.h"
#include <vmrpc/socket_proto.h>

#define MAX_OPT VMRPC_SOCK_MAX_OPTLEN /* the host protocol's limit: TCP_INFO fits */
#define MAX_LIB_FDS 1100 /* above the library's FD_BASE + MAX_FDS */

/* The result of a non-blocking connect, until SO_ERROR (or connect) collects it. */
static int pending[MAX_LIB_FDS];
/* A non-blocking connect going on in the host: the library answers later connects. */
static uint8_t in_host[MAX_LIB_FDS];

void lx_net_release(int64_t s)
{
	if (s >= 0 && s < MAX_LIB_FDS) {
		pending[s] = 0;
		in_host[s] = 0;
	}
	close((int)s);
}

int lx_net_pending_error(int64_t s)
{
	return s >= 0 && s < MAX_LIB_FDS ? pending[s] : 0;
}

/* ---- setup -------------------------------------------------------------------------- */

long do_socket(int domain, int type, int protocol)
{
	int s;

	if (domain == AF_UNIX)
		return -EAFNOSUPPORT; /* no local sockets: glibc's nscd probe fails cleanly */
	if ((type & 0xf) == SOCK_DGRAM)
		lx_dns_init(); /* before the program can send its first query */
	s = socket(domain, type & ~SOCK_CLOEXEC, protocol);
	if (s < 0)
		return -errno;
	return lx_fd_install_sock(s, type & (SOCK_CLOEXEC | SOCK_NONBLOCK));
}

/*
 * socketpair(AF_UNIX, SOCK_STREAM): a connected pair made as a loopback TCP
 * connection inside the guest, which the socket library keeps in guest memory
 * (its peer is in this guest): it never reaches the host, its network or its
 * policy.  What programs use pairs for (asyncio's and libuv's wake-up pipes,
 * talking to a helper) needs only bytes both ways, readiness and shutdown;
 * getsockname answers AF_INET, and there is no fd passing (SCM_RIGHTS).
 */
long do_socketpair(int domain, int type, int protocol, uint64_t usv)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = { htonl(INADDR_LOOPBACK) } };
	socklen_t len = sizeof(sin);
	int l, c = -1, a = -1, sv[2];
	long r;

	if (domain != AF_UNIX)
		return -EOPNOTSUPP;
	if (type & ~(0xf | SOCK_CLOEXEC | SOCK_NONBLOCK))
		return -EINVAL;
	if ((type & 0xf) != SOCK_STREAM)
		return -EOPNOTSUPP; /* no datagram pairs */
	if (protocol != 0)
		return -EPROTONOSUPPORT;
	if (!lx_user_ok(usv, sizeof(sv)))
		return -EFAULT;
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0)
		return -errno;
	if (bind(l, (struct sockaddr *)&sin, len) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&sin, &len))
		goto fail;
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&sin, len))
		goto fail;
	a = accept(l, NULL, NULL);
	if (a < 0)
		goto fail;
	close(l);
	r = lx_fd_install_sock(c, type & (SOCK_CLOEXEC | SOCK_NONBLOCK));
	if (r < 0) {
		close(a);
		return r;
	}
	sv[0] = (int)r;
	r = lx_fd_install_sock(a, type & (SOCK_CLOEXEC | SOCK_NONBLOCK));
	if (r < 0) {
		lx_fd_close(sv[0]);
		return r;
	}
	sv[1] = (int)r;
	memcpy((void *)(uintptr_t)usv, sv, sizeof(sv));
	return 0;
fail:
	r = -errno;
	close(l);
	if (c >= 0)
		close(c);
	return r;
}

long do_bind(int64_t fd, uint64_t uaddr, uint64_t ulen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int64_t s = sock_of(fd, NULL);
	long r;

	if (s < 0)
		return s;
	r = addr_in(uaddr, ulen, &ss, &len);
	return r < 0 ? r : lib(bind((int)s, (struct sockaddr *)&ss, len));
}

long do_listen(int64_t fd, int backlog)
{
	int64_t s = sock_of(fd, NULL);

	return s < 0 ? s : lib(listen((int)s, backlog));
}

long do_accept(int64_t fd, uint64_t uaddr, uint64_t ulenp, int flags)
{
	struct sockaddr_storage ss;
	socklen_t cap, got = MAX_ADDR;
	int64_t s;
	long r;
	int c, held;

	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC))
		return -EINVAL;
	s = sock_and_cap(fd, uaddr, ulenp, &cap, NULL);
	if (s < 0)
		return s;
	held = lx_block_begin(); /* other threads' calls run while this one waits */
	c = accept((int)s, (struct sockaddr *)&ss, &got);
	/* errno is read before the lock is taken again. */
	r = c < 0 ? -errno : 0;
	lx_block_end(held);
	if (c < 0)
		return r;
	r = lx_fd_install_sock(c, flags);
	if (r >= 0)
		addr_out(&ss, got, uaddr, ulenp, cap);
	return r;
}

/*
 * On a non-blocking stream socket the library's connect answers EINPROGRESS as
 * soon as the host cannot finish it at once (a remote or slow peer, a proxy, a
 * TLS handshake): the connect goes on in the host, and poll/select/epoll
 * (POLLOUT, POLLERR) and SO_ERROR report its outcome, as on Linux.  A connect
 * that ended within the call (a loopback peer, a refusal, the policy) answers
 * EINPROGRESS too, and its outcome is kept here for SO_ERROR (and POLLERR).
 */
long do_connect(int64_t fd, uint64_t uaddr, uint64_t ulen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int nb = 0, held;
	int64_t s = sock_of(fd, &nb);
	long r;

	if (s < 0)
		return s;
	r = addr_in(uaddr, ulen, &ss, &len);
	if (r < 0)
		return r;
	if (s < MAX_LIB_FDS && pending[s]) {
		r = -pending[s];
		pending[s] = 0;
		return r;
	}
	held = lx_block_begin(); /* other threads' calls run while this one waits */
	r = lib(connect((int)s, (struct sockaddr *)&ss, len)); /* errno: before a move */
	lx_block_end(held);
	if (s < MAX_LIB_FDS && in_host[s]) {
		/* EALREADY until the library sees the end, then 0 or the error, as Linux. */
		in_host[s] = r == -EALREADY;
		return r;
	}
	if (!nb || sock_type(s) != SOCK_STREAM)
		return r;
	switch (-r) {
	case EINVAL:
	case EFAULT:
	case EAFNOSUPPORT:
	case EISCONN:
	case EALREADY:
		return r; /* the call itself was wrong: no connection was attempted */
	case EINPROGRESS: /* under way in the host: the library reports its outcome */
		if (s < MAX_LIB_FDS)
			in_host[s] = 1;
		return r;
	default:
		if (s < MAX_LIB_FDS)
			pending[s] = (int)-r;
		return -EINPROGRESS;
	}
}

long do_shutdown(int64_t fd, int how)
{
	int64_t s = sock_of(fd, NULL);

	return s < 0 ? s : lib(shutdown((int)s, how));
}

long do_name(int64_t fd, uint64_t uaddr, uint64_t ulenp, int peer)
{
	struct sockaddr_storage ss;
	socklen_t cap, got = MAX_ADDR;
	int64_t s = uaddr ? sock_and_cap(fd, uaddr, ulenp, &cap, NULL) : -EFAULT;
	long r;

	if (s < 0)
		return s;
	r = lib(peer ? getpeername((int)s, (struct sockaddr *)&ss, &got)
		     : getsockname((int)s, (struct sockaddr *)&ss, &got));
	if (r == 0)
		addr_out(&ss, got, uaddr, ulenp, cap);
	return r;
}

/* ---- options ------------------------------------------------------------------------- */

long do_setsockopt(int64_t fd, int level, int name, uint64_t uval, uint64_t ulen)
{
	uint8_t val[MAX_OPT];
	int64_t s = sock_of(fd, NULL);

	if (s < 0)
		return s;
	if (ulen > MAX_OPT)
		return -EINVAL;
	if (!uval || !lx_user_ok(uval, ulen))
		return -EFAULT;
	memcpy(val, (const void *)(uintptr_t)uval, ulen);
	return lib(setsockopt((int)s, level, name, val, (socklen_t)ulen));
}

long do_getsockopt(int64_t fd, int level, int name, uint64_t uval, uint64_t ulenp)
{
	uint8_t val[MAX_OPT];
	int32_t cap;
	socklen_t len;
	int64_t s = sock_of(fd, NULL);
	long r;

	if (s < 0)
		return s;
	if (!ulenp || !lx_user_ok(ulenp, sizeof(cap)))
		return -EFAULT;
	memcpy(&cap, (const void *)(uintptr_t)ulenp, sizeof(cap));
	if (cap < 0)
		return -EINVAL;
	len = (socklen_t)cap < MAX_OPT ? (socklen_t)cap : MAX_OPT;
	if (!uval || !lx_user_ok(uval, len))
		return -EFAULT;
	memset(val, 0, sizeof(val));
	if (level == SOL_SOCKET && name == SO_ERROR && lx_net_pending_error(s)) {
		/* A non-blocking connect's outcome, collected once (one still under
		 * way in the host: the library's SO_ERROR). */
		int err = pending[s];

		pending[s] = 0;
		memcpy(val, &err, sizeof(err));
		len = len < sizeof(err) ? len : sizeof(err);
		r = 0;
	} else {
		r = lib(getsockopt((int)s, level, name, val, &len));
	}
	if (r < 0)
		return r;
	memcpy((void *)(uintptr_t)uval, val, len);
	cap = (int32_t)len;
	memcpy((void *)(uintptr_t)ulenp, &cap, sizeof(cap));
	return 0;
}
