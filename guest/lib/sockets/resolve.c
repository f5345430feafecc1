/*
 * Name resolution: getaddrinfo (numeric, or asked of the host) and freeaddrinfo.
 */
#include "internal.h"

static int parse_service(const char *service, int flags, uint16_t *port)
{
	char *end;
	unsigned long v;

	*port = 0;
	if (!service || !*service)
		return 0;
	v = strtoul(service, &end, 10);
	if (*end == '\0' && service[0] >= '0' && service[0] <= '9') {
		if (v > 0xffff)
			return EAI_SERVICE;
		*port = (uint16_t)v;
		return 0;
	}
	if (flags & AI_NUMERICSERV)
		return EAI_NONAME;
	if (!strcmp(service, "http"))
		*port = 80;
	else if (!strcmp(service, "https"))
		*port = 443;
	else if (!strcmp(service, "echo"))
		*port = 7;
	else
		return EAI_SERVICE;
	return 0;
}

/* Resolves a name through the host module; returns the count or an EAI_* code. */
static int resolve_host(const char *node, int family, int socktype, struct vmrpc_sock_addr *out)
{
	uint8_t *sc = cpu_scratch();
	size_t len = strlen(node), got = 0;
	struct vmrpc_sock_gai_req req;
	int32_t result;

	if (!sc)
		return EAI_MEMORY;
	if (len == 0 || len > VMRPC_SOCK_MAX_NAME)
		return EAI_NONAME;
	req.family = family == AF_INET ? VMRPC_SOCK_AF_INET : family == AF_INET6 ? VMRPC_SOCK_AF_INET6 : 0;
	req.type = (uint32_t)socktype;
	req.flags = 0;
	req.name_len = (uint32_t)len;
	memcpy(sc, &req, sizeof(req));
	memcpy(sc + sizeof(req), node, len);
	if (host_rpc(VMRPC_SOCK_FN_GETADDRINFO, sc, sizeof(req) + len, sc,
		     sizeof(struct vmrpc_sock_resp) + VMRPC_SOCK_MAX_ADDRS * sizeof(struct vmrpc_sock_addr), &got,
		     &result) < 0)
		return errno == ENETDOWN ? EAI_FAIL : EAI_SYSTEM;
	if (result < 0)
		return result >= -11 ? result : EAI_FAIL;
	if (result == 0 || result > (int32_t)VMRPC_SOCK_MAX_ADDRS ||
	    got != sizeof(struct vmrpc_sock_resp) + (size_t)result * sizeof(struct vmrpc_sock_addr))
		return EAI_FAIL;
	memcpy(out, sc + sizeof(struct vmrpc_sock_resp), (size_t)result * sizeof(struct vmrpc_sock_addr));
	return result;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	int family = hints ? hints->ai_family : AF_UNSPEC;
	int socktype = hints ? hints->ai_socktype : 0;
	int protocol = hints ? hints->ai_protocol : 0;
	int flags = hints ? hints->ai_flags : 0;
	struct vmrpc_sock_addr addrs[VMRPC_SOCK_MAX_ADDRS];
	struct addrinfo *head = NULL, **tail = &head;
	uint8_t raw[16];
	uint16_t port;
	int n = 0, err;

	if (!res)
		return EAI_FAIL;
	*res = NULL;
	if (!node && !service)
		return EAI_NONAME;
	if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
		return EAI_FAMILY;
	if (socktype != 0 && socktype != SOCK_STREAM && socktype != SOCK_DGRAM)
		return EAI_SOCKTYPE;
	err = parse_service(service, flags, &port);
	if (err)
		return err;
	memset(addrs, 0, sizeof(addrs));
	if (!node) {
		if (family != AF_INET6) {
			if (!(flags & AI_PASSIVE))
				addr_loopback(AF_INET, &addrs[n]);
			addrs[n++].family = VMRPC_SOCK_AF_INET;
		}
		if (family != AF_INET) {
			if (!(flags & AI_PASSIVE))
				addr_loopback(AF_INET6, &addrs[n]);
			addrs[n++].family = VMRPC_SOCK_AF_INET6;
		}
	} else if (inet_pton(AF_INET, node, raw) == 1) {
		if (family == AF_INET6)
			return EAI_NONAME;
		addrs[0].family = VMRPC_SOCK_AF_INET;
		memcpy(addrs[0].addr, raw, 4);
		n = 1;
	} else if (inet_pton(AF_INET6, node, raw) == 1) {
		if (family == AF_INET)
			return EAI_NONAME;
		addrs[0].family = VMRPC_SOCK_AF_INET6;
		memcpy(addrs[0].addr, raw, 16);
		n = 1;
	} else if (flags & AI_NUMERICHOST) {
		return EAI_NONAME;
	} else {
		n = resolve_host(node, family, socktype, addrs);
		if (n < 0)
			return n;
	}
	for (int i = 0; i < n; i++) {
		for (int t = SOCK_STREAM; t <= SOCK_DGRAM; t++) {
			struct {
				struct addrinfo ai;
				struct sockaddr_storage ss;
			} *e;
			socklen_t len = sizeof(struct sockaddr_storage);

			if (socktype && t != socktype)
				continue;
			e = calloc(1, sizeof(*e));
			if (!e) {
				freeaddrinfo(head);
				return EAI_MEMORY;
			}
			addrs[i].port = port;
			addr_to_user(&addrs[i], (struct sockaddr *)&e->ss, &len);
			e->ai.ai_family = addrs[i].family == VMRPC_SOCK_AF_INET ? AF_INET : AF_INET6;
			e->ai.ai_socktype = t;
			e->ai.ai_protocol = protocol ? protocol : t == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
			e->ai.ai_addrlen = len;
			e->ai.ai_addr = (struct sockaddr *)&e->ss;
			if ((flags & AI_CANONNAME) && !head && node) {
				e->ai.ai_canonname = malloc(strlen(node) + 1);
				if (e->ai.ai_canonname)
					strcpy(e->ai.ai_canonname, node);
			}
			*tail = &e->ai;
			tail = &e->ai.ai_next;
		}
	}
	*res = head;
	return head ? 0 : EAI_NONAME;
}

void freeaddrinfo(struct addrinfo *res)
{
	while (res) {
		struct addrinfo *next = res->ai_next;

		free(res->ai_canonname);
		free(res); /* the address lives in the same allocation */
		res = next;
	}
}
