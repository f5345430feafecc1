/*
 * The VM's DNS resolver, for static glibc and musl programs: /etc/resolv.conf
 * (written by vmrpc.linux.LinuxVM) names LX_RESOLVER (127.0.0.53), port 53.
 *
 * The resolver is a guest-local UDP socket of the socket library bound there,
 * so a program's query to it is specialised in the guest like any guest-local
 * datagram (no host socket).  After each datagram the program sends, the
 * personality answers the queries queued on it: the name goes to the host's
 * resolver through the library's getaddrinfo, i.e. the sockets host module's
 * GETADDRINFO, so its policy and its name records apply exactly as for a bare
 * guest.  The query is the program's (untrusted) bytes: every length and label
 * is checked; a malformed query gets FORMERR, or nothing when it is too short
 * to carry an id.
 */
#include "linux.h"

#define DNS_PORT 53
#define LX_RESOLVER 0x7f000035u /* 127.0.0.53 */
#define MAX_MSG 512             /* a UDP DNS message without EDNS */
#define HDR 12
#define TYPE_A 1
#define TYPE_AAAA 28
#define CLASS_IN 1
#define RCODE_FORMERR 1
#define RCODE_SERVFAIL 2
#define RCODE_NXDOMAIN 3
#define RCODE_NOTIMP 4
#define TTL 60

static int resolver; /* library fd; 0: not yet, -1: could not be set up */

void lx_dns_init(void)
{
	struct sockaddr_in a;
	int s;

	if (resolver)
		return;
	resolver = -1;
	s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (s < 0)
		return;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(DNS_PORT);
	a.sin_addr.s_addr = htonl(LX_RESOLVER);
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(s);
		return;
	}
	resolver = s;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/*
 * Reads the question's name (uncompressed labels) into a dotted string.
 * Returns the offset just past it, or 0 if it is malformed.
 */
static size_t read_name(const uint8_t *q, size_t len, char *name, size_t cap)
{
	size_t at = HDR, out = 0;

	for (;;) {
		uint8_t label;

		if (at >= len)
			return 0;
		label = q[at++];
		if (!label)
			break;
		if (label > 63 || label > len - at || out + label + 2 > cap)
			return 0; /* compression pointers have no place in a question */
		if (out)
			name[out++] = '.';
		for (uint8_t i = 0; i < label; i++) {
			uint8_t c = q[at + i];
			if (c <= ' ' || c == '.' || c >= 0x7f)
				return 0; /* host names only */
			name[out++] = (char)c;
		}
		at += label;
	}
	if (!out)
		return 0; /* the root */
	name[out] = 0;
	return at;
}

/* Appends the addresses of `family` for name as answers; their count, or -EAI_*. */
static int add_answers(const char *name, int family, uint16_t type, uint8_t *r, size_t *len)
{
	struct addrinfo hints, *res, *ai;
	int count = 0, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(name, NULL, &hints, &res);
	if (rc != 0)
		return rc;
	for (ai = res; ai; ai = ai->ai_next) {
		size_t n = family == AF_INET ? 4 : 16;
		const void *addr =
			family == AF_INET ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
					  : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;

		if (ai->ai_family != family || *len + 12 + n > MAX_MSG)
			continue;
		put16(r + *len, 0xc000 | HDR); /* the question's name */
		put16(r + *len + 2, type);
		put16(r + *len + 4, CLASS_IN);
		put16(r + *len + 6, 0);
		put16(r + *len + 8, TTL);
		put16(r + *len + 10, (uint16_t)n);
		memcpy(r + *len + 12, addr, n);
		*len += 12 + n;
		count++;
	}
	freeaddrinfo(res);
	return count;
}

/* Builds the answer to query q in r; its length, or 0 to drop the query. */
static size_t answer(const uint8_t *q, size_t qlen, uint8_t *r)
{
	char name[256];
	size_t end, len;
	uint16_t type = 0, rcode = 0;
	int count = 0;

	if (qlen < HDR || (q[2] & 0x80))
		return 0; /* no id to answer, or itself an answer */
	end = get16(q + 4) == 1 && !(q[2] & 0x78) ? read_name(q, qlen, name, sizeof(name)) : 0;
	if (!end || end + 4 > qlen || get16(q + end + 2) != CLASS_IN) {
		rcode = RCODE_FORMERR;
		end = HDR;
	} else {
		type = get16(q + end);
		end += 4;
	}
	memcpy(r, q, end);
	len = end;
	if (!rcode && type != TYPE_A && type != TYPE_AAAA) {
		rcode = RCODE_NOTIMP;
	} else if (!rcode) {
		count = add_answers(name, type == TYPE_A ? AF_INET : AF_INET6, type, r, &len);
		if (count == EAI_NONAME) {
			/* No address of this family: NODATA if the name has others. */
			struct addrinfo hints, *res;

			memset(&hints, 0, sizeof(hints));
			hints.ai_socktype = SOCK_STREAM;
			count = getaddrinfo(name, NULL, &hints, &res);
			if (count == 0)
				freeaddrinfo(res);
			rcode = count == 0 ? 0 : count == EAI_NONAME ? RCODE_NXDOMAIN : RCODE_SERVFAIL;
			count = 0;
		} else if (count < 0) {
			rcode = RCODE_SERVFAIL;
			count = 0;
		}
	}
	r[2] = (uint8_t)(0x80 | (q[2] & 0x01)); /* QR, RD copied */
	r[3] = (uint8_t)(0x80 | rcode);         /* RA */
	put16(r + 4, end > HDR ? 1 : 0);
	put16(r + 6, (uint16_t)count);
	put16(r + 8, 0);
	put16(r + 10, 0);
	return len;
}

/*
 * A program's socket bound to the wildcard (musl binds its resolver socket so)
 * is named by the library as 0.0.0.0 / ::; the answer goes to its loopback name,
 * where the library finds it inside the guest, never to the host.
 */
static void loopback_if_any(struct sockaddr_storage *a)
{
	static const uint8_t any6[16];

	if (a->ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)a;
		if (in->sin_addr.s_addr == htonl(INADDR_ANY))
			in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	} else if (a->ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)a;
		if (!memcmp(&in6->sin6_addr, any6, sizeof(any6)))
			in6->sin6_addr = in6addr_loopback;
	}
}

void lx_dns_pump(void)
{
	static uint8_t q[MAX_MSG], r[MAX_MSG];

	if (resolver <= 0)
		return;
	for (;;) {
		struct sockaddr_storage from;
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(resolver, q, sizeof(q), MSG_DONTWAIT, (struct sockaddr *)&from,
				     &flen);
		size_t len;

		if (n < 0)
			return;
		len = answer(q, (size_t)n, r);
		if (len) {
			loopback_if_any(&from);
			sendto(resolver, r, len, MSG_DONTWAIT, (struct sockaddr *)&from, flen);
		}
	}
}
