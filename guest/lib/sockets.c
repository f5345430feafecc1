/*
 * Guest sockets: a POSIX-style API (vmrpc/socket.h) whose sockets are
 * specialised at run time, either to guest-local pipes (peer inside the guest)
 * or to host sockets through the "sockets" host module (vmrpc/socket_proto.h).
 *
 * Locking: tbl_lock protects the descriptor table, every socket's name
 * (bound address) and the port namespace; a socket's own lock protects its
 * accept backlog and datagram queue; a pipe's lock its ring.  Order:
 * tbl_lock, then a socket lock, then a pipe lock.  No lock is held across an
 * RPC.  Sockets are reference counted: the table holds one reference, every
 * call in progress another, so close() on one vCPU never frees a socket that
 * another vCPU is using.
 */
#include <vmrpc.h>
#include <vmrpc/socket_proto.h>

#define FD_BASE 3
#define MAX_FDS 1024
#define PIPE_CAP (128u * 1024u)
#define DGRAM_QUEUE_BYTES (256u * 1024u)
#define MAX_OPTS 8
#define EPHEMERAL_LO 49152u
#define EPHEMERAL_HI 65535u
/* How long a vCPU waits in one host call before it re-checks guest-local
 * sources (other vCPUs may connect or send to it meanwhile). */
#define MIXED_SLICE_MS 10

const struct in6_addr in6addr_any = IN6ADDR_ANY_INIT;
const struct in6_addr in6addr_loopback = IN6ADDR_LOOPBACK_INIT;

/* ---- statistics (errno is rt/errno.c's) ------------------------------------------- */

static struct vmrpc_sock_stats stats;

