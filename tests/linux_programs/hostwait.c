/*
 * Threads waiting for host calls (tests/test_linux_threads_hostwait.py): a
 * thread blocked in a host call (VM RPC) lends its vCPU to the others.
 *
 *   recv N PORT  N threads connect to a gated server on 127.0.0.1:PORT, send
 *                "w<i>" and block in recv (odd ones into a 64 KiB buffer: the
 *                socket I/O exit, even ones a small one: an RPC to the sockets
 *                module); the server answers them only after
 *                main has computed, printed and sent "go".  Main first asks
 *                ("main N") and waits for "ready": the server has all N
 *                messages.  With more blocked threads than vCPUs, main still
 *                gets a vCPU to compute on.  Prints the same natively.
 *   block N PORT the same, but nobody ever answers: the test closes the VM
 *                while the threads wait.
 *   hostile      hand-made requests to the wait register (VM only).
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
#include <unistd.h>

#define MAX 64

static int port;
static char got[MAX][32];
static char big[MAX / 2][65536];

static int dial(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int s = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)))
		return -1;
	return s;
}

static void *worker(void *arg)
{
	long i = (long)arg;
	char msg[16];
	int s = dial();
	ssize_t n;

	if (s < 0) {
		snprintf(got[i], sizeof(got[i]), "connect failed %d", errno);
		return NULL;
	}
	snprintf(msg, sizeof(msg), "w%ld", i);
	if (send(s, msg, strlen(msg), 0) < 0)
		snprintf(got[i], sizeof(got[i]), "send failed %d", errno);
	if (i % 2) {
		n = recv(s, big[i / 2], sizeof(big[i / 2]), 0);
		if (n > 0)
			memcpy(got[i], big[i / 2], n < 31 ? (size_t)n : 31);
	} else {
		n = recv(s, got[i], sizeof(got[i]) - 1, 0);
	}
	if (n < 0)
		snprintf(got[i], sizeof(got[i]), "recv failed %d", errno);
	close(s);
	return NULL;
}

static int mode_recv(int n, int answered)
{
	pthread_t t[MAX];
	char msg[16], ready[16] = {0};
	unsigned long long sum = 0;
	int m = dial();

	if (m < 0 || n < 1 || n > MAX)
		return 2;
	snprintf(msg, sizeof(msg), "main %d", n);
	if (send(m, msg, strlen(msg), 0) < 0)
		return 3;
	/* Small stacks: glibc's default 8 MiB each would not fit 20 threads in the
	 * VM's memory. */
	pthread_attr_t small;

	pthread_attr_init(&small);
	pthread_attr_setstacksize(&small, 256 * 1024);
	for (long i = 0; i < n; i++)
		if (pthread_create(&t[i], &small, worker, (void *)i))
			return 4;
	if (recv(m, ready, 5, MSG_WAITALL) != 5)
		return 5;
	printf("%s\n", ready);
	fflush(stdout);
	if (!answered) {
		for (int i = 0; i < n; i++)
			pthread_join(t[i], NULL); /* never returns: the test closes the VM */
		return 6;
	}
	/* Computing needs a vCPU while all N threads wait for their answers. */
	for (unsigned long long i = 1; i <= 20000000ull; i++)
		sum += i % 7;
	printf("main computed %llu\n", sum);
	fflush(stdout);
	if (send(m, "go", 2, 0) != 2)
		return 7;
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < n; i++)
		printf("thread %d got %s\n", i, got[i]);
	close(m);
	return 0;
}

/* struct vmrpc_rpc_wait (guest/include/vmrpc/abi_gen.h), by hand. */
struct rpc_wait {
	uint32_t channel, seen_head;
	int64_t result;
};
#define RPC_WAIT_REG 0xd000a000ull
#define SENT 0x7eadbeef

static long wait_with(uint64_t gpa)
{
	*(volatile uint64_t *)(uintptr_t)RPC_WAIT_REG = gpa;
	__asm__ volatile("" : : : "memory");
	return 0;
}

static long ask(uint32_t channel, uint32_t seen)
{
	static struct rpc_wait w;

	w.channel = channel;
	w.seen_head = seen;
	w.result = SENT;
	__asm__ volatile("" : : : "memory"); /* the request is in memory first */
	wait_with((uint64_t)(uintptr_t)&w);
	return (long)w.result;
}

static int mode_hostile(void)
{
	/* Channel 0 is the main thread's: its head is a small count of answers,
	 * not 0xfffffff0, so "an answer is there" at once.  Channel 9 belongs to
	 * no thread yet (head 0, not 1): the same. */
	printf("channel 64: %ld\n", ask(64, 0));
	printf("channel 0xffffffff: %ld\n", ask(0xffffffffu, 0));
	printf("own channel, head moved: %ld\n", ask(0, 0xfffffff0u));
	printf("unused channel, head moved: %ld\n", ask(9, 1));
	/* Requests the host cannot answer: dropped, nothing written. */
	wait_with(0x7fff00000000ull);
	wait_with(RPC_WAIT_REG);
	wait_with(~0ull - 4);
	printf("still good: %d\n", getpid() > 0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && (!strcmp(argv[1], "recv") || !strcmp(argv[1], "block"))) {
		port = atoi(argv[3]);
		return mode_recv(atoi(argv[2]), !strcmp(argv[1], "recv"));
	}
	if (argc >= 2 && !strcmp(argv[1], "hostile"))
		return mode_hostile();
	fprintf(stderr, "usage: hostwait recv|block N PORT | hostile\n");
	return 2;
}
