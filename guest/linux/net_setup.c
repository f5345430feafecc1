/*
 * Socket setup and options for Linux programs: socket, bind, listen, accept,
 * connect (and the outcome of a non-blocking connect, kept for SO_ERROR),
 * shutdown, the socket's names, setsockopt and getsockopt.  The helpers and the
 * rules for copying the program's arguments are net.c's (see there).
 */
#include "linux.h"
#include "net.h"

#define MAX_OPT 64u
#define MAX_LIB_FDS 1100 /* above the library's FD_BASE + MAX_FDS */

/* The result of a non-blocking connect, until SO_ERROR (or connect) collects it. */
static int pending[MAX_LIB_FDS];

void lx_net_release(int64_t s)
{
	if (s >= 0 && s < MAX_LIB_FDS)
		pending[s] = 0;
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
	int c;

	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC))
		return -EINVAL;
	s = sock_and_cap(fd, uaddr, ulenp, &cap, NULL);
	if (s < 0)
		return s;
	c = accept((int)s, (struct sockaddr *)&ss, &got);
	if (c < 0)
		return -errno;
	r = lx_fd_install_sock(c, flags);
	if (r >= 0)
		addr_out(&ss, got, uaddr, ulenp, cap);
	return r;
}

/*
 * The host protocol has no asynchronous connect yet: on a non-blocking socket
 * the connection is made (or fails) before the call returns, which then answers
 * EINPROGRESS and keeps the outcome for SO_ERROR (and POLLERR), as Linux does
 * for a connection still in progress.
 */
long do_connect(int64_t fd, uint64_t uaddr, uint64_t ulen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int nb = 0;
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
	r = lib(connect((int)s, (struct sockaddr *)&ss, len));
	if (!nb || sock_type(s) != SOCK_STREAM)
		return r;
	switch (-r) {
	case EINVAL:
	case EFAULT:
	case EAFNOSUPPORT:
	case EISCONN:
	case EALREADY:
		return r; /* the call itself was wrong: no connection was attempted */
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
	if (level == SOL_SOCKET && name == SO_ERROR) {
		/* A non-blocking connect's outcome, collected once. */
		int err = s < MAX_LIB_FDS ? pending[s] : 0;

		if (s < MAX_LIB_FDS)
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