static void stat_add(uint64_t *counter, uint64_t n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

void vmrpc_sock_get_stats(struct vmrpc_sock_stats *out)
{
	out->host_rpcs = __atomic_load_n(&stats.host_rpcs, __ATOMIC_RELAXED);
	out->local_connects = __atomic_load_n(&stats.local_connects, __ATOMIC_RELAXED);
	out->host_connects = __atomic_load_n(&stats.host_connects, __ATOMIC_RELAXED);
	out->local_bytes = __atomic_load_n(&stats.local_bytes, __ATOMIC_RELAXED);
}

static int fail(int err)
{
	errno = err;
	return -1;
}

/* ---- time --------------------------------------------------------------------------- */

static uint64_t tsc_per_ms(void)
{
	uint64_t khz = rt_tsc_khz();

	return khz ? khz : 2000000u; /* unknown: assume 2 GHz */
}

/* 0 means "no deadline". */
static uint64_t deadline_in(int ms)
{
	return ms < 0 ? 0 : rdtsc() + (uint64_t)ms * tsc_per_ms() + 1;
}

static int expired(uint64_t deadline)
{
	return deadline && rdtsc() >= deadline;
}

/* Milliseconds left (-1: no deadline), capped at cap_ms when cap_ms >= 0. */
static int ms_left(uint64_t deadline, int cap_ms)
{
	int left;

	if (!deadline) {
		left = -1;
	} else {
		uint64_t now = rdtsc();
		uint64_t ms = now >= deadline ? 0 : (deadline - now) / tsc_per_ms();

		left = ms > 0x7fffffff ? 0x7fffffff : (int)ms;
	}
	if (cap_ms >= 0 && (left < 0 || left > cap_ms))
		left = cap_ms;
	return left;
}

/* ---- host module calls ------------------------------------------------------------- */

static rt_spinlock_t bind_lock = RT_SPINLOCK_INIT;
static int host_handle; /* 0: not bound yet; > 0: handle; < 0: VMRPC_E* */
static uint8_t *scratch[VMRPC_MAX_VCPUS];

/* This vCPU's buffer for one request or response. */
static uint8_t *cpu_scratch(void)
{
	unsigned cpu = rt_cpu_id();

	if (cpu >= VMRPC_MAX_VCPUS)
		return NULL;
	if (!scratch[cpu])
		scratch[cpu] = malloc(VMRPC_MAX_PAYLOAD);
	return scratch[cpu];
}

static int host_module(void)
{
	int h = __atomic_load_n(&host_handle, __ATOMIC_ACQUIRE);

	if (h)
		return h;
	rt_spin_lock(&bind_lock);
	h = host_handle;
	if (!h) {
		h = bind_module(VMRPC_SOCK_MODULE_NAME,
				VMRPC_VERSION(VMRPC_SOCK_MODULE_MAJOR, VMRPC_SOCK_MODULE_MINOR));
		if (h == 0)
			h = VMRPC_EINVAL;
		__atomic_store_n(&host_handle, h, __ATOMIC_RELEASE);
	}
	rt_spin_unlock(&bind_lock);
	return h;
}

static int vmrpc_errno(long rc)
{
	switch (rc) {
	case VMRPC_ENOMODULE:
	case VMRPC_EGONE:
	case VMRPC_ENODEV: return ENETDOWN;
	case VMRPC_ESHUTDOWN: return ESHUTDOWN;
	case VMRPC_ETOOBIG: return EMSGSIZE;
	default: return EIO;
	}
}

/*
 * Calls host function fn with req (req_len bytes, may be the scratch buffer)
 * and answers into resp (resp_cap bytes, may be the scratch buffer).  Returns
 * 0 with *result and *resp_len set, or -1 with errno set when the call itself
 * failed (no module, VM stopping, malformed answer).
 */
static int host_rpc(uint32_t fn, const void *req, size_t req_len, void *resp, size_t resp_cap,
		    size_t *resp_len, int32_t *result)
{
	int h = host_module();
	long n;

	if (h < 0)
		return fail(vmrpc_errno(h));
	stat_add(&stats.host_rpcs, 1);
	n = perform_rpc(h, fn, req, req_len, resp, resp_cap);
	if (n < 0)
		return fail(vmrpc_errno(n));
	if (n < (long)sizeof(struct vmrpc_sock_resp) || (size_t)n > resp_cap)
		return fail(EIO);
	memcpy(result, resp, sizeof(*result));
	if (resp_len)
		*resp_len = (size_t)n;
	return 0;
}

/* host_rpc, and a negative result becomes -1 with errno = -result. */
static long host_call(uint32_t fn, const void *req, size_t req_len, void *resp, size_t resp_cap,
		      size_t *resp_len)
{
	int32_t result;

	if (host_rpc(fn, req, req_len, resp, resp_cap, resp_len, &result) < 0)
		return -1;
	if (result < 0)
		return fail(result < -4095 ? EIO : -result);
	return result;
}

/* A call whose answer is a plain struct vmrpc_sock_resp. */
static long host_simple(uint32_t fn, const void *req, size_t req_len)
{
	struct vmrpc_sock_resp r;

	return host_call(fn, req, req_len, &r, sizeof(r), NULL);
}

/* ---- pipes: one direction of a guest-local stream ---------------------------------- */

struct lpipe {
	rt_spinlock_t lock;
	uint8_t *buf;
	uint64_t rpos, wpos; /* free-running */
	int wclosed;         /* writer shut down: EOF after the data */
	int rclosed;         /* reader gone: writes fail with EPIPE */
	int reset;           /* reader closed with unread data: ECONNRESET */
	int refs;
};

static struct lpipe *pipe_new(void)
{
	struct lpipe *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->buf = malloc(PIPE_CAP);
	if (!p->buf) {
		free(p);
		return NULL;
	}
	p->refs = 2;
	return p;
}

static void pipe_put(struct lpipe *p)
{
	if (p && __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		free(p->buf);
		free(p);
	}
}

static uint64_t pipe_avail(struct lpipe *p)
{
	return __atomic_load_n(&p->wpos, __ATOMIC_ACQUIRE) - __atomic_load_n(&p->rpos, __ATOMIC_ACQUIRE);
}

/* Copies len bytes in or out of the ring at position pos (wrapping). */
static void ring_copy(struct lpipe *p, uint64_t pos, uint8_t *data, size_t len, int to_ring)
{
	size_t off = (size_t)(pos % PIPE_CAP);
	size_t first = len < PIPE_CAP - off ? len : PIPE_CAP - off;

	if (to_ring) {
		memcpy(p->buf + off, data, first);
		memcpy(p->buf, data + first, len - first);
	} else {
		memcpy(data, p->buf + off, first);
		memcpy(data + first, p->buf, len - first);
	}
}

static ssize_t pipe_write(struct lpipe *p, const uint8_t *data, size_t len, int nonblock,
			  uint64_t deadline)
{
	size_t done = 0;

	while (done < len || len == 0) {
		size_t space, k;

		rt_spin_lock(&p->lock);
		if (p->rclosed) {
			int reset = p->reset;

			rt_spin_unlock(&p->lock);
			if (done)
				break;
			return fail(reset ? ECONNRESET : EPIPE);
		}
		if (p->wclosed) {
			rt_spin_unlock(&p->lock);
			return done ? (ssize_t)done : fail(EPIPE);
		}
		space = PIPE_CAP - (size_t)(p->wpos - p->rpos);
		k = len - done < space ? len - done : space;
		if (k) {
			ring_copy(p, p->wpos, (uint8_t *)data + done, k, 1);
			__atomic_store_n(&p->wpos, p->wpos + k, __ATOMIC_RELEASE);
			done += k;
		}
		rt_spin_unlock(&p->lock);
		if (done == len)
			break;
		if (!k) {
			if (nonblock)
				return done ? (ssize_t)done : fail(EAGAIN);
			if (expired(deadline))
				return done ? (ssize_t)done : fail(EAGAIN);
			cpu_relax();
		}
	}
	stat_add(&stats.local_bytes, done);
	return (ssize_t)done;
}

static ssize_t pipe_read(struct lpipe *p, uint8_t *data, size_t len, int flags, int nonblock,
			 uint64_t deadline)
{
	size_t done = 0;

	for (;;) {
		size_t avail, k;

		rt_spin_lock(&p->lock);
		if (p->reset) {
			rt_spin_unlock(&p->lock);
			return done ? (ssize_t)done : fail(ECONNRESET);
		}
		avail = (size_t)(p->wpos - p->rpos);
		k = len - done < avail ? len - done : avail;
		if (k) {
			ring_copy(p, p->rpos, data + done, k, 0);
			if (!(flags & MSG_PEEK))
				__atomic_store_n(&p->rpos, p->rpos + k, __ATOMIC_RELEASE);
			done += k;
		}
		if (!k && p->wclosed) {
			rt_spin_unlock(&p->lock);
			return (ssize_t)done; /* EOF */
		}
		rt_spin_unlock(&p->lock);
		if (done == len || (done && !(flags & MSG_WAITALL)) || (done && (flags & MSG_PEEK)))
			return (ssize_t)done;
		if (nonblock)
			return done ? (ssize_t)done : fail(EAGAIN);
		if (expired(deadline))
			return done ? (ssize_t)done : fail(EAGAIN);
		cpu_relax();
	}
}

/* ---- sockets ------------------------------------------------------------------------ */

enum { ST_NEW, ST_BOUND, ST_LISTEN, ST_CONNECTED };

struct ldgram {
	struct ldgram *next;
	size_t len;
	struct vmrpc_sock_addr from;
	uint8_t data[];
};

struct sockopt {
	int level, name;
	socklen_t len;
	uint8_t val[16];
};

struct gsock {
	int refs;
	int family; /* AF_INET / AF_INET6 */
	int type;   /* SOCK_STREAM / SOCK_DGRAM */
	int nonblock;
	int state;
	int closed;
	int local;            /* stream connected through guest-local pipes */
	uint32_t host;        /* host handle of the connection or datagram socket, 0: none */
	uint32_t host_listen; /* host handle of an exposed listener, 0: none */
	int bound, has_peer;
	struct vmrpc_sock_addr self, peer;
	struct lpipe *rx, *tx;
	int shut_rd;
	rt_spinlock_t lock;     /* backlog, datagram queue */
	struct gsock **backlog; /* listener: connections not accepted yet */
	int bl_cap, bl_head, bl_count;
	struct ldgram *dq_head, *dq_tail;
	size_t dq_bytes;
	int rcvtimeo_ms, sndtimeo_ms; /* -1: none */
	int no_zero_copy;             /* the host said SEND_BUF/RECV_BUF cannot serve it */
	struct sockopt opts[MAX_OPTS];
	int nopts;
};

static rt_spinlock_t tbl_lock = RT_SPINLOCK_INIT;
static struct gsock *table[MAX_FDS];
static uint32_t next_port = EPHEMERAL_LO;

static struct gsock *sock_alloc(int family, int type)
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

static void host_close(uint32_t handle)
{
	struct vmrpc_sock_handle_req req = { handle, 0 };

	if (handle)
		host_simple(VMRPC_SOCK_FN_CLOSE, &req, sizeof(req));
}

/* Tears the socket's connections down (once; the memory stays until the last put). */
static void sock_teardown(struct gsock *s)
{
	struct gsock **backlog;
	int count, head, cap;
	struct ldgram *dq;
	int saved = errno;

	if (__atomic_exchange_n(&s->closed, 1, __ATOMIC_ACQ_REL))
		return;
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
	host_close(s->host);
	host_close(s->host_listen);
	errno = saved;
}

static void sock_put(struct gsock *s)
{
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		sock_teardown(s);
		pipe_put(s->rx);
		pipe_put(s->tx);
		free(s);
	}
}

