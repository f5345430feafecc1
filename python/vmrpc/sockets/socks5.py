"""A SOCKS5 client's CONNECT (RFC 1928), with no authentication or with a username
and password (RFC 1929).

Protocol only: the caller brings the transport, ``send(data)`` and ``recv(n)``
(exactly ``n`` bytes, or an OSError). Failures are OSErrors carrying the errno the
guest gets. Imports `proto` only.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable

from vmrpc.sockets import proto
from vmrpc.sockets.proto import Addr

_SOCKS_ERRORS = {
    1: errno.ECONNREFUSED,
    2: errno.EACCES,
    3: errno.ENETUNREACH,
    4: errno.EHOSTUNREACH,
    5: errno.ECONNREFUSED,
    6: errno.ETIMEDOUT,
    7: errno.EOPNOTSUPP,
    8: errno.EAFNOSUPPORT,
}


async def connect(
    send: Callable[[bytes], Awaitable[None]],
    recv: Callable[[int], Awaitable[bytes]],
    dest: Addr,
    credentials: tuple[bytes, bytes] | None = None,
) -> None:
    """Asks the proxy at the other end of the transport to connect to ``dest``; with
    ``credentials`` (username, password: 1-255 bytes each), offers to log in too."""
    await send(b"\x05\x02\x00\x02" if credentials else b"\x05\x01\x00")
    version, method = await recv(2)
    if version != 5:
        raise OSError(errno.ECONNREFUSED, "not a SOCKS5 proxy")
    if method == 2 and credentials:
        await _login(send, recv, *credentials)
    elif method != 0:
        # 0xff: none of the offered methods (a proxy that wants a login we lack).
        raise OSError(errno.EACCES, f"SOCKS5 proxy refused the authentication (method {method})")
    if dest.family == proto.AF_INET:
        atyp = b"\x01" + socket.inet_pton(socket.AF_INET, dest.host)
    else:
        atyp = b"\x04" + socket.inet_pton(socket.AF_INET6, dest.host)
    await send(b"\x05\x01\x00" + atyp + dest.port.to_bytes(2, "big"))
    ver, rep, _, kind = await recv(4)
    if ver != 5:
        raise OSError(errno.ECONNREFUSED, "not a SOCKS5 proxy")
    if rep:
        raise OSError(_SOCKS_ERRORS.get(rep, errno.ECONNREFUSED), f"SOCKS5 reply {rep}")
    if kind == 1:
        await recv(4 + 2)
    elif kind == 4:
        await recv(16 + 2)
    elif kind == 3:
        (length,) = await recv(1)
        await recv(length + 2)
    else:
        raise OSError(errno.ECONNREFUSED, f"SOCKS5 reply address type {kind}")


async def _login(
    send: Callable[[bytes], Awaitable[None]],
    recv: Callable[[int], Awaitable[bytes]],
    username: bytes,
    password: bytes,
) -> None:
    """RFC 1929: version 1, the username and the password, each with its length."""
    await send(b"\x01" + bytes([len(username)]) + username + bytes([len(password)]) + password)
    try:
        version, status = await recv(2)
    except OSError as error:  # some proxies (pproxy) hang up instead of answering "no"
        raise OSError(errno.EACCES, "SOCKS5 proxy closed the connection at the login") from error
    if version != 1 or status != 0:
        raise OSError(errno.EACCES, "SOCKS5 proxy refused the username and password")
