/*
 * Several programs in one VM (tests/test_linux_multiprocess.py).  Each mode is one
 * side of a pair run as `LinuxVM(..., also=[...])`; the two find each other over a
 * loopback connection on 127.0.0.1:PORT (served in the VM's loopback arena).
 *
 *   serve PORT          accept one connection, copy what it sends to stdout until EOF
 *   threads PORT N      N threads (more than the program's vCPUs) hand a futex word
 *                       round, then report over a connection to PORT
 *   fault ADDR          futex and write on ADDR (no memory of this program): errnos;
 *                       then the same futex wait asked of the host's futex device
 *                       directly (guest/linux/futex_abi.h), past the personality's check
 *   private-wait PORT   after a peer connected: a futex wait on `word` with a timeout
 *   private-wake PORT   connect, then wake `word` (the same address in this program)
 *                       without end, while a thread of its own waits on another word
 *   accept-exit PORT    accept one connection, then exit without closing it
 *   read-eof PORT       connect, then read: "eof" when the peer's end closed
 *   victim PORT         after the peer's go: send 512 KiB, then check `secret`
 *   hostile PORT        connect, point the connection's pipe buffers in the arena at
 *                       `secret` (the victim's address: the same binary), say go, drain
 *
 * The hostile side knows the arena's layout (guest/lib/sockets/arena.c): it checks the
 * slot looks as expected first and says "layout?" otherwise, so a layout change fails
 * the test instead of making it pass.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define LX_MMIO_FUTEX_WAIT 0xd0100008ul /* guest/linux/futex_abi.h */
#define ARENA_BASE 0xc0000000ul /* crates/vmm/src/layout.rs ARENA_BASE */
#define CONN0 2832              /* offsetof(struct arena, conns[0]) in arena.c */
#define C2S_BUF (CONN0 + 48)    /* conns[0].c2s.buf */
#define S2C_BUF (CONN0 + 112)   /* conns[0].s2c.buf */

static uint32_t word, word2;
static char secret[1024 * 1024]; /* more than a ring (512 KiB in the arena) */

static long futex(uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

static int listen_on(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 4)) {
		perror("listen");
		exit(2);
	}
	return s;
}

static int accept_one(int port)
{
	int l = listen_on(port), c = accept(l, NULL, NULL);

	if (c < 0) {
		perror("accept");
		exit(2);
	}
	return c;
}

/* Connects to PORT, retrying while the peer program has not listened yet. */
static int connect_to(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct timespec pause = {0, 10 * 1000 * 1000};

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < 1000; i++) {
		int s = socket(AF_INET, SOCK_STREAM, 0);

		if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0)
			return s;
		close(s);
		nanosleep(&pause, NULL);
	}
	perror("connect");
	exit(2);
}

static void send_all(int s, const char *p, size_t n)
{
	while (n) {
		ssize_t k = send(s, p, n, 0);

		if (k <= 0) {
			perror("send");
			exit(2);
		}
		p += k;
		n -= (size_t)k;
	}
}

static int serve(int port)
{
	int c = accept_one(port);
	char buf[4096];
	ssize_t n;

	while ((n = recv(c, buf, sizeof(buf), 0)) > 0)
		fwrite(buf, 1, (size_t)n, stdout);
	return n < 0 ? 3 : 0;
}

/* Threads take turns: thread i waits until `word` is i, adds to the sum, passes on. */
static int nthreads;
static long sum;
#define ROUNDS 50

static void *turn(void *arg)
{
	uint32_t me = (uint32_t)(uintptr_t)arg;

	for (int r = 0; r < ROUNDS; r++) {
		uint32_t w;

		while ((w = __atomic_load_n(&word, __ATOMIC_ACQUIRE)) != me)
			futex(&word, FUTEX_WAIT, w, NULL);
		sum += me + 1;
		__atomic_store_n(&word, (me + 1) % (uint32_t)nthreads, __ATOMIC_RELEASE);
		futex(&word, FUTEX_WAKE, (uint32_t)nthreads, NULL);
	}
	return NULL;
}

static int threads(int port, int n)
{
	pthread_t t[16];
	pthread_attr_t attr;
	char line[64];
	int s;

	nthreads = n;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	for (int i = 0; i < n; i++)
		if (pthread_create(&t[i], &attr, turn, (void *)(uintptr_t)i)) {
			fprintf(stderr, "pthread_create failed\n");
			return 2;
		}
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	s = connect_to(port);
	snprintf(line, sizeof(line), "threads %d sum %ld\n", n, sum);
	send_all(s, line, strlen(line));
	close(s);
	return 0;
}

