"""Socket options: the vetted list a guest may read and set (`optnames`), applied
to the host socket, or kept until it exists. The native data plane sets the
options of connected plain TCP sockets itself, from the same list.

Imports `table` (below it); see `dispatch` for the layers.
"""

from __future__ import annotations

import errno
import socket

from vmrpc.hostmodule import function
from vmrpc.sockets import proto
from vmrpc.sockets.dispatch import Answer
from vmrpc.sockets.optnames import READ_ONLY, SETTABLE
from vmrpc.sockets.proto import ProtoError
from vmrpc.sockets.table import SocketTable

_INT = 4


class Options(SocketTable):
    """setsockopt and getsockopt."""

    @function(proto.FN_SETSOCKOPT)
    def rpc_setsockopt(self, payload: bytes) -> Answer:
        return self._call(proto.FN_SETSOCKOPT, payload, self._setsockopt)

    def _setsockopt(self, req: proto.SockoptReq) -> bytes:
        entry = self._entry(req.handle)
        size = SETTABLE.get((req.level, req.name))
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
        size = SETTABLE.get(key, READ_ONLY.get(key))
        if size is None:
            raise ProtoError(f"option {req.level}/{req.name}", errno.ENOPROTOOPT)
        if key in READ_ONLY and size > _INT:
            size = min(size, req.length)  # a struct or a name: the caller's buffer bounds it
        if req.length < size or size < 1:
            raise ProtoError("option buffer too short")
        if key == (socket.SOL_SOCKET, socket.SO_ERROR) and entry.error:
            # A failed asynchronous connect's error, collected once (as on Linux).
            value, entry.error = entry.error.to_bytes(4, "little"), 0
        elif entry.sock is not None:
            value = entry.sock.getsockopt(req.level, req.name, size)
        elif key == (socket.SOL_SOCKET, socket.SO_TYPE):
            value = entry.type.to_bytes(4, "little")
        else:
            stored = [v for lv, nm, v in entry.options if (lv, nm) == key]
            value = stored[-1] if stored else bytes(size)
        return proto.resp(0, len(value)) + value
