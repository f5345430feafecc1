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

The class is composed of one mixin per concern, each in its own module: `control`
(socket, bind, listen, accept, shutdown, close, names), `connect` (plain, SOCKS5,
TLS), `options`, `poll`, `dataplane` (send, recv, sendto, recvfrom), over `waiting`,
`audit`, `table` and `dispatch`; `dns` answers getaddrinfo. The layers are drawn in
`dispatch`. This module is the top: nothing in the package imports it but
``vmrpc.sockets`` itself.
"""

from __future__ import annotations

import asyncio
import logging

from vmrpc import _runtime
from vmrpc.hostmodule import function
from vmrpc.sockets import dns, proto
from vmrpc.sockets.audit import AuditRecord
from vmrpc.sockets.connect import CONNECT_TIMEOUT_S, Connecting
from vmrpc.sockets.control import Control
from vmrpc.sockets.dataplane import DataPlane
from vmrpc.sockets.dispatch import Answer
from vmrpc.sockets.fdbudget import FdBudget
from vmrpc.sockets.options import Options
from vmrpc.sockets.policy import Policy
from vmrpc.sockets.poll import Polling
from vmrpc.sockets.waiting import CLOSE_WAIT_S

__all__ = ["CONNECT_TIMEOUT_S", "AuditRecord", "SocketOutsourcing"]

log = logging.getLogger("vmrpc.sockets")


class SocketOutsourcing(Control, Connecting, Options, Polling, DataPlane):
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
        fd_budget = FdBudget(max_host_fds, fd_reserve)
        super().__init__(policy if policy is not None else Policy(), max_sockets, fd_budget)
        self.connect_timeout = float(connect_timeout)

    # ---- public ---------------------------------------------------------------------

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
            future.result(CLOSE_WAIT_S)
        except Exception:  # pragma: no cover - last resort: close without the loop
            log.exception("closing guest sockets on the loop failed; closing directly")
            for entry in list(self._table.values()):
                if entry.sock is not None:
                    entry.sock.close()
            self._table.clear()

    # ---- name resolution ------------------------------------------------------------

    @function(proto.FN_GETADDRINFO)
    def rpc_getaddrinfo(self, payload: bytes) -> Answer:
        return self._call(proto.FN_GETADDRINFO, payload, lambda r: dns.resolve(r, self._names))
