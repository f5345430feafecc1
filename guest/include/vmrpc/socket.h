/*
 * POSIX-style sockets for vmrpc guests (guest/lib/sockets.c).
 *
 * The guest has no network stack.  A socket is a guest-side object that is
 * *dynamically specialised* once its peer is known:
 *
 *   - connect()/sendto() to a loopback address (127.0.0.0/8, ::1) where a guest
 *     socket listens or is bound: a guest-local connection, two byte pipes (or a
 *     datagram queue) in guest memory.  No host socket, no RPC per byte.
 *   - any other peer: the host module "sockets" (vmrpc/socket_proto.h) creates a
 *     host socket under its policy and carries out every operation.
 *   - bind() and listen() name a socket inside the guest; listen() (and bind()
 *     of a UDP socket to a fixed port) sends one control RPC so that the host
 *     policy may expose it on a host address; then accept()/recvfrom() serve
 *     both guest-local and host peers.
 *
 * Types, constants and errno values are Linux's (x86_64), so ordinary C
 * networking code compiles unchanged.  errno is per vCPU.  Not supported:
 * ancillary data, MSG_OOB, raw sockets, SCTP, socketpair, non-blocking
 * connect (connect always completes or fails before it returns, also on a
 * non-blocking socket), IPv4-mapped IPv6 addresses.
 *
 * Blocking on a guest-local socket spins its vCPU (pause loop) until another
 * vCPU makes progress; blocking on a host socket sleeps the vCPU in its RPC.
 */
#ifndef VMRPC_SOCKET_H
#define VMRPC_SOCKET_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- types ------------------------------------------------------------------------ */

typedef long ssize_t;
typedef uint32_t socklen_t;
typedef uint16_t sa_family_t;
typedef uint16_t in_port_t;
typedef uint32_t in_addr_t;
typedef unsigned long nfds_t;

struct in_addr {
	in_addr_t s_addr; /* network order */
};

struct in6_addr {
	union {
		uint8_t __u6_addr8[16];
		uint16_t __u6_addr16[8];
		uint32_t __u6_addr32[4];
	} __in6_u;
};
#define s6_addr __in6_u.__u6_addr8
#define s6_addr16 __in6_u.__u6_addr16
#define s6_addr32 __in6_u.__u6_addr32

struct sockaddr {
	sa_family_t sa_family;
	char sa_data[14];
};

struct sockaddr_in {
	sa_family_t sin_family;
	in_port_t sin_port; /* network order */
	struct in_addr sin_addr;
	uint8_t sin_zero[8];
};

struct sockaddr_in6 {
	sa_family_t sin6_family;
	in_port_t sin6_port; /* network order */
	uint32_t sin6_flowinfo;
	struct in6_addr sin6_addr;
	uint32_t sin6_scope_id;
};

struct sockaddr_storage {
	sa_family_t ss_family;
	char __ss_padding[128 - sizeof(sa_family_t) - sizeof(unsigned long)];
	unsigned long __ss_align;
};

struct addrinfo {
	int ai_flags;
	int ai_family;
	int ai_socktype;
	int ai_protocol;
	socklen_t ai_addrlen;
	struct sockaddr *ai_addr;
	char *ai_canonname;
	struct addrinfo *ai_next;
};

struct pollfd {
	int fd;
	short events;
	short revents;
};

struct timeval {
	long tv_sec;
	long tv_usec;
};

struct linger {
	int l_onoff;
	int l_linger;
};

extern const struct in6_addr in6addr_any;
extern const struct in6_addr in6addr_loopback;
#define IN6ADDR_ANY_INIT { { { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 } } }
#define IN6ADDR_LOOPBACK_INIT { { { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 } } }

/* ---- constants (Linux values) -------------------------------------------------------- */

#define AF_UNSPEC 0
#define AF_INET 2
#define AF_INET6 10
#define PF_UNSPEC AF_UNSPEC
#define PF_INET AF_INET
#define PF_INET6 AF_INET6

#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define SOCK_NONBLOCK 04000
#define SOCK_CLOEXEC 02000000

#define IPPROTO_IP 0
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_IPV6 41

#define INADDR_ANY ((in_addr_t)0x00000000)
#define INADDR_LOOPBACK ((in_addr_t)0x7f000001) /* host order: htonl() it */
#define INADDR_NONE ((in_addr_t)0xffffffff)
#define INET_ADDRSTRLEN 16
#define INET6_ADDRSTRLEN 46

