/*
 * Wire format of the "sockets" host module (socket outsourcing), version 1.0.
 *
 * This header is the specification; python/vmrpc/sockets/proto.py mirrors it
 * and tests/test_sockets.py compiles a probe of this header and compares every
 * constant and size with the Python side.
 *
 * Transport: VM RPC (vmrpc/abi.h).  The guest binds VMRPC_SOCK_MODULE_NAME with
 * VMRPC_VERSION(VMRPC_SOCK_MODULE_MAJOR, VMRPC_SOCK_MODULE_MINOR) and calls the
 * numbered functions below.  Every request starts with a fixed little-endian
 * struct, optionally followed by bytes (data, an option value, a host name, an
 * array).  Every response starts with struct vmrpc_sock_resp (8 bytes) or
 * struct vmrpc_sock_addr_resp (36 bytes), optionally followed by bytes.
 *
 * Results: result >= 0 is the function's value; result < 0 is a negated Linux
 * errno (-ECONNREFUSED, -EAGAIN, ...), except GETADDRINFO whose negative
 * results are Linux EAI_* codes (already negative).  A request the host cannot
 * parse gets -EINVAL; a descriptor the host does not know gets -EBADF.
 *
 * Descriptors: host handles are small positive integers, one table per VM
 * (per SocketOutsourcing instance).  They are not the guest's file
 * descriptors: the guest library maps its own descriptors to host handles
 * only once a socket is specialised to the host (see vmrpc/socket.h).
 *
 * Blocking: requests that can wait carry timeout_ms: -1 waits without limit,
 * 0 never waits (the answer is -EAGAIN), > 0 waits at most that long and then
 * answers -EAGAIN.  A waiting request occupies only its own vCPU.
 *
 * Addresses: struct vmrpc_sock_addr, port in host byte order, the address bytes in
 * network order (IPv4 in the first 4 bytes).
 */
#ifndef VMRPC_SOCKET_PROTO_H
#define VMRPC_SOCKET_PROTO_H

#include <stdint.h>

#define VMRPC_SOCK_MODULE_NAME "sockets"
#define VMRPC_SOCK_MODULE_MAJOR 1u
#define VMRPC_SOCK_MODULE_MINOR 0u

/* ---- functions -------------------------------------------------------------- */

/* req vmrpc_sock_socket_req; resp vmrpc_sock_resp, result = new handle.  Creates only
 * the host table entry: the host OS socket is created by CONNECT, SENDTO,
 * LISTEN or BIND once the policy allowed it. */
#define VMRPC_SOCK_FN_SOCKET 0u
/* req vmrpc_sock_listen_req (UDP); resp vmrpc_sock_addr_resp: result = handle of a new
 * host socket exposed at addr, 0 when the policy does not expose it (the
 * socket stays guest-local), or -errno when the policy denies it. */
#define VMRPC_SOCK_FN_BIND 1u
/* req vmrpc_sock_listen_req (TCP); resp as BIND: a host listener at addr whose
 * connections ACCEPT hands to the guest. */
#define VMRPC_SOCK_FN_LISTEN 2u
/* req vmrpc_sock_wait_req; resp vmrpc_sock_addr_resp, result = new handle, addr = peer */
#define VMRPC_SOCK_FN_ACCEPT 3u
/* req vmrpc_sock_connect_req; resp vmrpc_sock_addr_resp, addr = local address */
#define VMRPC_SOCK_FN_CONNECT 4u
/* req vmrpc_sock_handle_req (arg = SHUT_RD/WR/RDWR); resp vmrpc_sock_resp */
#define VMRPC_SOCK_FN_SHUTDOWN 5u
/* req vmrpc_sock_handle_req; resp vmrpc_sock_resp */
#define VMRPC_SOCK_FN_CLOSE 6u
/* req vmrpc_sock_sockopt_req + len value bytes; resp vmrpc_sock_resp */
#define VMRPC_SOCK_FN_SETSOCKOPT 7u
/* req vmrpc_sock_sockopt_req (len = capacity); resp vmrpc_sock_resp (aux = len) + value */
#define VMRPC_SOCK_FN_GETSOCKOPT 8u
/* req vmrpc_sock_handle_req; resp vmrpc_sock_addr_resp */
#define VMRPC_SOCK_FN_GETSOCKNAME 9u
#define VMRPC_SOCK_FN_GETPEERNAME 10u
/* req vmrpc_sock_poll_req + nfds * vmrpc_sock_pollfd; resp vmrpc_sock_resp (result = ready
 * count, aux = nfds) + nfds * vmrpc_sock_pollfd with revents filled in */
