/*
 * Receiving on a TCP socket when part of the stream is already in hand, for
 * tests/test_linux_net_readahead.py: in vmrpc the socket library reads ahead (one
 * host call fills a per-socket buffer), natively the kernel's queue holds the bytes.
 * Built static with gcc and musl-gcc, run natively and in vmrpc against the same
 * host peer; each mode prints lines the test compares.
 *
 *   rxprobe ahead ECHO_PORT    readiness, FIONREAD, peeks, iovecs, MSG_DONTWAIT,
 *                              MSG_WAITALL (whole and timed out), SHUT_RD, with
 *                              bytes already received but not yet read
 *   rxprobe reset PORT         close with unread bytes (the peer sees a reset)
 *   rxprobe share PORT         two threads receive one stream (byte p is p % 251)
 *                              until EOF: every call's bytes must be contiguous
 */
#define _GNU_SOURCE
#include "tcp_client.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>


/* Stream byte number `at` is 'a' + at % 26 (the echo peer sends back what we send). */
static void pattern(char *b, int n, int at)
{
	for (int i = 0; i < n; i++)
		b[i] = (char)('a' + (at + i) % 26);
}

static int is_pattern(const char *b, int n, int at)
{
	char want[4096];

	if (n < 0 || n > (int)sizeof(want))
		return 0;
	pattern(want, n, at);
	return !memcmp(b, want, (size_t)n);
}

static void send_pattern(int s, int n, int at)
{
	char b[4096];

	pattern(b, n, at);
	if (send(s, b, (size_t)n, 0) != n)
		exit(3);
}

/* Waits until n bytes are queued (received, not read): a peek sees them all. */
static void await_queued(int s, int n)
{
	char b[4096];

	for (;;) {
		struct pollfd p = { s, POLLIN, 0 };
		ssize_t k;

		poll(&p, 1, -1);
		k = recv(s, b, (size_t)n, MSG_PEEK);
		if (k == n)
			return;
		if (k <= 0)
			exit(4);
	}
}

static const char *err_name(ssize_t r)
{
	if (r >= 0)
		return "ok";
	return errno == EAGAIN ? "EAGAIN" : "other";
}

