/*
 * Wire format of the "sockets" host module (socket outsourcing), version 1.0.
 *
 * This header is the protocol in prose (this comment); its constants and
 * structures are defined once, in Rust, in
 * crates/guest-kmod-bindings/src/socket_proto.rs, and come from
 * vmrpc/socket_proto_gen.h, which cbindgen generates from it (`make abi`).
 * python/vmrpc/sockets/proto.py takes them from the same source, and tests
 * compile this header and compare every constant, size and field offset.
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
 * 0 never waits (the answer is -EAGAIN; CONNECT: -EINPROGRESS, the connect
 * goes on in the host), > 0 waits at most that long and then answers -EAGAIN.
 * A waiting request occupies only its own vCPU.
 *
 * Addresses: struct vmrpc_sock_addr, port in host byte order, the address bytes in
 * network order (IPv4 in the first 4 bytes).
 */
#ifndef VMRPC_SOCKET_PROTO_H
#define VMRPC_SOCKET_PROTO_H

#include <stdint.h>

#include "abi.h"
#include "socket_proto_gen.h"

#define VMRPC_SOCK_MODULE_NAME "sockets"

/* Largest data part of one SEND / SENDTO and of one RECV / RECVFROM answer. */
#define VMRPC_SOCK_MAX_SEND (VMRPC_MAX_PAYLOAD - (uint32_t)sizeof(struct vmrpc_sock_wait_req))
#define VMRPC_SOCK_MAX_SENDTO (VMRPC_MAX_PAYLOAD - (uint32_t)sizeof(struct vmrpc_sock_sendto_req))
#define VMRPC_SOCK_MAX_RECV (VMRPC_MAX_PAYLOAD - (uint32_t)sizeof(struct vmrpc_sock_resp))
#define VMRPC_SOCK_MAX_RECVFROM (VMRPC_MAX_PAYLOAD - (uint32_t)sizeof(struct vmrpc_sock_addr_resp))

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(struct vmrpc_sock_addr) == 28, "vmrpc_sock_addr size");
_Static_assert(sizeof(struct vmrpc_sock_resp) == 8, "vmrpc_sock_resp size");
_Static_assert(sizeof(struct vmrpc_sock_addr_resp) == 36, "vmrpc_sock_addr_resp size");
_Static_assert(sizeof(struct vmrpc_sock_socket_req) == 16, "vmrpc_sock_socket_req size");
_Static_assert(sizeof(struct vmrpc_sock_listen_req) == 44, "vmrpc_sock_listen_req size");
_Static_assert(sizeof(struct vmrpc_sock_handle_req) == 8, "vmrpc_sock_handle_req size");
_Static_assert(sizeof(struct vmrpc_sock_wait_req) == 16, "vmrpc_sock_wait_req size");
_Static_assert(sizeof(struct vmrpc_sock_buf_req) == 16, "vmrpc_sock_buf_req size");
_Static_assert(sizeof(struct vmrpc_sock_connect_req) == 44, "vmrpc_sock_connect_req size");
_Static_assert(sizeof(struct vmrpc_sock_sendto_req) == 44, "vmrpc_sock_sendto_req size");
_Static_assert(sizeof(struct vmrpc_sock_sockopt_req) == 16, "vmrpc_sock_sockopt_req size");
_Static_assert(sizeof(struct vmrpc_sock_poll_req) == 8, "vmrpc_sock_poll_req size");
_Static_assert(sizeof(struct vmrpc_sock_pollfd) == 8, "vmrpc_sock_pollfd size");
_Static_assert(sizeof(struct vmrpc_sock_gai_req) == 16, "vmrpc_sock_gai_req size");
#endif

#endif /* VMRPC_SOCKET_PROTO_H */
