"""Wire format of the ``sockets`` host module (``guest/include/vmrpc/socket_proto.h``
describes it). Its constants and struct layouts come from the ABI's single source
through `vmrpc.abi`; the layouts name their fields in the order this file unpacks
them, and `vmrpc.abi.layout` checks that order against the ABI at import.

`parse` turns one request (function number + payload bytes, straight from the
untrusted guest) into a typed request object or raises `ProtoError`; nothing else
may escape from it. Encoders build the answers.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from vmrpc import abi

__all__ = [
    "ADDR",
    "ADDR_ANSWER_FUNCTIONS",
    "ADDR_RESP",
    "RESP",
    "SIZES",
    "Addr",
    "ProtoError",
    "encode_addr",
    "error_addr_resp",
    "error_resp",
    "parse",
]

MODULE_NAME: Final = abi.text("VMRPC_SOCK_MODULE_NAME")
MODULE_MAJOR: Final = abi.constant("VMRPC_SOCK_MODULE_MAJOR")
MODULE_MINOR: Final = abi.constant("VMRPC_SOCK_MODULE_MINOR")

FN_SOCKET: Final = abi.constant("VMRPC_SOCK_FN_SOCKET")
FN_BIND: Final = abi.constant("VMRPC_SOCK_FN_BIND")
FN_LISTEN: Final = abi.constant("VMRPC_SOCK_FN_LISTEN")
FN_ACCEPT: Final = abi.constant("VMRPC_SOCK_FN_ACCEPT")
FN_CONNECT: Final = abi.constant("VMRPC_SOCK_FN_CONNECT")
FN_SHUTDOWN: Final = abi.constant("VMRPC_SOCK_FN_SHUTDOWN")
FN_CLOSE: Final = abi.constant("VMRPC_SOCK_FN_CLOSE")
FN_SETSOCKOPT: Final = abi.constant("VMRPC_SOCK_FN_SETSOCKOPT")
FN_GETSOCKOPT: Final = abi.constant("VMRPC_SOCK_FN_GETSOCKOPT")
FN_GETSOCKNAME: Final = abi.constant("VMRPC_SOCK_FN_GETSOCKNAME")
FN_GETPEERNAME: Final = abi.constant("VMRPC_SOCK_FN_GETPEERNAME")
FN_POLL: Final = abi.constant("VMRPC_SOCK_FN_POLL")
FN_GETADDRINFO: Final = abi.constant("VMRPC_SOCK_FN_GETADDRINFO")
FN_SEND: Final = abi.constant("VMRPC_SOCK_FN_SEND")
FN_RECV: Final = abi.constant("VMRPC_SOCK_FN_RECV")
FN_SENDTO: Final = abi.constant("VMRPC_SOCK_FN_SENDTO")
FN_RECVFROM: Final = abi.constant("VMRPC_SOCK_FN_RECVFROM")
FN_SEND_BUF: Final = abi.constant("VMRPC_SOCK_FN_SEND_BUF")
FN_RECV_BUF: Final = abi.constant("VMRPC_SOCK_FN_RECV_BUF")
FN_COUNT: Final = abi.constant("VMRPC_SOCK_FN_COUNT")

FUNCTION_NAMES: Final = {
    FN_SOCKET: "socket",
    FN_BIND: "bind",
    FN_LISTEN: "listen",
    FN_ACCEPT: "accept",
    FN_CONNECT: "connect",
    FN_SHUTDOWN: "shutdown",
    FN_CLOSE: "close",
    FN_SETSOCKOPT: "setsockopt",
    FN_GETSOCKOPT: "getsockopt",
    FN_GETSOCKNAME: "getsockname",
    FN_GETPEERNAME: "getpeername",
    FN_POLL: "poll",
    FN_GETADDRINFO: "getaddrinfo",
    FN_SEND: "send",
    FN_RECV: "recv",
    FN_SENDTO: "sendto",
    FN_RECVFROM: "recvfrom",
    FN_SEND_BUF: "send_buf",
    FN_RECV_BUF: "recv_buf",
}
#: The functions whose answer is a ``struct vmrpc_sock_addr_resp`` (others: ``vmrpc_sock_resp``).
ADDR_ANSWER_FUNCTIONS: Final = frozenset(
    {
        FN_BIND,
        FN_LISTEN,
        FN_ACCEPT,
        FN_CONNECT,
        FN_GETSOCKNAME,
        FN_GETPEERNAME,
        FN_RECVFROM,
    }
)

MAX_POLL: Final = abi.constant("VMRPC_SOCK_MAX_POLL")
MAX_ADDRS: Final = abi.constant("VMRPC_SOCK_MAX_ADDRS")
MAX_NAME: Final = abi.constant("VMRPC_SOCK_MAX_NAME")
MAX_OPTLEN: Final = abi.constant("VMRPC_SOCK_MAX_OPTLEN")
MAX_BACKLOG: Final = abi.constant("VMRPC_SOCK_MAX_BACKLOG")
MAX_CONNECT_OPTS: Final = abi.constant("VMRPC_SOCK_MAX_CONNECT_OPTS")
MAX_BUF: Final = abi.constant("VMRPC_SOCK_MAX_BUF")

F_PEEK: Final = abi.constant("VMRPC_SOCK_F_PEEK")
F_WAITALL: Final = abi.constant("VMRPC_SOCK_F_WAITALL")
F_ALL: Final = abi.constant("VMRPC_SOCK_F_ALL")

AF_INET: Final = abi.constant("VMRPC_SOCK_AF_INET")
AF_INET6: Final = abi.constant("VMRPC_SOCK_AF_INET6")
SOCK_STREAM: Final = abi.constant("VMRPC_SOCK_SOCK_STREAM")
SOCK_DGRAM: Final = abi.constant("VMRPC_SOCK_SOCK_DGRAM")

IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17

# Linux EAI_* codes (negative, as in glibc's netdb.h).
EAI_NONAME: Final = -2
EAI_AGAIN: Final = -3
EAI_FAIL: Final = -4
EAI_FAMILY: Final = -6

PAYLOAD: Final = abi.constant("VMRPC_MAX_PAYLOAD")

# Each layout names the fields in the order the parsers below unpack them.
ADDR: Final = abi.layout("vmrpc_sock_addr", "family", "port", "flowinfo", "scope_id", "addr")
RESP: Final = abi.layout("vmrpc_sock_resp", "result", "aux")
ADDR_RESP: Final = abi.layout("vmrpc_sock_addr_resp", "result", "aux", "addr")
SOCKET_REQ: Final = abi.layout("vmrpc_sock_socket_req", "family", "type", "protocol", "_pad")
LISTEN_REQ: Final = abi.layout("vmrpc_sock_listen_req", "family", "type", "backlog", "_pad", "addr")
HANDLE_REQ: Final = abi.layout("vmrpc_sock_handle_req", "handle", "arg")
WAIT_REQ: Final = abi.layout("vmrpc_sock_wait_req", "handle", "flags", "timeout_ms", "arg")
CONNECT_REQ: Final = abi.layout(
    "vmrpc_sock_connect_req", "handle", "timeout_ms", "type", "_pad", "addr"
)
SENDTO_REQ: Final = abi.layout(
    "vmrpc_sock_sendto_req", "handle", "flags", "timeout_ms", "_pad", "addr"
)
SOCKOPT_REQ: Final = abi.layout("vmrpc_sock_sockopt_req", "handle", "level", "name", "len")
POLL_REQ: Final = abi.layout("vmrpc_sock_poll_req", "timeout_ms", "nfds")
POLLFD: Final = abi.layout("vmrpc_sock_pollfd", "handle", "events", "revents")
GAI_REQ: Final = abi.layout("vmrpc_sock_gai_req", "family", "type", "flags", "name_len")
BUF_REQ: Final = abi.layout("vmrpc_sock_buf_req", "handle", "len", "gpa")

MAX_SEND: Final = abi.constant("VMRPC_SOCK_MAX_SEND")
MAX_SENDTO: Final = abi.constant("VMRPC_SOCK_MAX_SENDTO")
MAX_RECV: Final = abi.constant("VMRPC_SOCK_MAX_RECV")
MAX_RECVFROM: Final = abi.constant("VMRPC_SOCK_MAX_RECVFROM")

#: ``sizeof`` of every wire struct, by its C name (checked against the header).
SIZES: Final = {
    "vmrpc_sock_addr": ADDR.size,
    "vmrpc_sock_resp": RESP.size,
    "vmrpc_sock_addr_resp": ADDR_RESP.size,
    "vmrpc_sock_socket_req": SOCKET_REQ.size,
    "vmrpc_sock_listen_req": LISTEN_REQ.size,
    "vmrpc_sock_handle_req": HANDLE_REQ.size,
    "vmrpc_sock_wait_req": WAIT_REQ.size,
    "vmrpc_sock_connect_req": CONNECT_REQ.size,
    "vmrpc_sock_sendto_req": SENDTO_REQ.size,
    "vmrpc_sock_sockopt_req": SOCKOPT_REQ.size,
    "vmrpc_sock_poll_req": POLL_REQ.size,
    "vmrpc_sock_pollfd": POLLFD.size,
    "vmrpc_sock_gai_req": GAI_REQ.size,
    "vmrpc_sock_buf_req": BUF_REQ.size,
}

_MAX_TIMEOUT_MS: Final = 24 * 3600 * 1000
_HOSTNAME_CHARS: Final = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._"
)


class ProtoError(Exception):
    """A malformed request; the guest gets ``-errno`` (EINVAL unless stated)."""

    def __init__(self, message: str, err: int = errno.EINVAL) -> None:
        super().__init__(message)
        self.errno = err


@dataclass(frozen=True, slots=True)
class Addr:
    """A validated guest address: ``host`` is the textual IP address."""

    family: int
    host: str
    port: int
    flowinfo: int = 0
    scope_id: int = 0

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.host)

    def sockaddr(self) -> tuple[str, int] | tuple[str, int, int, int]:
        """The address as Python's socket module takes it."""
        if self.family == AF_INET:
            return (self.host, self.port)
        return (self.host, self.port, self.flowinfo, self.scope_id)

    @property
    def socket_family(self) -> socket.AddressFamily:
        return socket.AF_INET if self.family == AF_INET else socket.AF_INET6

    def __str__(self) -> str:
        if self.family == AF_INET6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def _decode_addr(family: int, port: int, flowinfo: int, scope_id: int, raw: bytes) -> Addr:
    if family == AF_INET:
        if any(raw[4:]):
            raise ProtoError("IPv4 address with non-zero padding")
        return Addr(AF_INET, socket.inet_ntop(socket.AF_INET, raw[:4]), port)
    if family == AF_INET6:
        if flowinfo > 0xFFFFF:
            raise ProtoError("IPv6 flowinfo out of range")
        return Addr(AF_INET6, socket.inet_ntop(socket.AF_INET6, raw), port, flowinfo, scope_id)
    raise ProtoError(f"address family {family}", errno.EAFNOSUPPORT)


