/* Address text conversion and error strings for the socket API (vmrpc/socket.h). */
#include <vmrpc.h>

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Strict dotted quad: four decimal parts 0..255, no leading zeros beyond "0". */
static int pton4(const char *s, uint8_t out[4])
{
	for (int part = 0; part < 4; part++) {
		unsigned v = 0;
		int digits = 0;

		if (part && *s++ != '.')
			return 0;
		while (*s >= '0' && *s <= '9') {
			if (digits && v == 0)
				return 0;
			v = v * 10 + (unsigned)(*s++ - '0');
			if (++digits > 3 || v > 255)
				return 0;
		}
		if (!digits)
			return 0;
		out[part] = (uint8_t)v;
	}
	return *s == '\0';
}

static int pton6(const char *s, uint8_t out[16])
{
	uint16_t words[8];
	int n = 0, gap = -1;

	if (s[0] == ':') {
		if (s[1] != ':')
			return 0;
		s += 2;
		gap = 0;
		if (!*s)
			goto done;
	}
	for (;;) {
		const char *start = s;
		unsigned v = 0;
		int digits = 0;

		if (n == 8)
			return 0;
		while (hexval(*s) >= 0) {
			v = (v << 4) | (unsigned)hexval(*s++);
			if (++digits > 4)
				return 0;
		}
		if (*s == '.' && n <= 6) {
			uint8_t v4[4];

			if (!pton4(start, v4))
				return 0;
			words[n++] = (uint16_t)(v4[0] << 8 | v4[1]);
			words[n++] = (uint16_t)(v4[2] << 8 | v4[3]);
			break;
		}
		if (!digits)
			return 0;
		words[n++] = (uint16_t)v;
		if (*s == '\0')
			break;
		if (*s++ != ':')
			return 0;
		if (*s == ':') {
			if (gap >= 0)
				return 0;
			gap = n;
			s++;
			if (*s == '\0')
				break;
		}
	}
done:
	if (gap < 0 ? n != 8 : n > 7)
		return 0;
	memset(out, 0, 16);
	for (int i = 0, j = 0; i < 8; i++) {
		uint16_t w = 0;

		if (gap >= 0 && i >= gap && i < gap + (8 - n))
			w = 0;
		else
			w = words[j++];
		out[2 * i] = (uint8_t)(w >> 8);
		out[2 * i + 1] = (uint8_t)w;
	}
	return 1;
}

int inet_pton(int af, const char *src, void *dst)
{
	if (!src || !dst) {
		errno = EFAULT;
		return -1;
	}
	if (af == AF_INET)
		return pton4(src, dst);
	if (af == AF_INET6)
		return pton6(src, dst);
	errno = EAFNOSUPPORT;
	return -1;
}

const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)
{
	const uint8_t *a = src;
	char buf[INET6_ADDRSTRLEN];
	int len = 0;

	if (af == AF_INET) {
		len = snprintf(buf, sizeof(buf), "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
	} else if (af == AF_INET6) {
		uint16_t w[8];
		int best = -1, best_len = 0;

		for (int i = 0; i < 8; i++)
			w[i] = (uint16_t)(a[2 * i] << 8 | a[2 * i + 1]);
		for (int i = 0; i < 8;) {
			int j = i;

			while (j < 8 && w[j] == 0)
				j++;
			if (j - i > best_len && j - i >= 2) {
				best = i;
				best_len = j - i;
			}
			i = j > i ? j : i + 1;
		}
		if (best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff))) {
			/* IPv4-compatible or -mapped: ::a.b.c.d, ::ffff:a.b.c.d */
			len = snprintf(buf, sizeof(buf), "::%s%u.%u.%u.%u", best_len == 5 ? "ffff:" : "",
				       a[12], a[13], a[14], a[15]);
		} else {
			for (int i = 0; i < 8; i++) {
				if (i == best) {
					len += snprintf(buf + len, sizeof(buf) - (size_t)len, "::");
					i += best_len - 1;
					continue;
				}
				len += snprintf(buf + len, sizeof(buf) - (size_t)len, "%s%x",
						(i && i != best + best_len) ? ":" : "", w[i]);
			}
		}
	} else {
		errno = EAFNOSUPPORT;
		return NULL;
	}
	if (!dst || (socklen_t)len + 1 > size) {
		errno = ENOSPC;
		return NULL;
	}
	memcpy(dst, buf, (size_t)len + 1);
	return dst;
}

