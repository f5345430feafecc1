/*
 * Network system calls of a Linux program, for tests/test_linux_net.py: built
 * static with gcc and musl-gcc and run both natively and in vmrpc against the
 * same host peers; each mode prints lines the test compares.
 *
 *   netprobe basics TCP_ECHO_PORT
 *   netprobe nonblock CLOSED_PORT TCP_ECHO_PORT
 *   netprobe slow PORT poll|select|epoll (a non-blocking connect to a peer that answers later)
 *   netprobe wait TCP_ECHO_PORT          (poll, select, epoll over a pipe and a socket)
 *   netprobe udp UDP_ECHO_PORT
 *   netprobe hostile TCP_ECHO_PORT
 *   netprobe sigpipe TCP_ECHO_PORT       (a send after the peer closed, without MSG_NOSIGNAL)
 *   netprobe efault TCP_ECHO_PORT        (output buffers checked up front)
 *   netprobe self                        (a listener and a client in one program)
 *   netprobe resolve NAME                (getaddrinfo, AF_INET)
 *   netprobe dns                         (raw queries to the VM's resolver, in the VM only)
 *   netprobe pingpong PORT N | drain PORT 0 (measurements, not tests)
 *   netprobe unix                        (an AF_UNIX socket: the personality has none)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>

static const char *en(int e)
{
	switch (e) {
	case 0: return "0";
	case EAFNOSUPPORT: return "EAFNOSUPPORT";
	case EINPROGRESS: return "EINPROGRESS";
	case ECONNREFUSED: return "ECONNREFUSED";
	case EINVAL: return "EINVAL";
	case EFAULT: return "EFAULT";
	case EBADF: return "EBADF";
	case ENOTSOCK: return "ENOTSOCK";
	case EAGAIN: return "EAGAIN";
	case EMSGSIZE: return "EMSGSIZE";
	case EPIPE: return "EPIPE";
	case ENOTCONN: return "ENOTCONN";
	case EEXIST: return "EEXIST";
	case ENOENT: return "ENOENT";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EALREADY: return "EALREADY";
	case EISCONN: return "EISCONN";
	default: return "other";
	}
}

#define CHECK(what, expr) printf("%s %s\n", what, (expr) < 0 ? en(errno) : "ok")

static struct sockaddr_in loop_addr(int port)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((unsigned short)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static int connected(int port)
{
	struct sockaddr_in a = loop_addr(port);
	int s = socket(AF_INET, SOCK_STREAM, 0);

	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		printf("connect failed %s\n", en(errno));
		exit(2);
	}
	return s;
}

/* Reads exactly n bytes (a stream may deliver them in pieces). */
static int read_n(int s, char *buf, int n)
{
	int got = 0;

	while (got < n) {
		ssize_t r = read(s, buf + got, (size_t)(n - got));
		if (r <= 0)
			return got;
		got += (int)r;
	}
	return got;
}

static void int_opt(int s, int level, int name, int value, const char *label)
{
	int v = -1;
	socklen_t len = sizeof(v);

	if (setsockopt(s, level, name, &value, sizeof(value)) < 0) {
		printf("%s set %s\n", label, en(errno));
		return;
	}
	if (getsockopt(s, level, name, &v, &len) < 0) {
		printf("%s get %s\n", label, en(errno));
		return;
	}
	printf("%s %d len %u\n", label, v != 0 ? (value ? value : 1) : 0, len);
}