static int fault(unsigned long addr)
{
	long w = futex((uint32_t *)addr, FUTEX_WAKE, 1, NULL);
	int werr = errno;
	struct timespec ts = {0, 1000};
	long t = futex((uint32_t *)addr, FUTEX_WAIT, 0, &ts);
	int terr = errno;
	long n = write(1, (void *)addr, 16);
	int nerr = errno;

	/* struct lx_futex_req: op WAIT, val 0, uaddr, 1 us, any bitset; result -> 1. */
	struct {
		uint32_t op, val;
		uint64_t uaddr;
		int64_t timeout_ns;
		uint32_t bitset, count;
		int64_t result;
		uint64_t uaddr2;
		uint32_t count2, cmp;
	} req = {0, 0, addr, 1000, ~0u, 0, 1, 0, 0, 0};

	*(volatile uint64_t *)LX_MMIO_FUTEX_WAIT = (uint64_t)(uintptr_t)&req;
	__asm__ volatile("" : : : "memory");
	printf("wake %s wait %s write %s host %s\n", w < 0 ? strerror(werr) : "ok",
	       t < 0 ? strerror(terr) : "ok", n < 0 ? strerror(nerr) : "ok",
	       req.result < 0 ? strerror((int)-req.result) : "ok");
	return 0;
}

static int private_wait(int port)
{
	struct timespec ts = {0, 300 * 1000 * 1000};
	int c = accept_one(port);
	char go;
	long r;

	if (recv(c, &go, 1, 0) != 1)
		return 3;
	r = futex(&word, FUTEX_WAIT, 0, &ts);
	printf("wait %s\n", r == 0 ? "woken" : strerror(errno));
	return 0;
}

static void *wait_word2(void *arg)
{
	(void)arg;
	futex(&word2, FUTEX_WAIT, 0, NULL); /* counts as a waiter: wakes reach the host */
	return NULL;
}

static _Noreturn void private_wake(int port)
{
	pthread_t t;
	int s = connect_to(port);

	pthread_create(&t, NULL, wait_word2, NULL);
	send_all(s, "g", 1);
	for (;;)
		futex(&word, FUTEX_WAKE, 1, NULL);
}

static int read_eof(int port)
{
	int s = connect_to(port);
	char c;
	ssize_t n = recv(s, &c, 1, 0);

	printf("%s\n", n == 0 ? "eof" : n < 0 ? strerror(errno) : "data");
	return 0;
}

static int victim(int port)
{
	static char chunk[64 * 1024];
	int c = accept_one(port);
	char go[2];

	memset(secret, 'S', sizeof(secret));
	memset(chunk, 'V', sizeof(chunk));
	if (recv(c, go, 2, MSG_WAITALL) != 2)
		return 3;
	for (int i = 0; i < 8; i++)
		send_all(c, chunk, sizeof(chunk));
	for (size_t i = 0; i < sizeof(secret); i++)
		if (secret[i] != 'S') {
			printf("secret overwritten\n");
			return 0;
		}
	printf("secret intact\n");
	return 0;
}

static int hostile(int port)
{
	volatile uint8_t *arena = (volatile uint8_t *)ARENA_BASE;
	int s = connect_to(port);
	char buf[4096];

	if (*(volatile uint32_t *)(arena + CONN0) != 1 || *(volatile uint64_t *)(arena + C2S_BUF) ||
	    *(volatile uint64_t *)(arena + S2C_BUF)) {
		printf("layout?\n");
		return 4;
	}
	*(volatile uint64_t *)(arena + C2S_BUF) = (uint64_t)(uintptr_t)secret;
	*(volatile uint64_t *)(arena + S2C_BUF) = (uint64_t)(uintptr_t)secret;
	send_all(s, "go", 2);
	while (recv(s, buf, sizeof(buf), 0) > 0)
		;
	printf("hostile done\n");
	return 0;
}

int main(int argc, char **argv)
{
	int port = argc > 2 ? atoi(argv[2]) : 0;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc < 2)
		return 1;
	if (!strcmp(argv[1], "serve"))
		return serve(port);
	if (!strcmp(argv[1], "threads") && argc > 3)
		return threads(port, atoi(argv[3]));
	if (!strcmp(argv[1], "fault") && argc > 2)
		return fault(strtoul(argv[2], NULL, 0));
	if (!strcmp(argv[1], "private-wait"))
		return private_wait(port);
	if (!strcmp(argv[1], "private-wake"))
		private_wake(port);
	if (!strcmp(argv[1], "accept-exit")) {
		accept_one(port);
		_exit(0);
	}
	if (!strcmp(argv[1], "read-eof"))
		return read_eof(port);
	if (!strcmp(argv[1], "victim"))
		return victim(port);
	if (!strcmp(argv[1], "hostile"))
		return hostile(port);
	return 1;
}
