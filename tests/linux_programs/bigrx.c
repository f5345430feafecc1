/*
 * Large receives and sends, for tests/test_linux_net_sockio.py: in vmrpc they take
 * the socket I/O exit (crates/vmm/src/devices/sock_io.rs), served on the vCPU's own
 * host thread.  The stream's byte p is p % 251 both ways.  Built static with gcc
 * and musl-gcc.
 *
 *   bigrx recv PORT CHUNK       receive until EOF in CHUNK-byte calls; prints the
 *                               total and how many bytes broke the pattern
 *   bigrx waitall PORT LEN      one recv(MSG_WAITALL) of LEN bytes, then the rest
 *   bigrx send PORT TOTAL CHUNK send TOTAL bytes in CHUNK-byte calls, then wait EOF
 *   bigrx block PORT            one large receive that never gets data (the test
 *                               closes the VM meanwhile)
 *   bigrx shared PORT           a thread waits in a large receive on a first
 *                               connection; meanwhile, told so on a second one,
 *                               the main thread makes a non-waiting receive on
 *                               the first (it must not wait for the other thread)
 *   bigrx hostile PORT          hand-made requests to the exit's register (a
 *                               hostile program can write it too); prints each
 *                               answer (only meaningful in vmrpc)
 */
#define _GNU_SOURCE
#include "tcp_client.h"
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

static long broken(const unsigned char *b, long n, long at)
{
	long bad = 0;

	for (long i = 0; i < n; i++)
		bad += b[i] != (unsigned char)((at + i) % 251);
	return bad;
}

static unsigned char *buffer(long n)
{
	unsigned char *b = malloc((size_t)n);

	if (!b) {
		printf("no memory\n");
		exit(2);
	}
	return b;
}

static int recv_all(int s, long chunk)
{
	unsigned char *b = buffer(chunk);
	long total = 0, bad = 0, calls = 0;
	ssize_t n;

	while ((n = recv(s, b, (size_t)chunk, 0)) > 0) {
		bad += broken(b, n, total);
		total += n;
		calls++;
	}
	printf("recv total %ld broken %ld end %zd calls %ld\n", total, bad, n, calls + 1);
	return n < 0;
}

static int waitall(int s, long len)
{
	unsigned char *b = buffer(len);
	ssize_t n = recv(s, b, (size_t)len, MSG_WAITALL);
	long bad = n > 0 ? broken(b, n, 0) : 0;
	long total = n > 0 ? n : 0;

	printf("waitall %zd broken %ld\n", n, bad);
	while ((n = recv(s, b, (size_t)len, 0)) > 0) {
		bad += broken(b, n, total);
		total += n;
	}
	printf("then total %ld broken %ld\n", total, bad);
	return 0;
}

static int send_all(int s, long total, long chunk)
{
	unsigned char *b = buffer(chunk + 251);
	long sent = 0;
	char c;

	for (long i = 0; i < chunk + 251; i++)
		b[i] = (unsigned char)(i % 251);
	while (sent < total) {
		long k = total - sent < chunk ? total - sent : chunk;
		ssize_t n = send(s, b + sent % 251, (size_t)k, 0);

		if (n <= 0) {
			printf("send failed %d\n", errno);
			return 1;
		}
		sent += n;
	}
	shutdown(s, SHUT_WR);
	printf("sent %ld eof %zd\n", sent, recv(s, &c, 1, 0));
	return 0;
}

static int block(int s)
{
	unsigned char *b = buffer(1 << 20);

	printf("blocking\n");
	fflush(stdout);
	printf("returned %zd\n", recv(s, b, 1 << 20, 0));
	return 0;
}

static int shared_sock;

static void *waiter(void *arg)
{
	unsigned char *b = buffer(1 << 20);

	(void)arg;
	printf("waiter %zd\n", recv(shared_sock, b, 1 << 20, 0));
	return NULL;
}

static int shared(int port)
{
	pthread_t t;
	char c, b[100];
	int ctl;
	ssize_t r;

	shared_sock = connected(port);
	ctl = connected(port);
	pthread_create(&t, NULL, waiter, NULL);
	if (recv(ctl, &c, 1, 0) != 1) /* the peer saw the waiter wait */
		return 3;
	r = recv(shared_sock, b, sizeof(b), MSG_DONTWAIT);
	printf("other %s\n", r < 0 && errno == EAGAIN ? "EAGAIN" : "unexpected");
	fflush(stdout);
	send(ctl, "x", 1, 0);
	pthread_join(t, NULL);
	return 0;
}