static int basics(int port)
{
	struct sockaddr_in peer, self;
	socklen_t plen = sizeof(peer), slen = sizeof(self);
	struct timeval tv = { 3, 500000 }, back;
	socklen_t tlen = sizeof(back);
	char a[] = "one-", b[] = "two-", c[] = "three";
	char r1[6], r2[32];
	struct iovec out[3] = { { a, 4 }, { b, 4 }, { c, 5 } };
	struct iovec in[2] = { { r1, 6 }, { r2, 7 } };
	struct msghdr m;
	int s = connected(port);

	int_opt(s, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
	int_opt(s, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
	int_opt(s, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
	int_opt(s, IPPROTO_TCP, TCP_KEEPIDLE, 30, "TCP_KEEPIDLE");
	int_opt(s, IPPROTO_TCP, TCP_KEEPINTVL, 7, "TCP_KEEPINTVL");
	CHECK("SO_RCVTIMEO set", setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
	CHECK("SO_RCVTIMEO get", getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &back, &tlen));
	printf("SO_RCVTIMEO %ld.%06ld len %u\n", (long)back.tv_sec, (long)back.tv_usec, tlen);
	CHECK("SO_SNDTIMEO set", setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)));
	CHECK("getpeername", getpeername(s, (struct sockaddr *)&peer, &plen));
	printf("peer port matches %d len %u\n", ntohs(peer.sin_port) == port, plen);
	CHECK("getsockname", getsockname(s, (struct sockaddr *)&self, &slen));
	printf("self family %d loopback %d\n", self.sin_family,
	       self.sin_addr.s_addr == htonl(INADDR_LOOPBACK));

	memset(&m, 0, sizeof(m));
	m.msg_iov = out;
	m.msg_iovlen = 3;
	printf("sendmsg %zd\n", sendmsg(s, &m, MSG_NOSIGNAL));
	memset(r2, 0, sizeof(r2));
	if (read_n(s, r1, 6) != 6 || read_n(s, r2, 7) != 7)
		printf("short echo\n");
	printf("echo %.6s|%s\n", r1, r2);

	printf("writev %zd\n", writev(s, out, 3));
	memset(&m, 0, sizeof(m));
	m.msg_iov = in;
	m.msg_iovlen = 2;
	memset(r2, 0, sizeof(r2));
	{
		ssize_t n = 0;
		/* The echo may come back in pieces; gather all 13 bytes. */
		while (n < 13) {
			ssize_t k;
			if (n < 6) {
				in[0].iov_base = r1 + n;
				in[0].iov_len = (size_t)(6 - n);
				in[1].iov_base = r2;
				in[1].iov_len = 7;
				k = recvmsg(s, &m, 0);
			} else {
				k = readv(s, &(struct iovec){ r2 + (n - 6), (size_t)(13 - n) }, 1);
			}
			if (k <= 0)
				break;
			n += k;
		}
		printf("recvmsg total %zd %.6s|%s\n", n, r1, r2);
	}
	CHECK("shutdown", shutdown(s, SHUT_WR));
	printf("read after shutdown %zd\n", read(s, r2, sizeof(r2)));
	CHECK("close", close(s));
	printf("send on closed fd %s\n", send(s, "x", 1, 0) < 0 ? en(errno) : "ok");
	printf("send on a pipe fd %s\n", send(1, "x", 1, 0) < 0 ? en(errno) : "ok");
	return 0;
}

static int so_error(int s)
{
	int err = -1;
	socklen_t len = sizeof(err);

	if (getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return err;
}

static int nonblock(int closed_port, int open_port)
{
	struct sockaddr_in a = loop_addr(closed_port), b = loop_addr(open_port);
	struct pollfd p;
	char buf[8];
	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int r = connect(s, (struct sockaddr *)&a, sizeof(a));

	/* Linux may refuse a loopback connect at once or report it later: both are right. */
	if (r < 0 && errno == EINPROGRESS) {
		p.fd = s;
		p.events = POLLOUT;
		poll(&p, 1, 5000);
		printf("refused: pollerr %d so_error %s\n", !!(p.revents & POLLERR), en(so_error(s)));
	} else {
		printf("refused: pollerr 1 so_error %s\n", en(r < 0 ? errno : 0));
	}
	printf("so_error again %s\n", en(so_error(s)));
	close(s);

	s = socket(AF_INET, SOCK_STREAM, 0);
	fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
	r = connect(s, (struct sockaddr *)&b, sizeof(b));
	if (r < 0 && errno == EINPROGRESS) {
		p.fd = s;
		p.events = POLLOUT;
		poll(&p, 1, 5000);
	}
	printf("open: connect %s so_error %s\n", r < 0 && errno != EINPROGRESS ? en(errno) : "ok",
	       en(so_error(s)));
	printf("recv nothing yet %s\n", recv(s, buf, sizeof(buf), 0) < 0 ? en(errno) : "data");
	printf("send %zd\n", send(s, "ping", 4, 0));
	p.fd = s;
	p.events = POLLIN;
	r = poll(&p, 1, 5000);
	printf("poll in %d revents %d\n", r, p.revents & POLLIN);
	printf("recv %zd\n", recv(s, buf, sizeof(buf), 0));
	return 0;
}

/* Waits up to 20 s for s to become writable with poll, select or epoll. */
static void wait_writable(int s, const char *how)
{
	int out = 0, err = 0;

	if (!strcmp(how, "poll")) {
		struct pollfd p = { s, POLLOUT, 0 };

		if (poll(&p, 1, 20000) == 1) {
			out = !!(p.revents & POLLOUT);
			err = !!(p.revents & POLLERR);
		}
	} else if (!strcmp(how, "select")) {
		struct timeval tv = { 20, 0 };
		fd_set w;

		FD_ZERO(&w);
		FD_SET(s, &w);
		out = select(s + 1, NULL, &w, NULL, &tv) == 1 && FD_ISSET(s, &w);
	} else {
		struct epoll_event ev = { EPOLLOUT, { .fd = s } };
		int ep = epoll_create1(0);

		epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
		if (epoll_wait(ep, &ev, 1, 20000) == 1) {
			out = !!(ev.events & EPOLLOUT);
			err = !!(ev.events & EPOLLERR);
		}
		close(ep);
	}
	printf("%s: writable %d error %d\n", how, out, err);
}

/*
 * A non-blocking connect to a peer that cannot answer yet (its accept queue is
 * full): EINPROGRESS at once and nothing ready; the test lets the peer answer, or
 * refuse, only once it has read the first line.  Then the outcome through poll,
 * select or epoll, and SO_ERROR; an option set before the connect applies.
 */
static int slow_connect(int port, const char *how)
{
	struct sockaddr_in a = loop_addr(port);
	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1, first, again, err;
	struct pollfd p = { s, POLLOUT, 0 };
	socklen_t len = sizeof(one);
	char buf[8];

	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	first = connect(s, (struct sockaddr *)&a, sizeof(a)) < 0 ? errno : 0;
	again = connect(s, (struct sockaddr *)&a, sizeof(a)) < 0 ? errno : 0;
	printf("connect %s, again %s, ready %d\n", en(first), en(again), poll(&p, 1, 0));
	wait_writable(s, how);
	err = so_error(s);
	printf("so_error %s\n", en(err));
	one = 0;
	getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, &len);
	printf("nodelay %d\n", one != 0);
	if (err)
		return 0;
	printf("connect now %s\n", connect(s, (struct sockaddr *)&a, sizeof(a)) < 0 ? en(errno) : "ok");
	printf("send %zd\n", send(s, "ping", 4, 0));
	p.events = POLLIN;
	poll(&p, 1, 20000);
	printf("recv %zd\n", recv(s, buf, sizeof(buf), 0));
	return 0;
}

static int waits(int port)
{
	struct epoll_event ev, got[4];
	struct pollfd p[2];
	fd_set rd;
	char buf[8];
	int pipefd[2], s = connected(port), ep, n;

	if (pipe(pipefd) < 0)
		return 2;
	/* Nothing ready: a zero timeout returns at once. */
	p[0].fd = pipefd[0];
	p[0].events = POLLIN;
	p[1].fd = s;
	p[1].events = POLLIN;
	printf("poll idle %d\n", poll(p, 2, 0));
	/* The pipe alone ready. */
	write(pipefd[1], "p", 1);
	n = poll(p, 2, -1);
	printf("poll pipe %d pipe %d sock %d\n", n, p[0].revents & POLLIN, p[1].revents & POLLIN);
	read(pipefd[0], buf, 1);
	/* The socket, only after the host answers: the wait blocks on the host. */
	send(s, "s", 1, 0);
	n = poll(p, 2, -1);
	printf("poll sock %d pipe %d sock %d\n", n, p[0].revents & POLLIN, p[1].revents & POLLIN);
	read(s, buf, 1);
	send(s, "t", 1, 0);
	FD_ZERO(&rd);
	FD_SET(pipefd[0], &rd);
	FD_SET(s, &rd);
	n = select((s > pipefd[0] ? s : pipefd[0]) + 1, &rd, NULL, NULL, NULL);
	printf("select %d pipe %d sock %d\n", n, FD_ISSET(pipefd[0], &rd), FD_ISSET(s, &rd));
	read(s, buf, 1);

	ep = epoll_create1(EPOLL_CLOEXEC);
	ev.events = EPOLLIN;
	ev.data.u64 = 111;
	printf("epoll add pipe %d\n", epoll_ctl(ep, EPOLL_CTL_ADD, pipefd[0], &ev));
	printf("epoll add again %s\n", epoll_ctl(ep, EPOLL_CTL_ADD, pipefd[0], &ev) < 0 ? en(errno) : "ok");
	ev.data.u64 = 222;
	printf("epoll add sock %d\n", epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev));
	printf("epoll idle %d\n", epoll_wait(ep, got, 4, 0));
	send(s, "u", 1, 0);
	n = epoll_wait(ep, got, 4, -1);
	printf("epoll sock %d data %llu\n", n, n > 0 ? (unsigned long long)got[0].data.u64 : 0ull);
	read(s, buf, 1);
	write(pipefd[1], "q", 1);
	n = epoll_wait(ep, got, 4, -1);
	printf("epoll pipe %d data %llu\n", n, n > 0 ? (unsigned long long)got[0].data.u64 : 0ull);
	ev.events = EPOLLIN | EPOLLONESHOT;
	ev.data.u64 = 333;
	printf("epoll mod %d\n", epoll_ctl(ep, EPOLL_CTL_MOD, pipefd[0], &ev));
	n = epoll_wait(ep, got, 4, 0);
	printf("oneshot first %d data %llu\n", n, n > 0 ? (unsigned long long)got[0].data.u64 : 0ull);
	printf("oneshot second %d\n", epoll_wait(ep, got, 4, 0));
	printf("epoll del %d\n", epoll_ctl(ep, EPOLL_CTL_DEL, pipefd[0], NULL));
	printf("epoll del again %s\n", epoll_ctl(ep, EPOLL_CTL_DEL, pipefd[0], NULL) < 0 ? en(errno) : "ok");
	/* The host closes: the socket reads end of file. */
	shutdown(s, SHUT_WR);
	n = epoll_wait(ep, got, 4, -1);
	printf("epoll eof %d read %zd\n", n, read(s, buf, sizeof(buf)));
	return 0;
}

