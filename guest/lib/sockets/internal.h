/*
 * Private to the guest socket library (the files of lib/sockets/): the shared structures,
 * limits and functions.  Nothing here is part of the SDK.  The Makefile links the
 * library's files into one object and makes every symbol declared here (hidden
 * visibility) local to it, so the split adds no global names to a guest's link.
 *
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
 *
 * Files, and what each may call (top to bottom, never upwards):
 *   stream.c poll.c control.c resolve.c   data, readiness, options and names, getaddrinfo
 *   dgram.c                               datagrams (recv on a datagram socket ends here)
 *   connect.c accept.c                    specialisation: guest-local pipes or a host socket
 *   bind.c                                names, ports, bind and listen
 *   table.c addr.c                        descriptors and socket lifetime; addresses
 *   readahead.c                           buffered receive of host streams
 *   arena.c                               loopback connections between programs
 *   pipe.c host.c                         guest-local pipes; host module calls
 *   deadline.c stats.c                    time and waits; counters
 */
#ifndef VMRPC_LIB_SOCKETS_INTERNAL_H
#define VMRPC_LIB_SOCKETS_INTERNAL_H

#include <vmrpc.h>
#include <vmrpc/socket_proto.h>

#pragma GCC visibility push(hidden)

#define FD_BASE 3
#define MAX_FDS 1024
#define PIPE_CAP (128u * 1024u)
/* A connection between programs (arena.c) has larger rings: each time one fills, a
 * side blocks through the host (an exit and a thread wake-up), so fewer blocks per
 * MiB; the arena's pages are only backed once used. */
#define ARENA_PIPE_CAP (512u * 1024u)
#define DGRAM_QUEUE_BYTES (256u * 1024u)
#define MAX_OPTS 8
#define EPHEMERAL_LO 49152u
#define EPHEMERAL_HI 65535u
/* How long a vCPU waits in one host call before it re-checks guest-local
 * sources (other vCPUs may connect or send to it meanwhile). */
#define MIXED_SLICE_MS 10
/* Receives and sends of at least this many bytes on a host stream take the
 * socket I/O exit (host.c, sockio): one exit costs tens of microseconds here,
 * about what the RPC engine's path costs per call, so smaller ones stay there. */
#define SOCKIO_MIN (32u * 1024u)

/* ---- structures ----------------------------------------------------------------- */

struct lpipe {
	rt_spinlock_t lock;
	uint8_t *buf;
	uint64_t rpos, wpos; /* free-running */
	int wclosed;         /* writer shut down: EOF after the data */
	int rclosed;         /* reader gone: writes fail with EPIPE */
	int reset;           /* reader closed with unread data: ECONNRESET */
	int refs;
	/* With a loopback arena (arena.c), a blocked reader (counted in rwait) or
	 * writer (wwait) waits on `seq` through the futex device; every change bumps
	 * it, and wakes a reader for new data, a writer once half the ring is free. */
	volatile uint32_t seq, rwait, wwait;
};

/* ST_CONNECTING: a non-blocking host connect still under way (connect.c). */
enum { ST_NEW, ST_BOUND, ST_LISTEN, ST_CONNECTED, ST_CONNECTING };

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
	int in_progress; /* a non-blocking connect whose end no connect() has seen yet */
	uint8_t *ra;                  /* read-ahead of a host stream (readahead.c), or NULL */
	uint32_t ra_pos, ra_end;      /* its unread bytes: [ra_pos, ra_end) */
	int ra_busy;                  /* a vCPU is filling it or copying out of it */
	struct sockopt opts[MAX_OPTS];
	int nopts;
	/* Between programs (arena.c): connection slot + 1 and its generation, or the
	 * listener entry + 1 and its generation; 0: none. */
	int arena_conn, arena_lid;
	uint32_t arena_gen, arena_lgen;
};

/* ---- helpers -------------------------------------------------------------------- */