#define VMRPC_SOCK_FN_POLL 11u
/* req vmrpc_sock_gai_req + name bytes (no NUL); resp vmrpc_sock_resp (result = count or
 * EAI_*, aux = count) + count * vmrpc_sock_addr */
#define VMRPC_SOCK_FN_GETADDRINFO 12u
/* req vmrpc_sock_wait_req + data; resp vmrpc_sock_resp, result = bytes sent */
#define VMRPC_SOCK_FN_SEND 13u
/* req vmrpc_sock_wait_req (arg = max bytes); resp vmrpc_sock_resp + data */
#define VMRPC_SOCK_FN_RECV 14u
/* req vmrpc_sock_sendto_req + data; resp vmrpc_sock_resp */
#define VMRPC_SOCK_FN_SENDTO 15u
/* req vmrpc_sock_wait_req (arg = max bytes); resp vmrpc_sock_addr_resp + data */
#define VMRPC_SOCK_FN_RECVFROM 16u
/*
 * Zero-copy data plane of a connected TCP socket: the host moves bytes straight
 * between the socket and the guest buffer [gpa, gpa + len) (in guest RAM; the
 * guest's own memory, identity-mapped, so a pointer is its address).  One
 * non-blocking attempt, never a wait: result = bytes moved (RECV_BUF: 0 at
 * EOF), -EAGAIN if nothing could be moved now, -EOPNOTSUPP if the host cannot do
 * it for this socket (TLS, no native data plane): use SEND / RECV then.
 * req vmrpc_sock_buf_req; resp vmrpc_sock_resp
 */
#define VMRPC_SOCK_FN_SEND_BUF 17u
#define VMRPC_SOCK_FN_RECV_BUF 18u
#define VMRPC_SOCK_FN_COUNT 19u

/* ---- limits ----------------------------------------------------------------- */

#define VMRPC_SOCK_MAX_POLL 1024u       /* descriptors per POLL request */
#define VMRPC_SOCK_MAX_ADDRS 16u        /* addresses per GETADDRINFO answer */
#define VMRPC_SOCK_MAX_NAME 253u        /* bytes of a host name */
#define VMRPC_SOCK_MAX_OPTLEN 64u       /* bytes of a socket option value */
#define VMRPC_SOCK_MAX_BACKLOG 4096u
#define VMRPC_SOCK_MAX_BUF (1u << 20) /* bytes per SEND_BUF / RECV_BUF */

/* ---- flags (vmrpc_sock_wait_req.flags) ---------------------------------------- */

#define VMRPC_SOCK_F_PEEK 1u    /* RECV/RECVFROM: leave the data queued (MSG_PEEK) */
#define VMRPC_SOCK_F_WAITALL 2u /* RECV: wait for arg bytes, EOF or error (MSG_WAITALL) */
#define VMRPC_SOCK_F_ALL (VMRPC_SOCK_F_PEEK | VMRPC_SOCK_F_WAITALL)

/* Address families and socket types on the wire: the Linux values. */
#define VMRPC_SOCK_AF_INET 2u
#define VMRPC_SOCK_AF_INET6 10u
#define VMRPC_SOCK_SOCK_STREAM 1u
#define VMRPC_SOCK_SOCK_DGRAM 2u

/* ---- structures ------------------------------------------------------------ */

struct vmrpc_sock_addr {
	uint16_t family;   /* VMRPC_SOCK_AF_INET or VMRPC_SOCK_AF_INET6 */
	uint16_t port;     /* host byte order */
	uint32_t flowinfo; /* IPv6 only */
	uint32_t scope_id; /* IPv6 only */
	uint8_t addr[16];  /* network order; IPv4 in addr[0..3], the rest zero */
};

struct vmrpc_sock_resp {
	int32_t result;
	uint32_t aux; /* per function: a length or a count, else 0 */
};

struct vmrpc_sock_addr_resp {
	int32_t result;
	uint32_t aux;
	struct vmrpc_sock_addr addr;
};

struct vmrpc_sock_socket_req {
	uint32_t family;   /* VMRPC_SOCK_AF_* */
	uint32_t type;     /* VMRPC_SOCK_SOCK_* */
	uint32_t protocol; /* 0, IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	uint32_t _pad;
};

struct vmrpc_sock_listen_req {
	uint32_t family;
	uint32_t type;
	uint32_t backlog;
	uint32_t _pad;
	struct vmrpc_sock_addr addr; /* the guest's bound address */
};