static int udp(int port)
{
	struct sockaddr_in a = loop_addr(port), from;
	socklen_t flen = sizeof(from);
	char buf[64], p1[] = "dat", p2[] = "agram";
	struct iovec iov[2] = { { p1, 3 }, { p2, 5 } };
	struct msghdr m;
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	ssize_t n;

	n = sendto(s, "hello", 5, 0, (struct sockaddr *)&a, sizeof(a));
	printf("sendto %zd\n", n);
	{
		struct pollfd p = { s, POLLIN, 0 };
		int avail = -1, r;

		poll(&p, 1, 5000);
		r = ioctl(s, FIONREAD, &avail);
		printf("FIONREAD %s %d\n", r < 0 ? en(errno) : "ok", avail);
	}
	n = recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
	printf("recvfrom %zd %.*s from port ok %d len %u\n", n, (int)(n > 0 ? n : 0), buf,
	       ntohs(from.sin_port) == port, flen);
	memset(&m, 0, sizeof(m));
	m.msg_name = &a;
	m.msg_namelen = sizeof(a);
	m.msg_iov = iov;
	m.msg_iovlen = 2;
	printf("sendmsg %zd\n", sendmsg(s, &m, 0));
	memset(buf, 0, sizeof(buf));
	iov[0].iov_base = buf;
	iov[0].iov_len = 4;
	iov[1].iov_base = buf + 10;
	iov[1].iov_len = 10;
	memset(&from, 0, sizeof(from));
	m.msg_name = &from;
	m.msg_namelen = sizeof(from);
	n = recvmsg(s, &m, 0);
	printf("recvmsg %zd %.4s|%s namelen %u port ok %d\n", n, buf, buf + 10, m.msg_namelen,
	       ntohs(from.sin_port) == port);
	return 0;
}

