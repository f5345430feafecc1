/*
 * Wire format of the "sockets" host module (socket outsourcing), version 1.0.
 *
 * This header is the specification; python/vmrpc/sockets/proto.py mirrors it
 * and tests/test_sockets.py compiles a probe of this header and compares every
 * constant and size with the Python side.
 *
 * Transport: VM RPC (vmrpc/abi.h).  The guest binds VSOCK_MODULE_NAME with
 * VMRPC_VERSION(VSOCK_MODULE_MAJOR, VSOCK_MODULE_MINOR) and calls the
 * numbered functions below.  Every request starts with a fixed little-endian
 * struct, optionally followed by bytes (data, an option value, a host name, an
 * array).  Every response starts with struct vsock_resp (8 bytes) or
 * struct vsock_addr_resp (36 bytes), optionally followed by bytes.
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
 * Addresses: struct vsock_addr, port in host byte order, the address bytes in
 * network order (IPv4 in the first 4 bytes).
 */
#ifndef VMRPC_SOCKET_PROTO_H
#define VMRPC_SOCKET_PROTO_H

#include <stdint.h>

#define VSOCK_MODULE_NAME "sockets"
#define VSOCK_MODULE_MAJOR 1u
#define VSOCK_MODULE_MINOR 0u

/* ---- functions -------------------------------------------------------------- */

/* req vsock_socket_req; resp vsock_resp, result = new handle.  Creates only
 * the host table entry: the host OS socket is created by CONNECT, SENDTO,
 * LISTEN or BIND once the policy allowed it. */
#define VSOCK_FN_SOCKET 0u
/* req vsock_listen_req (UDP); resp vsock_addr_resp: result = handle of a new
 * host socket exposed at addr, 0 when the policy does not expose it (the
 * socket stays guest-local), or -errno when the policy denies it. */
#define VSOCK_FN_BIND 1u
/* req vsock_listen_req (TCP); resp as BIND: a host listener at addr whose
 * connections ACCEPT hands to the guest. */
#define VSOCK_FN_LISTEN 2u
/* req vsock_wait_req; resp vsock_addr_resp, result = new handle, addr = peer */
#define VSOCK_FN_ACCEPT 3u
/* req vsock_connect_req; resp vsock_addr_resp, addr = local address */
#define VSOCK_FN_CONNECT 4u
/* req vsock_handle_req (arg = SHUT_RD/WR/RDWR); resp vsock_resp */
#define VSOCK_FN_SHUTDOWN 5u
/* req vsock_handle_req; resp vsock_resp */
#define VSOCK_FN_CLOSE 6u
/* req vsock_sockopt_req + len value bytes; resp vsock_resp */
#define VSOCK_FN_SETSOCKOPT 7u
/* req vsock_sockopt_req (len = capacity); resp vsock_resp (aux = len) + value */
#define VSOCK_FN_GETSOCKOPT 8u
/* req vsock_handle_req; resp vsock_addr_resp */
#define VSOCK_FN_GETSOCKNAME 9u
#define VSOCK_FN_GETPEERNAME 10u
/* req vsock_poll_req + nfds * vsock_pollfd; resp vsock_resp (result = ready
 * count, aux = nfds) + nfds * vsock_pollfd with revents filled in */
#define VSOCK_FN_POLL 11u
/* req vsock_gai_req + name bytes (no NUL); resp vsock_resp (result = count or
 * EAI_*, aux = count) + count * vsock_addr */
#define VSOCK_FN_GETADDRINFO 12u
/* req vsock_wait_req + data; resp vsock_resp, result = bytes sent */
#define VSOCK_FN_SEND 13u
/* req vsock_wait_req (arg = max bytes); resp vsock_resp + data */
#define VSOCK_FN_RECV 14u
/* req vsock_sendto_req + data; resp vsock_resp */
#define VSOCK_FN_SENDTO 15u
/* req vsock_wait_req (arg = max bytes); resp vsock_addr_resp + data */
#define VSOCK_FN_RECVFROM 16u
/*
 * Zero-copy data plane of a connected TCP socket: the host moves bytes straight
 * between the socket and the guest buffer [gpa, gpa + len) (in guest RAM; the
 * guest's own memory, identity-mapped, so a pointer is its address).  One
 * non-blocking attempt, never a wait: result = bytes moved (RECV_BUF: 0 at
 * EOF), -EAGAIN if nothing could be moved now, -EOPNOTSUPP if the host cannot do
 * it for this socket (TLS, no native data plane): use SEND / RECV then.
 * req vsock_buf_req; resp vsock_resp
 */
#define VSOCK_FN_SEND_BUF 17u
#define VSOCK_FN_RECV_BUF 18u
#define VSOCK_FN_COUNT 19u

/* ---- limits ----------------------------------------------------------------- */

#define VSOCK_MAX_POLL 1024u       /* descriptors per POLL request */
#define VSOCK_MAX_ADDRS 16u        /* addresses per GETADDRINFO answer */
#define VSOCK_MAX_NAME 253u        /* bytes of a host name */
#define VSOCK_MAX_OPTLEN 64u       /* bytes of a socket option value */
#define VSOCK_MAX_BACKLOG 4096u
#define VSOCK_MAX_BUF (1u << 20) /* bytes per SEND_BUF / RECV_BUF */

