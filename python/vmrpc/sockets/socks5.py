"""A SOCKS5 client's CONNECT (RFC 1928), without authentication.

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
    send: Callable[[bytes], Awaitable[None]], recv: Callable[[int], Awaitable[bytes]], dest: Addr
) -> None:
    """Asks the proxy at the other end of the transport to connect to ``dest``."""
    await send(b"\x05\x01\x00")
    if await recv(2) != b"\x05\x00":
        raise OSError(errno.ECONNREFUSED, "SOCKS5 proxy refused the no-authentication method")
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