/* Takes a reference on the socket behind fd; NULL with errno EBADF. */
static struct gsock *sock_get(int fd)
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

/* Installs s in the lowest free descriptor; the table owns the reference. */
static int fd_install(struct gsock *s)
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

/* ---- addresses ---------------------------------------------------------------------- */

static int addr_from_user(const struct sockaddr *sa, socklen_t len, int family,
			  struct vmrpc_sock_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (!sa)
		return fail(EFAULT);
	if (len < sizeof(sa_family_t))
		return fail(EINVAL);
	if (sa->sa_family != family)
		return fail(EAFNOSUPPORT);
	if (family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		if (len < sizeof(*in))
			return fail(EINVAL);
		out->family = VMRPC_SOCK_AF_INET;
		out->port = ntohs(in->sin_port);
		memcpy(out->addr, &in->sin_addr, 4);
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		if (len < sizeof(*in6))
			return fail(EINVAL);
		out->family = VMRPC_SOCK_AF_INET6;
		out->port = ntohs(in6->sin6_port);
		out->flowinfo = in6->sin6_flowinfo & 0xfffff;
		out->scope_id = in6->sin6_scope_id;
		memcpy(out->addr, &in6->sin6_addr, 16);
	}
	return 0;
}

/* Stores a as a sockaddr, truncated to *len like the kernel; *len = full size. */
static void addr_to_user(const struct vmrpc_sock_addr *a, struct sockaddr *sa, socklen_t *len)
{
	struct sockaddr_storage ss;
	socklen_t n;

	if (!sa || !len)
		return;
	memset(&ss, 0, sizeof(ss));
	if (a->family == VMRPC_SOCK_AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(a->port);
		in6->sin6_flowinfo = a->flowinfo;
		in6->sin6_scope_id = a->scope_id;
		memcpy(&in6->sin6_addr, a->addr, 16);
		n = sizeof(*in6);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(a->port);
		memcpy(&in->sin_addr, a->addr, 4);
		n = sizeof(*in);
	}
	memcpy(sa, &ss, *len < n ? *len : n);
	*len = n;
}