def addr_from_sockaddr(family: int, sockaddr: tuple[object, ...]) -> Addr:
    """An `Addr` from what Python's socket module returned (getsockname, recvfrom)."""
    host = str(sockaddr[0]).split("%", 1)[0]
    port = int(sockaddr[1])  # type: ignore[call-overload]
    if family == socket.AF_INET6:
        flow = int(sockaddr[2]) if len(sockaddr) > 2 else 0  # type: ignore[call-overload]
        scope = int(sockaddr[3]) if len(sockaddr) > 3 else 0  # type: ignore[call-overload]
        return Addr(AF_INET6, host, port, flow, scope)
    return Addr(AF_INET, host, port)


def encode_addr(addr: Addr | None) -> bytes:
    """The 28-byte ``struct vmrpc_sock_addr``; all zero for ``None``."""
    if addr is None:
        return bytes(ADDR.size)
    if addr.family == AF_INET:
        raw = socket.inet_pton(socket.AF_INET, addr.host) + bytes(12)
    else:
        raw = socket.inet_pton(socket.AF_INET6, addr.host)
    return ADDR.pack(addr.family, addr.port, addr.flowinfo, addr.scope_id, raw)


def resp(result: int, aux: int = 0) -> bytes:
    return RESP.pack(result, aux)


