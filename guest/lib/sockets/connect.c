/*
 * connect: specialised to a guest-local peer (pipes) or to a host socket; a
 * non-blocking host connect goes on in the host (ST_CONNECTING) until
 * conn_settle learns its outcome.
 */
#include "internal.h"

/* Creates s's host table entry and replays the options set so far (datagram
 * sockets and exposed listeners; a connect folds this into its own call). */
int host_attach(struct gsock *s)
{
	struct vmrpc_sock_socket_req req = { (uint32_t)s->family, (uint32_t)s->type, 0, 0 };
	long rc;

	if (s->host)
		return 0;
	rc = host_simple(VMRPC_SOCK_FN_SOCKET, &req, sizeof(req));
	if (rc < 0)
		return -1;
	if (rc == 0)
		return fail(EIO);
	s->host = (uint32_t)rc;
	for (int i = 0; i < s->nopts; i++) {
		uint8_t buf[sizeof(struct vmrpc_sock_sockopt_req) + sizeof(s->opts[i].val)];
		struct vmrpc_sock_sockopt_req o = { s->host, s->opts[i].level, s->opts[i].name,
					       s->opts[i].len };

		memcpy(buf, &o, sizeof(o));
		memcpy(buf + sizeof(o), s->opts[i].val, s->opts[i].len);
		host_simple(VMRPC_SOCK_FN_SETSOCKOPT, buf, sizeof(o) + s->opts[i].len);
	}
	return 0;
}

/* Host errno from a protocol result (bounded: a hostile answer is EIO). */
static int host_errno(int32_t result)
{
	return result < -4095 ? EIO : -result;
}

/*
 * Connects s to a through the host.  A socket without a host handle yet goes
 * in this one call: the host creates it (the answer's aux names it) and sets
 * the options the program set so far, before connecting.  A non-blocking
 * stream answers EINPROGRESS as soon as the connect cannot finish at once; it
 * goes on in the host (conn_settle learns how it ended).
 */
static int connect_host(struct gsock *s, const struct vmrpc_sock_addr *a)
{
	uint8_t *sc = cpu_scratch();
	struct vmrpc_sock_connect_req req;
	struct vmrpc_sock_addr_resp resp;
	size_t len = sizeof(req);
	int had_handle = s->host != 0;
	int32_t result;

	if (!sc)
		return fail(ENOMEM);
	memset(&req, 0, sizeof(req));
	req.handle = s->host;
	/* Like Linux, a connect waits at most SO_SNDTIMEO (the host's own limit
	 * applies too), handshakes with a proxy or a TLS server included. */
	req.timeout_ms = s->type == SOCK_STREAM && s->nonblock ? 0 : s->sndtimeo_ms;
	req.addr = *a;
	if (!had_handle) {
		req.type = (uint32_t)s->type;
		for (int i = 0; i < s->nopts; i++) {
			struct vmrpc_sock_sockopt_req o = { 0, s->opts[i].level, s->opts[i].name,
						       s->opts[i].len };

			memcpy(sc + len, &o, sizeof(o));
			memcpy(sc + len + sizeof(o), s->opts[i].val, s->opts[i].len);
			len += sizeof(o) + s->opts[i].len;
		}
	}
	memcpy(sc, &req, sizeof(req));
	memset(&resp, 0, sizeof(resp));
	if (host_rpc(VMRPC_SOCK_FN_CONNECT, sc, len, &resp, sizeof(resp), NULL, &result) < 0)
		return -1;
	if (result < 0 && result != -EINPROGRESS) {
		int err = host_errno(result);

		if (had_handle && s->type == SOCK_STREAM && err != EALREADY && err != EISCONN) {
			/* A failed stream connect leaves the host entry unusable. */
			host_close(s->host);
			s->host = 0;
		}
		return fail(err);
	}
	if (!had_handle) {
		if (!resp.aux)
			return fail(EIO);
		s->host = resp.aux;
	}
	if (!s->bound && resp.addr.family) {
		s->self = resp.addr;
		s->bound = 1;
	}
	stat_add(&stats.host_connects, 1);
	return result == 0 ? 0 : fail(EINPROGRESS);
}

int conn_settle(struct gsock *s)
{
	struct vmrpc_sock_connect_req req;
	struct vmrpc_sock_addr_resp resp;
	int32_t result;

	memset(&req, 0, sizeof(req));
	req.handle = s->host;
	req.addr = s->peer;
	memset(&resp, 0, sizeof(resp));
	/* A connect again: EALREADY while it goes on, EISCONN once it succeeded,
	 * its error (once) if it failed; exactly Linux's answers. */
	if (host_rpc(VMRPC_SOCK_FN_CONNECT, &req, sizeof(req), &resp, sizeof(resp), NULL, &result) < 0)
		return -1;
	if (result == -EALREADY || result == -EINPROGRESS)
		return fail(EALREADY);
	if (result == 0 || result == -EISCONN) {
		s->has_peer = 1;
		__atomic_store_n(&s->state, ST_CONNECTED, __ATOMIC_RELEASE);
		return 0;
	}
	__atomic_store_n(&s->state, ST_NEW, __ATOMIC_RELEASE); /* the host entry is unconnected */
	return fail(host_errno(result));
}

