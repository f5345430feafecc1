//! Wire format of the "sockets" host module (socket outsourcing), version 1.0.
//!
//! The single source of these constants and structures: cbindgen turns this
//! file into `guest/include/vmrpc/socket_proto_gen.h`, build.rs into the table
//! `python/vmrpc/sockets/proto.py` builds its struct layouts from. The protocol
//! itself (results, descriptors, blocking, addresses) is described in
//! `guest/include/vmrpc/socket_proto.h`.

#![allow(non_camel_case_types)]

use crate::abi::VMRPC_MAX_PAYLOAD;

/// The name the guest binds.
pub const VMRPC_SOCK_MODULE_NAME: &str = "sockets";
pub const VMRPC_SOCK_MODULE_MAJOR: u32 = 1_u32;
pub const VMRPC_SOCK_MODULE_MINOR: u32 = 0_u32;

// ---- functions ---------------------------------------------------------------

/// req vmrpc_sock_socket_req; resp vmrpc_sock_resp, result = new handle. Creates
/// only the host table entry: the host OS socket is created by CONNECT, SENDTO,
/// LISTEN or BIND once the policy allowed it.
pub const VMRPC_SOCK_FN_SOCKET: u32 = 0_u32;
/// req vmrpc_sock_listen_req (UDP); resp vmrpc_sock_addr_resp: result = handle
/// of a new host socket exposed at addr, 0 when the policy does not expose it
/// (the socket stays guest-local), or -errno when the policy denies it.
pub const VMRPC_SOCK_FN_BIND: u32 = 1_u32;
/// req vmrpc_sock_listen_req (TCP); resp as BIND: a host listener at addr whose
/// connections ACCEPT hands to the guest.
pub const VMRPC_SOCK_FN_LISTEN: u32 = 2_u32;
/// req vmrpc_sock_wait_req; resp vmrpc_sock_addr_resp, result = new handle, addr = peer.
pub const VMRPC_SOCK_FN_ACCEPT: u32 = 3_u32;
/// req vmrpc_sock_connect_req (+ options for a new socket); resp
/// vmrpc_sock_addr_resp: result 0 (connected), -EINPROGRESS (timeout_ms 0 and
/// not connected yet: POLL reports the outcome, GETSOCKOPT SO_ERROR or CONNECT
/// again collects it) or -errno; addr = local address when known; aux = the
/// handle of a new socket (handle 0 in the request) that exists after the call.
pub const VMRPC_SOCK_FN_CONNECT: u32 = 4_u32;
/// req vmrpc_sock_handle_req (arg = SHUT_RD/WR/RDWR); resp vmrpc_sock_resp.
pub const VMRPC_SOCK_FN_SHUTDOWN: u32 = 5_u32;
/// req vmrpc_sock_handle_req; resp vmrpc_sock_resp. A connected plain TCP
/// socket is closed by the native data plane, on the engine thread.
pub const VMRPC_SOCK_FN_CLOSE: u32 = 6_u32;
/// req vmrpc_sock_sockopt_req + len value bytes; resp vmrpc_sock_resp.
pub const VMRPC_SOCK_FN_SETSOCKOPT: u32 = 7_u32;
/// req vmrpc_sock_sockopt_req (len = capacity); resp vmrpc_sock_resp (aux = len) + value.
pub const VMRPC_SOCK_FN_GETSOCKOPT: u32 = 8_u32;
/// req vmrpc_sock_handle_req; resp vmrpc_sock_addr_resp.
pub const VMRPC_SOCK_FN_GETSOCKNAME: u32 = 9_u32;
/// As GETSOCKNAME.
pub const VMRPC_SOCK_FN_GETPEERNAME: u32 = 10_u32;
/// req vmrpc_sock_poll_req + nfds * vmrpc_sock_pollfd; resp vmrpc_sock_resp
/// (result = ready count, aux = nfds) + nfds * vmrpc_sock_pollfd with revents
/// filled in.
pub const VMRPC_SOCK_FN_POLL: u32 = 11_u32;
/// req vmrpc_sock_gai_req + name bytes (no NUL); resp vmrpc_sock_resp (result =
/// count or EAI_*, aux = count) + count * vmrpc_sock_addr.
pub const VMRPC_SOCK_FN_GETADDRINFO: u32 = 12_u32;
/// req vmrpc_sock_wait_req + data; resp vmrpc_sock_resp, result = bytes sent.
pub const VMRPC_SOCK_FN_SEND: u32 = 13_u32;
/// req vmrpc_sock_wait_req (arg = max bytes); resp vmrpc_sock_resp + data.
pub const VMRPC_SOCK_FN_RECV: u32 = 14_u32;
/// req vmrpc_sock_sendto_req + data; resp vmrpc_sock_resp.
pub const VMRPC_SOCK_FN_SENDTO: u32 = 15_u32;
/// req vmrpc_sock_wait_req (arg = max bytes); resp vmrpc_sock_addr_resp + data.
pub const VMRPC_SOCK_FN_RECVFROM: u32 = 16_u32;
/// Zero-copy data plane of a connected TCP socket: the host moves bytes
/// straight between the socket and the guest buffer [gpa, gpa + len) (in guest
/// RAM; the guest's own memory, identity-mapped, so a pointer is its address).
/// One non-blocking attempt, never a wait: result = bytes moved (RECV_BUF: 0 at
/// EOF), -EAGAIN if nothing could be moved now, -EOPNOTSUPP if the host cannot
/// do it for this socket (TLS, no native data plane): use SEND / RECV then.
/// req vmrpc_sock_buf_req; resp vmrpc_sock_resp.
pub const VMRPC_SOCK_FN_SEND_BUF: u32 = 17_u32;
/// As SEND_BUF, from the socket into the guest buffer.
pub const VMRPC_SOCK_FN_RECV_BUF: u32 = 18_u32;
pub const VMRPC_SOCK_FN_COUNT: u32 = 19_u32;

