/*
 * In-guest client and server on loopback through the ordinary socket API:
 * arg[1] bytes to echo through a TCP connection (default 1 MiB), arg[2] "6"
 * for ::1.  With two or more vCPUs the client runs on vCPU 1 and the server
 * on vCPU 0; with one vCPU they take turns.  Then a UDP round trip between two
 * guest sockets.  Both connections are guest-local (no host socket, no RPC per
 * byte); the line "loopback_pair ok" reports the library's counters.
 */
#include <vmrpc.h>

#define PORT 7000
#define UDP_PORT 7001
#define CHUNK 16384

static long total_bytes;
static int v6;
static volatile int server_ready, client_result = -1;

static void fill_addr(struct sockaddr_storage *ss, socklen_t *len, int port)
{
	memset(ss, 0, sizeof(*ss));
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		a->sin6_addr = in6addr_loopback;
		*len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		inet_pton(AF_INET, "127.0.0.1", &a->sin_addr);
		*len = sizeof(*a);
	}
}

static uint8_t pattern(long i)
{
	return (uint8_t)(i * 31 + (i >> 10) + 7);
}

static int client_connect(void)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);

	fill_addr(&ss, &len, PORT);
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len) < 0) {
		printf("loopback_pair: connect failed errno=%d %s\n", errno, strerror(errno));
		return -1;
	}
	return fd;
}

/* Client on its own vCPU: send everything, read the echo, verify. */
static int client_run(void)
{
	static uint8_t out[CHUNK], in[CHUNK];
	long sent = 0, got = 0;
	int fd;

	while (!server_ready)
		cpu_relax();
	fd = client_connect();
	if (fd < 0)
		return 1;
	fcntl(fd, F_SETFL, O_NONBLOCK);
	while (got < total_bytes) {
		if (sent < total_bytes) {
			long k = total_bytes - sent < CHUNK ? total_bytes - sent : CHUNK;
			ssize_t n;

			for (long i = 0; i < k; i++)
				out[i] = pattern(sent + i);
			n = send(fd, out, (size_t)k, 0);
			if (n < 0 && errno != EAGAIN)
				return 1;
			if (n > 0)
				sent += n;
		}
		{
			ssize_t n = recv(fd, in, sizeof(in), 0);

			if (n < 0 && errno != EAGAIN)
				return 1;
			for (long i = 0; i < n; i++)
				if (in[i] != pattern(got + i)) {
					printf("loopback_pair: mismatch at %ld\n", got + i);
					return 1;
				}
			if (n > 0)
				got += n;
			if (n == 0)
				return 1;
		}
	}
	close(fd);
	return 0;
}

void ap_main(unsigned cpu)
{
	if (cpu == 1)
		client_result = client_run();
}

/* Server: echo one connection until EOF. */
static long serve(int cfd)
{
	static uint8_t buf[CHUNK];
	long echoed = 0;

	for (;;) {
		ssize_t n = recv(cfd, buf, sizeof(buf), 0);

		if (n <= 0)
			break;
		if (send(cfd, buf, (size_t)n, 0) != n)
			break;
		echoed += n;
	}
	return echoed;
}

/* One vCPU: client and server take turns, chunk by chunk. */
static long take_turns(int lfd)
{
	static uint8_t out[CHUNK], in[CHUNK], mid[CHUNK];
	long done = 0;
	int cfd = client_connect(), sfd;

	if (cfd < 0)
		return -1;
	sfd = accept(lfd, NULL, NULL);
	if (sfd < 0)
		return -1;
	while (done < total_bytes) {
		long k = total_bytes - done < CHUNK ? total_bytes - done : CHUNK;

		for (long i = 0; i < k; i++)
			out[i] = pattern(done + i);
		if (send(cfd, out, (size_t)k, 0) != k || recv(sfd, mid, (size_t)k, MSG_WAITALL) != k ||
		    send(sfd, mid, (size_t)k, 0) != k || recv(cfd, in, (size_t)k, MSG_WAITALL) != k)
			return -1;
		if (memcmp(in, out, (size_t)k))
			return -1;
		done += k;
	}
	close(cfd);
	if (recv(sfd, mid, 1, 0) != 0) /* the client's close is EOF for the server */
		return -1;
	close(sfd);
	return done;
}

static int udp_round_trip(void)
{
	struct sockaddr_storage ss, from;
	socklen_t len, flen = sizeof(from);
	char msg[] = "datagram inside the guest", buf[64];
	int srv = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
	int cli = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
	ssize_t n;

	fill_addr(&ss, &len, UDP_PORT);
	if (srv < 0 || cli < 0 || bind(srv, (struct sockaddr *)&ss, len) < 0)
		return -1;
	if (sendto(cli, msg, sizeof(msg), 0, (struct sockaddr *)&ss, len) != sizeof(msg))
		return -1;
	n = recvfrom(srv, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
	if (n != sizeof(msg) || sendto(srv, buf, (size_t)n, 0, (struct sockaddr *)&from, flen) != n)
		return -1;
	n = recv(cli, buf, sizeof(buf), 0);
	if (n != sizeof(msg) || memcmp(buf, msg, sizeof(msg)))
		return -1;
	close(srv);
	close(cli);
	return (int)n;
}

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	struct vmrpc_sock_stats st;
	socklen_t len;
	long echoed;
	int lfd, udp;

	total_bytes = argc > 1 ? strtol(argv[1], NULL, 0) : 1 << 20;
	v6 = argc > 2 && !strcmp(argv[2], "6");
	lfd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
	fill_addr(&ss, &len, PORT);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&ss, len) < 0 || listen(lfd, 4) < 0) {
		printf("loopback_pair: listen failed errno=%d %s\n", errno, strerror(errno));
		return 2;
	}
	if (rt_cpu_count() >= 2) {
		int cfd;

		server_ready = 1;
		cfd = accept(lfd, NULL, NULL);
		if (cfd < 0) {
			printf("loopback_pair: accept failed errno=%d\n", errno);
			return 2;
		}
		echoed = serve(cfd);
		close(cfd);
		while (client_result < 0)
			cpu_relax();
		if (client_result)
			echoed = -1;
	} else {
		echoed = take_turns(lfd);
	}
	close(lfd);
	if (echoed != total_bytes) {
		printf("loopback_pair: TCP transfer failed (%ld of %ld bytes)\n", echoed, total_bytes);
		return 1;
	}
	udp = udp_round_trip();
	if (udp < 0) {
		printf("loopback_pair: UDP round trip failed errno=%d\n", errno);
		return 1;
	}
	vmrpc_sock_get_stats(&st);
	printf("loopback_pair ok bytes=%ld udp_bytes=%d local_bytes=%llu host_rpcs=%llu "
	       "local_connects=%llu host_connects=%llu vcpus=%u\n",
	       echoed, udp, (unsigned long long)st.local_bytes, (unsigned long long)st.host_rpcs,
	       (unsigned long long)st.local_connects, (unsigned long long)st.host_connects,
	       rt_cpu_count());
	return 0;
}