static int hostile(int port)
{
	struct sockaddr_in a = loop_addr(port);
	char big[200];
	struct msghdr m;
	struct iovec iov = { (void *)0x10, 8 };
	struct epoll_event ev = { EPOLLIN, { 0 } };
	int v = 1, ep, s = socket(AF_INET, SOCK_STREAM, 0);
	socklen_t len = (socklen_t)-1;

	memset(big, 0, sizeof(big));
	memcpy(big, &a, sizeof(a));
	printf("connect long addr %s\n",
	       connect(s, (struct sockaddr *)big, sizeof(big)) < 0 ? en(errno) : "ok");
	printf("connect short addr %s\n", connect(s, (struct sockaddr *)&a, 3) < 0 ? en(errno) : "ok");
	printf("connect bad addr %s\n",
	       connect(s, (struct sockaddr *)0x10, sizeof(a)) < 0 ? en(errno) : "ok");
	printf("getsockopt bad len %s\n",
	       getsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &v, (socklen_t *)0x10) < 0 ? en(errno) : "ok");
	printf("getsockopt negative len %s\n",
	       getsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &v, &len) < 0 ? en(errno) : "ok");
	printf("socket op on a pipe %s\n", listen(1, 1) < 0 ? en(errno) : "ok");
	printf("socket op on a bad fd %s\n", listen(999, 1) < 0 ? en(errno) : "ok");
	close(s);
	s = connected(port);
	memset(&m, 0, sizeof(m));
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	printf("sendmsg bad iov base %s\n", sendmsg(s, &m, 0) < 0 ? en(errno) : "ok");
	m.msg_iov = (struct iovec *)0x10;
	printf("sendmsg bad iov array %s\n", sendmsg(s, &m, 0) < 0 ? en(errno) : "ok");
	m.msg_iov = &iov;
	m.msg_iovlen = 5000;
	printf("sendmsg huge iovlen %s\n", sendmsg(s, &m, 0) < 0 ? en(errno) : "ok");
	printf("send bad buffer %s\n", send(s, (void *)0x10, 4, 0) < 0 ? en(errno) : "ok");
	printf("poll bad array %s\n", poll((struct pollfd *)0x10, 1, 0) < 0 ? en(errno) : "ok");
	ep = epoll_create1(0);
	printf("epoll_ctl bad fd %s\n", epoll_ctl(ep, EPOLL_CTL_ADD, 999, &ev) < 0 ? en(errno) : "ok");
	printf("epoll_ctl bad event %s\n",
	       epoll_ctl(ep, EPOLL_CTL_ADD, s, (struct epoll_event *)0x10) < 0 ? en(errno) : "ok");
	printf("epoll_wait bad max %s\n", epoll_wait(ep, &ev, 0, 0) < 0 ? en(errno) : "ok");
	/* Still usable after all that. */
	printf("echo %zd\n", send(s, "fine", 4, 0));
	printf("back %d\n", read_n(s, big, 4));
	return 0;
}

