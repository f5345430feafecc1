/*
 * Read-ahead for connected host streams: one native VMRPC_SOCK_FN_RECV_BUF fills
 * a per-socket buffer with whatever the host socket holds (up to RA_CAP), and the
 * program's later receives are served from it without a host call until it is
 * empty.  A program asking 64 KiB (or one byte) at a time then costs one host call
 * per RA_CAP received rather than one per call, and every host call waits for the
 * VMM's engine thread to get a CPU.
 *
 * A large receive (SOCKIO_MIN or more) with nothing buffered fills the program's
 * buffer and this one in one socket I/O exit on the vCPU's own thread
 * (ra_recv_direct): the program's part is copied once, and only what follows
 * it is copied twice.
 *
 * The buffer is allocated by the fill and freed once drained, so only sockets
 * with unread bytes hold one (the personality's heap is shared with guest-local
 * pipes), and at close (unread bytes then make the close a reset, as on Linux).  s->lock guards the indices and the
 * "busy" flag; the one vCPU that fills the buffer, or copies out of it, does so
 * without the lock while the flag is up, so nobody else touches it.  Other readers
 * of the same socket wait for that (a fill never waits on the host side), so bytes
 * are handed out in stream order.
 */
#include "internal.h"

#define RA_CAP (512u * 1024u)

/* Buffered bytes not yet received (poll and FIONREAD count them as readable). */
uint32_t ra_avail(struct gsock *s)
{
	uint32_t n;

	rt_spin_lock(&s->lock);
	n = s->ra_end - s->ra_pos;
	rt_spin_unlock(&s->lock);
	return n;
}

/* Waits until no other vCPU fills or copies s's buffer; returns with s->lock held. */
static void lock_idle(struct gsock *s)
{
	for (;;) {
		rt_spin_lock(&s->lock);
		if (!s->ra_busy)
			return;
		rt_spin_unlock(&s->lock);
		cpu_relax();
	}
}

size_t ra_take(struct gsock *s, uint8_t *buf, size_t len, int peek)
{
	uint8_t *drained;
	uint32_t at;
	size_t n;

	lock_idle(s);
	at = s->ra_pos;
	n = s->ra_end - at;
	if (n > len)
		n = len;
	if (!n) {
		rt_spin_unlock(&s->lock);
		return 0;
	}
	/* Copy without the lock (the program's page may fault in); the flag keeps
	 * every other vCPU off the buffer meanwhile. */
	s->ra_busy = 1;
	rt_spin_unlock(&s->lock);
	memcpy(buf, s->ra + at, n);
	rt_spin_lock(&s->lock);
	if (!peek)
		s->ra_pos = at + (uint32_t)n;
	drained = s->ra_pos == s->ra_end ? s->ra : NULL;
	if (drained) /* the next fill allocates again: idle sockets hold no buffer */
		s->ra = NULL;
	s->ra_busy = 0;
	rt_spin_unlock(&s->lock);
	free(drained);
	return n;
}

/*
 * Tops the buffer up with one native call (the unread bytes move to its start
 * first): the bytes added, 0 at end of stream, or -errno (-EAGAIN: nothing now,
 * or the buffer is full; -ENOMEM: no buffer, receive straight into yours).
 */
long ra_fill(struct gsock *s)
{
	uint8_t *mem, *empty;
	uint32_t kept;
	long rc;

	lock_idle(s);
	if (!s->ra)
		s->ra = malloc(RA_CAP); /* under the lock: one buffer per socket */
	mem = s->ra;
	kept = s->ra_end - s->ra_pos;
	if (mem && kept && s->ra_pos)
		memmove(mem, mem + s->ra_pos, kept);
	s->ra_pos = 0;
	s->ra_end = kept;
	if (!mem || kept == RA_CAP) {
		rt_spin_unlock(&s->lock);
		return mem ? -EAGAIN : -ENOMEM;
	}
	s->ra_busy = 1;
	rt_spin_unlock(&s->lock);
	/* Only this vCPU touches the free tail while the flag is up. */
	rc = host_zero_copy(s, VMRPC_SOCK_FN_RECV_BUF, mem + kept, RA_CAP - kept);
	rt_spin_lock(&s->lock);
	if (rc > 0)
		s->ra_end = kept + (uint32_t)rc;
	empty = s->ra_end == s->ra_pos ? mem : NULL;
	if (empty) /* nothing came (or never will: TLS): hold no buffer meanwhile */
		s->ra = NULL;
	s->ra_busy = 0;
	rt_spin_unlock(&s->lock);
	free(empty);
	return rc;
}