/* struct vmrpc_sockio_req (guest/include/vmrpc/abi_gen.h), by hand. */
struct sockio_req {
	uint32_t module, handle, flags;
	int32_t timeout_ms;
	uint64_t gpa;
	uint32_t len, len2;
	uint64_t gpa2;
	int64_t result;
};
#define SOCKIO_REG 0xd0009000ull
#define SENT 0x7eadbeef

static long exit_with(struct sockio_req r)
{
	static struct sockio_req req;

	req = r;
	req.result = SENT;
	__asm__ volatile("" : : : "memory"); /* the request is in memory first */
	*(volatile uint64_t *)(uintptr_t)SOCKIO_REG = (uint64_t)(uintptr_t)&req;
	__asm__ volatile("" : : : "memory");
	return (long)req.result;
}

/* Module and socket handles are small numbers: the first pair that answers a
 * non-waiting 1-byte receive with EAGAIN is this connection (nothing sent yet). */
static int hostile(int s)
{
	static unsigned char b[64];
	struct sockio_req good = { 0, 0, 0, 0, (uintptr_t)b, 1, 0, 0, 0 };
	int found = 0;

	(void)s;
	for (uint32_t m = 1; m < 256 && !found; m++)
		for (uint32_t h = 1; h < 16 && !found; h++) {
			good.module = m;
			good.handle = h;
			found = exit_with(good) == -EAGAIN;
		}
	printf("found %d\n", found);
	if (!found)
		return 1;
	struct { const char *what; struct sockio_req r; } cases[] = {
		{ "bad module", { .module = 0x7fff0001 } },
		{ "bad handle", { .handle = 0x7fffffff } },
		{ "outside RAM", { .gpa = 0x7fff00000000ull } },
		{ "MMIO window", { .gpa = SOCKIO_REG } },
		{ "wrapping", { .gpa = ~0ull - 2 } },
		{ "huge length", { .len = 0xffffffffu } },
		{ "huge second", { .len2 = 0x7fffffffu, .gpa2 = (uintptr_t)b } },
		{ "bad flags", { .flags = 0x80 } },
		{ "bad timeout", { .timeout_ms = -5 } },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockio_req r = good;
		struct sockio_req *c = &cases[i].r;

		if (c->module)
			r.module = c->module;
		if (c->handle)
			r.handle = c->handle;
		if (c->gpa)
			r.gpa = c->gpa;
		if (c->len)
			r.len = c->len;
		if (c->len2) {
			r.len2 = c->len2;
			r.gpa2 = c->gpa2;
		}
		if (c->flags)
			r.flags = c->flags;
		if (c->timeout_ms)
			r.timeout_ms = c->timeout_ms;
		printf("%s %ld\n", cases[i].what, exit_with(r));
	}
	/* A request whose own address is outside RAM: dropped, and the program runs on. */
	*(volatile uint64_t *)(uintptr_t)SOCKIO_REG = 0x7fff00000000ull;
	printf("still good %ld\n", exit_with(good));
	return 0;
}

int main(int argc, char **argv)
{
	int s;

	if (argc < 3) {
		fprintf(stderr, "usage: bigrx recv|waitall|send|block|shared|hostile PORT [N] [CHUNK]\n");
		return 2;
	}
	if (!strcmp(argv[1], "shared"))
		return shared(atoi(argv[2]));
	s = connected(atoi(argv[2]));
	if (!strcmp(argv[1], "recv") && argc == 4)
		return recv_all(s, atol(argv[3]));
	if (!strcmp(argv[1], "waitall") && argc == 4)
		return waitall(s, atol(argv[3]));
	if (!strcmp(argv[1], "send") && argc == 5)
		return send_all(s, atol(argv[3]), atol(argv[4]));
	if (!strcmp(argv[1], "block"))
		return block(s);
	if (!strcmp(argv[1], "hostile"))
		return hostile(s);
	return 2;
}