/*
 * Output buffers checked before anything is there to copy: Linux answers these
 * only once it has data (EAGAIN / 0 events before), the personality at once.
 */
static int early_efault(int port)
{
	int s = connected(port), ep = epoll_create1(0);

	printf("recv bad buffer %s\n", recv(s, (void *)0x10, 4, MSG_DONTWAIT) < 0 ? en(errno) : "ok");
	printf("epoll_wait bad array %s\n",
	       epoll_wait(ep, (struct epoll_event *)0x10, 1, 0) < 0 ? en(errno) : "ok");
	return 0;
}

/* Raw queries to the VM's resolver; prints each answer's rcode and answer count. */
static int dns(void)
{
	static const struct {
		const char *what;
		const char *msg;
		int len;
	} cases[] = {
		{ "short", "\x12\x34\x01", 3 },
		{ "A localhost", "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
				 "\x09localhost\x00\x00\x01\x00\x01", 29 },
		{ "MX localhost", "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
				  "\x09localhost\x00\x00\x0f\x00\x01", 29 },
		{ "pointer", "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
			     "\xc0\x0c\x00\x01\x00\x01", 18 },
		{ "label past end", "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
				    "\x3f" "abc", 16 },
		{ "two questions", "\x12\x34\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00"
				   "\x01a\x00\x00\x01\x00\x01", 19 },
		{ "an answer", "\x12\x34\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00"
			       "\x01a\x00\x00\x01\x00\x01", 19 },
		{ "A nxdomain", "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
				"\x07invalid\x00\x00\x01\x00\x01", 27 },
	};
	struct sockaddr_in ns = loop_addr(53);
	unsigned char buf[512];
	int s = socket(AF_INET, SOCK_DGRAM, 0);

	ns.sin_addr.s_addr = inet_addr("127.0.0.53");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ssize_t n;

		sendto(s, cases[i].msg, (size_t)cases[i].len, 0, (struct sockaddr *)&ns, sizeof(ns));
		n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 12)
			printf("%s: no answer\n", cases[i].what);
		else
			printf("%s: id %02x%02x qr %d rcode %d answers %d%s\n", cases[i].what, buf[0],
			       buf[1], buf[2] >> 7, buf[3] & 15, buf[6] << 8 | buf[7],
			       n >= 40 && !memcmp(buf + n - 4, "\x7f\x00\x00\x01", 4) ? " 127.0.0.1" : "");
	}
	return 0;
}

