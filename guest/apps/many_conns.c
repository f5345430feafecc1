/*
 * Many concurrent connections: arg[1] host, arg[2] port, arg[3] connections
 * (default 200), arg[4] bytes per connection (default 256).  Opens them all,
 * sends a distinct message on each, then uses poll() to collect every echo
 * and verifies it.
 */
#include <vmrpc.h>

struct conn {
	int fd;
	size_t got;
	uint8_t *buf;
};

static uint8_t pattern(int c, size_t i)
{
	return (uint8_t)(c * 17 + i * 3 + 5);
}

int main(int argc, char **argv)
{
	const char *host = argc > 1 ? argv[1] : "127.0.0.1";
	const char *port = argc > 2 ? argv[2] : "7";
	int n = argc > 3 ? atoi(argv[3]) : 200;
	size_t size = argc > 4 ? (size_t)atoi(argv[4]) : 256;
	struct addrinfo hints, *res;
	struct conn *conns;
	struct pollfd *pfd;
	uint8_t *msg;
	int open_conns = 0, done = 0, polls = 0, rc;

	if (n <= 0 || size == 0 || size > 65536)
		return 2;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		printf("many_conns: getaddrinfo failed: %s\n", gai_strerror(rc));
		return 2;
	}
	conns = calloc((size_t)n, sizeof(*conns));
	pfd = calloc((size_t)n, sizeof(*pfd));
	msg = malloc(size);
	if (!conns || !pfd || !msg)
		return 2;
	for (int c = 0; c < n; c++) {
		conns[c].fd = socket(res->ai_family, SOCK_STREAM, 0);
		if (conns[c].fd < 0 || connect(conns[c].fd, res->ai_addr, res->ai_addrlen) < 0) {
			printf("many_conns: connection %d failed errno=%d %s\n", c, errno, strerror(errno));
			return 2;
		}
		conns[c].buf = malloc(size);
		if (!conns[c].buf)
			return 2;
		open_conns++;
	}
	freeaddrinfo(res);
	printf("many_conns: %d connections open\n", open_conns);
	for (int c = 0; c < n; c++) {
		for (size_t i = 0; i < size; i++)
			msg[i] = pattern(c, i);
		if (send(conns[c].fd, msg, size, 0) != (ssize_t)size) {
			printf("many_conns: send %d failed errno=%d\n", c, errno);
			return 2;
		}
	}
	while (done < n) {
		int k = 0, ready;

		for (int c = 0; c < n; c++) {
			if (conns[c].got < size) {
				pfd[k].fd = conns[c].fd;
				pfd[k].events = POLLIN;
				k++;
			}
		}
		ready = poll(pfd, (nfds_t)k, 10000);
		polls++;
		if (ready <= 0) {
			printf("many_conns: poll returned %d errno=%d with %d left\n", ready, errno, n - done);
			return 2;
		}
		for (int j = 0, c = 0; j < k; j++, c++) {
			while (conns[c].got >= size)
				c++;
			if (!(pfd[j].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			{
				ssize_t r = recv(conns[c].fd, conns[c].buf + conns[c].got,
						 size - conns[c].got, MSG_DONTWAIT);

				if (r <= 0) {
					printf("many_conns: recv %d returned %ld errno=%d\n", c, (long)r, errno);
					return 2;
				}
				conns[c].got += (size_t)r;
				if (conns[c].got == size) {
					for (size_t i = 0; i < size; i++) {
						if (conns[c].buf[i] != pattern(c, i)) {
							printf("many_conns: connection %d: bad echo\n", c);
							return 1;
						}
					}
					close(conns[c].fd);
					done++;
				}
			}
		}
	}
	printf("many_conns ok conns=%d bytes=%zu polls=%d\n", n, (size_t)n * size, polls);
	return 0;
}
