/*
 * poll over guest-local and host sockets.
 */
#include "internal.h"

/*
 * Readiness from guest-local state.  *host gets the host handle to ask as
 * well (0: none); *local says whether guest-local activity (another vCPU) can
 * change the answer.
 */
static short local_revents(struct gsock *s, short events, uint32_t *host, int *local)
{
	short rev = 0;

	*host = 0;
	*local = 0;
	if (s->state == ST_LISTEN) {
		*local = 1;
		*host = s->host_listen;
		rt_spin_lock(&s->lock);
		if (s->bl_count)
			rev |= POLLIN;
		rt_spin_unlock(&s->lock);
		if (arena_pending(s))
			rev |= POLLIN; /* a connection from another program (arena.c) */
	} else if (s->type == SOCK_DGRAM) {
		*local = 1;
		*host = s->host;
		if (s->dq_head)
			rev |= POLLIN;
		rev |= POLLOUT;
	} else if (s->state == ST_CONNECTED && s->local) {
		*local = 1;
		if (pipe_avail(s->rx) || s->rx->wclosed || s->rx->reset || s->shut_rd)
			rev |= POLLIN;
		if (s->tx->rclosed)
			rev |= POLLERR | POLLHUP;
		else if (pipe_avail(s->tx) < pipe_cap(s->tx))
			rev |= POLLOUT;
		if (s->rx->wclosed && s->tx->wclosed)
			rev |= POLLHUP;
	} else if (s->state == ST_CONNECTED) {
		*host = s->host;
		if (ra_avail(s))
			rev |= POLLIN; /* read ahead: the host socket may be empty by now */
	} else if (s->state == ST_CONNECTING) {
		*host = s->host; /* the host reports the connect's end */
	} else {
		rev |= POLLHUP; /* an unconnected stream socket */
	}
	return rev & (events | POLLERR | POLLHUP | POLLNVAL);
}

int poll(struct pollfd *fds, nfds_t nfds, int timeout_ms)
{
	uint64_t deadline = deadline_in(timeout_ms);
	struct gsock **socks;
	uint32_t *index; /* host request slot -> fds index */
	int ready = 0;

	if (nfds && !fds)
		return fail(EFAULT);
	if (nfds > MAX_FDS)
		return fail(EINVAL);
	socks = calloc(nfds + 1, sizeof(*socks));
	index = calloc(nfds + 1, sizeof(*index));
	if (!socks || !index) {
		free(socks);
		free(index);
		return fail(ENOMEM);
	}
	for (nfds_t i = 0; i < nfds; i++)
		socks[i] = fds[i].fd >= 0 ? sock_get(fds[i].fd) : NULL;
	for (;;) {
		uint8_t *sc = cpu_scratch();
		struct vmrpc_sock_poll_req *req = (struct vmrpc_sock_poll_req *)sc;
		struct vmrpc_sock_pollfd *pf = (struct vmrpc_sock_pollfd *)(sc + sizeof(*req));
		uint32_t nhost = 0, seen = arena_seen();
		int any_local = 0;

		if (!sc) {
			ready = fail(ENOMEM);
			break;
		}
		ready = 0;
		for (nfds_t i = 0; i < nfds; i++) {
			uint32_t host;
			int local;

			fds[i].revents = 0;
			if (fds[i].fd < 0)
				continue;
			if (!socks[i]) {
				fds[i].revents = POLLNVAL;
				ready++;
				continue;
			}
			fds[i].revents = local_revents(socks[i], fds[i].events, &host, &local);
			any_local |= local;
			if (fds[i].revents)
				ready++;
			if (host && nhost < VMRPC_SOCK_MAX_POLL) {
				pf[nhost].handle = host;
				pf[nhost].events = fds[i].events;
				pf[nhost].revents = 0;
				index[nhost++] = (uint32_t)i;
			}
		}
		if (nhost) {
			size_t resp_len = sizeof(struct vmrpc_sock_resp) + nhost * sizeof(*pf);
			size_t got = 0;
			long rc;

			req->nfds = nhost;
			if (ready || timeout_ms == 0)
				req->timeout_ms = 0;
			else
				req->timeout_ms = ms_left(
					deadline, any_local && local_waiters_possible() ? MIXED_SLICE_MS : -1);
			rc = host_call(VMRPC_SOCK_FN_POLL, sc, sizeof(*req) + nhost * sizeof(*pf), sc, resp_len,
				       &got);
			if (rc < 0 || got != resp_len) {
				ready = rc < 0 ? -1 : fail(EIO);
				break;
			}
			pf = (struct vmrpc_sock_pollfd *)(sc + sizeof(struct vmrpc_sock_resp));
			for (uint32_t k = 0; k < nhost; k++) {
				uint32_t i = index[k];
				short add = pf[k].revents & (fds[i].events | POLLERR | POLLHUP | POLLNVAL);

				if (add && !fds[i].revents)
					ready++;
				fds[i].revents |= add;
				/* The host reports POLLOUT for a connect only once it succeeded. */
				if (socks[i]->state == ST_CONNECTING &&
				    (pf[k].revents & (POLLOUT | POLLERR)) == POLLOUT) {
					socks[i]->has_peer = 1;
					__atomic_store_n(&socks[i]->state, ST_CONNECTED, __ATOMIC_RELEASE);
				}
			}
		}
		if (ready || timeout_ms == 0 || expired(deadline))
			break;
		if (!nhost)
			local_wait(seen);
	}
	for (nfds_t i = 0; i < nfds; i++)
		if (socks[i])
			sock_put(socks[i]);
	free(socks);
	free(index);
	return ready;
}
