/*
 * sched_yield and FUTEX_WAKE_OP (tests/test_linux_thread_gaps.py); each mode prints
 * the same lines natively and in the VM.
 *
 *   yield N   main and a second thread take N turns each; the one whose turn it is
 *             not spins on sched_yield (never a futex), so on one vCPU every turn
 *             needs the yield to hand the vCPU over (else a 10 ms preemption).
 *   wakeop    FUTEX_WAKE_OP: each operation and comparison on the second word, the
 *             errors, and real waiters woken on either word.
 *   bigrecv PORT  a thread blocks in a large recv (64 KiB: the socket I/O exit) from
 *             an echo server on 127.0.0.1:PORT; main yields until it has started,
 *             then sends what the echo gives back to it.  On one vCPU the recv must
 *             give the vCPU up while it waits, or main never sends.
 *   tworeaders PORT  two threads read one connection to that echo server with 64 KiB
 *             receives (socket I/O exits filling the socket's read-ahead) while main
 *             sends 4 MiB through it, then shuts its side down; each reader stops at
 *             end of stream.  On one vCPU a thread must not lend its vCPU while it
 *             holds the read-ahead busy: the other reader would spin on it there.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* <linux/futex.h>'s values (musl-gcc has no kernel headers). */
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_OP_PRIVATE 133
#define OP(op, oparg, cmp, cmparg)                                                       \
	((uint32_t)(((op) & 0xf) << 28 | ((cmp) & 0xf) << 24 | ((oparg) & 0xfff) << 12 | \
		    ((cmparg) & 0xfff)))
#define SHIFT 8 /* FUTEX_OP_OPARG_SHIFT */

static volatile int turn; /* 0: main's, 1: the partner's */
static int rounds;

static void take_turns(int me)
{
	for (int i = 0; i < rounds; i++) {
		while (__atomic_load_n(&turn, __ATOMIC_ACQUIRE) != me)
			sched_yield();
		__atomic_store_n(&turn, !me, __ATOMIC_RELEASE);
	}
}

static void *partner(void *arg)
{
	(void)arg;
	take_turns(1);
	return NULL;
}

static int mode_yield(int n)
{
	pthread_t t;

	rounds = n;
	if (pthread_create(&t, NULL, partner, NULL))
		return 1;
	take_turns(0);
	pthread_join(t, NULL);
	printf("yield: %d turns each, last turn %d\n", n, turn);
	return 0;
}

static long wake_op(uint32_t *a, int n, uint32_t *b, int n2, uint32_t op)
{
	return syscall(SYS_futex, a, FUTEX_WAKE_OP_PRIVATE, n, (void *)(uintptr_t)n2, b, op);
}

static uint32_t word_a, word_b;

static void show(const char *what, long r)
{
	printf("%-14s r=%ld errno=%d b=%d\n", what, r, r < 0 ? errno : 0, (int)word_b);
}

static void *waiter(void *arg)
{
	uint32_t *w = arg;

	/* 0 when woken; EAGAIN if the word moved on first (then nobody must wake us). */
	if (syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, *w, NULL, NULL, 0) < 0 && errno != EAGAIN)
		printf("wait failed: errno %d\n", errno);
	return NULL;
}

/* Wakes one thread waiting on `w` (a or b) through WAKE_OP; the count returned. */
static long woken_through(uint32_t *w)
{
	pthread_t t;
	long r;

	*w = 0;
	word_b = (w == &word_b) ? 0 : 9;
	if (pthread_create(&t, NULL, waiter, w))
		return -1;
	/* Add 0 (nothing changes) and compare b == 0: wakes b's waiter when it is b. */
	while ((r = wake_op(&word_a, 1, &word_b, 1, OP(1, 0, 0, 0))) == 0)
		usleep(1000);
	pthread_join(t, NULL);
	return r;
}

