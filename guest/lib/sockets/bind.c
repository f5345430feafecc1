/*
 * Names and ports (which guest socket receives what), bind and listen, and
 * exposing a listener on the host when the policy says so.
 */
#include "internal.h"

/* Does bound socket s receive what is sent to dst? (tbl_lock held) */
static int name_matches(const struct gsock *s, const struct vmrpc_sock_addr *dst)
{
	return s->bound && s->self.family == dst->family && s->self.port == dst->port &&
	       (addr_is_any(&s->self) || addr_same_ip(&s->self, dst));
}

/* The guest socket that serves dst: a listener (stream) or a bound datagram
 * socket.  Takes a reference.  tbl_lock held. */
struct gsock *local_peer_locked(int type, const struct vmrpc_sock_addr *dst)
{
	if (!addr_is_loopback(dst))
		return NULL;
	for (int i = 0; i < MAX_FDS; i++) {
		struct gsock *s = table[i];

		if (!s || s->type != type || s->closed || !name_matches(s, dst))
			continue;
		if (type == SOCK_STREAM && s->state != ST_LISTEN)
			continue;
		__atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
		return s;
	}
	return NULL;
}

/* Is the (type, address, port) name taken by another guest socket? tbl_lock held. */
static int name_in_use_locked(const struct gsock *self, const struct vmrpc_sock_addr *a)
{
	for (int i = 0; i < MAX_FDS; i++) {
		const struct gsock *s = table[i];

		if (!s || s == self || s->type != self->type || !s->bound || s->closed)
			continue;
		if (s->self.family != a->family || s->self.port != a->port)
			continue;
		if (addr_is_any(&s->self) || addr_is_any(a) || addr_same_ip(&s->self, a))
			return 1;
	}
	return 0;
}

/* Binds s to a (port 0: an ephemeral port).  tbl_lock held. */
static int bind_locked(struct gsock *s, const struct vmrpc_sock_addr *a)
{
	struct vmrpc_sock_addr name = *a;

	if (name.port == 0) {
		for (uint32_t tries = 0; tries <= EPHEMERAL_HI - EPHEMERAL_LO; tries++) {
			name.port = (uint16_t)next_port;
			next_port = next_port >= EPHEMERAL_HI ? EPHEMERAL_LO : next_port + 1;
			if (!name_in_use_locked(s, &name))
				break;
			name.port = 0;
		}
		if (name.port == 0)
			return EADDRINUSE;
	} else if (name_in_use_locked(s, &name)) {
		return EADDRINUSE;
	}
	s->self = name;
	s->bound = 1;
	if (s->state == ST_NEW)
		s->state = ST_BOUND;
	return 0;
}

/* Gives s a guest-local name if it has none (loopback, ephemeral port). */
int ensure_bound(struct gsock *s)
{
	struct vmrpc_sock_addr a;
	int err = 0;

	rt_spin_lock(&tbl_lock);
	if (!s->bound) {
		addr_loopback(s->family, &a);
		err = bind_locked(s, &a);
	}
	rt_spin_unlock(&tbl_lock);
	return err ? fail(err) : 0;
}

static int host_expose(struct gsock *s, uint32_t fn, int backlog);

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	struct gsock *s = sock_get(fd);
	struct vmrpc_sock_addr a;
	int err;

	if (!s)
		return -1;
	if (addr_from_user(addr, len, s->family, &a) < 0) {
		sock_put(s);
		return -1;
	}
	if (!addr_is_any(&a) && !addr_is_loopback(&a)) {
		sock_put(s); /* the guest owns no address but loopback */
		return fail(EADDRNOTAVAIL);
	}
	rt_spin_lock(&tbl_lock);
	if (s->bound || s->state != ST_NEW)
		err = EINVAL;
	else
		err = bind_locked(s, &a);
	rt_spin_unlock(&tbl_lock);
	if (!err && s->type == SOCK_DGRAM && a.port != 0 && host_expose(s, VMRPC_SOCK_FN_BIND, 0) < 0)
		err = errno;
	sock_put(s);
	return err ? fail(err) : 0;
}

/*
 * One control RPC: may the host expose this guest name?  0 and s->host_listen
 * (stream) or s->host (datagram) set when it did, 0 when it stays guest-local,
 * -1 when the policy denies it.  No host module: stays guest-local.
 */
static int host_expose(struct gsock *s, uint32_t fn, int backlog)
{
	struct vmrpc_sock_listen_req req;
	struct vmrpc_sock_addr_resp resp;
	long rc;

	memset(&req, 0, sizeof(req));
	req.family = (uint32_t)s->family;
	req.type = (uint32_t)s->type;
	req.backlog = (uint32_t)backlog;
	req.addr = s->self;
	rc = host_call(fn, &req, sizeof(req), &resp, sizeof(resp), NULL);
	if (rc < 0)
		return errno == ENETDOWN ? 0 : -1;
	if (rc > 0) {
		if (fn == VMRPC_SOCK_FN_LISTEN)
			s->host_listen = (uint32_t)rc;
		else
			s->host = (uint32_t)rc;
	}
	return 0;
}

int listen(int fd, int backlog)
{
	struct gsock *s = sock_get(fd);
	struct gsock **q;
	int err = 0;

	if (!s)
		return -1;
	if (s->type != SOCK_STREAM) {
		sock_put(s);
		return fail(EOPNOTSUPP);
	}
	if (s->state == ST_LISTEN) {
		sock_put(s);
		return 0;
	}
	if (s->state == ST_CONNECTED) {
		sock_put(s);
		return fail(EINVAL);
	}
	if (backlog < 16)
		backlog = 16;
	if (backlog > 512)
		backlog = 512;
	q = calloc((size_t)backlog, sizeof(*q));
	if (!q) {
		sock_put(s);
		return fail(ENOMEM);
	}
	if (!s->bound) {
		struct vmrpc_sock_addr any;

		memset(&any, 0, sizeof(any));
		any.family = s->family == AF_INET ? VMRPC_SOCK_AF_INET : VMRPC_SOCK_AF_INET6;
		rt_spin_lock(&tbl_lock);
		err = bind_locked(s, &any);
		rt_spin_unlock(&tbl_lock);
	}
	if (!err && arena_listen(s) < 0)
		err = errno;
	if (!err && host_expose(s, VMRPC_SOCK_FN_LISTEN, backlog) < 0)
		err = errno;
	if (err) {
		free(q);
		sock_put(s);
		return fail(err);
	}
	rt_spin_lock(&s->lock);
	s->backlog = q;
	s->bl_cap = backlog;
	rt_spin_unlock(&s->lock);
	__atomic_store_n(&s->state, ST_LISTEN, __ATOMIC_RELEASE);
	sock_put(s);
	return 0;
}
