/*
 * shutdown, close, socket options, names and fcntl.
 */
#include "internal.h"

int shutdown(int fd, int how)
{
	struct gsock *s = sock_get(fd);
	int rc = 0;

	if (!s)
		return -1;
	if (how < SHUT_RD || how > SHUT_RDWR) {
		rc = fail(EINVAL);
	} else if (s->type != SOCK_STREAM || s->state != ST_CONNECTED) {
		rc = fail(ENOTCONN);
	} else if (s->local) {
		if (how != SHUT_WR)
			s->shut_rd = 1;
		if (how != SHUT_RD) {
			rt_spin_lock(&s->tx->lock);
			s->tx->wclosed = 1;
			rt_spin_unlock(&s->tx->lock);
			pipe_kick(s->tx); /* the peer may wait for data (arena.c) */
		}
	} else {
		struct vmrpc_sock_handle_req req = { s->host, (uint32_t)how };

		rc = host_simple(VMRPC_SOCK_FN_SHUTDOWN, &req, sizeof(req)) < 0 ? -1 : 0;
	}
	sock_put(s);
	return rc;
}

int close(int fd)
{
	struct gsock *s = NULL;

	if (fd >= FD_BASE && fd < FD_BASE + MAX_FDS) {
		rt_spin_lock(&tbl_lock);
		s = table[fd - FD_BASE];
		table[fd - FD_BASE] = NULL;
		rt_spin_unlock(&tbl_lock);
	}
	if (!s)
		return fail(EBADF);
	sock_teardown(s);
	sock_put(s);
	return 0;
}

static int timeval_ms(const void *val, socklen_t len, int *ms)
{
	struct timeval tv;

	if (len < sizeof(tv))
		return fail(EINVAL);
	memcpy(&tv, val, sizeof(tv));
	if (tv.tv_sec < 0 || tv.tv_usec < 0 || tv.tv_usec >= 1000000)
		return fail(EINVAL);
	if (tv.tv_sec == 0 && tv.tv_usec == 0)
		*ms = -1;
	else if (tv.tv_sec > 86400)
		*ms = 86400 * 1000;
	else
		*ms = (int)(tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
	return 0;
}

int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	struct gsock *s = sock_get(fd);
	int rc = 0;

	if (!s)
		return -1;
	if (!val || len > sizeof(s->opts[0].val)) {
		sock_put(s);
		return fail(!val ? EFAULT : EINVAL);
	}
	if (level == SOL_SOCKET && name == SO_RCVTIMEO) {
		rc = timeval_ms(val, len, &s->rcvtimeo_ms);
	} else if (level == SOL_SOCKET && name == SO_SNDTIMEO) {
		rc = timeval_ms(val, len, &s->sndtimeo_ms);
	} else if (level == SOL_SOCKET && (name == SO_TYPE || name == SO_ERROR)) {
		rc = fail(ENOPROTOOPT);
	} else {
		int i;

		for (i = 0; i < s->nopts; i++)
			if (s->opts[i].level == level && s->opts[i].name == name)
				break;
		if (i == MAX_OPTS) {
			rc = fail(ENOBUFS);
		} else {
			s->opts[i].level = level;
			s->opts[i].name = name;
			s->opts[i].len = len;
			memcpy(s->opts[i].val, val, len);
			if (i == s->nopts)
				s->nopts++;
			if (s->host) {
				uint8_t buf[sizeof(struct vmrpc_sock_sockopt_req) + 16];
				struct vmrpc_sock_sockopt_req o = { s->host, level, name, len };

				memcpy(buf, &o, sizeof(o));
				memcpy(buf + sizeof(o), val, len);
				rc = host_simple(VMRPC_SOCK_FN_SETSOCKOPT, buf, sizeof(o) + len) < 0 ? -1 : 0;
			}
		}
	}
	sock_put(s);
	return rc;
}

static void put_int_opt(void *val, socklen_t *len, int v)
{
	socklen_t n = *len < sizeof(v) ? *len : sizeof(v);

	memcpy(val, &v, n);
	*len = n;
}