int conn_wait(struct gsock *s, int timeout_ms)
{
	uint64_t deadline = deadline_in(timeout_ms);

	for (;;) {
		struct {
			struct vmrpc_sock_poll_req req;
			struct vmrpc_sock_pollfd fd;
		} p = { { 0, 1 }, { s->host, POLLOUT, 0 } };
		uint8_t answer[sizeof(struct vmrpc_sock_resp) + sizeof(struct vmrpc_sock_pollfd)];

		if (conn_settle(s) == 0)
			return 0;
		if (errno != EALREADY)
			return -1;
		if (timeout_ms == 0 || expired(deadline))
			return fail(EAGAIN);
		p.req.timeout_ms = ms_left(deadline, -1);
		if (host_call(VMRPC_SOCK_FN_POLL, &p, sizeof(p), answer, sizeof(answer), NULL) < 0)
			return -1;
	}
}

/* Connects stream s to the guest listener l through a new pair of pipes. */
static int connect_local(struct gsock *s, struct gsock *l, const struct vmrpc_sock_addr *dst)
{
	struct gsock *srv;
	struct lpipe *up, *down;
	int queued = 0;

	if (ensure_bound(s) < 0)
		return -1;
	srv = sock_alloc(s->family, SOCK_STREAM);
	up = pipe_new();
	down = pipe_new();
	if (!srv || !up || !down) {
		free(srv);
		if (up) {
			free(up->buf);
			free(up);
		}
		if (down) {
			free(down->buf);
			free(down);
		}
		return fail(ENOMEM);
	}
	srv->state = ST_CONNECTED;
	srv->local = 1;
	srv->bound = srv->has_peer = 1;
	srv->self = *dst;
	srv->peer = s->self;
	srv->rx = up;
	srv->tx = down;
	s->rx = down;
	s->tx = up;
	s->local = 1;
	s->peer = *dst;
	s->has_peer = 1;
	rt_spin_lock(&l->lock);
	if (l->backlog && !l->closed && l->bl_count < l->bl_cap) {
		l->backlog[(l->bl_head + l->bl_count) % l->bl_cap] = srv;
		l->bl_count++;
		queued = 1;
	}
	rt_spin_unlock(&l->lock);
	if (!queued) {
		s->rx = s->tx = NULL;
		s->local = 0;
		s->has_peer = 0;
		sock_put(srv);
		return fail(ECONNREFUSED);
	}
	__atomic_store_n(&s->state, ST_CONNECTED, __ATOMIC_RELEASE);
	stat_add(&stats.local_connects, 1);
	arena_changed(); /* an accept may wait on the arena (arena.c) */
	return 0;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	struct gsock *s = sock_get(fd), *l;
	struct vmrpc_sock_addr a;
	int rc;

	if (!s)
		return -1;
	if (addr_from_user(addr, len, s->family, &a) < 0) {
		sock_put(s);
		return -1;
	}
	if (s->in_progress) {
		/* As Linux: after EINPROGRESS, connect says EALREADY until it sees the
		 * end, then 0 (connected) or the error (ECONNABORTED if SO_ERROR took it). */
		rc = s->state == ST_CONNECTED ? 0 : s->state == ST_NEW ? fail(ECONNABORTED) : conn_settle(s);
		if (rc == 0 || errno != EALREADY)
			s->in_progress = 0;
		sock_put(s);
		return rc;
	}
	if (s->type == SOCK_STREAM && (s->state == ST_CONNECTED || s->state == ST_LISTEN)) {
		sock_put(s);
		return fail(s->state == ST_LISTEN ? EINVAL : EISCONN);
	}
	if (a.port == 0 && s->type == SOCK_STREAM) {
		sock_put(s);
		return fail(ECONNREFUSED);
	}
	rt_spin_lock(&tbl_lock);
	l = local_peer_locked(s->type, &a);
	rt_spin_unlock(&tbl_lock);
	if (s->type == SOCK_STREAM) {
		if (l) {
			rc = connect_local(s, l, &a);
			sock_put(l);
		} else if ((rc = arena_connect(s, &a)) != 0) {
			rc = rc > 0 ? 0 : -1; /* a listener of another program in this VM */
			if (rc == 0)
				__atomic_store_n(&s->state, ST_CONNECTED, __ATOMIC_RELEASE);
		} else {
			rc = connect_host(s, &a);
			if (rc == 0 || errno == EINPROGRESS) {
				s->peer = a;
				s->has_peer = rc == 0;
				s->in_progress = rc != 0;
				__atomic_store_n(&s->state, rc == 0 ? ST_CONNECTED : ST_CONNECTING,
						 __ATOMIC_RELEASE);
			}
		}
	} else {
		/* Datagram: remember the peer; a host peer also goes through the
		 * policy now, as on a host a connected UDP socket would. */
		rc = 0;
		if (l)
			sock_put(l);
		else
			rc = connect_host(s, &a);
		if (rc == 0) {
			rc = ensure_bound(s);
			s->peer = a;
			s->has_peer = 1;
		}
	}
	sock_put(s);
	return rc;
}