/* getaddrinfo as the program's libc does it (files, then DNS per nsswitch.conf). */
static int resolve(const char *name)
{
	struct addrinfo hints, *res;
	char text[64];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(name, "80", &hints, &res);
	if (rc != 0) {
		printf("%s: %s\n", name, rc == EAI_NONAME ? "EAI_NONAME" : gai_strerror(rc));
		return 1;
	}
	inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, text, sizeof(text));
	printf("%s: %s port %d\n", name, text, ntohs(((struct sockaddr_in *)res->ai_addr)->sin_port));
	freeaddrinfo(res);
	return 0;
}

/* A listener and a client in the same program: in the VM, a guest-local connection. */
static int self_connect(void)
{
	struct sockaddr_in a = loop_addr(0), peer, self;
	socklen_t alen = sizeof(a), plen = sizeof(peer), slen = sizeof(self);
	char buf[16];
	int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0), s, one = 1;
	struct pollfd p;

	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	CHECK("bind", bind(l, (struct sockaddr *)&a, sizeof(a)));
	CHECK("listen", listen(l, 4));
	CHECK("getsockname", getsockname(l, (struct sockaddr *)&a, &alen));
	printf("port assigned %d\n", ntohs(a.sin_port) != 0);
	CHECK("connect", connect(c, (struct sockaddr *)&a, sizeof(a)));
	p.fd = l;
	p.events = POLLIN;
	printf("listener readable %d\n", poll(&p, 1, 5000));
	s = accept4(l, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC | SOCK_NONBLOCK);
	printf("accept4 %s cloexec %d nonblock %d\n", s < 0 ? en(errno) : "ok",
	       (fcntl(s, F_GETFD) & FD_CLOEXEC) != 0, (fcntl(s, F_GETFL) & O_NONBLOCK) != 0);
	getsockname(c, (struct sockaddr *)&self, &slen);
	printf("peer is the client %d\n", peer.sin_port == self.sin_port);
	printf("empty read %s\n", read(s, buf, sizeof(buf)) < 0 ? en(errno) : "data");
	printf("send %zd\n", send(c, "over local", 10, 0));
	printf("recv %zd\n", recv(s, buf, sizeof(buf), 0));
	close(c);
	printf("eof %zd\n", read(s, buf, sizeof(buf)));
	return 0;
}