static int addr_is_any(const struct vmrpc_sock_addr *a)
{
	for (int i = 0; i < (a->family == VMRPC_SOCK_AF_INET ? 4 : 16); i++)
		if (a->addr[i])
			return 0;
	return 1;
}

static int addr_is_loopback(const struct vmrpc_sock_addr *a)
{
	if (a->family == VMRPC_SOCK_AF_INET)
		return a->addr[0] == 127;
	for (int i = 0; i < 15; i++)
		if (a->addr[i])
			return 0;
	return a->addr[15] == 1;
}

static int addr_same_ip(const struct vmrpc_sock_addr *a, const struct vmrpc_sock_addr *b)
{
	return a->family == b->family && !memcmp(a->addr, b->addr, 16);
}

static void addr_loopback(int family, struct vmrpc_sock_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (family == AF_INET) {
		a->family = VMRPC_SOCK_AF_INET;
		a->addr[0] = 127;
		a->addr[3] = 1;
	} else {
		a->family = VMRPC_SOCK_AF_INET6;
		a->addr[15] = 1;
	}
}

/* Does bound socket s receive what is sent to dst? (tbl_lock held) */
static int name_matches(const struct gsock *s, const struct vmrpc_sock_addr *dst)
{
	return s->bound && s->self.family == dst->family && s->self.port == dst->port &&
	       (addr_is_any(&s->self) || addr_same_ip(&s->self, dst));
}