static inline void stat_add(uint64_t *counter, uint64_t n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

static inline int fail(int err)
{
	errno = err;
	return -1;
}

/* ---- shared functions and state, by the file that defines them ------------------- */

/* stats.c */
extern struct vmrpc_sock_stats stats;

/* deadline.c */
uint64_t deadline_in(int ms);
int expired(uint64_t deadline);
int ms_left(uint64_t deadline, int cap_ms);
int wait_ms(const struct gsock *s, int flags, int send_side);
int local_waiters_possible(void);

/* host.c */
/* The address the host sees for a guest buffer (the one place a pointer becomes
 * one: guest memory is identity-mapped). */
static inline uint64_t sock_gpa(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}
uint8_t *cpu_scratch(void);
int host_rpc(uint32_t fn, const void *req, size_t req_len, void *resp, size_t resp_cap,
	     size_t *resp_len, int32_t *result);
long host_call(uint32_t fn, const void *req, size_t req_len, void *resp, size_t resp_cap,
	       size_t *resp_len);
long host_simple(uint32_t fn, const void *req, size_t req_len);
long host_zero_copy(struct gsock *s, uint32_t fn, const void *buf, size_t len);
long host_sockio(struct gsock *s, uint32_t flags, const void *buf, size_t len, void *buf2,
		 size_t len2, int timeout_ms);

/* readahead.c */
uint32_t ra_avail(struct gsock *s);
size_t ra_take(struct gsock *s, uint8_t *buf, size_t len, int peek);
long ra_fill(struct gsock *s);
long ra_recv_direct(struct gsock *s, uint8_t *buf, size_t len, int waitall, int timeout_ms);
void ra_free(struct gsock *s);

/* pipe.c */
struct lpipe *pipe_new(void);
void pipe_put(struct lpipe *p);
uint64_t pipe_avail(struct lpipe *p);
/* After a pipe's state changed outside pipe.c (a close): wakes who waits on it. */
void pipe_kick(struct lpipe *p);
ssize_t pipe_write(struct lpipe *p, const uint8_t *data, size_t len, int nonblock,
		   uint64_t deadline);
ssize_t pipe_read(struct lpipe *p, uint8_t *data, size_t len, int flags, int nonblock,
		  uint64_t deadline);

/* arena.c */
int arena_present(void);
uint8_t *arena_pipe_buf(const struct lpipe *p);
/* The capacity of p's ring: PIPE_CAP, or ARENA_PIPE_CAP in the arena. */
size_t pipe_cap(const struct lpipe *p);
uint32_t arena_seen(void);
void arena_changed(void);
void local_wait(uint32_t seen);
void word_wait(volatile uint32_t *word, uint32_t seen, volatile uint32_t *waiters);
void word_changed(volatile uint32_t *word, volatile uint32_t *waiters);
int arena_listen(struct gsock *s);
int arena_connect(struct gsock *s, const struct vmrpc_sock_addr *dst);
struct gsock *arena_accept(struct gsock *l);
int arena_pending(struct gsock *l);
int arena_conn_current(const struct gsock *s);
void arena_close(struct gsock *s);

/* table.c */
extern rt_spinlock_t tbl_lock;
extern struct gsock *table[MAX_FDS];
extern uint32_t next_port;
struct gsock *sock_alloc(int family, int type);
void host_close(uint32_t handle);
void sock_teardown(struct gsock *s);
void sock_put(struct gsock *s);
struct gsock *sock_get(int fd);
/* sock_get for a data call: NULL with EFAULT for a missing buffer of nonzero length. */
struct gsock *sock_get_io(int fd, const void *buf, size_t len);
int fd_install(struct gsock *s);

/* addr.c */
int addr_from_user(const struct sockaddr *sa, socklen_t len, int family,
		   struct vmrpc_sock_addr *out);
void addr_to_user(const struct vmrpc_sock_addr *a, struct sockaddr *sa, socklen_t *len);
int addr_is_any(const struct vmrpc_sock_addr *a);
int addr_is_loopback(const struct vmrpc_sock_addr *a);
int addr_same_ip(const struct vmrpc_sock_addr *a, const struct vmrpc_sock_addr *b);
void addr_loopback(int family, struct vmrpc_sock_addr *a);

/* bind.c */
struct gsock *local_peer_locked(int type, const struct vmrpc_sock_addr *dst);
int ensure_bound(struct gsock *s);

/* connect.c */
int host_attach(struct gsock *s);
/* The outcome of s's connect under way: 0 connected (s is ST_CONNECTED), else -1
 * with errno EALREADY (still under way) or the connect's error (collected). */
int conn_settle(struct gsock *s);
/* conn_settle, waiting up to timeout_ms (-1: no limit) for the end: EAGAIN past it. */
int conn_wait(struct gsock *s, int timeout_ms);

/* dgram.c */
ssize_t dgram_recv(struct gsock *s, uint8_t *buf, size_t len, int flags,
		   struct vmrpc_sock_addr *from);

#pragma GCC visibility pop

#endif
