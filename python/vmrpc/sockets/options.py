"""Socket options: the vetted list a guest may read and set, applied to the host
socket, or kept until it exists.

Imports `table` (below it); see `dispatch` for the layers.
"""

from __future__ import annotations

import errno
import socket

from vmrpc.hostmodule import function
from vmrpc.sockets import proto
from vmrpc.sockets.dispatch import Answer
from vmrpc.sockets.proto import ProtoError
from vmrpc.sockets.table import SocketTable

# Socket options a guest may read and set (level, name) -> value size. Anything else
# gets ENOPROTOOPT: the host never applies an option it has not vetted.
_INT = 4
_OPTIONS: dict[tuple[int, int], int] = {
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
# Options a guest may only read, (level, name) -> the most bytes asked of the host:
# what the connection is (iperf3 and other tools report TCP_INFO, the congestion
# control and the segment size). TCP_INFO's struct grows with the kernel: the host
# kernel fills what fits and says how much.
_READ_ONLY: dict[tuple[int, int], int] = {
    (socket.SOL_SOCKET, socket.SO_ERROR): _INT,
    (socket.SOL_SOCKET, socket.SO_TYPE): _INT,
    (socket.IPPROTO_TCP, socket.TCP_MAXSEG): _INT,
    (socket.IPPROTO_TCP, socket.TCP_CONGESTION): 16,  # TCP_CA_NAME_MAX
    (socket.IPPROTO_TCP, socket.TCP_INFO): proto.MAX_OPTLEN,
}


class Options(SocketTable):
    """setsockopt and getsockopt."""

    @function(proto.FN_SETSOCKOPT)
    def rpc_setsockopt(self, payload: bytes) -> Answer:
        return self._call(proto.FN_SETSOCKOPT, payload, self._setsockopt)

    def _setsockopt(self, req: proto.SockoptReq) -> bytes:
        entry = self._entry(req.handle)
        size = _OPTIONS.get((req.level, req.name))
        if size is None:
            raise ProtoError(f"option {req.level}/{req.name}", errno.ENOPROTOOPT)
        if req.length < size:
            raise ProtoError("option value too short")
        value = req.value[:size]
        if entry.sock is None:
            entry.options = [o for o in entry.options if o[:2] != (req.level, req.name)]
            entry.options.append((req.level, req.name, value))
        else:
            entry.sock.setsockopt(req.level, req.name, value)
        return proto.resp(0)

    @function(proto.FN_GETSOCKOPT)
    def rpc_getsockopt(self, payload: bytes) -> Answer:
        return self._call(proto.FN_GETSOCKOPT, payload, self._getsockopt)

    def _getsockopt(self, req: proto.SockoptReq) -> bytes:
        entry = self._entry(req.handle)
        key = (req.level, req.name)
        size = _OPTIONS.get(key, _READ_ONLY.get(key))
        if size is None:
            raise ProtoError(f"option {req.level}/{req.name}", errno.ENOPROTOOPT)
        if key in _READ_ONLY and size > _INT:
            size = min(size, req.length)  # a struct or a name: the caller's buffer bounds it
        if req.length < size or size < 1:
            raise ProtoError("option buffer too short")
        if entry.sock is not None:
            value = entry.sock.getsockopt(req.level, req.name, size)
        elif key == (socket.SOL_SOCKET, socket.SO_TYPE):
            value = entry.type.to_bytes(4, "little")
        else:
            stored = [v for lv, nm, v in entry.options if (lv, nm) == key]
            value = stored[-1] if stored else bytes(size)
        return proto.resp(0, len(value)) + value