/* The guest socket that serves dst: a listener (stream) or a bound datagram
 * socket.  Takes a reference.  tbl_lock held. */
static struct gsock *local_peer_locked(int type, const struct vmrpc_sock_addr *dst)
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
static int ensure_bound(struct gsock *s)
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

/* ---- host specialisation ---------------------------------------------------------- */

/* Creates s's host table entry and replays the options set so far. */
static int host_attach(struct gsock *s)
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

static int connect_host(struct gsock *s, const struct vmrpc_sock_addr *a)
{
	struct vmrpc_sock_connect_req req;
	struct vmrpc_sock_addr_resp resp;

	if (host_attach(s) < 0)
		return -1;
	memset(&req, 0, sizeof(req));
	req.handle = s->host;
	/* Like Linux, a connect waits at most SO_SNDTIMEO (the host's own limit
	 * applies too), handshakes with a proxy or a TLS server included. */
	req.timeout_ms = s->sndtimeo_ms;
	req.addr = *a;
	if (host_call(VMRPC_SOCK_FN_CONNECT, &req, sizeof(req), &resp, sizeof(resp), NULL) < 0) {
		if (s->type == SOCK_STREAM) {
			/* A failed stream connect leaves the host entry unusable. */
			host_close(s->host);
			s->host = 0;
		}
		return -1;
	}
	if (!s->bound) {
		s->self = resp.addr;
		s->bound = 1;
	}
	stat_add(&stats.host_connects, 1);
	return 0;
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
		} else {
			rc = connect_host(s, &a);
			if (rc == 0) {
				s->peer = a;
				s->has_peer = 1;
				__atomic_store_n(&s->state, ST_CONNECTED, __ATOMIC_RELEASE);
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

/* ---- accept ------------------------------------------------------------------------- */

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

static int local_waiters_possible(void)
{
	return rt_cpu_count() > 1;
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
		c = backlog_pop(l);
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
			cpu_relax();
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

/* ---- data --------------------------------------------------------------------------- */

static int wait_ms(const struct gsock *s, int flags, int send_side)
{
	if (s->nonblock || (flags & MSG_DONTWAIT))
		return 0;
	return send_side ? s->sndtimeo_ms : s->rcvtimeo_ms;
}

/*
 * One zero-copy attempt (VMRPC_SOCK_FN_SEND_BUF / RECV_BUF): the host moves bytes
 * straight between its socket and our buffer, never waiting.  Returns the bytes
 * moved or -errno; -EAGAIN: nothing now; -EOPNOTSUPP: never for this socket.
 */
static long host_zero_copy(struct gsock *s, uint32_t fn, const void *buf, size_t len)
{
	struct vmrpc_sock_buf_req req;
	struct vmrpc_sock_resp r;
	int32_t result;

	req.handle = s->host;
	req.len = (uint32_t)(len < VMRPC_SOCK_MAX_BUF ? len : VMRPC_SOCK_MAX_BUF);
	req.gpa = (uint64_t)(uintptr_t)buf; /* guest memory is identity-mapped */
	if (host_rpc(fn, &req, sizeof(req), &r, sizeof(r), NULL, &result) < 0)
		return -errno;
	if (result == -EOPNOTSUPP)
		s->no_zero_copy = 1;
	return result;
}

static ssize_t host_send(struct gsock *s, const uint8_t *buf, size_t len, int timeout_ms)
{
	uint8_t *sc = cpu_scratch();
	size_t done = 0;

	/* Zero-copy first; whatever it cannot move now goes the copying way, which
	 * also waits (and reports errors) as the socket's timeout says. */
	while (done < len && !s->no_zero_copy) {
		long rc = host_zero_copy(s, VMRPC_SOCK_FN_SEND_BUF, buf + done, len - done);

		if (rc <= 0) {
			if (rc < 0 && rc != -EAGAIN && rc != -EOPNOTSUPP)
				return done ? (ssize_t)done : fail((int)-rc);
			break;
		}
		done += (size_t)rc;
	}
	if (done == len || (done && timeout_ms == 0))
		return (ssize_t)done;
	if (!sc)
		return fail(ENOMEM);
	do {
		size_t k = len - done < VMRPC_SOCK_MAX_SEND ? len - done : VMRPC_SOCK_MAX_SEND;
		struct vmrpc_sock_wait_req req = { s->host, 0, timeout_ms, 0 };
		long rc;

		memcpy(sc, &req, sizeof(req));
		memcpy(sc + sizeof(req), buf + done, k);
		rc = host_call(VMRPC_SOCK_FN_SEND, sc, sizeof(req) + k, sc, sizeof(struct vmrpc_sock_resp),
			       NULL);
		if (rc < 0)
			return done ? (ssize_t)done : -1;
		done += (size_t)rc;
		if ((size_t)rc < k)
			break; /* non-blocking or timed out: partial */
	} while (done < len);
	return (ssize_t)done;
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	struct gsock *s = sock_get(fd);
	ssize_t n;
	int ms;

	if (!s)
		return -1;
	if (len && !buf) {
		sock_put(s);
		return fail(EFAULT);
	}
	ms = wait_ms(s, flags, 1);
	if (s->type == SOCK_DGRAM) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		int connected = s->has_peer;

		if (connected)
			addr_to_user(&s->peer, (struct sockaddr *)&peer, &plen);
		sock_put(s);
		if (!connected)
			return fail(EDESTADDRREQ);
		return sendto(fd, buf, len, flags, (struct sockaddr *)&peer, plen);
	}
	if (s->state != ST_CONNECTED)
		n = fail(ENOTCONN);
	else if (s->local)
		n = pipe_write(s->tx, buf, len, ms == 0, deadline_in(ms));
	else
		n = host_send(s, buf, len, ms);
	sock_put(s);
	return n;
}

static ssize_t host_recv(struct gsock *s, uint8_t *buf, size_t len, int flags, int timeout_ms)
{
	uint8_t *sc = cpu_scratch();
	struct vmrpc_sock_wait_req req;
	size_t k = len < VMRPC_SOCK_MAX_RECV ? len : VMRPC_SOCK_MAX_RECV;
	size_t got = 0;
	long rc;

	if (!sc)
		return fail(ENOMEM);
	req.handle = s->host;
	req.flags = (flags & MSG_PEEK ? VMRPC_SOCK_F_PEEK : 0) | (flags & MSG_WAITALL ? VMRPC_SOCK_F_WAITALL : 0);
	req.timeout_ms = timeout_ms;
	req.arg = (uint32_t)k;
	rc = host_call(VMRPC_SOCK_FN_RECV, &req, sizeof(req), sc, sizeof(struct vmrpc_sock_resp) + k, &got);
	if (rc < 0)
		return -1;
	if ((size_t)rc > k || got != sizeof(struct vmrpc_sock_resp) + (size_t)rc)
		return fail(EIO);
	memcpy(buf, sc + sizeof(struct vmrpc_sock_resp), (size_t)rc);
	return rc;
}

static ssize_t dgram_recv(struct gsock *s, uint8_t *buf, size_t len, int flags,
			  struct vmrpc_sock_addr *from);

/* Zero-copy first (straight into buf); the copying way when it would wait. */
static ssize_t host_recv_zero_copy(struct gsock *s, uint8_t *buf, size_t len, int timeout_ms)
{
	long rc = host_zero_copy(s, VMRPC_SOCK_FN_RECV_BUF, buf, len);

	if (rc >= 0)
		return rc; /* 0: end of stream */
	if (rc != -EAGAIN && rc != -EOPNOTSUPP)
		return fail((int)-rc);
	return host_recv(s, buf, len, 0, timeout_ms);
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	struct gsock *s = sock_get(fd);
	ssize_t n;
	int ms;

	if (!s)
		return -1;
	if (len && !buf) {
		sock_put(s);
		return fail(EFAULT);
	}
	ms = wait_ms(s, flags, 0);
	if (s->type == SOCK_DGRAM)
		n = dgram_recv(s, buf, len, flags, NULL);
	else if (s->state != ST_CONNECTED)
		n = fail(ENOTCONN);
	else if (s->shut_rd || len == 0)
		n = 0;
	else if (s->local)
		n = pipe_read(s->rx, buf, len, flags, ms == 0, deadline_in(ms));
	else if (!flags && !s->no_zero_copy)
		n = host_recv_zero_copy(s, buf, len, ms);
	else if (!(flags & MSG_WAITALL) || len <= VMRPC_SOCK_MAX_RECV)
		n = host_recv(s, buf, len, flags, ms);
	else {
		size_t done = 0;

		n = 0;
		while (done < len) {
			n = host_recv(s, (uint8_t *)buf + done, len - done, flags, ms);
			if (n <= 0)
				break;
			done += (size_t)n;
		}
		n = done ? (ssize_t)done : n;
	}
	sock_put(s);
	return n;
}

ssize_t read(int fd, void *buf, size_t len)
{
	return recv(fd, buf, len, 0);
}

ssize_t write(int fd, const void *buf, size_t len)
{
	return send(fd, buf, len, 0);
}

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

static ssize_t dgram_recv(struct gsock *s, uint8_t *buf, size_t len, int flags,
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
	struct gsock *s = sock_get(fd);
	struct vmrpc_sock_addr a;
	ssize_t n;

	if (!s)
		return -1;
	if (len && !buf) {
		sock_put(s);
		return fail(EFAULT);
	}
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

/* ---- control ------------------------------------------------------------------------ */

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
		put_int_opt(val, len, 0);
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

/* ---- poll --------------------------------------------------------------------------- */

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
		else if (pipe_avail(s->tx) < PIPE_CAP)
			rev |= POLLOUT;
		if (s->rx->wclosed && s->tx->wclosed)
			rev |= POLLHUP;
	} else if (s->state == ST_CONNECTED) {
		*host = s->host;
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
		uint32_t nhost = 0;
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
			}
		}
		if (ready || timeout_ms == 0 || expired(deadline))
			break;
		if (!nhost)
			cpu_relax();
	}
	for (nfds_t i = 0; i < nfds; i++)
		if (socks[i])
			sock_put(socks[i]);
	free(socks);
	free(index);
	return ready;
}