// ---- limits ------------------------------------------------------------------

/// Descriptors per POLL request.
pub const VMRPC_SOCK_MAX_POLL: u32 = 1024_u32;
/// Addresses per GETADDRINFO answer.
pub const VMRPC_SOCK_MAX_ADDRS: u32 = 16_u32;
/// Bytes of a host name.
pub const VMRPC_SOCK_MAX_NAME: u32 = 253_u32;
/// Bytes of a socket option value (TCP_INFO, the largest read, takes about 240).
pub const VMRPC_SOCK_MAX_OPTLEN: u32 = 256_u32;
pub const VMRPC_SOCK_MAX_BACKLOG: u32 = 4096_u32;
/// Options a CONNECT of a new socket carries.
pub const VMRPC_SOCK_MAX_CONNECT_OPTS: u32 = 16_u32;
/// Bytes per SEND_BUF / RECV_BUF.
pub const VMRPC_SOCK_MAX_BUF: u32 = 1_u32 << 20;

// ---- flags (vmrpc_sock_wait_req.flags) -------------------------------------------

/// RECV/RECVFROM: leave the data queued (MSG_PEEK).
pub const VMRPC_SOCK_F_PEEK: u32 = 1_u32;
/// RECV: wait for arg bytes, EOF or error (MSG_WAITALL).
pub const VMRPC_SOCK_F_WAITALL: u32 = 2_u32;
pub const VMRPC_SOCK_F_ALL: u32 = VMRPC_SOCK_F_PEEK | VMRPC_SOCK_F_WAITALL;

/// Address families and socket types on the wire: the Linux values.
pub const VMRPC_SOCK_AF_INET: u32 = 2_u32;
pub const VMRPC_SOCK_AF_INET6: u32 = 10_u32;
pub const VMRPC_SOCK_SOCK_STREAM: u32 = 1_u32;
pub const VMRPC_SOCK_SOCK_DGRAM: u32 = 2_u32;

// ---- structures ----------------------------------------------------------------

/// An address: port in host byte order, the address bytes in network order.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_sock_addr {
    /// VMRPC_SOCK_AF_INET or VMRPC_SOCK_AF_INET6.
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    /// IPv6 only.
    pub flowinfo: u32,
    /// IPv6 only.
    pub scope_id: u32,
    /// Network order; IPv4 in addr[0..3], the rest zero.
    pub addr: [u8; 16],
}

/// The head of every answer; result < 0 is -errno.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_sock_resp {
    pub result: i32,
    /// Per function: a length or a count, else 0.
    pub aux: u32,
}

/// The head of the answers that carry an address.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_sock_addr_resp {
    pub result: i32,
    pub aux: u32,
    pub addr: vmrpc_sock_addr,
}