static long long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Measurements for benchmarks (no test asserts them): 1-byte round trips, bulk reads. */
static int measure(int port, const char *what, long n)
{
	static char buf[1 << 16];
	long long t0, total = 0;
	int s = connected(port), one = 1;

	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	t0 = now_ns();
	if (!strcmp(what, "pingpong")) {
		for (long i = 0; i < n; i++)
			if (send(s, "x", 1, 0) != 1 || read_n(s, buf, 1) != 1)
				return 2;
		printf("pingpong %ld rtt_ns %lld\n", n, (now_ns() - t0) / n);
	} else {
		ssize_t r;
		while ((r = read(s, buf, sizeof(buf))) > 0)
			total += r;
		printf("read %lld bytes MiB/s %lld\n", total,
		       total * 1000000000LL / (1 << 20) / (now_ns() - t0 + 1));
	}
	return 0;
}

static int sigpipe(int port)
{
	char buf[8];
	int s = connected(port);

	shutdown(s, SHUT_WR); /* the echo server closes its side in answer */
	read(s, buf, sizeof(buf));
	for (int i = 0; i < 50; i++)
		if (send(s, "x", 1, MSG_NOSIGNAL) < 0)
			break;
	printf("nosignal %s\n", en(errno));
	fflush(stdout);
	send(s, "x", 1, 0); /* SIGPIPE's default action ends the program */
	printf("still alive\n");
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc >= 3 && !strcmp(argv[1], "basics"))
		return basics(atoi(argv[2]));
	if (argc >= 4 && !strcmp(argv[1], "nonblock"))
		return nonblock(atoi(argv[2]), atoi(argv[3]));
	if (argc >= 4 && !strcmp(argv[1], "slow"))
		return slow_connect(atoi(argv[2]), argv[3]);
	if (argc >= 3 && !strcmp(argv[1], "wait"))
		return waits(atoi(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "udp"))
		return udp(atoi(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "hostile"))
		return hostile(atoi(argv[2]));
	if (argc >= 2 && !strcmp(argv[1], "self"))
		return self_connect();
	if (argc >= 3 && !strcmp(argv[1], "resolve"))
		return resolve(argv[2]);
	if (argc >= 2 && !strcmp(argv[1], "dns"))
		return dns();
	if (argc >= 2 && !strcmp(argv[1], "unix")) {
		int u = socket(AF_UNIX, SOCK_STREAM, 0);
		printf("unix socket %s\n", u < 0 ? en(errno) : "ok");
		return 0;
	}
	if (argc >= 4 && (!strcmp(argv[1], "pingpong") || !strcmp(argv[1], "drain")))
		return measure(atoi(argv[2]), argv[1], atol(argv[3]));
	if (argc >= 3 && !strcmp(argv[1], "efault"))
		return early_efault(atoi(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "sigpipe"))
		return sigpipe(atoi(argv[2]));
	fprintf(stderr, "usage: netprobe basics|nonblock|wait|udp|hostile|sigpipe PORT...\n");
	return 2;
}
