/*
 * Stream data: send and recv (zero-copy host calls first), read and write.
 */
#include "internal.h"

/*
 * A large send: socket I/O exits on this vCPU's thread, each waiting as
 * timeout_ms says.  Returns the bytes sent (fewer: timed out or non-blocking),
 * -1 with errno, or 0 with nothing sent when the socket cannot take this way.
 */
static ssize_t host_send_direct(struct gsock *s, const uint8_t *buf, size_t len, int timeout_ms)
{
	size_t done = 0;

	while (done < len) {
		size_t k = len - done < VMRPC_SOCKIO_MAX ? len - done : VMRPC_SOCKIO_MAX;
		long rc = host_sockio(s, VMRPC_SOCKIO_SEND, buf + done, k, NULL, 0, timeout_ms);

		if (rc == -EOPNOTSUPP && !done)
			return 0;
		if (rc < 0)
			return done ? (ssize_t)done : fail((int)-rc);
		done += (size_t)rc;
		if ((size_t)rc < k)
			break;
	}
	return (ssize_t)done;
}

static ssize_t host_send(struct gsock *s, const uint8_t *buf, size_t len, int timeout_ms)
{
	uint8_t *sc = cpu_scratch();
	size_t done = 0;

	/* Zero-copy first (an RPC the engine answers: cheaper than an exit while
	 * the socket takes bytes); whatever it cannot move now, a large send waits
	 * for in socket I/O exits on this thread, a small one the copying way,
	 * which also waits (and reports errors) as the socket's timeout says. */
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
	if (len - done >= SOCKIO_MIN && !s->no_zero_copy) {
		ssize_t n = host_send_direct(s, buf + done, len - done, timeout_ms);

		if (n < 0)
			return done ? (ssize_t)done : n;
		if (n != 0)
			return (ssize_t)(done + (size_t)n);
	}
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
	struct gsock *s = sock_get_io(fd, buf, len);
	ssize_t n;
	int ms;

	if (!s)
		return -1;
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
	if (s->state == ST_CONNECTING && conn_wait(s, ms) < 0)
		n = -1; /* Linux waits for the connect too (EAGAIN if non-blocking) */
	else if (s->state != ST_CONNECTED)
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

/* The copying way, which waits as timeout_ms says; MSG_WAITALL in pieces. */
static ssize_t host_recv_wait(struct gsock *s, uint8_t *buf, size_t len, int flags,
			      int timeout_ms)
{
	size_t done = 0;
	ssize_t n = 0;

	if (!(flags & MSG_WAITALL) || len <= VMRPC_SOCK_MAX_RECV)
		return host_recv(s, buf, len, flags, timeout_ms);
	while (done < len) {
		n = host_recv(s, buf + done, len - done, flags, timeout_ms);
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	return done ? (ssize_t)done : n;
}

/*
 * A connected host stream.  A large receive with nothing buffered is one socket
 * I/O exit into buf and the read-ahead buffer, which also waits.  Otherwise from
 * the read-ahead buffer (readahead.c), refilled by one native call when empty;
 * the copying way only when the host has nothing now and the call may wait (or
 * the socket has no native data plane).
 */
static ssize_t host_stream_recv(struct gsock *s, uint8_t *buf, size_t len, int flags,
				int timeout_ms)
{
	int peek = flags & MSG_PEEK;
	size_t got = 0;

	if (!peek && len >= SOCKIO_MIN && !s->no_zero_copy &&
	    (!(flags & MSG_WAITALL) || len <= VMRPC_SOCKIO_MAX)) {
		/* Large: one exit into buf and the read-ahead, waiting if need be. */
		long rc = ra_recv_direct(s, buf, len, flags & MSG_WAITALL, timeout_ms);

		if (rc >= 0)
			return rc;
		if (rc != -EBUSY && rc != -EOPNOTSUPP)
			return fail((int)-rc);
	}
	for (int topped = 0;; topped = 1) {
		long rc;

		/* A peek sees the buffer, topped up once with what the host holds now. */
		got = peek ? ra_take(s, buf, len, 1) : got + ra_take(s, buf + got, len - got, 0);
		if (got == len || (got && !(flags & MSG_WAITALL) && (!peek || topped)))
			return (ssize_t)got;
		rc = ra_fill(s);
		if (rc > 0)
			continue;
		if (rc == 0 || (got && peek))
			return (ssize_t)got; /* end of stream, or all a peek can see now */
		if (rc == -ENOMEM && !got && !peek && !(flags & MSG_WAITALL))
			return host_recv_zero_copy(s, buf, len, timeout_ms); /* no buffer */
		if (rc == -EAGAIN && timeout_ms == 0)
			return got ? (ssize_t)got : fail(EAGAIN);
		if (rc != -EAGAIN && rc != -EOPNOTSUPP && rc != -ENOMEM)
			return got ? (ssize_t)got : fail((int)-rc);
		break; /* the host has nothing now (or no buffer): wait the copying way */
	}
	if (!got) /* nothing buffered now, nor being filled: straight into buf */
		return host_recv_wait(s, buf, len, flags, timeout_ms);
	/* MSG_WAITALL with part of it buffered: the rest waits */
	{
		ssize_t n = host_recv_wait(s, buf + got, len - got, flags, timeout_ms);

		return n > 0 ? (ssize_t)got + n : (ssize_t)got;
	}
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	struct gsock *s = sock_get_io(fd, buf, len);
	ssize_t n;
	int ms;

	if (!s)
		return -1;
	ms = wait_ms(s, flags, 0);
	if (s->type == SOCK_DGRAM)
		n = dgram_recv(s, buf, len, flags, NULL);
	else if (s->state == ST_CONNECTING && conn_wait(s, ms) < 0)
		n = -1;
	else if (s->state != ST_CONNECTED)
		n = fail(ENOTCONN);
	else if (s->shut_rd || len == 0)
		n = 0;
	else if (s->local)
		n = pipe_read(s->rx, buf, len, flags, ms == 0, deadline_in(ms));
	else if (!s->no_zero_copy || ra_avail(s))
		n = host_stream_recv(s, buf, len, flags, ms);
	else
		n = host_recv_wait(s, buf, len, flags, ms);
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