struct vmrpc_sock_handle_req {
	uint32_t handle;
	uint32_t arg;
};

struct vmrpc_sock_wait_req {
	uint32_t handle;
	uint32_t flags;     /* VMRPC_SOCK_F_* */
	int32_t timeout_ms; /* -1: no limit, 0: never wait */
	uint32_t arg;       /* RECV/RECVFROM: maximum bytes; else 0 */
};

struct vmrpc_sock_connect_req {
	uint32_t handle;
	int32_t timeout_ms;
	struct vmrpc_sock_addr addr;
};

struct vmrpc_sock_sendto_req {
	uint32_t handle;
	uint32_t flags;
	int32_t timeout_ms;
	uint32_t _pad;
	struct vmrpc_sock_addr addr;
};

struct vmrpc_sock_buf_req {
	uint32_t handle;
	uint32_t len; /* bytes, at most VMRPC_SOCK_MAX_BUF */
	uint64_t gpa; /* guest address of the buffer */
};

struct vmrpc_sock_sockopt_req {
	uint32_t handle;
	int32_t level;
	int32_t name;
	uint32_t len;
};

struct vmrpc_sock_poll_req {
	int32_t timeout_ms;
	uint32_t nfds;
};

struct vmrpc_sock_pollfd {
	uint32_t handle;
	int16_t events;  /* Linux POLL* bits */
	int16_t revents; /* filled in by the host */
};

struct vmrpc_sock_gai_req {
	uint32_t family;   /* 0 (any), VMRPC_SOCK_AF_INET or VMRPC_SOCK_AF_INET6 */
	uint32_t type;     /* 0, VMRPC_SOCK_SOCK_STREAM or VMRPC_SOCK_SOCK_DGRAM */
	uint32_t flags;    /* reserved, 0 */
	uint32_t name_len; /* bytes of name that follow */
};

/* Largest data part of one SEND / SENDTO and of one RECV / RECVFROM answer. */
#define VMRPC_SOCK_MAX_SEND (65536u - (uint32_t)sizeof(struct vmrpc_sock_wait_req))
#define VMRPC_SOCK_MAX_SENDTO (65536u - (uint32_t)sizeof(struct vmrpc_sock_sendto_req))
#define VMRPC_SOCK_MAX_RECV (65536u - (uint32_t)sizeof(struct vmrpc_sock_resp))
#define VMRPC_SOCK_MAX_RECVFROM (65536u - (uint32_t)sizeof(struct vmrpc_sock_addr_resp))

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(struct vmrpc_sock_addr) == 28, "vmrpc_sock_addr size");
_Static_assert(sizeof(struct vmrpc_sock_resp) == 8, "vmrpc_sock_resp size");
_Static_assert(sizeof(struct vmrpc_sock_addr_resp) == 36, "vmrpc_sock_addr_resp size");
_Static_assert(sizeof(struct vmrpc_sock_socket_req) == 16, "vmrpc_sock_socket_req size");
_Static_assert(sizeof(struct vmrpc_sock_listen_req) == 44, "vmrpc_sock_listen_req size");
_Static_assert(sizeof(struct vmrpc_sock_handle_req) == 8, "vmrpc_sock_handle_req size");
_Static_assert(sizeof(struct vmrpc_sock_wait_req) == 16, "vmrpc_sock_wait_req size");
_Static_assert(sizeof(struct vmrpc_sock_buf_req) == 16, "vmrpc_sock_buf_req size");
_Static_assert(sizeof(struct vmrpc_sock_connect_req) == 36, "vmrpc_sock_connect_req size");
_Static_assert(sizeof(struct vmrpc_sock_sendto_req) == 44, "vmrpc_sock_sendto_req size");
_Static_assert(sizeof(struct vmrpc_sock_sockopt_req) == 16, "vmrpc_sock_sockopt_req size");
_Static_assert(sizeof(struct vmrpc_sock_poll_req) == 8, "vmrpc_sock_poll_req size");
_Static_assert(sizeof(struct vmrpc_sock_pollfd) == 8, "vmrpc_sock_pollfd size");
_Static_assert(sizeof(struct vmrpc_sock_gai_req) == 16, "vmrpc_sock_gai_req size");
#endif

#endif /* VMRPC_SOCKET_PROTO_H */