def error_resp(err: int) -> bytes:
    return RESP.pack(-err, 0)


def addr_resp(result: int, addr: Addr | None, aux: int = 0) -> bytes:
    return RESP.pack(result, aux) + encode_addr(addr)


def error_addr_resp(err: int) -> bytes:
    return RESP.pack(-err, 0) + bytes(ADDR.size)


# ---- parsed requests ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SocketReq:
    family: int
    type: int
    protocol: int


@dataclass(frozen=True, slots=True)
class ListenReq:
    family: int
    type: int
    backlog: int
    addr: Addr


@dataclass(frozen=True, slots=True)
class HandleReq:
    handle: int
    arg: int


@dataclass(frozen=True, slots=True)
class WaitReq:
    handle: int
    flags: int
    timeout: float | None  # seconds; None: no limit; 0: never wait
    arg: int


@dataclass(frozen=True, slots=True)
class ConnectReq:
    handle: int  # 0: a new socket of ``type``, in the address's family
    timeout: float | None  # 0: never wait (a stream connect answers EINPROGRESS)
    addr: Addr
    type: int = 0
    options: tuple[tuple[int, int, bytes], ...] = ()  # (level, name, value), new socket


@dataclass(frozen=True, slots=True)
class SendReq:
    handle: int
    flags: int
    timeout: float | None
    data: memoryview


