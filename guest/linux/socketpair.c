/*
 * socketpair(AF_UNIX, SOCK_STREAM): a connected pair of the socket library's
 * guest-local stream sockets (a loopback listener, a connect and an accept,
 * all specialised in the guest: no host socket is made).  That is what
 * CPython's asyncio needs (its self-pipe).  The pair behaves as a stream
 * socketpair for reads, writes, poll and close; getsockname reports the
 * loopback addresses, and SOCK_DGRAM/SOCK_SEQPACKET pairs and fd passing are
 * not provided (EOPNOTSUPP).
 */
#include "linux.h"

#define AF_UNIX 1

static long make_pair(int *a, int *b)
{
	struct sockaddr_in addr = {0};
	socklen_t len = sizeof(addr);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	long r = -EMFILE;

	*a = *b = -1;
	if (l < 0)
		return -errno;
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(l, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&addr, &len) < 0)
		goto fail;
	*a = socket(AF_INET, SOCK_STREAM, 0);
	if (*a < 0 || connect(*a, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		goto fail;
	*b = accept(l, NULL, NULL);
	if (*b < 0)
		goto fail;
	close(l);
	return 0;
fail:
	r = -errno;
	close(l);
	if (*a >= 0)
		close(*a);
	return r < 0 ? r : -EMFILE;
}

long lx_socketpair(int domain, int type, uint64_t usv)
{
	int flags = type & (SOCK_NONBLOCK | SOCK_CLOEXEC);
	int a, b;
	long fa, fb, r;

	if (domain != AF_UNIX)
		return -EOPNOTSUPP; /* as Linux: pairs are local sockets only */
	if ((type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) != SOCK_STREAM)
		return -EOPNOTSUPP;
	if (!lx_user_ok(usv, 2 * sizeof(int)))
		return -EFAULT;
	r = make_pair(&a, &b);
	if (r < 0)
		return r;
	fa = lx_fd_install_sock(a, flags);
	if (fa < 0) {
		close(a);
		close(b);
		return fa;
	}
	fb = lx_fd_install_sock(b, flags);
	if (fb < 0) {
		struct lx_frame c = {.rdi = (uint64_t)fa, .nr = __NR_close};

		lx_fd_syscall(&c); /* closes a's fd and, with it, a */
		close(b);
		return fb;
	}
	((int *)(uintptr_t)usv)[0] = (int)fa;
	((int *)(uintptr_t)usv)[1] = (int)fb;
	return 0;
}
