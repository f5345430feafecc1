"""Outbound connect: plain TCP, through a SOCKS5 proxy, and TLS on top of either,
as the policy decides; a UDP connect just fixes the peer.

A stream socket stays CONNECTING until every handshake has finished, so no data
path can send a byte before them. A CONNECT may create its socket (handle 0: the
guest's socket() and the options set before connect travel with it, one call
instead of several), and one with timeout 0 (a non-blocking socket) answers
EINPROGRESS while the connect goes on on the loop: its outcome reaches the guest
through poll (POLLOUT, or POLLERR) and SO_ERROR, or a second connect, as on Linux.
Imports `waiting` (below it) and `socks5`; see `dispatch` for the layers.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import socket
import ssl
from collections.abc import Coroutine
from functools import partial
from typing import Any

from vmrpc.hostmodule import function
from vmrpc.sockets import optnames, proto, socks5
from vmrpc.sockets.audit import Decision
from vmrpc.sockets.dispatch import Answer, Closed, errno_of, failure_errno
from vmrpc.sockets.policy import TLS, TLS_ERRNO, Allow, Deny, Proxy
from vmrpc.sockets.proto import Addr, ProtoError
from vmrpc.sockets.table import Entry, State
from vmrpc.sockets.waiting import LoopWaits

log = logging.getLogger("vmrpc.sockets")

#: Default of `SocketOutsourcing`'s ``connect_timeout``: Linux's usual SYN retry time.
CONNECT_TIMEOUT_S = 75.0
_HANDSHAKE_S = 15.0


class Connecting(LoopWaits):
    """``connect`` (function `proto.FN_CONNECT`)."""

    connect_timeout: float

    @function(proto.FN_CONNECT)
    def rpc_connect(self, payload: bytes) -> Answer:
        # A connect the native path started for this very call and did not wait
        # for (its socket and errno): this call goes on with it, or closes it.
        started = self.native_data_plane.take_started()
        if started is None:
            return self._call(proto.FN_CONNECT, payload, self._connect)
        held = [started]
        try:
            return self._call(proto.FN_CONNECT, payload, lambda r: self._connect(r, held.pop()))
        finally:
            if held:  # refused before the handler ran (a closed module)
                os.close(held[0][0])

    def _connect(self, req: proto.ConnectReq, started: tuple[int, int] | None = None) -> Answer:
        if req.handle:
            if started is not None:
                os.close(started[0])
            return self._connect_entry(self._entry(req.handle), req)
        # A new socket: the guest's socket() and its options travel with the connect.
        try:
            entry = self._new_entry(req.addr.family, req.type)
        except BaseException:
            if started is not None:
                os.close(started[0])
            raise
        if started is not None:
            entry.sock = socket.socket(fileno=started[0])
            entry.started = started[1]
            self._count("sockets_created")
        for level, name, value in req.options:
            vetted = optnames.vet(level, name, value)
            if vetted is None:  # as a replayed setsockopt was: refused, and ignored
                log.debug("option %d/%d of a new socket not applied", level, name)
                continue
            entry.options = [o for o in entry.options if o[:2] != (level, name)]
            entry.options.append((level, name, vetted))
        try:
            answer = self._connect_entry(entry, req)
        except BaseException:
            self._drop(entry)
            raise
        if not isinstance(answer, bytes):
            return self._new_connected(entry, answer)
        if proto.RESP.unpack_from(answer)[0] in (0, -errno.EINPROGRESS):
            return _with_handle(answer, entry.handle)
        self._drop(entry)  # refused by the policy: no socket for the guest
        return answer

    async def _new_connected(self, entry: Entry, waiting: Coroutine[Any, Any, bytes]) -> bytes:
        """A new socket's connect that waits: the guest gets the socket only if it
        connects."""
        try:
            answer = await waiting
        except BaseException:
            self._close_entry(entry)
            raise
        return _with_handle(answer, entry.handle)

    @staticmethod
    def _may_connect(entry: Entry, req: proto.ConnectReq) -> None:
        """Raises what Linux answers a connect on a socket in this state."""
        if req.addr.family != entry.family:
            raise ProtoError("address family differs from the socket's", errno.EAFNOSUPPORT)
        if entry.state is State.LISTENING:
            raise ProtoError("listening socket", errno.EINVAL)
        if entry.state is State.CONNECTING:
            raise ProtoError("connect already under way", errno.EALREADY)
        if entry.state is not State.NEW and entry.type == proto.SOCK_STREAM:
            raise ProtoError("already connected", errno.EISCONN)
        if entry.error:  # an asynchronous connect failed: its error, once (as on Linux)
            err, entry.error = entry.error, 0
            raise ProtoError("the connect failed", err)

    def _connect_entry(self, entry: Entry, req: proto.ConnectReq) -> Answer:
        self._may_connect(entry, req)
        generation = self._plain_generation
        flow = self._flow("outbound", entry.protocol, req.addr)
        rule, action = self.policy.decide(flow)
        if entry.started is not None and not isinstance(action, Allow):
            self._unstart(entry)  # the policy changed since the native path looked
        if isinstance(action, Deny):
            self._record("connect", flow, rule, action, err=action.errno)
            return proto.error_addr_resp(action.errno)
        if entry.type == proto.SOCK_DGRAM:
            if isinstance(action, TLS | Proxy):
                err = errno.EPROTONOSUPPORT
                self._record("connect", flow, rule, action, err=err, detail="UDP: no TLS or proxy")
                return proto.error_addr_resp(err)
            self._record("connect", flow, rule, action)
            if entry.sock is None:
                entry.sock = self._host_socket(entry)
            entry.sock.connect(req.addr.sockaddr())
            entry.peer = req.addr
            entry.state = State.READY
            entry.udp_decisions[(req.addr.host, req.addr.port)] = 0
            return self._local_answer(entry)
        self._record("connect", flow, rule, action)
        # timeout 0: the guest's socket is non-blocking; the connect goes on without it.
        in_background = req.timeout == 0
        limit = self.connect_timeout
        timeout = limit if req.timeout is None or in_background else min(req.timeout, limit)
        # From here until the handshakes end no data path may touch the socket.
        entry.state = State.CONNECTING
        started = None
        if entry.started is not None:  # the native path's, under way
            started, entry.started = entry.started, None
        elif not isinstance(action, TLS | Proxy):
            started = self._start_connect(entry, req.addr)
            if started is None:  # connected (or refused) already: no loop hop
                if type(action) is Allow:
                    self._allow_native(req.addr, (flow, rule, action), generation)
                return self._local_answer(entry)
        waiting = self._connect_stream(entry, req.addr, (flow, rule, action), timeout, started)
        if not in_background:
            return waiting
        self._in_background(proto.FN_CONNECT, self._settle_later(entry, waiting))
        local = self._local_answer(entry)[proto.RESP.size :] if entry.sock else None
        return proto.resp(-errno.EINPROGRESS) + (local or proto.encode_addr(None))

    async def _settle_later(self, entry: Entry, waiting: Coroutine[Any, Any, bytes]) -> bytes:
        """A connect the guest did not wait for: READY when it succeeds, else its
        errno kept for SO_ERROR (and poll's POLLERR); either way poll learns of it."""
        try:
            return await waiting
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not entry.closed:
                entry.error = failure_errno(proto.FN_CONNECT, error)
            return b""
        finally:
            for fut in entry.settled:
                if not fut.done():
                    fut.set_result(None)
            entry.settled.clear()

    def _start_connect(self, entry: Entry, addr: Addr) -> int | None:
        """Starts a plain TCP connect on the engine thread: None if it has ended
        (READY, or the error raised), else the pending connect's errno for the loop.

        A loopback connect answers EINPROGRESS but has finished by the time a
        zero-timeout poll looks, so connections to local peers never wait in Python.
        """
        try:
            sock = self._host_socket(entry, addr.socket_family)
        except BaseException:
            entry.state = State.NEW  # no host socket (the fd budget said no)
            raise
        entry.sock = sock
        try:
            err = sock.connect_ex(addr.sockaddr())
            if err in (errno.EINPROGRESS, errno.EAGAIN):
                probe = select.poll()
                probe.register(sock, select.POLLOUT)
                events = probe.poll(0)
                if not events:
                    return err  # still under way: the loop waits for it
                # Writable without an error is connected (TCP reports no POLLOUT
                # while SYN_SENT); only a failure needs SO_ERROR to say which.
                failed = events[0][1] & (select.POLLERR | select.POLLHUP)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if failed else 0
            if err:
                raise OSError(err, errno.errorcode.get(err, "connect failed"))
            entry.peer = addr
            self._ready(entry, just_made=True)
        except BaseException:
            self._unconnect(entry, sock)
            raise
        return None

    @staticmethod
    def _unstart(entry: Entry) -> None:
        """Closes a connect the native path started that Python will not go on with."""
        sock, entry.sock, entry.started = entry.sock, None, None
        if sock is not None:
            sock.close()

    @staticmethod
    def _unconnect(entry: Entry, sock: socket.socket) -> None:
        """A failed connect: the entry goes back to NEW and its host socket closes."""
        current = entry.sock or sock
        entry.sock = None
        entry.tls = False
        entry.peer = None
        if entry.state is State.CONNECTING:
            entry.state = State.NEW
        current.close()

    async def _connect_stream(
        self, entry: Entry, addr: Addr, decision: Decision, timeout: float, started: int | None
    ) -> bytes:
        """The connect that waits: a plain one under way (``started``: its errno so
        far), or one through a proxy and/or TLS, from the start."""
        flow, rule, action = decision
        deadline = self._deadline(timeout)
        target = addr
        if isinstance(action, Proxy):
            infos = await asyncio.get_running_loop().getaddrinfo(
                action.host, action.port, type=socket.SOCK_STREAM
            )
            target = proto.addr_from_sockaddr(infos[0][0], infos[0][4])
        if started is None:
            entry.sock = self._host_socket(entry, target.socket_family)
        elif entry.sock is None:
            raise Closed()  # closed before the loop took the connect over
        sock = entry.sock
        try:
            await self._raw_connect(entry, sock, target, deadline, started)
            if isinstance(action, Proxy):
                try:
                    await self._socks5(entry, sock, addr, deadline, action)
                except BlockingIOError as error:  # the deadline passed (a silent proxy)
                    detail = f"SOCKS5 proxy did not answer in time: {error}"
                    self._record(
                        "proxy-failed", flow, rule, action, err=errno.ETIMEDOUT, detail=detail
                    )
                    raise TimeoutError(errno.ETIMEDOUT, detail) from error
                except OSError as error:
                    self._record(
                        "proxy-failed", flow, rule, action, err=errno_of(error), detail=str(error)
                    )
                    raise
            tls = action.tls if isinstance(action, Proxy) else action
            if isinstance(tls, TLS):  # TLS, or TLS through the proxy's tunnel
                await self._tls(entry, tls, (flow, rule, action), deadline)
            entry.peer = addr
            self._ready(entry)
        except BaseException:
            self._unconnect(entry, sock)
            raise
        return self._local_answer(entry)

    async def _raw_connect(
        self,
        entry: Entry,
        sock: socket.socket,
        target: Addr,
        deadline: float | None,
        started: int | None,
    ) -> None:
        err = sock.connect_ex(target.sockaddr()) if started is None else started
        if err in (errno.EINPROGRESS, errno.EAGAIN):
            if not await self._wait(entry, True, deadline):
                raise TimeoutError(errno.ETIMEDOUT, "connect timed out")
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, errno.errorcode.get(err, "connect failed"))

    async def _socks5(
        self,
        entry: Entry,
        sock: socket.socket,
        dest: Addr,
        deadline: float | None,
        action: Proxy,
    ) -> None:
        """A SOCKS5 CONNECT (RFC 1928) over ``sock``, logging in (RFC 1929) when the
        rule's URL has a username and password."""

        async def send(data: bytes) -> None:
            view = memoryview(data)
            while view:
                view = view[await self._io(entry, partial(sock.send, view), True, deadline) :]

        async def recv(n: int) -> bytes:
            out = b""
            while len(out) < n:
                op = partial(sock.recv, n - len(out))
                chunk = await self._io(entry, op, False, deadline)
                if not chunk:
                    raise OSError(errno.ECONNREFUSED, "SOCKS5 proxy closed the connection")
                out += chunk
            return out

        login = None
        if action.username is not None and action.password is not None:
            login = (action.username, action.password)
        await socks5.connect(send, recv, dest, login)

    async def _tls(
        self, entry: Entry, config: TLS, decision: Decision, deadline: float | None
    ) -> None:
        """Wraps the connected (or tunnelled) socket in TLS as ``config`` says;
        ``decision`` is what the audit names."""
        flow, rule, action = decision
        names = self._names.names(str(flow.canonical))
        hostname = config.server_hostname or (names[-1] if names else str(flow.canonical))
        assert entry.sock is not None
        try:
            context = ssl.create_default_context(cafile=config.cafile)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            tls = context.wrap_socket(
                entry.sock, server_hostname=hostname, do_handshake_on_connect=False
            )
        except (OSError, ValueError) as error:
            self._record("tls-failed", flow, rule, action, err=TLS_ERRNO, detail=str(error))
            raise OSError(TLS_ERRNO, str(error)) from error
        entry.sock = tls
        entry.tls = True
        hs_deadline = self._deadline(_HANDSHAKE_S)
        if deadline is not None and hs_deadline is not None:
            hs_deadline = min(deadline, hs_deadline)
        try:
            await self._io(entry, tls.do_handshake, False, hs_deadline)
        except BlockingIOError as error:  # the deadline passed: a silent server
            detail = f"TLS handshake with {hostname} timed out"
            self._record("tls-failed", flow, rule, action, err=errno.ETIMEDOUT, detail=detail)
            raise TimeoutError(errno.ETIMEDOUT, detail) from error
        except (ssl.SSLError, ssl.CertificateError, OSError) as error:
            self._record("tls-failed", flow, rule, action, err=TLS_ERRNO, detail=str(error))
            raise OSError(TLS_ERRNO, f"TLS handshake with {hostname} failed: {error}") from error
        self._record("tls-established", flow, rule, action, detail=f"{tls.version()} {hostname}")


def _with_handle(answer: bytes, handle: int) -> bytes:
    """A connect's answer naming the new socket (``aux``)."""
    result, _ = proto.RESP.unpack_from(answer)
    return proto.resp(result, handle) + answer[proto.RESP.size :]
