/*
 * netbench: vmrpc's network benchmark, plain POSIX sockets, built static with
 * musl-gcc so that the very same binary runs natively and in a LinuxVM
 * (benches/sockets.py, tests/test_netbench.py).
 *
 *   netbench serve PORT                  the server (native): 127.0.0.1:PORT, 0 picks
 *                                        one; prints "NETBENCH port=N", then serves
 *                                        one connection at a time, forever
 *   netbench send PORT BYTES [check]     bulk client -> server (check: the server
 *                                        verifies the data)
 *   netbench recv PORT BYTES [check]     bulk server -> client (check: verify the data)
 *   netbench rr PORT ROUNDS              1-byte request/response, TCP_NODELAY
 *   netbench conn PORT COUNT             connect, 1-byte exchange, close; COUNT times
 *   netbench local BYTES                 a listener and a client in this one program
 *                                        (in the VM: a guest-local connection)
 *
 * A client times itself with clock_gettime(CLOCK_MONOTONIC) and prints one line,
 * "NETBENCH mode=... key=value ...", which the Python scripts parse. Any failure
 * prints "NETBENCH error=..." and exits non-zero.
 *
 * The protocol (the first byte of a connection names it) is the one
 * guest/apps/sockbench.c speaks, so the bare-runtime guest runs against this
 * server too:
 *   'S' data until EOF      answered by the byte 'k'
 *   'N' data until EOF      answered by the u64 (little endian) count received
 *   'V' data until EOF      the same, then the u64 count of bytes that were not the
 *                           pattern (byte k is k % 251)
 *   'R' u64 LENGTH          answered by LENGTH bytes (byte k is k % 251), then EOF
 *   'P' bytes               each byte echoed, until EOF
 *   'C'                     answered by the byte 'c', then closed
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536
/* The data pattern's period: prime, so that it does not line up with CHUNK. */
#define PERIOD 251

/* What is sent (byte k is k % PERIOD), and where what arrives goes. */
static unsigned char pattern[CHUNK + PERIOD], buf[CHUNK];

static long long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int fail(const char *what)
{
	printf("NETBENCH error=%s errno=%d\n", what, errno);
	return 1;
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static int nodelay(int fd)
{
	int one = 1;

	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int dial(int port)
{
	struct sockaddr_in a = loopback(port);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || nodelay(fd) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* All of len bytes, sent or received; 0 on success, -1 on an error or an early EOF. */
static int transfer(int fd, void *data, size_t len, int sending)
{
	unsigned char *p = data;

	while (len) {
		ssize_t n = sending ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_all(int fd, const void *data, size_t len)
{
	return transfer(fd, (void *)data, len, 1);
}

static int recv_all(int fd, void *data, size_t len)
{
	return transfer(fd, data, len, 0);
}

static void put_u64(unsigned char *out, unsigned long long v)
{
	for (int i = 0; i < 8; i++)
		out[i] = (unsigned char)(v >> (8 * i));
}

static unsigned long long get_u64(const unsigned char *in)
{
	unsigned long long v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | in[i];
	return v;
}

/* ---- the server ------------------------------------------------------------------ */

/* 'S', 'N' and 'V': read to EOF, then answer (see the protocol above). */
static void serve_sink(int fd, unsigned char kind)
{
	unsigned long long got = 0, bad = 0;
	unsigned char reply[16];
	ssize_t n;

	while ((n = recv(fd, buf, CHUNK, 0)) > 0) {
		if (kind == 'V')
			for (ssize_t i = 0; i < n; i++)
				bad += buf[i] != (got + (unsigned long long)i) % PERIOD;
		got += (unsigned long long)n;
	}
	if (kind == 'S') {
		send_all(fd, "k", 1);
		return;
	}
	put_u64(reply, got);
	put_u64(reply + 8, bad);
	send_all(fd, reply, kind == 'V' ? 16 : 8);
}

static void serve_source(int fd)
{
	unsigned char header[8];
	unsigned long long left, off = 0;

	if (recv_all(fd, header, sizeof(header)) < 0)
		return;
	for (left = get_u64(header); left;) {
		size_t n = left < CHUNK ? (size_t)left : CHUNK;
		ssize_t sent = send(fd, pattern + off % PERIOD, n, MSG_NOSIGNAL);

		if (sent <= 0)
			return;
		off += (unsigned long long)sent;
		left -= (unsigned long long)sent;
	}
}

static void serve_echo(int fd)
{
	unsigned char c;

	while (recv(fd, &c, 1, 0) == 1)
		if (send(fd, &c, 1, MSG_NOSIGNAL) != 1)
			return;
}

static int serve(int port)
{
	struct sockaddr_in a = loopback(port);
	socklen_t alen = sizeof(a);
	int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);

	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 128) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen) < 0)
		return fail("listen");
	printf("NETBENCH port=%d\n", ntohs(a.sin_port));
	fflush(stdout);
	/* One connection at a time: every client runs its connections one after the
	 * other, and an iterative server adds no thread or process start to them. */
	for (;;) {
		unsigned char kind;
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return fail("accept");
		}
		nodelay(fd);
		if (recv(fd, &kind, 1, 0) == 1) {
			if (kind == 'S' || kind == 'N' || kind == 'V')
				serve_sink(fd, kind);
			else if (kind == 'R')
				serve_source(fd);
			else if (kind == 'P')
				serve_echo(fd);
			else if (kind == 'C')
				send_all(fd, "c", 1);
		}
		close(fd);
	}
}