@dataclass(frozen=True, slots=True)
class SendtoReq:
    handle: int
    flags: int
    timeout: float | None
    addr: Addr
    data: memoryview


@dataclass(frozen=True, slots=True)
class SockoptReq:
    handle: int
    level: int
    name: int
    length: int
    value: bytes


@dataclass(frozen=True, slots=True)
class PollReq:
    timeout: float | None
    fds: tuple[tuple[int, int], ...]  # (handle, events)


@dataclass(frozen=True, slots=True)
class GaiReq:
    family: int
    type: int
    name: str


Request = (
    SocketReq | ListenReq | HandleReq | WaitReq | ConnectReq | SendReq | SendtoReq | SockoptReq
)
AnyRequest = Request | PollReq | GaiReq


def _timeout(ms: int) -> float | None:
    if ms < 0:
        if ms != -1:
            raise ProtoError(f"timeout {ms} ms")
        return None
    if ms > _MAX_TIMEOUT_MS:
        raise ProtoError(f"timeout {ms} ms too long")
    return ms / 1000.0


def _fixed(payload: bytes, st: struct.Struct, exact: bool) -> tuple[Any, ...]:
    if len(payload) < st.size or (exact and len(payload) != st.size):
        raise ProtoError(f"request of {len(payload)} bytes, expected {st.size}")
    return st.unpack_from(payload)


def _family_type(family: int, type_: int) -> None:
    if family not in (AF_INET, AF_INET6):
        raise ProtoError(f"address family {family}", errno.EAFNOSUPPORT)
    if type_ not in (SOCK_STREAM, SOCK_DGRAM):
        raise ProtoError(f"socket type {type_}", errno.ESOCKTNOSUPPORT)


def _parse_socket(p: bytes) -> SocketReq:
    family, type_, protocol, _ = _fixed(p, SOCKET_REQ, True)
    _family_type(family, type_)
    want = IPPROTO_TCP if type_ == SOCK_STREAM else IPPROTO_UDP
    if protocol not in (0, want):
        raise ProtoError(f"protocol {protocol}", errno.EPROTONOSUPPORT)
    return SocketReq(family, type_, want)


def _parse_listen(p: bytes) -> ListenReq:
    family, type_, backlog, _, *a = _fixed(p, LISTEN_REQ, True)
    _family_type(family, type_)
    addr = _decode_addr(*a)
    if addr.family != family:
        raise ProtoError("address family differs from the socket's", errno.EAFNOSUPPORT)
    return ListenReq(family, type_, min(backlog, MAX_BACKLOG), addr)


def _parse_handle(p: bytes) -> HandleReq:
    handle, arg = _fixed(p, HANDLE_REQ, True)
    return HandleReq(handle, arg)


def _parse_wait(p: bytes, exact: bool = True) -> WaitReq:
    handle, flags, ms, arg = _fixed(p, WAIT_REQ, exact)
    if flags & ~F_ALL:
        raise ProtoError(f"flags {flags:#x}")
    return WaitReq(handle, flags, _timeout(ms), arg)


def _parse_recv(p: bytes, limit: int) -> WaitReq:
    req = _parse_wait(p)
    if req.arg > limit:
        raise ProtoError(f"receive size {req.arg} > {limit}")
    return req


def _parse_send(p: bytes) -> SendReq:
    req = _parse_wait(p, exact=False)
    if req.flags or req.arg:
        raise ProtoError("send takes no flags")
    return SendReq(req.handle, 0, req.timeout, memoryview(p)[WAIT_REQ.size :])


