"""The socket options a guest may touch: the allow-list, in one place.

`options` serves setsockopt and getsockopt from it, `connect` vets the options a
new socket's CONNECT carries with it, and `table` hands the settable part to the
native data plane, which sets those options of connected plain TCP sockets in
Rust: the host never applies an option it has not vetted, whichever path the
call takes. A leaf: imports nothing of the package.
"""

from __future__ import annotations

import socket

__all__ = ["READ_ONLY", "SETTABLE", "native_list", "vet"]

_INT = 4
#: Options a guest may read and set, (level, name) -> value size. Anything else
#: gets ENOPROTOOPT.
SETTABLE: dict[tuple[int, int], int] = {
    (socket.SOL_SOCKET, socket.SO_REUSEADDR): _INT,
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE): _INT,
    (socket.SOL_SOCKET, socket.SO_RCVBUF): _INT,
    (socket.SOL_SOCKET, socket.SO_SNDBUF): _INT,
    (socket.SOL_SOCKET, socket.SO_BROADCAST): _INT,
    (socket.SOL_SOCKET, socket.SO_LINGER): 8,
    (socket.IPPROTO_TCP, socket.TCP_NODELAY): _INT,
    (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE): _INT,
    (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL): _INT,
    (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY): _INT,
}
#: Options a guest may only read, (level, name) -> the most bytes asked of the
#: host: what the connection is (iperf3 and other tools report TCP_INFO, the
#: congestion control and the segment size). TCP_INFO's struct grows with the
#: kernel: the host kernel fills what fits and says how much.
READ_ONLY: dict[tuple[int, int], int] = {
    (socket.SOL_SOCKET, socket.SO_ERROR): _INT,
    (socket.SOL_SOCKET, socket.SO_TYPE): _INT,
    (socket.IPPROTO_TCP, socket.TCP_MAXSEG): _INT,
    (socket.IPPROTO_TCP, socket.TCP_CONGESTION): 16,  # TCP_CA_NAME_MAX
    (socket.IPPROTO_TCP, socket.TCP_INFO): 256,  # proto.MAX_OPTLEN caps it again
}


def vet(level: int, name: int, value: bytes) -> bytes | None:
    """The value to set for a settable option (its first ``size`` bytes), or
    None: not settable (ENOPROTOOPT) or too short (EINVAL)."""
    size = SETTABLE.get((level, name))
    if size is None or len(value) < size:
        return None
    return value[:size]


def native_list() -> list[tuple[int, int, int]]:
    """`SETTABLE` as the native data plane takes it: (level, name, size)."""
    return [(level, name, size) for (level, name), size in SETTABLE.items()]