/* ---- the clients ----------------------------------------------------------------- */

static int client_send(int port, unsigned long long bytes, int check)
{
	unsigned char kind = check ? 'V' : 'N', reply[16];
	unsigned long long off = 0;
	long long t0;
	int fd = dial(port);

	if (fd < 0)
		return fail("connect");
	t0 = now_ns();
	if (send_all(fd, &kind, 1) < 0)
		return fail("send");
	while (off < bytes) {
		size_t n = bytes - off < CHUNK ? (size_t)(bytes - off) : CHUNK;

		if (send_all(fd, pattern + off % PERIOD, n) < 0)
			return fail("send");
		off += n;
	}
	if (shutdown(fd, SHUT_WR) < 0)
		return fail("shutdown");
	/* Until the server has everything: its answer ends the measurement. */
	if (recv_all(fd, reply, check ? 16 : 8) < 0)
		return fail("ack");
	printf("NETBENCH mode=send bytes=%llu acked=%llu ns=%lld", bytes, get_u64(reply),
	       now_ns() - t0);
	if (check)
		printf(" bad=%llu", get_u64(reply + 8));
	printf("\n");
	close(fd);
	return 0;
}

static int client_recv(int port, unsigned long long bytes, int check)
{
	unsigned char req[9] = { 'R' };
	unsigned long long got = 0, bad = 0;
	long long t0;
	ssize_t n;
	int fd = dial(port);

	if (fd < 0)
		return fail("connect");
	put_u64(req + 1, bytes);
	t0 = now_ns();
	if (send_all(fd, req, sizeof(req)) < 0)
		return fail("send");
	while ((n = recv(fd, buf, CHUNK, 0)) > 0) {
		if (check)
			for (ssize_t i = 0; i < n; i++)
				bad += buf[i] != (got + (unsigned long long)i) % PERIOD;
		got += (unsigned long long)n;
	}
	if (n < 0)
		return fail("recv");
	printf("NETBENCH mode=recv bytes=%llu got=%llu ns=%lld", bytes, got, now_ns() - t0);
	if (check)
		printf(" bad=%llu", bad);
	printf("\n");
	close(fd);
	return 0;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return (x > y) - (x < y);
}

