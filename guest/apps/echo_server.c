/*
 * A TCP echo server: arg[1] port, arg[2] connections to serve (default 1),
 * arg[3] "6" for IPv6.  Listens on loopback, accepts the connections one after
 * the other and echoes each until EOF.  Whether host clients can reach it is
 * the host policy's decision (an Expose rule).
 */
#include <vmrpc.h>

int main(int argc, char **argv)
{
	int port = argc > 1 ? atoi(argv[1]) : 7;
	int conns = argc > 2 ? atoi(argv[2]) : 1;
	int v6 = argc > 3 && !strcmp(argv[3], "6");
	struct sockaddr_storage ss;
	socklen_t len;
	static char buf[16384];
	int one = 1, lfd;

	memset(&ss, 0, sizeof(ss));
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		a->sin6_addr = in6addr_loopback;
		len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*a);
	}
	lfd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&ss, len) < 0 || listen(lfd, 16) < 0) {
		printf("echo_server: setup failed errno=%d %s\n", errno, strerror(errno));
		return 2;
	}
	printf("echo_server: listening port=%d\n", port);
	for (int i = 0; i < conns; i++) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		char name[INET6_ADDRSTRLEN];
		size_t total = 0;
		int fd = accept(lfd, (struct sockaddr *)&peer, &plen);

		if (fd < 0) {
			printf("echo_server: accept failed errno=%d %s\n", errno, strerror(errno));
			return 2;
		}
		inet_ntop(peer.ss_family,
			  peer.ss_family == AF_INET6 ?
				  (const void *)&((struct sockaddr_in6 *)&peer)->sin6_addr :
				  (const void *)&((struct sockaddr_in *)&peer)->sin_addr,
			  name, sizeof(name));
		printf("echo_server: accepted %d from %s\n", i, name);
		for (;;) {
			ssize_t n = recv(fd, buf, sizeof(buf), 0);

			if (n < 0) {
				printf("echo_server: recv failed errno=%d %s\n", errno, strerror(errno));
				break;
			}
			if (n == 0)
				break;
			if (send(fd, buf, (size_t)n, 0) != n) {
				printf("echo_server: send failed errno=%d %s\n", errno, strerror(errno));
				break;
			}
			total += (size_t)n;
		}
		close(fd);
		printf("echo_server: connection %d echoed bytes=%zu\n", i, total);
	}
	close(lfd);
	printf("echo_server: done\n");
	return 0;
}
