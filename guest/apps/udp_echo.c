/*
 * UDP echo client: arg[1] host, arg[2] port, arg[3] datagrams (default 10),
 * arg[4] bytes each (default 512).  Each datagram must come back unchanged.
 */
#include <vmrpc.h>

int main(int argc, char **argv)
{
	const char *host = argc > 1 ? argv[1] : "127.0.0.1";
	const char *port = argc > 2 ? argv[2] : "7";
	long count = argc > 3 ? strtol(argv[3], NULL, 0) : 10;
	long size = argc > 4 ? strtol(argv[4], NULL, 0) : 512;
	struct addrinfo hints, *res;
	struct timeval tv = { 5, 0 };
	static uint8_t out[65536], in[65536];
	int fd, rc;

	if (size <= 0 || size > 60000)
		return 2;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_DGRAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		printf("udp_echo: getaddrinfo failed: %s\n", gai_strerror(rc));
		return 2;
	}
	fd = socket(res->ai_family, SOCK_DGRAM, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		printf("udp_echo: socket failed errno=%d\n", errno);
		return 2;
	}
	for (long i = 0; i < count; i++) {
		struct sockaddr_storage from;
		socklen_t flen = sizeof(from);
		ssize_t n;

		for (long k = 0; k < size; k++)
			out[k] = (uint8_t)(k + i * 3);
		if (sendto(fd, out, (size_t)size, 0, res->ai_addr, res->ai_addrlen) != size) {
			printf("udp_echo: sendto failed errno=%d %s\n", errno, strerror(errno));
			return 2;
		}
		n = recvfrom(fd, in, sizeof(in), 0, (struct sockaddr *)&from, &flen);
		if (n < 0) {
			printf("udp_echo: recvfrom failed errno=%d %s\n", errno, strerror(errno));
			return 2;
		}
		if (n != size || memcmp(in, out, (size_t)size)) {
			printf("udp_echo: datagram %ld came back wrong (%ld bytes)\n", i, (long)n);
			return 1;
		}
		if (from.ss_family != res->ai_family ||
		    (from.ss_family == AF_INET &&
		     ((struct sockaddr_in *)&from)->sin_port != ((struct sockaddr_in *)res->ai_addr)->sin_port)) {
			printf("udp_echo: reply from an unexpected address\n");
			return 1;
		}
	}
	freeaddrinfo(res);
	close(fd);
	printf("udp_echo ok datagrams=%ld bytes=%ld\n", count, count * size);
	return 0;
}
