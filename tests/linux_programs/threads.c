/*
 * pthreads in the Linux personality (tests/test_linux_threads.py).  Built
 * static with musl-gcc and dynamic with gcc (glibc); each mode prints lines
 * that are the same natively and in the VM.
 *
 *   sum N      N threads add up slices of 1..10^6 under a mutex, hand a token
 *              round a condition variable, and are joined
 *   pipe       a thread blocks reading a pipe while main computes, then writes
 *   poll       the same with the thread blocked in poll, then a sleep in the thread
 *   sock PORT  the same over a TCP connection to an echo server on 127.0.0.1:PORT:
 *              the thread blocks in recv (a host call) while main computes, sends
 *   exitgroup  a thread ends the program (exit_group) while main waits forever
 *   robust     a thread dies holding a robust mutex: the next locker gets EOWNERDEAD
 *   limit N    starts up to N threads that wait; prints how many started
 *   fork       fork alone makes a child; beside a live thread it answers an error
 *   spin N     N threads spin forever (no system call); another thread must
 *              still get to run, compute and finish; then main exits
 *   pipes N    N threads block reading a pipe each while main computes, then
 *              main writes to each and joins them
 *   pingpong N two threads hand a futex word to each other N times (each hand-over
 *              a FUTEX_WAKE and a FUTEX_WAIT); each keeps a mark of its own in
 *              xmm8 across its waits (the kernel keeps vector registers across a
 *              system call): prints whether both marks survived.  The time per
 *              round trip goes to stderr (for measurements; tests compare stdout)
 *
 * Threads get small stacks (STACK), so that many fit in a small VM.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TOP 1000000ull
#define MAXT 80
#define STACK (256 << 10)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_attr_t small;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static unsigned long long total;
static int nthreads, turn, rounds;
static long tids[MAXT];

static void *summer(void *arg)
{
	int id = (int)(long)arg;
	unsigned long long s = 0;

	for (unsigned long long i = id + 1; i <= TOP; i += (unsigned long long)nthreads)
		s += i;
	pthread_mutex_lock(&mu);
	total += s;
	tids[id] = syscall(SYS_gettid);
	/* Three rounds of a token passed from thread to thread in id order. */
	for (int r = 0; r < 3; r++) {
		while (turn % nthreads != id)
			pthread_cond_wait(&cv, &mu);
		turn++;
		rounds++;
		pthread_cond_broadcast(&cv);
	}
	pthread_mutex_unlock(&mu);
	return (void *)(long)(id * 2);
}

static int mode_sum(int n)
{
	pthread_t t[MAXT];
	long ret = 0, distinct = 1;

	if (n < 1 || n > MAXT)
		return 2;
	nthreads = n;
	for (int i = 0; i < n; i++)
		if (pthread_create(&t[i], &small, summer, (void *)(long)i))
			return 3;
	for (int i = 0; i < n; i++) {
		void *r;
		pthread_join(t[i], &r);
		ret += (long)r;
	}
	for (int i = 0; i < n; i++)
		for (int j = 0; j < i; j++)
			distinct &= tids[i] != tids[j] && tids[i] != getpid();
	printf("total %llu rounds %d returns %ld distinct-tids %ld\n", total, rounds, ret, distinct);
	return 0;
}

static int fds[2];

static void *reader(void *arg)
{
	char buf[64] = {0};
	ssize_t n;

	if (arg) {
		struct pollfd p = {fds[0], POLLIN, 0};
		struct timespec ms = {0, 1000000};
		int r = poll(&p, 1, -1);

		printf("poll %d revents %#x\n", r, p.revents);
		nanosleep(&ms, NULL);
	}
	n = read(fds[0], buf, sizeof(buf) - 1);
	printf("reader got %zd: %s\n", n, buf);
	return NULL;
}

static int connect_to(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int s = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)))
		return -1;
	fds[0] = fds[1] = s;
	return 0;
}