/* ---- flags (vsock_wait_req.flags) ---------------------------------------- */

#define VSOCK_F_PEEK 1u    /* RECV/RECVFROM: leave the data queued (MSG_PEEK) */
#define VSOCK_F_WAITALL 2u /* RECV: wait for arg bytes, EOF or error (MSG_WAITALL) */
#define VSOCK_F_ALL (VSOCK_F_PEEK | VSOCK_F_WAITALL)

/* Address families and socket types on the wire: the Linux values. */
#define VSOCK_AF_INET 2u
#define VSOCK_AF_INET6 10u
#define VSOCK_SOCK_STREAM 1u
#define VSOCK_SOCK_DGRAM 2u

/* ---- structures ------------------------------------------------------------ */

struct vsock_addr {
	uint16_t family;   /* VSOCK_AF_INET or VSOCK_AF_INET6 */
	uint16_t port;     /* host byte order */
	uint32_t flowinfo; /* IPv6 only */
	uint32_t scope_id; /* IPv6 only */
	uint8_t addr[16];  /* network order; IPv4 in addr[0..3], the rest zero */
};

struct vsock_resp {
	int32_t result;
	uint32_t aux; /* per function: a length or a count, else 0 */
};

struct vsock_addr_resp {
	int32_t result;
	uint32_t aux;
	struct vsock_addr addr;
};

struct vsock_socket_req {
	uint32_t family;   /* VSOCK_AF_* */
	uint32_t type;     /* VSOCK_SOCK_* */
	uint32_t protocol; /* 0, IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	uint32_t _pad;
};

struct vsock_listen_req {
	uint32_t family;
	uint32_t type;
	uint32_t backlog;
	uint32_t _pad;
	struct vsock_addr addr; /* the guest's bound address */
};

struct vsock_handle_req {
	uint32_t handle;
	uint32_t arg;
};

struct vsock_wait_req {
	uint32_t handle;
	uint32_t flags;     /* VSOCK_F_* */
	int32_t timeout_ms; /* -1: no limit, 0: never wait */
	uint32_t arg;       /* RECV/RECVFROM: maximum bytes; else 0 */
};

struct vsock_connect_req {
	uint32_t handle;
	int32_t timeout_ms;
	struct vsock_addr addr;
};

struct vsock_sendto_req {
	uint32_t handle;
	uint32_t flags;
	int32_t timeout_ms;
	uint32_t _pad;
	struct vsock_addr addr;
};

struct vsock_buf_req {
	uint32_t handle;
	uint32_t len; /* bytes, at most VSOCK_MAX_BUF */
	uint64_t gpa; /* guest address of the buffer */
};

struct vsock_sockopt_req {
	uint32_t handle;
	int32_t level;
	int32_t name;
	uint32_t len;
};

struct vsock_poll_req {
	int32_t timeout_ms;
	uint32_t nfds;
};

struct vsock_pollfd {
	uint32_t handle;
	int16_t events;  /* Linux POLL* bits */
	int16_t revents; /* filled in by the host */
};

struct vsock_gai_req {
	uint32_t family;   /* 0 (any), VSOCK_AF_INET or VSOCK_AF_INET6 */
	uint32_t type;     /* 0, VSOCK_SOCK_STREAM or VSOCK_SOCK_DGRAM */
	uint32_t flags;    /* reserved, 0 */
	uint32_t name_len; /* bytes of name that follow */
};

/* Largest data part of one SEND / SENDTO and of one RECV / RECVFROM answer. */
#define VSOCK_MAX_SEND (65536u - (uint32_t)sizeof(struct vsock_wait_req))
#define VSOCK_MAX_SENDTO (65536u - (uint32_t)sizeof(struct vsock_sendto_req))
#define VSOCK_MAX_RECV (65536u - (uint32_t)sizeof(struct vsock_resp))
#define VSOCK_MAX_RECVFROM (65536u - (uint32_t)sizeof(struct vsock_addr_resp))

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(struct vsock_addr) == 28, "vsock_addr size");
_Static_assert(sizeof(struct vsock_resp) == 8, "vsock_resp size");
_Static_assert(sizeof(struct vsock_addr_resp) == 36, "vsock_addr_resp size");
_Static_assert(sizeof(struct vsock_socket_req) == 16, "vsock_socket_req size");
_Static_assert(sizeof(struct vsock_listen_req) == 44, "vsock_listen_req size");
_Static_assert(sizeof(struct vsock_handle_req) == 8, "vsock_handle_req size");
_Static_assert(sizeof(struct vsock_wait_req) == 16, "vsock_wait_req size");
_Static_assert(sizeof(struct vsock_buf_req) == 16, "vsock_buf_req size");
_Static_assert(sizeof(struct vsock_connect_req) == 36, "vsock_connect_req size");
_Static_assert(sizeof(struct vsock_sendto_req) == 44, "vsock_sendto_req size");
_Static_assert(sizeof(struct vsock_sockopt_req) == 16, "vsock_sockopt_req size");
_Static_assert(sizeof(struct vsock_poll_req) == 8, "vsock_poll_req size");
_Static_assert(sizeof(struct vsock_pollfd) == 8, "vsock_pollfd size");
_Static_assert(sizeof(struct vsock_gai_req) == 16, "vsock_gai_req size");
#endif

#endif /* VMRPC_SOCKET_PROTO_H */