static int client_rr(int port, long rounds)
{
	long long *samples = malloc(sizeof(*samples) * (size_t)(rounds > 0 ? rounds : 1));
	long long t0, total;
	long mismatched = 0;
	int fd = dial(port);

	if (rounds <= 0 || !samples)
		return fail("rounds");
	if (fd < 0)
		return fail("connect");
	if (send_all(fd, "P", 1) < 0)
		return fail("send");
	total = now_ns();
	for (long i = 0; i < rounds; i++) {
		unsigned char out = (unsigned char)i, in;

		t0 = now_ns();
		if (send(fd, &out, 1, 0) != 1 || recv(fd, &in, 1, 0) != 1)
			return fail("roundtrip");
		samples[i] = now_ns() - t0;
		mismatched += in != out;
	}
	total = now_ns() - total;
	qsort(samples, (size_t)rounds, sizeof(*samples), cmp_ll);
	printf("NETBENCH mode=rr rounds=%ld mismatched=%ld median_ns=%lld p99_ns=%lld "
	       "min_ns=%lld ns=%lld\n",
	       rounds, mismatched, samples[rounds / 2], samples[rounds * 99 / 100], samples[0],
	       total);
	close(fd);
	free(samples);
	return 0;
}

static int client_conn(int port, long count)
{
	long long t0 = now_ns();
	long answered = 0;

	for (long i = 0; i < count; i++) {
		unsigned char c = 0;
		int fd = dial(port);

		if (fd < 0)
			return fail("connect");
		if (send_all(fd, "C", 1) < 0 || recv_all(fd, &c, 1) < 0)
			return fail("exchange");
		answered += c == 'c';
		close(fd);
	}
	printf("NETBENCH mode=conn count=%ld answered=%ld ns=%lld\n", count, answered,
	       now_ns() - t0);
	return 0;
}

/* One thread both ends: CHUNK out of the client, CHUNK into the accepted socket.
 * A chunk fits in any socket or pipe buffer, so the send never waits for the recv. */
static int client_local(unsigned long long bytes)
{
	struct sockaddr_in a = loopback(0);
	socklen_t alen = sizeof(a);
	unsigned long long moved = 0;
	long long t0;
	int c, s, lfd = socket(AF_INET, SOCK_STREAM, 0);

	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 1) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen) < 0)
		return fail("listen");
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
		return fail("connect");
	s = accept(lfd, NULL, NULL);
	if (s < 0)
		return fail("accept");
	t0 = now_ns();
	while (moved < bytes) {
		size_t n = bytes - moved < CHUNK ? (size_t)(bytes - moved) : CHUNK;

		if (send_all(c, pattern, n) < 0 || recv_all(s, buf, n) < 0)
			return fail("transfer");
		moved += n;
	}
	printf("NETBENCH mode=local bytes=%llu got=%llu ns=%lld\n", bytes, moved, now_ns() - t0);
	close(c);
	close(s);
	close(lfd);
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (unsigned char)(i % PERIOD);
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(mode, "local") && argc == 3)
		return client_local(strtoull(argv[2], NULL, 0));
	if (argc < 3) {
		fprintf(stderr, "usage: netbench serve|send|recv|rr|conn|local PORT [N] [check]\n");
		return 64;
	}
	int port = atoi(argv[2]);
	if (!strcmp(mode, "serve"))
		return serve(port);
	if (argc < 4)
		return 64;
	if (!strcmp(mode, "send"))
		return client_send(port, strtoull(argv[3], NULL, 0),
				   argc > 4 && !strcmp(argv[4], "check"));
	if (!strcmp(mode, "recv"))
		return client_recv(port, strtoull(argv[3], NULL, 0),
				   argc > 4 && !strcmp(argv[4], "check"));
	if (!strcmp(mode, "rr"))
		return client_rr(port, atol(argv[3]));
	if (!strcmp(mode, "conn"))
		return client_conn(port, atol(argv[3]));
	return 64;
}