static int mode_pipe(int use_poll, int port)
{
	pthread_t t;
	unsigned long long s = 0;
	char msg[32];

	if (port ? connect_to(port) : pipe(fds))
		return 2;
	pthread_create(&t, NULL, reader, (void *)(long)use_poll);
	for (unsigned long long i = 1; i <= 50 * TOP; i++)
		s += i % 7;
	printf("main computed %llu\n", s);
	fflush(stdout);
	snprintf(msg, sizeof(msg), "%llu", s);
	if (write(fds[1], msg, strlen(msg)) < 0)
		return 3;
	pthread_join(t, NULL);
	printf("joined\n");
	return 0;
}

static void *ender(void *arg)
{
	(void)arg;
	printf("thread exits the program\n");
	fflush(stdout);
	exit(7);
}

static int mode_exitgroup(void)
{
	pthread_t t;

	pthread_mutex_lock(&mu);
	pthread_create(&t, NULL, ender, NULL);
	for (;;)
		pthread_cond_wait(&cv, &mu); /* nobody signals: only exit ends it */
}

static pthread_mutex_t robust_mu;

static void *die_holding(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&robust_mu);
	return NULL; /* ends without unlocking */
}

static int mode_robust(void)
{
	pthread_mutexattr_t a;
	pthread_t t;
	int r;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&robust_mu, &a);
	pthread_create(&t, NULL, die_holding, NULL);
	pthread_join(t, NULL);
	r = pthread_mutex_lock(&robust_mu);
	printf("lock after owner died: %s\n", r == EOWNERDEAD ? "EOWNERDEAD" : strerror(r));
	if (r == EOWNERDEAD)
		pthread_mutex_consistent(&robust_mu);
	printf("unlock %d\n", pthread_mutex_unlock(&robust_mu));
	return 0;
}

static int release;

static void *waiter(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	while (!release)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	return NULL;
}

static int mode_limit(int n)
{
	pthread_t t[MAXT];
	int started = 0, err = 0;

	if (n < 1 || n > MAXT)
		return 2;
	while (started < n) {
		err = pthread_create(&t[started], &small, waiter, NULL);
		if (err)
			break;
		started++;
	}
	printf("started %d of %d (%s)\n", started, n, err ? strerror(err) : "ok");
	pthread_mutex_lock(&mu);
	release = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	printf("all joined\n");
	return 0;
}

static void fork_once(const char *when)
{
	pid_t p = fork();

	if (p == 0)
		_exit(0);
	if (p > 0)
		waitpid(p, NULL, 0);
	printf("fork %s: %s\n", when, p < 0 ? strerror(errno) : "made a child");
}

static int mode_fork(void)
{
	pthread_t t;

	fork_once("alone");
	if (pthread_create(&t, NULL, waiter, NULL))
		return 2;
	fork_once("beside a thread");
	pthread_mutex_lock(&mu);
	release = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	pthread_join(t, NULL);
	return 0;
}

static volatile unsigned long spins[MAXT];

static void *spinner(void *arg)
{
	for (;;)
		spins[(long)arg]++; /* never a system call: only preemption stops it */
	return NULL;
}

static void *worker(void *arg)
{
	unsigned long long s = 0;

	(void)arg;
	for (unsigned long long i = 1; i <= 20 * TOP; i++)
		s += i % 11;
	printf("worker computed %llu\n", s);
	return NULL;
}

static int mode_spin(int n)
{
	pthread_t t;

	if (n < 1 || n > MAXT)
		return 2;
	for (long i = 0; i < n; i++)
		if (pthread_create(&t, &small, spinner, (void *)i))
			return 3;
	printf("%d spinners started\n", n);
	if (pthread_create(&t, &small, worker, NULL))
		return 3;
	pthread_join(t, NULL);
	printf("worker joined\n");
	fflush(stdout);
	exit(0); /* ends the spinners too */
}

static int pipe_of[MAXT][2];

static void *pipe_reader(void *arg)
{
	long id = (long)arg;
	char buf[32] = {0};
	ssize_t n = read(pipe_of[id][0], buf, sizeof(buf) - 1);

	pthread_mutex_lock(&mu);
	total += n > 0 ? strtoull(buf, NULL, 10) : 0;
	pthread_mutex_unlock(&mu);
	return NULL;
}

