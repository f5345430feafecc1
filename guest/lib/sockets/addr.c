/*
 * Addresses: sockaddr <-> struct vmrpc_sock_addr, and comparisons.
 */
#include "internal.h"

const struct in6_addr in6addr_any = IN6ADDR_ANY_INIT;
const struct in6_addr in6addr_loopback = IN6ADDR_LOOPBACK_INIT;

/* ---- addresses ---------------------------------------------------------------------- */

int addr_from_user(const struct sockaddr *sa, socklen_t len, int family,
		   struct vmrpc_sock_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (!sa)
		return fail(EFAULT);
	if (len < sizeof(sa_family_t))
		return fail(EINVAL);
	if (sa->sa_family != family)
		return fail(EAFNOSUPPORT);
	if (family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		if (len < sizeof(*in))
			return fail(EINVAL);
		out->family = VMRPC_SOCK_AF_INET;
		out->port = ntohs(in->sin_port);
		memcpy(out->addr, &in->sin_addr, 4);
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		if (len < sizeof(*in6))
			return fail(EINVAL);
		out->family = VMRPC_SOCK_AF_INET6;
		out->port = ntohs(in6->sin6_port);
		out->flowinfo = in6->sin6_flowinfo & 0xfffff;
		out->scope_id = in6->sin6_scope_id;
		memcpy(out->addr, &in6->sin6_addr, 16);
	}
	return 0;
}

/* Stores a as a sockaddr, truncated to *len like the kernel; *len = full size. */
void addr_to_user(const struct vmrpc_sock_addr *a, struct sockaddr *sa, socklen_t *len)
{
	struct sockaddr_storage ss;
	socklen_t n;

	if (!sa || !len)
		return;
	memset(&ss, 0, sizeof(ss));
	if (a->family == VMRPC_SOCK_AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(a->port);
		in6->sin6_flowinfo = a->flowinfo;
		in6->sin6_scope_id = a->scope_id;
		memcpy(&in6->sin6_addr, a->addr, 16);
		n = sizeof(*in6);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(a->port);
		memcpy(&in->sin_addr, a->addr, 4);
		n = sizeof(*in);
	}
	memcpy(sa, &ss, *len < n ? *len : n);
	*len = n;
}

int addr_is_any(const struct vmrpc_sock_addr *a)
{
	for (int i = 0; i < (a->family == VMRPC_SOCK_AF_INET ? 4 : 16); i++)
		if (a->addr[i])
			return 0;
	return 1;
}

int addr_is_loopback(const struct vmrpc_sock_addr *a)
{
	if (a->family == VMRPC_SOCK_AF_INET)
		return a->addr[0] == 127;
	for (int i = 0; i < 15; i++)
		if (a->addr[i])
			return 0;
	return a->addr[15] == 1;
}

int addr_same_ip(const struct vmrpc_sock_addr *a, const struct vmrpc_sock_addr *b)
{
	return a->family == b->family && !memcmp(a->addr, b->addr, 16);
}

void addr_loopback(int family, struct vmrpc_sock_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (family == AF_INET) {
		a->family = VMRPC_SOCK_AF_INET;
		a->addr[0] = 127;
		a->addr[3] = 1;
	} else {
		a->family = VMRPC_SOCK_AF_INET6;
		a->addr[15] = 1;
	}
}