/* ---- name resolution ------------------------------------------------------------------ */

static int parse_service(const char *service, int flags, uint16_t *port)
{
	char *end;
	unsigned long v;

	*port = 0;
	if (!service || !*service)
		return 0;
	v = strtoul(service, &end, 10);
	if (*end == '\0' && service[0] >= '0' && service[0] <= '9') {
		if (v > 0xffff)
			return EAI_SERVICE;
		*port = (uint16_t)v;
		return 0;
	}
	if (flags & AI_NUMERICSERV)
		return EAI_NONAME;
	if (!strcmp(service, "http"))
		*port = 80;
	else if (!strcmp(service, "https"))
		*port = 443;
	else if (!strcmp(service, "echo"))
		*port = 7;
	else
		return EAI_SERVICE;
	return 0;
}

/* Resolves a name through the host module; returns the count or an EAI_* code. */
static int resolve_host(const char *node, int family, int socktype, struct vmrpc_sock_addr *out)
{
	uint8_t *sc = cpu_scratch();
	size_t len = strlen(node), got = 0;
	struct vmrpc_sock_gai_req req;
	int32_t result;

	if (!sc)
		return EAI_MEMORY;
	if (len == 0 || len > VMRPC_SOCK_MAX_NAME)
		return EAI_NONAME;
	req.family = family == AF_INET ? VMRPC_SOCK_AF_INET : family == AF_INET6 ? VMRPC_SOCK_AF_INET6 : 0;
	req.type = (uint32_t)socktype;
	req.flags = 0;
	req.name_len = (uint32_t)len;
	memcpy(sc, &req, sizeof(req));
	memcpy(sc + sizeof(req), node, len);
	if (host_rpc(VMRPC_SOCK_FN_GETADDRINFO, sc, sizeof(req) + len, sc,
		     sizeof(struct vmrpc_sock_resp) + VMRPC_SOCK_MAX_ADDRS * sizeof(struct vmrpc_sock_addr), &got,
		     &result) < 0)
		return errno == ENETDOWN ? EAI_FAIL : EAI_SYSTEM;
	if (result < 0)
		return result >= -11 ? result : EAI_FAIL;
	if (result == 0 || result > (int32_t)VMRPC_SOCK_MAX_ADDRS ||
	    got != sizeof(struct vmrpc_sock_resp) + (size_t)result * sizeof(struct vmrpc_sock_addr))
		return EAI_FAIL;
	memcpy(out, sc + sizeof(struct vmrpc_sock_resp), (size_t)result * sizeof(struct vmrpc_sock_addr));
	return result;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	int family = hints ? hints->ai_family : AF_UNSPEC;
	int socktype = hints ? hints->ai_socktype : 0;
	int protocol = hints ? hints->ai_protocol : 0;
	int flags = hints ? hints->ai_flags : 0;
	struct vmrpc_sock_addr addrs[VMRPC_SOCK_MAX_ADDRS];
	struct addrinfo *head = NULL, **tail = &head;
	uint8_t raw[16];
	uint16_t port;
	int n = 0, err;

	if (!res)
		return EAI_FAIL;
	*res = NULL;
	if (!node && !service)
		return EAI_NONAME;
	if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
		return EAI_FAMILY;
	if (socktype != 0 && socktype != SOCK_STREAM && socktype != SOCK_DGRAM)
		return EAI_SOCKTYPE;
	err = parse_service(service, flags, &port);
	if (err)
		return err;
	memset(addrs, 0, sizeof(addrs));
	if (!node) {
		if (family != AF_INET6) {
			if (!(flags & AI_PASSIVE))
				addr_loopback(AF_INET, &addrs[n]);
			addrs[n++].family = VMRPC_SOCK_AF_INET;
		}
		if (family != AF_INET) {
			if (!(flags & AI_PASSIVE))
				addr_loopback(AF_INET6, &addrs[n]);
			addrs[n++].family = VMRPC_SOCK_AF_INET6;
		}
	} else if (inet_pton(AF_INET, node, raw) == 1) {
		if (family == AF_INET6)
			return EAI_NONAME;
		addrs[0].family = VMRPC_SOCK_AF_INET;
		memcpy(addrs[0].addr, raw, 4);
		n = 1;
	} else if (inet_pton(AF_INET6, node, raw) == 1) {
		if (family == AF_INET)
			return EAI_NONAME;
		addrs[0].family = VMRPC_SOCK_AF_INET6;
		memcpy(addrs[0].addr, raw, 16);
		n = 1;
	} else if (flags & AI_NUMERICHOST) {
		return EAI_NONAME;
	} else {
		n = resolve_host(node, family, socktype, addrs);
		if (n < 0)
			return n;
	}
	for (int i = 0; i < n; i++) {
		for (int t = SOCK_STREAM; t <= SOCK_DGRAM; t++) {
			struct {
				struct addrinfo ai;
				struct sockaddr_storage ss;
			} *e;
			socklen_t len = sizeof(struct sockaddr_storage);

			if (socktype && t != socktype)
				continue;
			e = calloc(1, sizeof(*e));
			if (!e) {
				freeaddrinfo(head);
				return EAI_MEMORY;
			}
			addrs[i].port = port;
			addr_to_user(&addrs[i], (struct sockaddr *)&e->ss, &len);
			e->ai.ai_family = addrs[i].family == VMRPC_SOCK_AF_INET ? AF_INET : AF_INET6;
			e->ai.ai_socktype = t;
			e->ai.ai_protocol = protocol ? protocol : t == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
			e->ai.ai_addrlen = len;
			e->ai.ai_addr = (struct sockaddr *)&e->ss;
			if ((flags & AI_CANONNAME) && !head && node) {
				e->ai.ai_canonname = malloc(strlen(node) + 1);
				if (e->ai.ai_canonname)
					strcpy(e->ai.ai_canonname, node);
			}
			*tail = &e->ai;
			tail = &e->ai.ai_next;
		}
	}
	*res = head;
	return head ? 0 : EAI_NONAME;
}

void freeaddrinfo(struct addrinfo *res)
{
	while (res) {
		struct addrinfo *next = res->ai_next;

		free(res->ai_canonname);
		free(res); /* the address lives in the same allocation */
		res = next;
	}
}