int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	struct gsock *s = sock_get(fd);
	int rc = 0;

	if (!s)
		return -1;
	if (!val || !len) {
		sock_put(s);
		return fail(EFAULT);
	}
	if (level == SOL_SOCKET && name == SO_TYPE) {
		put_int_opt(val, len, s->type);
	} else if (level == SOL_SOCKET && name == SO_ERROR) {
		/* A connect under way: 0 while it goes on or once it succeeded, its
		 * error (collected once) if it failed. */
		int err = s->state == ST_CONNECTING && conn_settle(s) < 0 && errno != EALREADY ? errno : 0;

		put_int_opt(val, len, err);
	} else if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
		int ms = name == SO_RCVTIMEO ? s->rcvtimeo_ms : s->sndtimeo_ms;
		struct timeval tv = { ms < 0 ? 0 : ms / 1000, ms < 0 ? 0 : (ms % 1000) * 1000 };
		socklen_t n = *len < sizeof(tv) ? *len : sizeof(tv);

		memcpy(val, &tv, n);
		*len = n;
	} else if (s->host) {
		uint8_t *sc = cpu_scratch();
		struct vmrpc_sock_sockopt_req o = { s->host, level, name, VMRPC_SOCK_MAX_OPTLEN };
		size_t got = 0;
		long r;

		if (!sc) {
			sock_put(s);
			return fail(ENOMEM);
		}
		r = host_call(VMRPC_SOCK_FN_GETSOCKOPT, &o, sizeof(o), sc,
			      sizeof(struct vmrpc_sock_resp) + VMRPC_SOCK_MAX_OPTLEN, &got);
		if (r < 0) {
			rc = -1;
		} else {
			struct vmrpc_sock_resp resp;
			socklen_t n;

			memcpy(&resp, sc, sizeof(resp));
			if (resp.aux > got - sizeof(resp)) {
				rc = fail(EIO);
			} else {
				n = *len < resp.aux ? *len : resp.aux;
				memcpy(val, sc + sizeof(resp), n);
				*len = n;
			}
		}
	} else {
		int i;

		for (i = 0; i < s->nopts; i++)
			if (s->opts[i].level == level && s->opts[i].name == name)
				break;
		if (i < s->nopts) {
			socklen_t n = *len < s->opts[i].len ? *len : s->opts[i].len;

			memcpy(val, s->opts[i].val, n);
			*len = n;
		} else {
			put_int_opt(val, len, 0);
		}
	}
	sock_put(s);
	return rc;
}

int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
	struct gsock *s = sock_get(fd);
	struct vmrpc_sock_addr a;

	if (!s)
		return -1;
	if (!addr || !len) {
		sock_put(s);
		return fail(EFAULT);
	}
	memset(&a, 0, sizeof(a));
	if (s->bound)
		a = s->self;
	else
		a.family = s->family == AF_INET ? VMRPC_SOCK_AF_INET : VMRPC_SOCK_AF_INET6;
	addr_to_user(&a, addr, len);
	sock_put(s);
	return 0;
}

int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
	struct gsock *s = sock_get(fd);
	int rc = 0;

	if (!s)
		return -1;
	if (!addr || !len)
		rc = fail(EFAULT);
	else if (!s->has_peer)
		rc = fail(ENOTCONN);
	else
		addr_to_user(&s->peer, addr, len);
	sock_put(s);
	return rc;
}

int fcntl(int fd, int cmd, ...)
{
	struct gsock *s = sock_get(fd);
	va_list ap;
	int rc = 0;

	if (!s)
		return -1;
	if (cmd == F_GETFL) {
		rc = s->nonblock ? O_NONBLOCK : 0;
	} else if (cmd == F_SETFL) {
		va_start(ap, cmd);
		s->nonblock = !!(va_arg(ap, int) & O_NONBLOCK);
		va_end(ap);
	} else {
		rc = fail(EINVAL);
	}
	sock_put(s);
	return rc;
}