static int ahead(int port)
{
	char b[4096];
	struct iovec iov[2];
	struct msghdr m;
	struct epoll_event ev, got;
	struct timeval tv = { 0, 200000 };
	struct pollfd p;
	fd_set rd;
	int s = connected(port), ep, n, at = 0;
	ssize_t r;

	send_pattern(s, 1000, 0);
	await_queued(s, 1000);
	r = recv(s, b, sizeof(b), MSG_PEEK);
	printf("peek all %zd pattern %d\n", r, is_pattern(b, (int)r, 0));
	r = recv(s, b, 10, 0);
	printf("recv %zd pattern %d\n", r, is_pattern(b, (int)r, at));
	at += (int)r;

	/* 990 bytes in hand: every readiness call says readable at once. */
	p.fd = s;
	p.events = POLLIN;
	n = poll(&p, 1, 0);
	printf("poll %d revents %d\n", n, p.revents & POLLIN);
	FD_ZERO(&rd);
	FD_SET(s, &rd);
	printf("select %d\n", select(s + 1, &rd, NULL, NULL, &(struct timeval){ 0, 0 }));
	ep = epoll_create1(0);
	ev.events = EPOLLIN;
	ev.data.u64 = 7;
	epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
	n = epoll_wait(ep, &got, 1, 0);
	printf("epoll %d data %llu\n", n, n > 0 ? (unsigned long long)got.data.u64 : 0ull);
	close(ep);
	ep = epoll_create1(0);
	ev.events = EPOLLIN | EPOLLET;
	epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
	printf("epoll edge %d\n", epoll_wait(ep, &got, 1, 0)); /* armed with data queued */
	close(ep);
	ioctl(s, FIONREAD, &n);
	printf("FIONREAD %d\n", n);

	r = recv(s, b, 5, MSG_PEEK);
	printf("peek %zd pattern %d\n", r, is_pattern(b, (int)r, at));
	r = recv(s, b, 5, 0);
	printf("recv after peek %zd pattern %d\n", r, is_pattern(b, (int)r, at));
	at += (int)r;
	iov[0] = (struct iovec){ b, 3 };
	iov[1] = (struct iovec){ b + 3, 4 };
	r = readv(s, iov, 2);
	printf("readv %zd pattern %d\n", r, is_pattern(b, (int)r, at));
	at += (int)r;
	memset(&m, 0, sizeof(m));
	iov[0] = (struct iovec){ b, 8 };
	m.msg_iov = iov;
	m.msg_iovlen = 1;
	r = recvmsg(s, &m, 0);
	printf("recvmsg %zd pattern %d\n", r, is_pattern(b, (int)r, at));
	at += (int)r;
	r = recv(s, b, sizeof(b), MSG_DONTWAIT);
	printf("dontwait %zd pattern %d\n", r, is_pattern(b, (int)r, at));
	at += (int)r;
	r = recv(s, b, sizeof(b), MSG_DONTWAIT);
	printf("dontwait empty %s\n", err_name(r));
	printf("poll empty %d\n", poll(&p, 1, 0));

	/* MSG_WAITALL with part in hand: the rest arrives after the call began, or not. */
	send_pattern(s, 50, at);
	await_queued(s, 50);
	r = recv(s, b, 10, 0);
	at += (int)r;
	send_pattern(s, 60, at + 40);
	r = recv(s, b, 100, MSG_WAITALL);
	printf("waitall %zd pattern %d\n", r, is_pattern(b, (int)r, at));
	at += (int)r;
	send_pattern(s, 30, at);
	await_queued(s, 30);
	r = recv(s, b, 10, 0);
	at += (int)r;
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	r = recv(s, b, 100, MSG_WAITALL);
	printf("waitall timed out %zd pattern %d\n", r, is_pattern(b, (int)r, at));
	at += (int)r > 0 ? (int)r : 0;
	r = recv(s, b, 100, 0);
	printf("timed out empty %s\n", err_name(r));

	/* SHUT_RD: what is queued is still read (Linux), then the stream goes on. */
	send_pattern(s, 20, at);
	await_queued(s, 20);
	r = recv(s, b, 5, 0);
	at += (int)r;
	shutdown(s, SHUT_RD);
	r = recv(s, b, sizeof(b), 0);
	printf("after SHUT_RD %zd pattern %d\n", r, is_pattern(b, (int)r, at));
	close(s);
	return 0;
}

/* The peer sends 1000 bytes; we read 10 and close: Linux resets the connection. */
static int reset(int port)
{
	char b[16];
	int s = connected(port);

	await_queued(s, 1000);
	printf("read %zd\n", read(s, b, 10));
	printf("close %d\n", close(s));
	return 0;
}

struct share {
	int s;
	long total, sum, broken;
};

/* One thread's receives: each call's bytes follow on from each other (mod 251). */
static void *share_reader(void *arg)
{
	struct share *t = arg;
	static __thread unsigned char b[3000]; /* odd sizes: calls end mid-buffer */

	for (;;) {
		ssize_t r = recv(t->s, b, sizeof(b) - (size_t)(t->total % 7), 0);

		if (r <= 0)
			return NULL;
		for (ssize_t i = 1; i < r; i++)
			if (b[i] != (b[i - 1] + 1) % 251)
				t->broken++;
		for (ssize_t i = 0; i < r; i++)
			t->sum += b[i];
		t->total += r;
	}
}

static int share(int port)
{
	struct share t[2];
	pthread_t th;
	int s = connected(port);

	memset(t, 0, sizeof(t));
	t[0].s = t[1].s = s;
	if (pthread_create(&th, NULL, share_reader, &t[1]) != 0)
		return 5;
	share_reader(&t[0]);
	pthread_join(th, NULL);
	printf("share total %ld sum %ld broken %ld\n", t[0].total + t[1].total,
	       t[0].sum + t[1].sum, t[0].broken + t[1].broken);
	close(s);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc >= 3 && !strcmp(argv[1], "ahead"))
		return ahead(atoi(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "reset"))
		return reset(atoi(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "share"))
		return share(atoi(argv[2]));
	fprintf(stderr, "usage: rxprobe ahead|reset|share PORT\n");
	return 2;
}
