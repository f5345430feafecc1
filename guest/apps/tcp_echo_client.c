/*
 * TCP echo client: arg[1] host, arg[2] port, arg[3] payload bytes (default
 * 4096), arg[4] rounds (default 1), arg[5] SO_SNDTIMEO in ms set before the
 * connect (default none).  Sends a pattern, reads the echo back and verifies it.  Prints "tcp_echo_client ok bytes=N" or "<step> failed errno=N".
 */
#include <vmrpc.h>

static int failed(const char *step, int err)
{
	printf("tcp_echo_client: %s failed errno=%d %s\n", step, err, strerror(err));
	return 2;
}

int main(int argc, char **argv)
{
	const char *host = argc > 1 ? argv[1] : "127.0.0.1";
	const char *port = argc > 2 ? argv[2] : "7";
	long size = argc > 3 ? strtol(argv[3], NULL, 0) : 4096;
	long rounds = argc > 4 ? strtol(argv[4], NULL, 0) : 1;
	long sndtimeo_ms = argc > 5 ? strtol(argv[5], NULL, 0) : 0;
	struct addrinfo hints, *res;
	uint8_t *out, *in;
	size_t total = 0;
	int fd, rc;

	if (size <= 0 || rounds <= 0)
		return 2;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		printf("tcp_echo_client: getaddrinfo failed: %s\n", gai_strerror(rc));
		return 2;
	}
	fd = socket(res->ai_family, SOCK_STREAM, 0);
	if (fd < 0)
		return failed("socket", errno);
	if (sndtimeo_ms > 0) {
		struct timeval tv = { sndtimeo_ms / 1000, (sndtimeo_ms % 1000) * 1000 };

		if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
			return failed("setsockopt", errno);
	}
	if (connect(fd, res->ai_addr, res->ai_addrlen) < 0)
		return failed("connect", errno);
	freeaddrinfo(res);
	out = malloc((size_t)size);
	in = malloc((size_t)size);
	if (!out || !in)
		return failed("malloc", ENOMEM);
	for (long r = 0; r < rounds; r++) {
		size_t got = 0;

		for (long i = 0; i < size; i++)
			out[i] = (uint8_t)(i * 7 + r * 13 + 1);
		if (send(fd, out, (size_t)size, 0) != size)
			return failed("send", errno);
		while (got < (size_t)size) {
			ssize_t n = recv(fd, in + got, (size_t)size - got, 0);

			if (n < 0)
				return failed("recv", errno);
			if (n == 0) {
				printf("tcp_echo_client: early EOF after %zu bytes\n", got);
				return 1;
			}
			got += (size_t)n;
		}
		if (memcmp(in, out, (size_t)size)) {
			printf("tcp_echo_client: echo mismatch in round %ld\n", r);
			return 1;
		}
		total += got;
	}
	if (shutdown(fd, SHUT_WR) < 0)
		return failed("shutdown", errno);
	close(fd);
	printf("tcp_echo_client ok bytes=%zu\n", total);
	return 0;
}
