/*
 * accept: guest-local connections from the backlog, exposed host ones from the host.
 */
#include "internal.h"

static struct gsock *backlog_pop(struct gsock *l)
{
	struct gsock *c = NULL;

	rt_spin_lock(&l->lock);
	if (l->backlog && l->bl_count) {
		c = l->backlog[l->bl_head];
		l->bl_head = (l->bl_head + 1) % l->bl_cap;
		l->bl_count--;
	}
	rt_spin_unlock(&l->lock);
	return c;
}

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	struct gsock *l = sock_get(fd), *c = NULL;
	uint64_t deadline;
	int nfd;

	if (!l)
		return -1;
	if (l->state != ST_LISTEN) {
		sock_put(l);
		return fail(EINVAL);
	}
	deadline = deadline_in(l->rcvtimeo_ms);
	for (;;) {
		uint32_t seen = arena_seen();

		c = backlog_pop(l);
		if (!c)
			c = arena_accept(l); /* from another program */
		if (c)
			break;
		if (l->closed) {
			sock_put(l);
			return fail(EBADF);
		}
		if (l->host_listen) {
			struct vmrpc_sock_wait_req req = { l->host_listen, 0, 0, 0 };
			struct vmrpc_sock_addr_resp resp;
			long rc;

			if (!l->nonblock)
				req.timeout_ms =
					ms_left(deadline, local_waiters_possible() ? MIXED_SLICE_MS : -1);
			rc = host_call(VMRPC_SOCK_FN_ACCEPT, &req, sizeof(req), &resp, sizeof(resp), NULL);
			if (rc > 0) {
				c = sock_alloc(l->family, SOCK_STREAM);
				if (!c) {
					host_close((uint32_t)rc);
					sock_put(l);
					return fail(ENOMEM);
				}
				c->host = (uint32_t)rc;
				c->state = ST_CONNECTED;
				c->bound = c->has_peer = 1;
				c->self = l->self;
				c->peer = resp.addr;
				break;
			}
			if (rc < 0 && errno != EAGAIN) {
				sock_put(l);
				return -1;
			}
		}
		if (l->nonblock || expired(deadline)) {
			sock_put(l);
			return fail(EAGAIN);
		}
		if (!l->host_listen)
			local_wait(seen);
	}
	sock_put(l);
	nfd = fd_install(c);
	if (nfd < 0) {
		sock_put(c);
		return fail(EMFILE);
	}
	addr_to_user(&c->peer, addr, len);
	return nfd;
}
