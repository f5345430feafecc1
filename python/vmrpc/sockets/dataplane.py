"""The data plane in Python: send, recv, sendto, recvfrom.

Two paths: a fast one for the common case (a well-formed request without flags
on a plain connected socket, answered without request objects) and the general
one, which parses everything and waits on the loop. The zero-copy calls
(SEND_BUF, RECV_BUF) are served by the VMM's native data plane (`table`); they
reach Python only when the module is used without it.

Imports `waiting` (below it); see `dispatch` for the layers.
"""

from __future__ import annotations

import errno
import socket
from functools import partial
from typing import Any

from vmrpc.hostmodule import function
from vmrpc.sockets import proto
from vmrpc.sockets.dispatch import Answer, errno_of
from vmrpc.sockets.policy import TLS, Deny, Proxy
from vmrpc.sockets.proto import ProtoError
from vmrpc.sockets.table import Entry, State
from vmrpc.sockets.waiting import LoopWaits


class DataPlane(LoopWaits):
    """send, recv, sendto, recvfrom, and the zero-copy calls' fallback."""

    @function(proto.FN_SEND_BUF)
    def rpc_send_buf(self, payload: bytes) -> Answer:
        """Zero-copy send: only the VMM's native data plane reaches guest memory, and it
        answers these itself. Reached only without it (module used on its own)."""
        return self._zero_copy_unsupported(proto.FN_SEND_BUF)

    @function(proto.FN_RECV_BUF)
    def rpc_recv_buf(self, payload: bytes) -> Answer:
        """Zero-copy receive; see `rpc_send_buf`."""
        return self._zero_copy_unsupported(proto.FN_RECV_BUF)

    def _zero_copy_unsupported(self, fn: int) -> Answer:
        with self._lock:
            self._counts["rpcs"] += 1
            self._counts["rpc." + proto.FUNCTION_NAMES[fn]] += 1
        return proto.error_resp(errno.EOPNOTSUPP)

    @function(proto.FN_SEND)
    def rpc_send(self, payload: bytes) -> Answer:
        fast = self._fast_send(payload)
        if fast is not None:
            return fast
        return self._call(proto.FN_SEND, payload, self._send)

    def _fast_entry(self, payload: bytes) -> tuple[Entry, int, int] | None:
        """The data plane's common case, without request objects: a well-formed
        `WAIT_REQ` without flags on a plain connected socket. ``None``: take the
        general path (which parses and validates everything again)."""
        if len(payload) < proto.WAIT_REQ.size or self._closed:
            return None
        handle, flags, ms, arg = proto.WAIT_REQ.unpack_from(payload)
        entry = self._table.get(handle)
        if flags or ms < -1 or entry is None or not entry.ready or entry.tls:
            return None
        return entry, ms, arg

    def _fast_count(self, fn: str, key: str, n: int) -> None:
        with self._lock:
            self._counts["rpcs"] += 1
            self._counts[fn] += 1
            self._counts[key] += n

    def _fast_send(self, payload: bytes) -> Answer | None:
        found = self._fast_entry(payload)
        if found is None or found[2] or found[0].type != proto.SOCK_STREAM:
            return None
        entry, ms, _ = found
        assert entry.sock is not None
        data = memoryview(payload)[proto.WAIT_REQ.size :]
        try:
            sent = entry.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return None  # nothing was sent: the general path waits
        except OSError as error:
            self._fast_count("rpc.send", "bytes_sent", 0)
            return proto.error_resp(errno_of(error))
        if sent == len(data) or ms == 0:
            self._fast_count("rpc.send", "bytes_sent", sent)
            return proto.resp(sent)
        return self._call(proto.FN_SEND, payload, lambda req: self._send(req, sent))

    def _send(self, req: proto.SendReq, sent: int = 0) -> Answer:
        """A send; ``sent`` bytes of it already went out on the fast path."""
        entry, sock = self._connected(req.handle)
        data = req.data
        if not entry.tls and not sent:  # TLS objects are used on the loop thread only
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent == len(data) or (req.timeout == 0 and sent):
                self._count("bytes_sent", sent)
                return proto.resp(sent)
            if req.timeout == 0:
                return proto.error_resp(errno.EAGAIN)

        async def rest() -> bytes:
            done = sent
            deadline = self._deadline(req.timeout)
            view = data[done:]
            try:
                while view:
                    n = await self._io(entry, partial(sock.send, view), True, deadline)
                    done += n
                    view = view[n:]
                    if req.timeout == 0:
                        break
            except BlockingIOError:
                if not done:
                    raise
            finally:
                self._count("bytes_sent", done)
            return proto.resp(done)

        return rest()

    @function(proto.FN_RECV)
    def rpc_recv(self, payload: bytes) -> Answer:
        found = self._fast_entry(payload)
        if found is not None and len(payload) == proto.WAIT_REQ.size:
            entry, _, n = found
            assert entry.sock is not None
            if n <= proto.MAX_RECV and entry.type == proto.SOCK_STREAM:
                try:
                    data = entry.sock.recv(n)
                except (BlockingIOError, InterruptedError):
                    pass  # nothing there yet: the general path waits
                except OSError as error:
                    self._fast_count("rpc.recv", "bytes_received", 0)
                    return proto.error_resp(errno_of(error))
                else:
                    self._fast_count("rpc.recv", "bytes_received", len(data))
                    return proto.resp(len(data)) + data
        return self._call(proto.FN_RECV, payload, self._recv)

    def _recv(self, req: proto.WaitReq) -> Answer:
        entry, sock = self._connected(req.handle)
        peek = req.flags & proto.F_PEEK
        if entry.tls and peek:
            raise ProtoError("MSG_PEEK on a TLS socket", errno.EOPNOTSUPP)
        flags = socket.MSG_PEEK if peek else 0
        n = req.arg
        if not entry.tls:
            try:
                data = sock.recv(n, flags)
                if not req.flags & proto.F_WAITALL or len(data) == n or not data:
                    self._count("bytes_received", len(data))
                    return proto.resp(len(data)) + data
            except (BlockingIOError, InterruptedError):
                data = b""
                if req.timeout == 0:
                    return proto.error_resp(errno.EAGAIN)
        else:
            data = b""

        async def wait() -> bytes:
            got = [data] if data else []
            total = len(data)
            deadline = self._deadline(req.timeout)
            try:
                while True:
                    op = partial(sock.recv, n - total, flags)
                    chunk = await self._io(entry, op, False, deadline)
                    if chunk:
                        got.append(chunk)
                        total += len(chunk)
                    if not chunk or not req.flags & proto.F_WAITALL or total >= n:
                        break
            except (BlockingIOError, ConnectionError):
                if not total:
                    raise
            out = b"".join(got)
            self._count("bytes_received", len(out))
            return proto.resp(len(out)) + out

        return wait()

    @function(proto.FN_SENDTO)
    def rpc_sendto(self, payload: bytes) -> Answer:
        return self._call(proto.FN_SENDTO, payload, self._sendto)

    def _sendto(self, req: proto.SendtoReq) -> Answer:
        entry = self._entry(req.handle)
        if entry.type != proto.SOCK_DGRAM:
            raise ProtoError("sendto on a stream socket", errno.EISCONN)
        if req.addr.family != entry.family:
            raise ProtoError("address family differs from the socket's", errno.EAFNOSUPPORT)
        key = (req.addr.host, req.addr.port)
        err = entry.udp_decisions.get(key)
        if err is None:
            flow = self._flow("outbound", "udp", req.addr)
            rule, action = self.policy.decide(flow)
            if isinstance(action, Deny):
                err = action.errno
            elif isinstance(action, TLS | Proxy):
                err = errno.EPROTONOSUPPORT
            else:
                err = 0
            self._record("sendto", flow, rule, action, err=err)
            if len(entry.udp_decisions) < 256:
                entry.udp_decisions[key] = err
        if err:
            return proto.error_resp(err)
        if entry.sock is None:
            entry.sock = self._host_socket(entry)
            entry.state = State.READY
        sock = entry.sock
        try:
            n = sock.sendto(req.data, req.addr.sockaddr())
        except (BlockingIOError, InterruptedError):
            if req.timeout == 0:
                return proto.error_resp(errno.EAGAIN)
            data = bytes(req.data)

            async def wait() -> bytes:
                deadline = self._deadline(req.timeout)
                to = req.addr.sockaddr()
                sent = await self._io(entry, lambda: sock.sendto(data, to), True, deadline)
                self._count("bytes_sent", sent)
                return proto.resp(sent)

            return wait()
        self._count("bytes_sent", n)
        return proto.resp(n)

    @function(proto.FN_RECVFROM)
    def rpc_recvfrom(self, payload: bytes) -> Answer:
        return self._call(proto.FN_RECVFROM, payload, self._recvfrom)

    def _recvfrom(self, req: proto.WaitReq) -> Answer:
        entry = self._entry(req.handle)
        sock = entry.sock
        if not entry.ready or sock is None:
            raise ProtoError("nothing to receive from", errno.ENOTCONN)
        if entry.tls:
            raise ProtoError("recvfrom on a TLS socket", errno.EOPNOTSUPP)
        flags = socket.MSG_PEEK if req.flags & proto.F_PEEK else 0

        def answer(result: tuple[bytes, Any]) -> bytes:
            data, peer = result
            self._count("bytes_received", len(data))
            src = proto.addr_from_sockaddr(sock.family, peer) if peer else entry.peer
            return proto.addr_resp(len(data), src) + data

        try:
            return answer(sock.recvfrom(req.arg, flags))
        except (BlockingIOError, InterruptedError):
            if req.timeout == 0:
                return proto.error_addr_resp(errno.EAGAIN)

        async def wait() -> bytes:
            result = await self._io(
                entry, lambda: sock.recvfrom(req.arg, flags), False, self._deadline(req.timeout)
            )
            return answer(result)

        return wait()