/*
 * A large receive with nothing buffered (stream.c): one socket I/O exit fills
 * buf and, in the same host call, the buffer with what follows.  That exit never
 * waits: the buffer is this vCPU's only meanwhile, and a receive that waits
 * must not keep other threads off it (their receives, close).  When the call
 * may wait and has nothing yet, or MSG_WAITALL wants more, a second exit waits
 * for buf alone.  Returns the bytes in buf, 0 at end of stream, or -errno
 * (-EBUSY: bytes are buffered or being filled, take the usual way;
 * -EOPNOTSUPP: not for this socket).
 */
long ra_recv_direct(struct gsock *s, uint8_t *buf, size_t len, int waitall, int timeout_ms)
{
	size_t first = len < VMRPC_SOCKIO_MAX ? len : VMRPC_SOCKIO_MAX;
	uint8_t *mem, *empty;
	long rc, more;

	lock_idle(s);
	if (s->ra_end != s->ra_pos) {
		rt_spin_unlock(&s->lock);
		return -EBUSY;
	}
	if (!s->ra)
		s->ra = malloc(RA_CAP); /* none: buf alone */
	mem = s->ra;
	s->ra_pos = 0;
	s->ra_end = 0;
	s->ra_busy = 1;
	rt_spin_unlock(&s->lock);
	rc = host_sockio(s, 0, buf, first, mem, mem ? RA_CAP : 0, 0);
	rt_spin_lock(&s->lock);
	if (rc > (long)first) {
		s->ra_end = (uint32_t)(rc - (long)first);
		rc = (long)first;
	}
	empty = s->ra_end ? NULL : mem;
	if (empty) /* nothing beyond buf: hold no buffer meanwhile */
		s->ra = NULL;
	s->ra_busy = 0;
	rt_spin_unlock(&s->lock);
	free(empty);
	if (timeout_ms == 0 || (rc != -EAGAIN && !(rc > 0 && waitall && (size_t)rc < first)))
		return rc;
	/* Wait, for buf alone (the buffer stays free for the others). */
	if (rc == -EAGAIN)
		return host_sockio(s, waitall ? VMRPC_SOCKIO_WAITALL : 0, buf, first, NULL, 0,
				   timeout_ms);
	more = host_sockio(s, VMRPC_SOCKIO_WAITALL, buf + rc, first - (size_t)rc, NULL, 0,
			   timeout_ms);
	return more > 0 ? rc + more : rc;
}

void ra_free(struct gsock *s)
{
	uint8_t *mem;
	int unread;

	lock_idle(s);
	unread = s->ra_end != s->ra_pos;
	mem = s->ra;
	s->ra = NULL;
	s->ra_pos = 0;
	s->ra_end = 0;
	rt_spin_unlock(&s->lock);
	free(mem);
	if (unread && s->host) {
		/* Linux resets a connection closed with unread data; the host socket has
		 * none left (it is here), so a zero linger makes its close a reset. */
		uint8_t buf[sizeof(struct vmrpc_sock_sockopt_req) + 2 * sizeof(int)];
		struct vmrpc_sock_sockopt_req o = { s->host, SOL_SOCKET, SO_LINGER, 2 * sizeof(int) };
		int linger[2] = { 1, 0 };

		memcpy(buf, &o, sizeof(o));
		memcpy(buf + sizeof(o), linger, sizeof(linger));
		host_simple(VMRPC_SOCK_FN_SETSOCKOPT, buf, sizeof(buf));
	}
}