static const char *describe_errno(int err)
{
	switch (err) {
	case 0: return "success";
	case EPERM: return "EPERM (operation not permitted)";
	case ENOENT: return "ENOENT (no such entry)";
	case EINTR: return "EINTR (interrupted)";
	case EIO: return "EIO (input/output error)";
	case EBADF: return "EBADF (bad file descriptor)";
	case EAGAIN: return "EAGAIN (try again)";
	case ENOMEM: return "ENOMEM (out of memory)";
	case EACCES: return "EACCES (permission denied)";
	case EFAULT: return "EFAULT (bad address)";
	case EINVAL: return "EINVAL (invalid argument)";
	case EMFILE: return "EMFILE (too many open sockets)";
	case ENOSPC: return "ENOSPC (no space)";
	case EPIPE: return "EPIPE (broken pipe)";
	case ENOSYS: return "ENOSYS (not implemented)";
	case EPROTO: return "EPROTO (protocol error; forced TLS failed)";
	case ENOTSOCK: return "ENOTSOCK (not a socket)";
	case EDESTADDRREQ: return "EDESTADDRREQ (destination address required)";
	case EMSGSIZE: return "EMSGSIZE (message too long)";
	case ENOPROTOOPT: return "ENOPROTOOPT (protocol not available)";
	case EPROTONOSUPPORT: return "EPROTONOSUPPORT (protocol not supported)";
	case ESOCKTNOSUPPORT: return "ESOCKTNOSUPPORT (socket type not supported)";
	case EOPNOTSUPP: return "EOPNOTSUPP (operation not supported)";
	case EAFNOSUPPORT: return "EAFNOSUPPORT (address family not supported)";
	case EADDRINUSE: return "EADDRINUSE (address in use)";
	case EADDRNOTAVAIL: return "EADDRNOTAVAIL (address not available)";
	case ENETDOWN: return "ENETDOWN (no sockets host module)";
	case ENETUNREACH: return "ENETUNREACH (network unreachable)";
	case ECONNABORTED: return "ECONNABORTED (connection aborted)";
	case ECONNRESET: return "ECONNRESET (connection reset by peer)";
	case ENOBUFS: return "ENOBUFS (no buffer space)";
	case EISCONN: return "EISCONN (already connected)";
	case ENOTCONN: return "ENOTCONN (not connected)";
	case ESHUTDOWN: return "ESHUTDOWN (host is shutting down)";
	case ETIMEDOUT: return "ETIMEDOUT (timed out)";
	case ECONNREFUSED: return "ECONNREFUSED (connection refused)";
	case EHOSTUNREACH: return "EHOSTUNREACH (host unreachable)";
	case EINPROGRESS: return "EINPROGRESS (in progress)";
	default: return "unknown error";
	}
}

char *strerror(int err)
{
	/* C's strerror returns char *; the text is never written to. */
	return (char *)describe_errno(err);
}

const char *gai_strerror(int err)
{
	switch (err) {
	case 0: return "success";
	case EAI_BADFLAGS: return "EAI_BADFLAGS (bad flags)";
	case EAI_NONAME: return "EAI_NONAME (name unknown)";
	case EAI_AGAIN: return "EAI_AGAIN (temporary failure)";
	case EAI_FAIL: return "EAI_FAIL (resolution failed)";
	case EAI_FAMILY: return "EAI_FAMILY (family not supported)";
	case EAI_SOCKTYPE: return "EAI_SOCKTYPE (socket type not supported)";
	case EAI_SERVICE: return "EAI_SERVICE (service unknown)";
	case EAI_MEMORY: return "EAI_MEMORY (out of memory)";
	case EAI_SYSTEM: return "EAI_SYSTEM (system error)";
	default: return "unknown resolver error";
	}
}