#define SOL_SOCKET 1
#define SO_REUSEADDR 2
#define SO_TYPE 3
#define SO_ERROR 4
#define SO_BROADCAST 6
#define SO_SNDBUF 7
#define SO_RCVBUF 8
#define SO_KEEPALIVE 9
#define SO_LINGER 13
#define SO_REUSEPORT 15
#define SO_RCVTIMEO 20 /* struct timeval */
#define SO_SNDTIMEO 21 /* struct timeval */
#define TCP_NODELAY 1
#define IPV6_V6ONLY 26

#define MSG_PEEK 0x2
#define MSG_DONTWAIT 0x40
#define MSG_WAITALL 0x100
#define MSG_NOSIGNAL 0x4000

#define SHUT_RD 0
#define SHUT_WR 1
#define SHUT_RDWR 2

#define SOMAXCONN 4096

#define POLLIN 0x001
#define POLLPRI 0x002
#define POLLOUT 0x004
#define POLLERR 0x008
#define POLLHUP 0x010
#define POLLNVAL 0x020
#define POLLRDNORM 0x040
#define POLLWRNORM 0x100

#define F_GETFL 3
#define F_SETFL 4
#define O_NONBLOCK 04000

#define AI_PASSIVE 0x0001
#define AI_CANONNAME 0x0002
#define AI_NUMERICHOST 0x0004
#define AI_V4MAPPED 0x0008
#define AI_ALL 0x0010
#define AI_ADDRCONFIG 0x0020
#define AI_NUMERICSERV 0x0400

#define EAI_BADFLAGS -1
#define EAI_NONAME -2
#define EAI_AGAIN -3
#define EAI_FAIL -4
#define EAI_FAMILY -6
#define EAI_SOCKTYPE -7
#define EAI_SERVICE -8
#define EAI_MEMORY -10
#define EAI_SYSTEM -11

/* errno values are <errno.h>'s; strerror is declared in <string.h>. */
const char *gai_strerror(int err);

/* ---- byte order ------------------------------------------------------------------------- */

static inline uint16_t htons(uint16_t v)
{
	return __builtin_bswap16(v);
}
static inline uint16_t ntohs(uint16_t v)
{
	return __builtin_bswap16(v);
}
static inline uint32_t htonl(uint32_t v)
{
	return __builtin_bswap32(v);
}
static inline uint32_t ntohl(uint32_t v)
{
	return __builtin_bswap32(v);
}

/* ---- the API ------------------------------------------------------------------------------ */

int socket(int domain, int type, int protocol);
int bind(int fd, const struct sockaddr *addr, socklen_t len);
int listen(int fd, int backlog);
int accept(int fd, struct sockaddr *addr, socklen_t *len);
int connect(int fd, const struct sockaddr *addr, socklen_t len);
ssize_t send(int fd, const void *buf, size_t len, int flags);
ssize_t recv(int fd, void *buf, size_t len, int flags);
ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to,
	       socklen_t tolen);
ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
		 socklen_t *fromlen);
ssize_t read(int fd, void *buf, size_t len);
ssize_t write(int fd, const void *buf, size_t len);
int shutdown(int fd, int how);
int close(int fd);
int getsockopt(int fd, int level, int name, void *val, socklen_t *len);
int setsockopt(int fd, int level, int name, const void *val, socklen_t len);
int getsockname(int fd, struct sockaddr *addr, socklen_t *len);
int getpeername(int fd, struct sockaddr *addr, socklen_t *len);
int poll(struct pollfd *fds, nfds_t nfds, int timeout_ms);
int fcntl(int fd, int cmd, ...);
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res);
void freeaddrinfo(struct addrinfo *res);
int inet_pton(int af, const char *src, void *dst);
const char *inet_ntop(int af, const void *src, char *dst, socklen_t size);

/*
 * What the library did, for tests and benchmarks: RPCs it sent to the host
 * module, connections it made guest-locally and through the host, bytes
 * that moved through guest-local pipes and queues, and socket I/O exits
 * (large receives and sends served on the vCPU's own host thread).
 */
struct vmrpc_sock_stats {
	uint64_t host_rpcs;
	uint64_t local_connects;
	uint64_t host_connects;
	uint64_t local_bytes;
	uint64_t host_exits;
};
void vmrpc_sock_get_stats(struct vmrpc_sock_stats *out);
/* Gives thread `thread` (rt_thread_id) a VMRPC_MAX_PAYLOAD-byte buffer for its
 * socket calls; a thread without one gets one from malloc at its first call.
 * The Linux personality gives its thread slots buffers in the program's area
 * (its own heap holds few). */
void vmrpc_sock_set_thread_scratch(unsigned thread, uint8_t *buf);

#endif /* VMRPC_SOCKET_H */
