/*
 * Datagrams: sendto and recvfrom, guest-local queues and host sockets.
 */
#include "internal.h"

/* Queues a datagram for the guest socket d (dropped when its queue is full). */
static void dgram_deliver(struct gsock *d, const struct vmrpc_sock_addr *from, const uint8_t *buf,
			  size_t len)
{
	struct ldgram *m = malloc(sizeof(*m) + len + 1);

	if (!m)
		return;
	m->next = NULL;
	m->len = len;
	m->from = *from;
	memcpy(m->data, buf, len);
	rt_spin_lock(&d->lock);
	if (d->closed || d->dq_bytes + len > DGRAM_QUEUE_BYTES) {
		rt_spin_unlock(&d->lock);
		free(m);
		return;
	}
	if (d->dq_tail)
		d->dq_tail->next = m;
	else
		d->dq_head = m;
	d->dq_tail = m;
	d->dq_bytes += len;
	rt_spin_unlock(&d->lock);
	stat_add(&stats.local_bytes, len);
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to,
	       socklen_t tolen)
{
	struct gsock *s, *d;
	struct vmrpc_sock_addr a;
	ssize_t n;

	if (!to)
		return send(fd, buf, len, flags);
	s = sock_get(fd);
	if (!s)
		return -1;
	if (s->type == SOCK_STREAM) {
		sock_put(s);
		return send(fd, buf, len, flags); /* Linux ignores the address when connected */
	}
	if (len && !buf) {
		sock_put(s);
		return fail(EFAULT);
	}
	if (addr_from_user(to, tolen, s->family, &a) < 0) {
		sock_put(s);
		return -1;
	}
	if (len > VMRPC_SOCK_MAX_SENDTO) {
		sock_put(s);
		return fail(EMSGSIZE);
	}
	rt_spin_lock(&tbl_lock);
	d = local_peer_locked(SOCK_DGRAM, &a);
	rt_spin_unlock(&tbl_lock);
	if (d) {
		n = ensure_bound(s);
		if (n == 0) {
			dgram_deliver(d, &s->self, buf, len);
			n = (ssize_t)len;
		}
		sock_put(d);
	} else if (host_attach(s) < 0) {
		n = -1;
	} else {
		uint8_t *sc = cpu_scratch();
		struct vmrpc_sock_sendto_req req;

		if (!sc) {
			sock_put(s);
			return fail(ENOMEM);
		}
		memset(&req, 0, sizeof(req));
		req.handle = s->host;
		req.timeout_ms = wait_ms(s, flags, 1);
		req.addr = a;
		memcpy(sc, &req, sizeof(req));
		memcpy(sc + sizeof(req), buf, len);
		n = host_call(VMRPC_SOCK_FN_SENDTO, sc, sizeof(req) + len, sc, sizeof(struct vmrpc_sock_resp),
			      NULL);
	}
	sock_put(s);
	return n;
}

static struct ldgram *dgram_pop(struct gsock *s, int peek)
{
	struct ldgram *m;

	rt_spin_lock(&s->lock);
	m = s->dq_head;
	if (m && !peek) {
		s->dq_head = m->next;
		if (!s->dq_head)
			s->dq_tail = NULL;
		s->dq_bytes -= m->len;
	}
	rt_spin_unlock(&s->lock);
	return m;
}

ssize_t dgram_recv(struct gsock *s, uint8_t *buf, size_t len, int flags,
		   struct vmrpc_sock_addr *from)
{
	int ms = wait_ms(s, flags, 0);
	uint64_t deadline = deadline_in(ms);

	for (;;) {
		struct ldgram *m = dgram_pop(s, flags & MSG_PEEK);

		if (m) {
			size_t k = len < m->len ? len : m->len;

			memcpy(buf, m->data, k);
			if (from)
				*from = m->from;
			if (!(flags & MSG_PEEK))
				free(m);
			return (ssize_t)k;
		}
		if (s->closed)
			return fail(EBADF);
		if (s->host) {
			uint8_t *sc = cpu_scratch();
			size_t cap = len < VMRPC_SOCK_MAX_RECVFROM ? len : VMRPC_SOCK_MAX_RECVFROM;
			struct vmrpc_sock_wait_req req = { s->host, flags & MSG_PEEK ? VMRPC_SOCK_F_PEEK : 0, 0,
						      (uint32_t)cap };
			struct vmrpc_sock_addr_resp resp;
			size_t got = 0;
			long rc;

			if (!sc)
				return fail(ENOMEM);
			if (ms != 0)
				req.timeout_ms = ms_left(deadline, local_waiters_possible() ? MIXED_SLICE_MS : -1);
			rc = host_call(VMRPC_SOCK_FN_RECVFROM, &req, sizeof(req), sc, sizeof(resp) + cap, &got);
			if (rc >= 0) {
				if ((size_t)rc > cap || got != sizeof(resp) + (size_t)rc)
					return fail(EIO);
				memcpy(&resp, sc, sizeof(resp));
				if (from)
					*from = resp.addr;
				memcpy(buf, sc + sizeof(resp), (size_t)rc);
				return rc;
			}
			if (errno != EAGAIN)
				return -1;
		}
		if (ms == 0 || expired(deadline))
			return fail(EAGAIN);
		if (!s->host)
			cpu_relax();
	}
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
		 socklen_t *fromlen)
{
	struct gsock *s = sock_get_io(fd, buf, len);
	struct vmrpc_sock_addr a;
	ssize_t n;

	if (!s)
		return -1;
	if (s->type == SOCK_STREAM) {
		sock_put(s);
		n = recv(fd, buf, len, flags);
		if (n >= 0 && from && fromlen) {
			s = sock_get(fd);
			if (s) {
				addr_to_user(&s->peer, from, fromlen);
				sock_put(s);
			}
		}
		return n;
	}
	memset(&a, 0, sizeof(a));
	n = dgram_recv(s, buf, len, flags, &a);
	if (n >= 0)
		addr_to_user(&a, from, fromlen);
	sock_put(s);
	return n;
}