def _parse_connect(p: bytes) -> ConnectReq:
    handle, ms, type_, _, *a = _fixed(p, CONNECT_REQ, False)
    addr = _decode_addr(*a)
    rest = memoryview(p)[CONNECT_REQ.size :]
    if handle:
        if type_ or rest:
            raise ProtoError("type and options are for a new socket only")
        return ConnectReq(handle, _timeout(ms), addr)
    _family_type(addr.family, type_)
    options: list[tuple[int, int, bytes]] = []
    while rest:
        if len(options) == MAX_CONNECT_OPTS:
            raise ProtoError(f"more than {MAX_CONNECT_OPTS} options")
        _, level, name, length = _fixed(bytes(rest[: SOCKOPT_REQ.size]), SOCKOPT_REQ, True)
        end = SOCKOPT_REQ.size + length
        if length > MAX_OPTLEN or len(rest) < end:
            raise ProtoError("option length does not match the request")
        options.append((level, name, bytes(rest[SOCKOPT_REQ.size : end])))
        rest = rest[end:]
    return ConnectReq(handle, _timeout(ms), addr, type_, tuple(options))


def _parse_sendto(p: bytes) -> SendtoReq:
    handle, flags, ms, _, *a = _fixed(p, SENDTO_REQ, False)
    if flags:
        raise ProtoError("sendto takes no flags")
    return SendtoReq(handle, 0, _timeout(ms), _decode_addr(*a), memoryview(p)[SENDTO_REQ.size :])


def _parse_sockopt(p: bytes, setting: bool) -> SockoptReq:
    handle, level, name, length = _fixed(p, SOCKOPT_REQ, not setting)
    if length > MAX_OPTLEN:
        raise ProtoError(f"option length {length}")
    value = p[SOCKOPT_REQ.size :]
    if setting and len(value) != length:
        raise ProtoError("option length does not match the request")
    return SockoptReq(handle, level, name, length, value)


def _parse_poll(p: bytes) -> PollReq:
    ms, nfds = _fixed(p, POLL_REQ, False)
    if nfds > MAX_POLL:
        raise ProtoError(f"{nfds} descriptors in one poll")
    if len(p) != POLL_REQ.size + nfds * POLLFD.size:
        raise ProtoError("poll array length does not match nfds")
    fds = tuple((h, ev & 0xFFFF) for h, ev, _ in POLLFD.iter_unpack(p[POLL_REQ.size :]))
    return PollReq(_timeout(ms), fds)


def _parse_gai(p: bytes) -> GaiReq:
    family, type_, flags, name_len = _fixed(p, GAI_REQ, False)
    name = p[GAI_REQ.size :]
    if family not in (0, AF_INET, AF_INET6):
        raise ProtoError(f"address family {family}", errno.EAFNOSUPPORT)
    if type_ not in (0, SOCK_STREAM, SOCK_DGRAM) or flags:
        raise ProtoError("bad type or flags")
    if name_len != len(name) or not 0 < name_len <= MAX_NAME:
        raise ProtoError("bad name length")
    if not set(name) <= _HOSTNAME_CHARS or name.startswith((b"-", b".")) or b".." in name:
        raise ProtoError("not a host name")
    return GaiReq(family, type_, name.decode("ascii").lower())


_PARSERS: Final[dict[int, Callable[[bytes], AnyRequest]]] = {
    FN_SOCKET: _parse_socket,
    FN_BIND: _parse_listen,
    FN_LISTEN: _parse_listen,
    FN_ACCEPT: _parse_wait,
    FN_CONNECT: _parse_connect,
    FN_SHUTDOWN: _parse_handle,
    FN_CLOSE: _parse_handle,
    FN_SETSOCKOPT: lambda p: _parse_sockopt(p, True),
    FN_GETSOCKOPT: lambda p: _parse_sockopt(p, False),
    FN_GETSOCKNAME: _parse_handle,
    FN_GETPEERNAME: _parse_handle,
    FN_POLL: _parse_poll,
    FN_GETADDRINFO: _parse_gai,
    FN_SEND: _parse_send,
    FN_RECV: lambda p: _parse_recv(p, MAX_RECV),
    FN_SENDTO: _parse_sendto,
    FN_RECVFROM: lambda p: _parse_recv(p, MAX_RECVFROM),
}


def parse(function: int, payload: bytes) -> AnyRequest:
    """Parse one request; raises `ProtoError` (and nothing else) when it is malformed."""
    parser = _PARSERS.get(function)
    if parser is None:
        raise ProtoError(f"no function {function}", errno.ENOSYS)
    try:
        return parser(payload)
    except ProtoError:
        raise
    except (struct.error, ValueError, OSError) as error:  # defensive: report, never crash
        raise ProtoError(f"malformed request: {error}") from error
