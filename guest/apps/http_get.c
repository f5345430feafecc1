/*
 * A tiny HTTP/1.1 client over the socket API: arg[1] host, arg[2] port,
 * arg[3] path.  Resolves with getaddrinfo, connects, sends a GET, reads the
 * answer to EOF and prints the status line and the body length.  Exit code 0
 * on status 200, 1 on another status, 2 when the connection failed (the line
 * "http_get: <step> failed errno=N" says why).
 */
#include <vmrpc.h>

#define MAX_RESPONSE (1u << 20)

static int failed(const char *step, int err)
{
	printf("http_get: %s failed errno=%d %s\n", step, err, strerror(err));
	return 2;
}

int main(int argc, char **argv)
{
	const char *host = argc > 1 ? argv[1] : "127.0.0.1";
	const char *port = argc > 2 ? argv[2] : "80";
	const char *path = argc > 3 ? argv[3] : "/";
	struct addrinfo hints, *res, *ai;
	char *buf, *eol, *body;
	size_t total = 0;
	char req[512];
	int fd = -1, err = 0, rc, len;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		printf("http_get: getaddrinfo(%s) failed: %s\n", host, gai_strerror(rc));
		return 2;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return failed("connect", err);
	len = snprintf(req, sizeof(req),
		       "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: vmrpc-guest\r\n"
		       "Connection: close\r\n\r\n",
		       path, host, port);
	if (send(fd, req, (size_t)len, 0) != len)
		return failed("send", errno);
	buf = malloc(MAX_RESPONSE + 1);
	if (!buf)
		return failed("malloc", ENOMEM);
	for (;;) {
		ssize_t n = recv(fd, buf + total, MAX_RESPONSE - total, 0);

		if (n < 0)
			return failed("recv", errno);
		if (n == 0 || total + (size_t)n >= MAX_RESPONSE) {
			total += (size_t)n;
			break;
		}
		total += (size_t)n;
	}
	close(fd);
	buf[total] = '\0';
	eol = strstr(buf, "\r\n");
	body = strstr(buf, "\r\n\r\n");
	if (!eol || !body) {
		printf("http_get: malformed response (%zu bytes)\n", total);
		return 1;
	}
	*eol = '\0';
	body += 4;
	printf("http_get: status: %s\n", buf);
	printf("http_get: body_bytes=%zu\n", total - (size_t)(body - buf));
	return strncmp(buf, "HTTP/1.1 200", 12) && strncmp(buf, "HTTP/1.0 200", 12) ? 1 : 0;
}
