/*
 * The descriptor table, socket lifetime (references, teardown) and socket().
 */
#include "internal.h"

rt_spinlock_t tbl_lock = RT_SPINLOCK_INIT;
struct gsock *table[MAX_FDS];
uint32_t next_port = EPHEMERAL_LO;

struct gsock *sock_alloc(int family, int type)
{
	struct gsock *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->refs = 1;
	s->family = family;
	s->type = type;
	s->rcvtimeo_ms = -1;
	s->sndtimeo_ms = -1;
	return s;
}

void host_close(uint32_t handle)
{
	struct vmrpc_sock_handle_req req = { handle, 0 };

	if (handle)
		host_simple(VMRPC_SOCK_FN_CLOSE, &req, sizeof(req));
}

/* Tears the socket's connections down (once; the memory stays until the last put). */
void sock_teardown(struct gsock *s)
{
	struct gsock **backlog;
	int count, head, cap;
	struct ldgram *dq;
	int saved = errno;

	if (__atomic_exchange_n(&s->closed, 1, __ATOMIC_ACQ_REL))
		return;
	if (!arena_conn_current(s))
		s->rx = s->tx = NULL; /* its arena slot went to another connection */
	if (s->rx) {
		rt_spin_lock(&s->rx->lock);
		s->rx->rclosed = 1;
		if (s->rx->wpos != s->rx->rpos && s->tx)
			s->tx->reset = 1; /* unread data: the peer sees a reset, as with TCP */
		rt_spin_unlock(&s->rx->lock);
	}
	if (s->tx) {
		rt_spin_lock(&s->tx->lock);
		s->tx->wclosed = 1;
		rt_spin_unlock(&s->tx->lock);
	}
	if (s->rx)
		pipe_kick(s->rx); /* a peer blocked writing to it, or reading from tx */
	if (s->tx)
		pipe_kick(s->tx);
	rt_spin_lock(&s->lock);
	backlog = s->backlog;
	count = s->bl_count;
	head = s->bl_head;
	cap = s->bl_cap;
	s->backlog = NULL;
	s->bl_count = 0;
	dq = s->dq_head;
	s->dq_head = s->dq_tail = NULL;
	rt_spin_unlock(&s->lock);
	for (int i = 0; i < count; i++) {
		struct gsock *c = backlog[(head + i) % cap];

		sock_teardown(c);
		if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0) {
			pipe_put(c->rx);
			pipe_put(c->tx);
			free(c);
		}
	}
	free(backlog);
	while (dq) {
		struct ldgram *next = dq->next;

		free(dq);
		dq = next;
	}
	if (arena_present())
		arena_close(s); /* after the pipes were shut: frees the slot both ends left */
	ra_free(s); /* close drops what was read ahead */
	host_close(s->host);
	host_close(s->host_listen);
	errno = saved;
}

void sock_put(struct gsock *s)
{
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		sock_teardown(s);
		ra_free(s); /* a receive racing with close may have refilled it */
		pipe_put(s->rx);
		pipe_put(s->tx);
		free(s);
	}
}

/* Takes a reference on the socket behind fd; NULL with errno EBADF. */
struct gsock *sock_get(int fd)
{
	struct gsock *s = NULL;

	if (fd >= FD_BASE && fd < FD_BASE + MAX_FDS) {
		rt_spin_lock(&tbl_lock);
		s = table[fd - FD_BASE];
		if (s)
			__atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
		rt_spin_unlock(&tbl_lock);
	}
	if (!s)
		errno = EBADF;
	return s;
}

struct gsock *sock_get_io(int fd, const void *buf, size_t len)
{
	struct gsock *s = sock_get(fd);

	if (s && len && !buf) {
		sock_put(s);
		errno = EFAULT;
		return NULL;
	}
	return s;
}

/* Installs s in the lowest free descriptor; the table owns the reference. */
int fd_install(struct gsock *s)
{
	rt_spin_lock(&tbl_lock);
	for (int i = 0; i < MAX_FDS; i++) {
		if (!table[i]) {
			table[i] = s;
			rt_spin_unlock(&tbl_lock);
			return FD_BASE + i;
		}
	}
	rt_spin_unlock(&tbl_lock);
	return -1;
}

int socket(int domain, int type, int protocol)
{
	int kind = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct gsock *s;
	int fd;

	if (domain != AF_INET && domain != AF_INET6)
		return fail(EAFNOSUPPORT);
	if (kind != SOCK_STREAM && kind != SOCK_DGRAM)
		return fail(ESOCKTNOSUPPORT);
	if (protocol && protocol != (kind == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP))
		return fail(EPROTONOSUPPORT);
	s = sock_alloc(domain, kind);
	if (!s)
		return fail(ENOMEM);
	s->nonblock = !!(type & SOCK_NONBLOCK);
	fd = fd_install(s);
	if (fd < 0) {
		free(s);
		return fail(EMFILE);
	}
	return fd;
}