static int mode_pipes(int n)
{
	pthread_t t[MAXT];
	unsigned long long s = 0;
	char msg[32];

	if (n < 1 || n > MAXT)
		return 2;
	for (long i = 0; i < n; i++)
		if (pipe(pipe_of[i]) || pthread_create(&t[i], &small, pipe_reader, (void *)i))
			return 3;
	for (unsigned long long i = 1; i <= 10 * TOP; i++)
		s += i % 5;
	printf("main computed %llu beside %d blocked readers\n", s, n);
	for (int i = 0; i < n; i++) {
		snprintf(msg, sizeof(msg), "%d", i + 1);
		if (write(pipe_of[i][1], msg, strlen(msg)) < 0)
			return 4;
	}
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	printf("readers got %llu\n", total);
	return 0;
}

/* <linux/futex.h>'s numbers (musl-gcc has no kernel headers). */
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_PRIVATE_FLAG 128

static volatile int ball; /* whose turn: 0 main, 1 the other thread */
static int rounds_left;

static void futex_op(volatile int *w, int op, int val)
{
	syscall(SYS_futex, w, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
}

static int marks_lost;

/* FUTEX_WAIT with `mark` in xmm8 throughout; counts a mark that did not survive. */
static void wait_keeping_mark(volatile int *w, int val, uint64_t mark)
{
	register long rax __asm__("rax") = SYS_futex;
	register long r10 __asm__("r10") = 0; /* no timeout */
	uint64_t out;

	__asm__ volatile("movq %[mark], %%xmm8\n\tsyscall\n\tmovq %%xmm8, %[out]"
			 : "+r"(rax), [out] "=r"(out)
			 : [mark] "r"(mark), "D"(w), "S"(FUTEX_WAIT | FUTEX_PRIVATE_FLAG), "d"(val),
			   "r"(r10)
			 : "rcx", "r11", "memory", "xmm8");
	if (out != mark)
		__atomic_add_fetch(&marks_lost, 1, __ATOMIC_SEQ_CST);
}

/* Waits for the ball to be `me`'s, then passes it on: one round trip per loop. */
static void play(int me)
{
	uint64_t mark = me ? 0x2222222222222222ull : 0x1111111111111111ull;

	for (int i = 0; i < rounds_left; i++) {
		while (ball != me)
			wait_keeping_mark(&ball, !me, mark);
		ball = !me;
		futex_op(&ball, FUTEX_WAKE, 1);
	}
}

static void *partner(void *arg)
{
	(void)arg;
	play(1);
	return NULL;
}

static int mode_pingpong(int n)
{
	pthread_t t;
	struct timespec a, b;

	rounds_left = n;
	if (pthread_create(&t, &small, partner, NULL))
		return 3;
	clock_gettime(CLOCK_MONOTONIC, &a);
	play(0);
	pthread_join(t, NULL);
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("pingpong %d done, xmm8 marks %s\n", n, marks_lost ? "lost" : "kept");
	fprintf(stderr, "round trip %.1f us\n",
		((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3 / n);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_attr_init(&small);
	pthread_attr_setstacksize(&small, STACK);
	if (argc >= 3 && !strcmp(argv[1], "sum"))
		return mode_sum(atoi(argv[2]));
	if (argc >= 2 && !strcmp(argv[1], "pipe"))
		return mode_pipe(0, 0);
	if (argc >= 2 && !strcmp(argv[1], "poll"))
		return mode_pipe(1, 0);
	if (argc >= 3 && !strcmp(argv[1], "sock"))
		return mode_pipe(0, atoi(argv[2]));
	if (argc >= 2 && !strcmp(argv[1], "exitgroup"))
		return mode_exitgroup();
	if (argc >= 2 && !strcmp(argv[1], "robust"))
		return mode_robust();
	if (argc >= 3 && !strcmp(argv[1], "limit"))
		return mode_limit(atoi(argv[2]));
	if (argc >= 2 && !strcmp(argv[1], "fork"))
		return mode_fork();
	if (argc >= 3 && !strcmp(argv[1], "spin"))
		return mode_spin(atoi(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "pipes"))
		return mode_pipes(atoi(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "pingpong"))
		return mode_pingpong(atoi(argv[2]));
	fprintf(stderr, "usage: threads sum N | pipe | poll | sock PORT | exitgroup | robust | limit N | fork"
			" | spin N | pipes N | pingpong N\n");
	return 2;
}
