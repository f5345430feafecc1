"""The rest of the control plane: socket, bind and listen (an exposed host
listener when the policy says so), accept, shutdown, close, and the socket's names.

Imports `waiting` (below it); see `dispatch` for the layers.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

from vmrpc.hostmodule import function
from vmrpc.sockets import proto
from vmrpc.sockets.dispatch import Answer, errno_of
from vmrpc.sockets.policy import Deny, Expose
from vmrpc.sockets.proto import ProtoError
from vmrpc.sockets.table import Entry, State
from vmrpc.sockets.waiting import LoopWaits


class Control(LoopWaits):
    """socket, bind, listen, accept, shutdown, close, getsockname, getpeername."""

    @function(proto.FN_SOCKET)
    def rpc_socket(self, payload: bytes) -> Answer:
        return self._call(proto.FN_SOCKET, payload, self._socket)

    def _socket(self, req: proto.SocketReq) -> bytes:
        entry = self._new_entry(req.family, req.type)
        return proto.resp(entry.handle)

    @function(proto.FN_BIND)
    def rpc_bind(self, payload: bytes) -> Answer:
        return self._call(proto.FN_BIND, payload, self._expose)

    @function(proto.FN_LISTEN)
    def rpc_listen(self, payload: bytes) -> Answer:
        return self._call(proto.FN_LISTEN, payload, self._expose)

    def _expose(self, req: proto.ListenReq) -> bytes:
        protocol = "tcp" if req.type == proto.SOCK_STREAM else "udp"
        event = "listen" if req.type == proto.SOCK_STREAM else "bind"
        flow = self._flow("inbound", protocol, req.addr)
        rule, action = self.policy.decide(flow)
        if isinstance(action, Deny):
            self._record(event, flow, rule, action, err=action.errno)
            return proto.error_addr_resp(action.errno)
        if not isinstance(action, Expose):
            self._record(event, flow, rule, action)
            return proto.addr_resp(0, None)
        entry = self._new_entry(req.family, req.type)
        try:
            host_ip = ipaddress.ip_address(action.host)
            family = socket.AF_INET if host_ip.version == 4 else socket.AF_INET6
            sock = self._host_socket(entry, family)
            entry.sock = sock
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((action.host, action.port))
            if req.type == proto.SOCK_STREAM:
                sock.listen(max(req.backlog, 16))
                entry.state = State.LISTENING
            else:
                entry.state = State.READY  # an exposed UDP socket receives at once
        except (OSError, ProtoError) as error:  # ProtoError: the fd budget said no
            self._drop(entry)
            err = error.errno if isinstance(error, ProtoError) else errno_of(error)
            self._record(event, flow, rule, action, err=err, detail=str(error))
            return proto.error_addr_resp(err)
        where = proto.addr_from_sockaddr(family, sock.getsockname())
        self._record(event, flow, rule, action, detail=f"host {where}")
        entry.exposed_key = (protocol, req.addr.port)
        with self._exposed_cond:
            self.exposed[entry.exposed_key] = (where.host, where.port)
            self._exposed_cond.notify_all()
        return proto.addr_resp(entry.handle, where)

    @function(proto.FN_ACCEPT)
    def rpc_accept(self, payload: bytes) -> Answer:
        return self._call(proto.FN_ACCEPT, payload, self._accept)

    def _accept(self, req: proto.WaitReq) -> Answer:
        entry = self._entry(req.handle)
        if entry.state is not State.LISTENING or entry.sock is None:
            raise ProtoError("not a listening socket", errno.EINVAL)
        listener = entry.sock
        try:
            return self._accepted(entry, listener.accept())
        except (BlockingIOError, InterruptedError):
            if req.timeout == 0:
                return proto.error_addr_resp(errno.EAGAIN)

        async def wait() -> bytes:
            result = await self._io(entry, listener.accept, False, self._deadline(req.timeout))
            return self._accepted(entry, result)

        return wait()

    def _accepted(self, listener: Entry, result: tuple[socket.socket, Any]) -> bytes:
        sock, peer = result
        self._count("sockets_created")
        self._publish_counts(new_sockets=1)  # it is open already
        try:
            self._fd_budget.check(self._held_fds(), need=0)
            new = self._new_entry(listener.family, listener.type)
        except ProtoError:
            sock.close()
            raise
        sock.setblocking(False)
        new.sock = sock
        new.peer = proto.addr_from_sockaddr(sock.family, peer)
        self._ready(new)
        return proto.addr_resp(new.handle, new.peer)

    @function(proto.FN_SHUTDOWN)
    def rpc_shutdown(self, payload: bytes) -> Answer:
        return self._call(proto.FN_SHUTDOWN, payload, self._shutdown)

    def _shutdown(self, req: proto.HandleReq) -> bytes:
        _, sock = self._connected(req.handle)
        if req.arg > 2:
            raise ProtoError(f"shutdown how={req.arg}")
        sock.shutdown(req.arg)
        return proto.resp(0)

    @function(proto.FN_CLOSE)
    def rpc_close(self, payload: bytes) -> Answer:
        return self._call(proto.FN_CLOSE, payload, self._close)

    def _close(self, req: proto.HandleReq) -> Answer:
        entry = self._entry(req.handle)
        with self._lock:
            entry.state = State.CLOSED  # no new operation starts on it from now on
            # Nothing on the loop can be using it: close here, without the loop hop.
            idle = self._loop_calls == 0 and not entry.readers and not entry.writers
            if entry.sock is None:
                self._table.pop(entry.handle, None)
                return proto.resp(0)
        if idle:
            self._close_entry(entry)
            return proto.resp(0)

        async def close() -> bytes:
            self._close_entry(entry)
            return proto.resp(0)

        return close()

    @function(proto.FN_GETSOCKNAME)
    def rpc_getsockname(self, payload: bytes) -> Answer:
        return self._call(proto.FN_GETSOCKNAME, payload, lambda r: self._getname(r, False))

    @function(proto.FN_GETPEERNAME)
    def rpc_getpeername(self, payload: bytes) -> Answer:
        return self._call(proto.FN_GETPEERNAME, payload, lambda r: self._getname(r, True))

    def _getname(self, req: proto.HandleReq, peer: bool) -> bytes:
        entry = self._entry(req.handle)
        if entry.sock is None:
            raise ProtoError("not connected", errno.ENOTCONN)
        if peer:
            if entry.peer is None:
                raise ProtoError("not connected", errno.ENOTCONN)
            return proto.addr_resp(0, entry.peer)
        return self._local_answer(entry)