static int mode_wakeop(void)
{
	uint32_t *ro;

	word_b = 5;
	show("set 7, eq 5", wake_op(&word_a, 1, &word_b, 1, OP(0, 7, 0, 5)));
	show("add -3, ne 7", wake_op(&word_a, 1, &word_b, 1, OP(1, -3, 1, 7)));
	show("or 8, lt 4", wake_op(&word_a, 1, &word_b, 1, OP(2, 8, 2, 4)));
	show("andn 2, le 12", wake_op(&word_a, 1, &word_b, 1, OP(3, 2, 3, 12)));
	show("xor 1, gt -1", wake_op(&word_a, 1, &word_b, 1, OP(4, 1, 4, -1)));
	show("shl-or 4, ge 9", wake_op(&word_a, 1, &word_b, 1, OP(2 | SHIFT, 4, 5, 9)));
	show("shl-set 33", wake_op(&word_a, 1, &word_b, 1, OP(0 | SHIFT, 33, 0, 0)));
	show("set -1, lt 0", wake_op(&word_a, 1, &word_b, 1, OP(0, -1, 2, 0)));
	show("bad op", wake_op(&word_a, 1, &word_b, 1, OP(5, 1, 0, 0)));
	word_b = 1;
	show("bad cmp", wake_op(&word_a, 1, &word_b, 1, OP(1, 1, 6, 0)));
	show("misaligned", wake_op(&word_a, 1, (uint32_t *)((char *)&word_b + 1), 1, 0));
	ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ro == MAP_FAILED)
		return 1;
	show("read-only", wake_op(&word_a, 1, ro, 1, OP(0, 1, 0, 0)));
	printf("woke a waiter of a: %ld\n", woken_through(&word_a));
	printf("woke a waiter of b: %ld\n", woken_through(&word_b));
	return 0;
}

static int sock;
static volatile int reader_started;

static void *big_reader(void *arg)
{
	static char buf[65536];
	size_t got = 0;
	ssize_t n = 1;

	(void)arg;
	__atomic_store_n(&reader_started, 1, __ATOMIC_RELEASE);
	while (got < 5 && n > 0) {
		n = recv(sock, buf + got, sizeof(buf) - got, 0);
		got += n > 0 ? (size_t)n : 0;
	}
	printf("reader got %zu: %.*s\n", got, (int)got, buf);
	return NULL;
}

static int mode_bigrecv(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	pthread_t t;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sock = socket(AF_INET, SOCK_STREAM, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&a, sizeof(a)))
		return 2;
	if (pthread_create(&t, NULL, big_reader, NULL))
		return 3;
	while (!__atomic_load_n(&reader_started, __ATOMIC_ACQUIRE))
		sched_yield();
	if (send(sock, "hello", 5, 0) != 5)
		return 4;
	pthread_join(t, NULL);
	printf("joined\n");
	return 0;
}

static uint64_t two_total;

static void *two_reader(void *arg)
{
	static char bufs[2][65536];
	char *buf = bufs[(long)arg];
	ssize_t n;

	while ((n = recv(sock, buf, sizeof(bufs[0]), 0)) > 0)
		__atomic_add_fetch(&two_total, (uint64_t)n, __ATOMIC_RELAXED);
	return NULL;
}

static int mode_tworeaders(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	static char chunk[65536];
	pthread_t t[2];

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sock = socket(AF_INET, SOCK_STREAM, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&a, sizeof(a)))
		return 2;
	for (long i = 0; i < 2; i++)
		if (pthread_create(&t[i], NULL, two_reader, (void *)i))
			return 3;
	memset(chunk, 'x', sizeof(chunk));
	for (int i = 0; i < 64; i++)
		if (send(sock, chunk, sizeof(chunk), 0) != (ssize_t)sizeof(chunk))
			return 4;
	shutdown(sock, SHUT_WR); /* the echo server closes at our EOF: both readers end */
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	printf("two readers got %llu bytes\n", (unsigned long long)two_total);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc >= 3 && !strcmp(argv[1], "yield"))
		return mode_yield(atoi(argv[2]));
	if (argc >= 2 && !strcmp(argv[1], "wakeop"))
		return mode_wakeop();
	if (argc >= 3 && !strcmp(argv[1], "bigrecv"))
		return mode_bigrecv(atoi(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "tworeaders"))
		return mode_tworeaders(atoi(argv[2]));
	fprintf(stderr, "usage: thread_gaps yield N | wakeop | bigrecv PORT | tworeaders PORT\n");
	return 2;
}