/// SOCKET.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_sock_socket_req {
    /// VMRPC_SOCK_AF_*
    pub family: u32,
    /// VMRPC_SOCK_SOCK_*
    pub r#type: u32,
    /// 0, IPPROTO_TCP (6) or IPPROTO_UDP (17).
    pub protocol: u32,
    pub _pad: u32,
}

/// BIND and LISTEN.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_sock_listen_req {
    pub family: u32,
    pub r#type: u32,
    pub backlog: u32,
    pub _pad: u32,
    /// The guest's bound address.
    pub addr: vmrpc_sock_addr,
}

/// SHUTDOWN, CLOSE, GETSOCKNAME, GETPEERNAME.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_sock_handle_req {
    pub handle: u32,
    pub arg: u32,
}

/// ACCEPT, SEND (data follows), RECV, RECVFROM.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_sock_wait_req {
    pub handle: u32,
    /// VMRPC_SOCK_F_*
    pub flags: u32,
    /// -1: no limit, 0: never wait.
    pub timeout_ms: i32,
    /// RECV/RECVFROM: maximum bytes; else 0.
    pub arg: u32,
}

/// CONNECT. For a new socket (handle 0: SOCKET folded into the connect) the
/// options to set before connecting follow, each a vmrpc_sock_sockopt_req
/// (handle 0) and its value, at most VMRPC_SOCK_MAX_CONNECT_OPTS of them.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_sock_connect_req {
    /// The socket, or 0: a new one of `type`, in the family of `addr`.
    pub handle: u32,
    /// -1: no limit; 0: never wait (a stream connect still under way answers
    /// -EINPROGRESS and goes on in the host); > 0: at most that long.
    pub timeout_ms: i32,
    /// Handle 0: VMRPC_SOCK_SOCK_*; else 0.
    pub r#type: u32,
    pub _pad: u32,
    pub addr: vmrpc_sock_addr,
}

/// SENDTO (data follows).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_sock_sendto_req {
    pub handle: u32,
    pub flags: u32,
    pub timeout_ms: i32,
    pub _pad: u32,
    pub addr: vmrpc_sock_addr,
}

/// SEND_BUF and RECV_BUF: a buffer in guest memory.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_sock_buf_req {
    pub handle: u32,
    /// Bytes, at most VMRPC_SOCK_MAX_BUF.
    pub len: u32,
    /// Guest address of the buffer.
    pub gpa: u64,
}

/// SETSOCKOPT (the value follows) and GETSOCKOPT.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_sock_sockopt_req {
    pub handle: u32,
    pub level: i32,
    pub name: i32,
    pub len: u32,
}

/// POLL (nfds struct vmrpc_sock_pollfd follow).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_sock_poll_req {
    pub timeout_ms: i32,
    pub nfds: u32,
}

/// One descriptor of a POLL request and answer.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_sock_pollfd {
    pub handle: u32,
    /// Linux POLL* bits.
    pub events: i16,
    /// Filled in by the host.
    pub revents: i16,
}

/// GETADDRINFO (the name follows).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vmrpc_sock_gai_req {
    /// 0 (any), VMRPC_SOCK_AF_INET or VMRPC_SOCK_AF_INET6.
    pub family: u32,
    /// 0, VMRPC_SOCK_SOCK_STREAM or VMRPC_SOCK_SOCK_DGRAM.
    pub r#type: u32,
    /// Reserved, 0.
    pub flags: u32,
    /// Bytes of name that follow.
    pub name_len: u32,
}

// Largest data part of one SEND / SENDTO and of one RECV / RECVFROM answer:
// the payload less the fixed head. cbindgen cannot write `size_of` in C, so
// socket_proto.h states these with sizeof, and a test compares both.

/// Largest data part of one SEND.
pub const VMRPC_SOCK_MAX_SEND: u32 = VMRPC_MAX_PAYLOAD - size_of::<vmrpc_sock_wait_req>() as u32;
/// Largest data part of one SENDTO.
pub const VMRPC_SOCK_MAX_SENDTO: u32 =
    VMRPC_MAX_PAYLOAD - size_of::<vmrpc_sock_sendto_req>() as u32;
/// Largest data part of one RECV answer.
pub const VMRPC_SOCK_MAX_RECV: u32 = VMRPC_MAX_PAYLOAD - size_of::<vmrpc_sock_resp>() as u32;
/// Largest data part of one RECVFROM answer.
pub const VMRPC_SOCK_MAX_RECVFROM: u32 =
    VMRPC_MAX_PAYLOAD - size_of::<vmrpc_sock_addr_resp>() as u32;
