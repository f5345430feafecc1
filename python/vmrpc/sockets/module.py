"""`SocketOutsourcing`: the host module that runs a guest's sockets on the host stack.

One instance serves one VM (it keeps that VM's socket table); register it with
``vm.register_hm(SocketOutsourcing(policy))``. The wire format is in `proto`
(mirror of ``guest/include/vmrpc/socket_proto.h``).

Threads: quick operations (the data plane's first try, socket options, names, a
``poll`` that finds something ready) run synchronously on the VM's RPC engine thread
with non-blocking system calls. Whatever has to wait returns a coroutine that runs on
vmrpc's shared asyncio loop (the engine answers the guest when it finishes), so a
blocked guest socket never holds up other sockets, vCPUs or VMs. Sockets are
registered with the loop and closed only on the loop thread.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import ipaddress
import logging
import select
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from vmrpc import _runtime, _vmm
from vmrpc.hostmodule import HostModule, function
from vmrpc.sockets import proto
from vmrpc.sockets.fdbudget import FdBudget
from vmrpc.sockets.policy import (
    TLS,
    TLS_ERRNO,
    Deny,
    Expose,
    Flow,
    Policy,
    Proxy,
    canonicalize,
)
from vmrpc.sockets.proto import Addr, ProtoError

__all__ = ["AuditRecord", "SocketOutsourcing"]

log = logging.getLogger("vmrpc.sockets")

Answer = bytes | Coroutine[Any, Any, bytes]

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
_READ_ONLY = {(socket.SOL_SOCKET, socket.SO_ERROR), (socket.SOL_SOCKET, socket.SO_TYPE)}

#: Default of `SocketOutsourcing`'s ``connect_timeout``: Linux's usual SYN retry time.
CONNECT_TIMEOUT_S = 75.0
_HANDSHAKE_S = 15.0
_GAI_S = 10.0
_CLOSE_WAIT_S = 5.0

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


@dataclass(frozen=True)
class AuditRecord:
    """One policy decision or its outcome (`SocketOutsourcing.audit`)."""

    time: float
    event: str  # connect, sendto, listen, bind, tls-failed, proxy-failed
    flow: str  # Flow.describe()
    action: str
    rule: int | None  # index of the deciding rule; None: the default
    errno: int = 0  # what the guest got (0: success)
    detail: str = ""


class _State(enum.Enum):
    """Where a socket-table entry is in its life.

    Only a READY entry carries data, in every path (the Python fast path, the request
    path, poll, and the native data plane, which learns of a socket only when it
    becomes READY). A stream socket is CONNECTING from the guest's connect until the
    TCP connect, the SOCKS5 handshake and the TLS handshake have all finished: a byte
    sent in that window would reach the peer (or the proxy) before the handshake, as
    plaintext (issue 13.1).
    """

    NEW = enum.auto()  # no host socket yet (a UDP socket gets one at its first sendto)
    CONNECTING = enum.auto()  # connect and handshakes under way: no data, no poll events
    READY = enum.auto()  # connected stream, or UDP socket: data may flow
    LISTENING = enum.auto()  # exposed host listener: accept only
    CLOSED = enum.auto()  # no new operation starts on it


@dataclass(eq=False)
class _Entry:
    """One row of the socket table."""

    handle: int
    family: int  # proto.AF_*
    type: int  # proto.SOCK_*
    sock: socket.socket | None = None
    state: _State = _State.NEW
    tls: bool = False
    options: list[tuple[int, int, bytes]] = field(default_factory=list)
    peer: Addr | None = None  # as the guest sees it (the destination it asked for)
    udp_decisions: dict[tuple[str, int], int] = field(default_factory=dict)
    readers: list[asyncio.Future[None]] = field(default_factory=list)
    writers: list[asyncio.Future[None]] = field(default_factory=list)
    fd: int = -1  # registered with the loop while readers/writers wait
    exposed_key: tuple[str, int] | None = None

    @property
    def protocol(self) -> str:
        return "tcp" if self.type == proto.SOCK_STREAM else "udp"

    @property
    def closed(self) -> bool:
        return self.state is _State.CLOSED

    @property
    def ready(self) -> bool:
        """Data may flow (and the socket exists)."""
        return self.state is _State.READY and self.sock is not None


class _Closed(Exception):
    """The socket was closed while an operation waited on it."""


_Decision = tuple[Flow, int | None, object]
_GAI_FAMILIES = {
    0: socket.AF_UNSPEC,
    proto.AF_INET: socket.AF_INET,
    proto.AF_INET6: socket.AF_INET6,
}


def _failure_errno(fn: int, error: BaseException) -> int:
    """The errno a guest gets for an operation that ended with ``error``."""
    if isinstance(error, asyncio.CancelledError):
        return errno.ESHUTDOWN  # the VM is going away
    if isinstance(error, ProtoError):
        return error.errno
    if isinstance(error, _Closed):
        return errno.EBADF
    if isinstance(error, OSError):
        return _errno_of(error)
    log.error("sockets.%s failed", proto.FUNCTION_NAMES[fn], exc_info=error)
    return errno.EIO


def _errno_of(error: BaseException) -> int:
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return TLS_ERRNO
    if isinstance(error, TimeoutError) and not getattr(error, "errno", None):
        return errno.ETIMEDOUT
    if isinstance(error, OSError) and error.errno:
        return error.errno
    return errno.EIO


class SocketOutsourcing(HostModule):
    """The ``sockets`` host module (version 1.0).

    Args:
        policy: what the guest may do; default: everything outbound, nothing inbound.
        max_sockets: size of the VM's socket table.
        max_host_fds: this VM's budget of host fds (a connected plain TCP socket
            costs 2, others 1); past it the guest gets EMFILE.
        connect_timeout: the longest a guest's connect may take, in seconds, the TCP
            connect, the SOCKS5 and the TLS handshakes together; a guest socket's
            ``SO_SNDTIMEO`` shortens it. Past it the connect fails with ETIMEDOUT.
        fd_reserve: fds of the process's soft ``RLIMIT_NOFILE`` that no guest socket
            may take (default ``max(64, limit / 8)``), so that VMs can still be
            created; past it the guest gets ENFILE. See `fdbudget`.

    Attributes:
        audit: every policy decision and outcome, oldest first (`AuditRecord`).
        exposed: guest listeners mirrored on the host, ``(proto, guest_port) ->
            (host, port)``.
    """

    name = proto.MODULE_NAME
    version = (proto.MODULE_MAJOR, proto.MODULE_MINOR)

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        max_sockets: int = 1024,
        max_host_fds: int = 1024,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        fd_reserve: int | None = None,
    ) -> None:
        if not 0 < connect_timeout < float("inf"):
            raise ValueError(f"connect_timeout must be > 0 and finite, got {connect_timeout!r}")
        self.connect_timeout = float(connect_timeout)
        self.policy = policy if policy is not None else Policy()
        # Name rules resolve here, before any guest runs; later refreshes never block.
        self.policy.resolve_names()
        self.max_sockets = max_sockets
        self._fd_budget = FdBudget(max_host_fds, fd_reserve)
        self.audit: list[AuditRecord] = []
        self.exposed: dict[tuple[str, int], tuple[str, int]] = {}
        self._table: dict[int, _Entry] = {}
        self._lock = threading.Lock()
        self._exposed_cond = threading.Condition(self._lock)
        self._counts: Counter[str] = Counter()
        self._names: dict[str, list[str]] = {}  # address -> names it was resolved from
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.native_data_plane = _vmm.SocketDataPlane()
        """Serves the guest's zero-copy calls (SEND_BUF, RECV_BUF) on connected plain
        TCP sockets in Rust, without Python (`vmrpc.VM.register_hm` hands it to the
        VMM). Sockets are attached once connected and detached before they close;
        what would block falls back to SEND/RECV, served below."""

    def native_handlers(self) -> Sequence[_vmm.NativeHandler]:
        """The native data plane (see `native_data_plane`)."""
        return (self.native_data_plane,)

    # ---- public ---------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``sockets_created`` (host OS sockets), ``sockets_open``,
        ``rpcs`` and ``rpc.<function>``, ``bytes_sent``, ``bytes_received``, and of
        those the calls the native data plane answered (``native_sends``,
        ``native_recvs``)."""
        with self._lock:
            counts = dict(self._counts)
            open_ = sum(1 for e in self._table.values() if e.sock is not None)
        native = self.native_data_plane.stats
        counts["rpcs"] = counts.get("rpcs", 0) + native["sends"] + native["recvs"]
        counts["rpc.send"] = counts.get("rpc.send", 0) + native["sends"]
        counts["rpc.recv"] = counts.get("rpc.recv", 0) + native["recvs"]
        counts["bytes_sent"] = counts.get("bytes_sent", 0) + native["bytes_sent"]
        counts["bytes_received"] = counts.get("bytes_received", 0) + native["bytes_received"]
        counts["native_sends"], counts["native_recvs"] = native["sends"], native["recvs"]
        counts.setdefault("sockets_created", 0)
        counts["sockets_open"] = open_
        return counts

    def wait_exposed(
        self, guest_port: int, protocol: str = "tcp", timeout: float = 10.0
    ) -> tuple[str, int]:
        """Block until the guest's ``guest_port`` is exposed; return the host ``(host, port)``."""
        key = (protocol, guest_port)
        with self._exposed_cond:
            if not self._exposed_cond.wait_for(lambda: key in self.exposed, timeout):
                raise TimeoutError(f"guest {protocol} port {guest_port} not exposed in {timeout} s")
            return self.exposed[key]

    def close(self) -> None:
        """Close every host socket of this VM and end its waiting calls. Idempotent.

        `vmrpc.VM.close` calls this for every registered module that has it.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.native_data_plane.clear()
        loop = _runtime.loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(self._close_all())
            return
        future = asyncio.run_coroutine_threadsafe(self._close_all(), loop)
        try:
            future.result(_CLOSE_WAIT_S)
        except Exception:  # pragma: no cover - last resort: close without the loop
            log.exception("closing guest sockets on the loop failed; closing directly")
            for entry in list(self._table.values()):
                if entry.sock is not None:
                    entry.sock.close()
            self._table.clear()

    # ---- plumbing ------------------------------------------------------------------

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def _call(self, fn: int, payload: bytes, handler: Callable[[Any], Answer]) -> Answer:
        with self._lock:
            self._counts["rpcs"] += 1
            self._counts["rpc." + proto.FUNCTION_NAMES[fn]] += 1
            closed = self._closed
        fail = proto.error_addr_resp if fn in proto.ADDR_ANSWER_FUNCTIONS else proto.error_resp
        if closed:
            return fail(errno.ESHUTDOWN)
        try:
            request = proto.parse(fn, payload)
            answer = handler(request)
        except ProtoError as error:
            log.debug("sockets.%s: rejected request: %s", proto.FUNCTION_NAMES[fn], error)
            return fail(error.errno)
        except OSError as error:
            return fail(_errno_of(error))
        if isinstance(answer, bytes):
            return answer
        self._count("waits." + proto.FUNCTION_NAMES[fn])
        return self._guard(fn, answer, fail)

    async def _guard(
        self, fn: int, coroutine: Coroutine[Any, Any, bytes], fail: Callable[[int], bytes]
    ) -> bytes:
        """Runs a waiting operation; every failure becomes an errno answer."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if self._closed:
                coroutine.close()
                return fail(errno.ESHUTDOWN)
            return await coroutine
        except (asyncio.CancelledError, Exception) as error:
            return fail(_failure_errno(fn, error))
        finally:
            if task is not None:
                self._tasks.discard(task)

    def _entry(self, handle: int) -> _Entry:
        entry = self._table.get(handle)
        if entry is None or entry.closed:
            raise ProtoError(f"no socket {handle}", errno.EBADF)
        return entry

    def _connected(self, handle: int) -> tuple[_Entry, socket.socket]:
        entry = self._entry(handle)
        if not entry.ready:
            raise ProtoError(f"socket {handle} is not connected", errno.ENOTCONN)
        assert entry.sock is not None
        return entry, entry.sock

    def _new_entry(self, family: int, type_: int) -> _Entry:
        with self._lock:
            if self._closed:
                raise ProtoError("module closed", errno.ESHUTDOWN)
            if len(self._table) >= self.max_sockets:
                raise ProtoError("socket table full", errno.EMFILE)
            handle = next(h for h in range(1, self.max_sockets + 2) if h not in self._table)
            entry = _Entry(handle, family, type_)
            self._table[handle] = entry
            return entry

    def _held_fds(self) -> int:
        """Host fds this VM holds: its sockets and the native data plane's duplicates."""
        with self._lock:
            sockets = sum(1 for e in self._table.values() if e.sock is not None)
        return sockets + self.native_data_plane.stats["attached"]

    def _host_socket(self, entry: _Entry, family: int | None = None) -> socket.socket:
        self._fd_budget.check(self._held_fds())
        if family is None:
            family = socket.AF_INET if entry.family == proto.AF_INET else socket.AF_INET6
        kind = socket.SOCK_STREAM if entry.type == proto.SOCK_STREAM else socket.SOCK_DGRAM
        sock = socket.socket(family, kind)
        try:
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        for level, name, value in entry.options:
            try:
                sock.setsockopt(level, name, value)
            except OSError:  # e.g. IPV6_V6ONLY on an IPv4 route to a proxy
                log.debug("option %d/%d not applied to handle %d", level, name, entry.handle)
        self._count("sockets_created")
        return sock

    def _record(
        self,
        event: str,
        flow: Flow,
        rule: int | None,
        action: object,
        *,
        err: int = 0,
        detail: str = "",
    ) -> None:
        name = "stay-in-guest" if action is None else type(action).__name__
        record = AuditRecord(time.time(), event, flow.describe(), name, rule, err, detail)
        with self._lock:
            self.audit.append(record)
        level = logging.WARNING if err and event.endswith("failed") else logging.INFO
        log.log(
            level,
            "%s %s -> %s (rule %s)%s%s",
            event,
            record.flow,
            name,
            "default" if rule is None else rule,
            f" errno={errno.errorcode.get(err, err)}" if err else "",
            f": {detail}" if detail else "",
        )

    def _flow(self, direction: str, protocol: str, addr: Addr) -> Flow:
        key = str(canonicalize(addr.host, direction))  # type: ignore[arg-type]
        names = frozenset(self._names.get(key, ()))
        flow = Flow(direction, protocol, addr.host, addr.port, names)  # type: ignore[arg-type]
        return self.policy.with_rule_names(flow)

    # ---- waiting on the loop ----------------------------------------------------------

    def _wake(self, entry: _Entry, write: bool) -> None:
        waiters = entry.writers if write else entry.readers
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        waiters.clear()
        self._unregister(entry, write)

    def _unregister(self, entry: _Entry, write: bool) -> None:
        if entry.fd < 0:
            return
        loop = asyncio.get_running_loop() if _on_loop() else _runtime.loop()
        if write:
            loop.remove_writer(entry.fd)
        else:
            loop.remove_reader(entry.fd)

    async def _wait(self, entry: _Entry, write: bool, deadline: float | None) -> bool:
        """Waits until the socket is readable (writable); False on timeout."""
        loop = asyncio.get_running_loop()
        if entry.closed or entry.sock is None:
            raise _Closed()
        timeout = None if deadline is None else deadline - loop.time()
        if timeout is not None and timeout <= 0:
            return False
        fut: asyncio.Future[None] = loop.create_future()
        waiters = entry.writers if write else entry.readers
        waiters.append(fut)
        if len(waiters) == 1:
            entry.fd = entry.sock.fileno()
            if write:
                loop.add_writer(entry.fd, self._wake, entry, True)
            else:
                loop.add_reader(entry.fd, self._wake, entry, False)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if fut in waiters:
                waiters.remove(fut)
                if not waiters and not entry.closed:
                    self._unregister(entry, write)

    @staticmethod
    def _deadline(timeout: float | None) -> float | None:
        return None if timeout is None else asyncio.get_running_loop().time() + timeout

    async def _io(
        self, entry: _Entry, op: Callable[[], Any], write: bool, deadline: float | None
    ) -> Any:
        """Retries a non-blocking ``op`` until it stops asking to wait; EAGAIN on timeout."""
        while True:
            if entry.closed or entry.sock is None:
                raise _Closed()
            try:
                return op()
            except (BlockingIOError, InterruptedError):
                wait_write = write
            except ssl.SSLWantReadError:
                wait_write = False
            except ssl.SSLWantWriteError:
                wait_write = True
            if not await self._wait(entry, wait_write, deadline):
                raise BlockingIOError(errno.EAGAIN, "timed out")

    # ---- control plane ------------------------------------------------------------------

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
                entry.state = _State.LISTENING
            else:
                entry.state = _State.READY  # an exposed UDP socket receives at once
        except (OSError, ProtoError) as error:  # ProtoError: the fd budget said no
            self._drop(entry)
            err = error.errno if isinstance(error, ProtoError) else _errno_of(error)
            self._record(event, flow, rule, action, err=err, detail=str(error))
            return proto.error_addr_resp(err)
        where = proto.addr_from_sockaddr(family, sock.getsockname())
        self._record(event, flow, rule, action, detail=f"host {where}")
        entry.exposed_key = (protocol, req.addr.port)
        with self._exposed_cond:
            self.exposed[entry.exposed_key] = (where.host, where.port)
            self._exposed_cond.notify_all()
        return proto.addr_resp(entry.handle, where)

    def _drop(self, entry: _Entry) -> None:
        """Forgets an entry that never had waiters (synchronous paths only)."""
        entry.state = _State.CLOSED
        with self._lock:
            self._table.pop(entry.handle, None)
        if entry.sock is not None:
            entry.sock.close()

    @function(proto.FN_ACCEPT)
    def rpc_accept(self, payload: bytes) -> Answer:
        return self._call(proto.FN_ACCEPT, payload, self._accept)

    def _accept(self, req: proto.WaitReq) -> Answer:
        entry = self._entry(req.handle)
        if entry.state is not _State.LISTENING or entry.sock is None:
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

    def _accepted(self, listener: _Entry, result: tuple[socket.socket, Any]) -> bytes:
        sock, peer = result
        self._count("sockets_created")
        try:
            self._fd_budget.check(self._held_fds(), need=0)  # it is open already
            new = self._new_entry(listener.family, listener.type)
        except ProtoError:
            sock.close()
            raise
        sock.setblocking(False)
        new.sock = sock
        new.peer = proto.addr_from_sockaddr(sock.family, peer)
        self._ready(new)
        return proto.addr_resp(new.handle, new.peer)

    @function(proto.FN_CONNECT)
    def rpc_connect(self, payload: bytes) -> Answer:
        return self._call(proto.FN_CONNECT, payload, self._connect)

    def _connect(self, req: proto.ConnectReq) -> Answer:
        entry = self._entry(req.handle)
        if req.addr.family != entry.family:
            raise ProtoError("address family differs from the socket's", errno.EAFNOSUPPORT)
        if entry.state is _State.LISTENING:
            raise ProtoError("listening socket", errno.EINVAL)
        if entry.state is _State.CONNECTING:
            raise ProtoError("connect already under way", errno.EALREADY)
        if entry.state is not _State.NEW and entry.type == proto.SOCK_STREAM:
            raise ProtoError("already connected", errno.EISCONN)
        flow = self._flow("outbound", entry.protocol, req.addr)
        rule, action = self.policy.decide(flow)
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
            entry.state = _State.READY
            entry.udp_decisions[(req.addr.host, req.addr.port)] = 0
            return self._local_answer(entry)
        self._record("connect", flow, rule, action)
        limit = self.connect_timeout
        timeout = limit if req.timeout is None else min(req.timeout, limit)
        # From here until the handshakes end no data path may touch the socket.
        entry.state = _State.CONNECTING
        return self._connect_stream(entry, req.addr, (flow, rule, action), timeout)

    def _local_answer(self, entry: _Entry) -> bytes:
        assert entry.sock is not None
        local = proto.addr_from_sockaddr(entry.sock.family, entry.sock.getsockname())
        return proto.addr_resp(0, local)

    async def _connect_stream(
        self, entry: _Entry, addr: Addr, decision: _Decision, timeout: float
    ) -> bytes:
        flow, rule, action = decision
        deadline = self._deadline(timeout)
        target = addr
        if isinstance(action, Proxy):
            infos = await asyncio.get_running_loop().getaddrinfo(
                action.host, action.port, type=socket.SOCK_STREAM
            )
            target = proto.addr_from_sockaddr(infos[0][0], infos[0][4])
        sock = self._host_socket(entry, target.socket_family)
        entry.sock = sock
        try:
            await self._raw_connect(entry, sock, target, deadline)
            if isinstance(action, Proxy):
                try:
                    await self._socks5(entry, sock, addr, deadline)
                except BlockingIOError as error:  # the deadline passed (a silent proxy)
                    detail = f"SOCKS5 proxy did not answer in time: {error}"
                    self._record(
                        "proxy-failed", flow, rule, action, err=errno.ETIMEDOUT, detail=detail
                    )
                    raise TimeoutError(errno.ETIMEDOUT, detail) from error
                except OSError as error:
                    self._record(
                        "proxy-failed", flow, rule, action, err=_errno_of(error), detail=str(error)
                    )
                    raise
            tls = action.tls if isinstance(action, Proxy) else action
            if isinstance(tls, TLS):  # TLS, or TLS through the proxy's tunnel
                await self._tls(entry, tls, (flow, rule, action), deadline)
            entry.peer = addr
            self._ready(entry)
        except BaseException:
            current = entry.sock or sock
            entry.sock = None
            entry.tls = False
            entry.peer = None
            if entry.state is _State.CONNECTING:
                entry.state = _State.NEW
            current.close()
            raise
        return self._local_answer(entry)

    async def _raw_connect(
        self, entry: _Entry, sock: socket.socket, target: Addr, deadline: float | None
    ) -> None:
        err = sock.connect_ex(target.sockaddr())
        if err in (errno.EINPROGRESS, errno.EAGAIN):
            if not await self._wait(entry, True, deadline):
                raise TimeoutError(errno.ETIMEDOUT, "connect timed out")
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, errno.errorcode.get(err, "connect failed"))

    async def _socks5(
        self, entry: _Entry, sock: socket.socket, dest: Addr, deadline: float | None
    ) -> None:
        """A SOCKS5 CONNECT (RFC 1928) without authentication, over ``sock``."""

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

    async def _tls(
        self, entry: _Entry, config: TLS, decision: _Decision, deadline: float | None
    ) -> None:
        """Wraps the connected (or tunnelled) socket in TLS as ``config`` says;
        ``decision`` is what the audit names."""
        flow, rule, action = decision
        names = self._names.get(str(flow.canonical))
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
        entry.state = _State.CLOSED  # no new operation starts on it from now on
        if entry.sock is None:
            with self._lock:
                self._table.pop(entry.handle, None)
            return proto.resp(0)

        async def close() -> bytes:
            self._close_entry(entry)
            return proto.resp(0)

        return close()

    def _close_entry(self, entry: _Entry) -> None:
        """Closes on the loop thread: fails the waiters, unregisters, closes."""
        entry.state = _State.CLOSED
        for waiters, write in ((entry.readers, False), (entry.writers, True)):
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(_Closed())
            if waiters:
                waiters.clear()
                self._unregister(entry, write)
        with self._lock:
            self._table.pop(entry.handle, None)
            if entry.exposed_key is not None:
                self.exposed.pop(entry.exposed_key, None)
        if entry.sock is not None:
            self.native_data_plane.detach(entry.handle)
            sock, entry.sock = entry.sock, None
            sock.close()
            self._count("sockets_closed")

    async def _close_all(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_CLOSE_WAIT_S)
        for entry in list(self._table.values()):
            self._close_entry(entry)
        log.debug("sockets module closed: %s", self.stats)

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
        size = _OPTIONS.get(key, _INT if key in _READ_ONLY else None)
        if size is None:
            raise ProtoError(f"option {req.level}/{req.name}", errno.ENOPROTOOPT)
        if req.length < size:
            raise ProtoError("option buffer too short")
        if entry.sock is not None:
            value = entry.sock.getsockopt(req.level, req.name, size)
        elif key == (socket.SOL_SOCKET, socket.SO_TYPE):
            value = entry.type.to_bytes(4, "little")
        else:
            stored = [v for lv, nm, v in entry.options if (lv, nm) == key]
            value = stored[-1] if stored else bytes(size)
        return proto.resp(0, len(value)) + value

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

    @function(proto.FN_GETADDRINFO)
    def rpc_getaddrinfo(self, payload: bytes) -> Answer:
        return self._call(proto.FN_GETADDRINFO, payload, self._getaddrinfo)

    def _getaddrinfo(self, req: proto.GaiReq) -> Answer:
        family = _GAI_FAMILIES[req.family]

        async def resolve() -> bytes:
            loop = asyncio.get_running_loop()
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(req.name, None, family=family, type=socket.SOCK_STREAM), _GAI_S
                )
            except socket.gaierror as error:
                code = error.errno if error.errno is not None and error.errno < 0 else 0
                code = code or proto.EAI_FAIL
                return proto.resp(code)
            except TimeoutError:
                return proto.resp(proto.EAI_AGAIN)
            addrs: list[Addr] = []
            for fam, _, _, _, sockaddr in infos:
                addr = proto.addr_from_sockaddr(fam, sockaddr)
                addr = Addr(addr.family, addr.host, 0, 0, addr.scope_id)
                if addr not in addrs:
                    addrs.append(addr)
            addrs = addrs[: proto.MAX_ADDRS]
            if not addrs:
                return proto.resp(proto.EAI_NONAME)
            with self._lock:
                for addr in addrs:
                    names = self._names.setdefault(str(canonicalize(addr.host)), [])
                    if req.name in names:
                        names.remove(req.name)
                    names.append(req.name)
            body = b"".join(proto.encode_addr(a) for a in addrs)
            return proto.resp(len(addrs), len(addrs)) + body

        return resolve()

    @function(proto.FN_POLL)
    def rpc_poll(self, payload: bytes) -> Answer:
        return self._call(proto.FN_POLL, payload, self._poll)

    def _poll_now(self, fds: tuple[tuple[int, int], ...]) -> tuple[int, list[int]]:
        revents = [0] * len(fds)
        poller = select.poll()
        where: dict[int, list[int]] = {}
        for i, (handle, events) in enumerate(fds):
            entry = self._table.get(handle)
            if entry is None or entry.closed:
                revents[i] = select.POLLNVAL
                continue
            if entry.state is _State.CONNECTING:
                continue  # nothing to report before the handshakes end
            if entry.sock is None:
                dgram = entry.type == proto.SOCK_DGRAM
                revents[i] = select.POLLOUT & events if dgram else select.POLLHUP
                continue
            if entry.tls and events & select.POLLIN and entry.sock.pending():  # type: ignore[attr-defined]
                revents[i] |= select.POLLIN
            try:
                fd = entry.sock.fileno()
            except OSError:
                fd = -1
            if fd < 0:
                revents[i] = select.POLLNVAL
                continue
            if fd not in where:
                where[fd] = []
                poller.register(fd, events & 0xFFFF)
            else:
                poller.modify(fd, events & 0xFFFF)  # pragma: no cover - same socket twice
            where[fd].append(i)
        for fd, ev in poller.poll(0):
            for i in where.get(fd, ()):
                revents[i] |= ev
        return sum(1 for r in revents if r), revents

    @staticmethod
    def _poll_answer(fds: tuple[tuple[int, int], ...], ready: int, revents: list[int]) -> bytes:
        body = b"".join(
            proto.POLLFD.pack(h, e - 0x10000 if e > 0x7FFF else e, r)
            for (h, e), r in zip(fds, revents, strict=True)
        )
        return proto.resp(ready, len(fds)) + body

    def _poll(self, req: proto.PollReq) -> Answer:
        ready, revents = self._poll_now(req.fds)
        if ready or req.timeout == 0 or not req.fds:
            if not req.fds and req.timeout != 0:
                return self._sleep_answer(req)
            return self._poll_answer(req.fds, ready, revents)

        async def wait() -> bytes:
            loop = asyncio.get_running_loop()
            deadline = self._deadline(req.timeout)
            while True:
                waits = []
                for handle, events in req.fds:
                    entry = self._table.get(handle)
                    if entry is None or entry.sock is None:
                        continue
                    if entry.state not in (_State.READY, _State.LISTENING):
                        continue
                    if events & select.POLLIN or not events & select.POLLOUT:
                        waits.append(asyncio.ensure_future(self._wait(entry, False, deadline)))
                    if events & select.POLLOUT:
                        waits.append(asyncio.ensure_future(self._wait(entry, True, deadline)))
                if not waits:
                    break
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
                    await asyncio.gather(*waits, return_exceptions=True)
                ready, revents = self._poll_now(req.fds)
                if ready or (deadline is not None and loop.time() >= deadline):
                    break
            ready, revents = self._poll_now(req.fds)
            return self._poll_answer(req.fds, ready, revents)

        return wait()

    def _sleep_answer(self, req: proto.PollReq) -> Answer:
        async def sleep() -> bytes:
            if req.timeout is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(req.timeout)
            return proto.resp(0)

        return sleep()

    # ---- data plane ---------------------------------------------------------------------

    def _ready(self, entry: _Entry) -> None:
        """The one way into READY: data may flow from now on.

        A connected plain TCP socket is also handed to the native data plane (not TLS:
        the TLS object lives on the loop thread). The native plane serves only
        attached sockets, so it can never see a socket before it is READY.
        """
        if entry.state is _State.CLOSED or entry.sock is None:
            raise _Closed()  # closed while connecting: the caller closes the socket
        entry.state = _State.READY
        # The duplicate is only a shortcut: without room for it, Python serves the socket.
        native = entry.type == proto.SOCK_STREAM and not entry.tls
        if native and self._fd_budget.allows(self._held_fds()):
            self.native_data_plane.attach(entry.handle, entry.sock.fileno())

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

    def _fast_entry(self, payload: bytes) -> tuple[_Entry, int, int] | None:
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
            return proto.error_resp(_errno_of(error))
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
                    return proto.error_resp(_errno_of(error))
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
            entry.state = _State.READY
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


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
