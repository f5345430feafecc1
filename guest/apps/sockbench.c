/*
 * Socket benchmarks against the host's bench server (benches/sockets.py):
 *   sockbench send HOST PORT BYTES   bulk guest->host: 'S', BYTES of data, shutdown,
 *                                     wait for the server's one-byte ack
 *   sockbench recv HOST PORT BYTES   bulk host->guest: 'R' + u64 BYTES, read to EOF
 *   sockbench rr HOST PORT N         N one-byte request/response round trips ('P')
 *   sockbench local BYTES            in-guest loopback throughput (2 vCPUs)
 * Prints "BENCH name=tcp_send bytes=N ns=T" lines (and bench_report's line for rr).
 */
#include <vmrpc.h>
#include <vmrpc/bench.h>

#define CHUNK (256 * 1024) /* application buffer; the library splits it into RPCs */

static uint8_t buf[CHUNK];

static int dial(const char *host, const char *port)
{
	struct addrinfo hints, *res;
	int fd, one = 1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &res))
		return -1;
	fd = socket(res->ai_family, SOCK_STREAM, 0);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
		printf("sockbench: connect failed errno=%d %s\n", errno, strerror(errno));
		return -1;
	}
	freeaddrinfo(res);
	return fd;
}

static uint64_t ns_since(uint64_t t0)
{
	return rt_ns_from_tsc(rdtsc() - t0);
}

static int bench_send(int fd, long bytes)
{
	uint64_t t0 = rdtsc();
	long sent = 0;
	char ack;

	if (send(fd, "S", 1, 0) != 1)
		return 1;
	while (sent < bytes) {
		long k = bytes - sent < CHUNK ? bytes - sent : CHUNK;
		ssize_t n = send(fd, buf, (size_t)k, 0);

		if (n <= 0)
			return 1;
		sent += n;
	}
	shutdown(fd, SHUT_WR);
	if (recv(fd, &ack, 1, 0) != 1)
		return 1;
	printf("BENCH name=tcp_send bytes=%ld ns=%llu\n", bytes, (unsigned long long)ns_since(t0));
	return 0;
}

static int bench_recv(int fd, long bytes)
{
	uint8_t req[9] = { 'R' };
	uint64_t t0 = rdtsc(), b = (uint64_t)bytes;
	long got = 0;

	memcpy(req + 1, &b, 8);
	if (send(fd, req, sizeof(req), 0) != sizeof(req))
		return 1;
	for (;;) {
		ssize_t n = recv(fd, buf, CHUNK, 0);

		if (n < 0)
			return 1;
		if (n == 0)
			break;
		got += n;
	}
	if (got != bytes)
		return 1;
	printf("BENCH name=tcp_recv bytes=%ld ns=%llu\n", bytes, (unsigned long long)ns_since(t0));
	return 0;
}

static int bench_rr(int fd, long n)
{
	uint64_t *samples = malloc((size_t)n * sizeof(*samples) + 8);
	char c = 'x';

	if (!samples || send(fd, "P", 1, 0) != 1)
		return 1;
	for (long i = 0; i < n; i++) {
		uint64_t t0 = rdtsc();

		if (send(fd, &c, 1, 0) != 1 || recv(fd, &c, 1, 0) != 1)
			return 1;
		samples[i] = rdtsc() - t0;
	}
	bench_report("tcp_rr", samples, (size_t)n);
	return 0;
}

static volatile int local_ready, local_done;
static long local_bytes;

void ap_main(unsigned cpu)
{
	struct sockaddr_in a;
	static uint8_t out[CHUNK];
	long sent = 0;
	int fd;

	if (cpu != 1)
		return;
	while (!local_ready) /* set by main in "local" mode only (then vcpus >= 2) */
		cpu_relax();
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(7100);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		while (sent < local_bytes) {
			ssize_t n = send(fd, out, CHUNK, 0);

			if (n <= 0)
				break;
			sent += n;
		}
	}
	close(fd);
	local_done = 1;
}

static int bench_local(long bytes)
{
	struct sockaddr_in a;
	uint64_t t0;
	long got = 0;
	int lfd, fd;

	if (rt_cpu_count() < 2) {
		printf("sockbench: local needs 2 vCPUs\n");
		return 1;
	}
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(7100);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 1) < 0)
		return 1;
	local_ready = 1;
	fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		return 1;
	t0 = rdtsc();
	for (;;) {
		ssize_t n = recv(fd, buf, CHUNK, 0);

		if (n <= 0)
			break;
		got += n;
	}
	printf("BENCH name=local_stream bytes=%ld ns=%llu\n", got, (unsigned long long)ns_since(t0));
	while (!local_done)
		cpu_relax();
	return got >= bytes ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int fd, rc;

	if (!strcmp(mode, "local")) {
		local_bytes = argc > 2 ? strtol(argv[2], NULL, 0) : 64 << 20;
		return bench_local(local_bytes);
	}
	if (argc < 5) {
		printf("usage: sockbench send|recv|rr HOST PORT N, or sockbench local BYTES\n");
		return 2;
	}
	fd = dial(argv[2], argv[3]);
	if (fd < 0)
		return 2;
	if (!strcmp(mode, "send"))
		rc = bench_send(fd, strtol(argv[4], NULL, 0));
	else if (!strcmp(mode, "recv"))
		rc = bench_recv(fd, strtol(argv[4], NULL, 0));
	else if (!strcmp(mode, "rr"))
		rc = bench_rr(fd, strtol(argv[4], NULL, 0));
	else
		rc = 2;
	close(fd);
	if (rc)
		printf("sockbench: %s failed errno=%d %s\n", mode, errno, strerror(errno));
	return rc;
}
