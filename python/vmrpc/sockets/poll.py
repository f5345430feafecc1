"""poll emulation: the guest's pollfd set answered from the host sockets' state,
at once when something is ready, else on the loop until something is or the
timeout passes. An entry still CONNECTING reports nothing (a wait on it ends when
its connect does); one whose asynchronous connect failed reports what Linux does.

Imports `waiting` (below it); see `dispatch` for the layers.
"""

from __future__ import annotations

import asyncio
import select
from typing import Any

from vmrpc.hostmodule import function
from vmrpc.sockets import proto
from vmrpc.sockets.dispatch import Answer
from vmrpc.sockets.table import Entry, State
from vmrpc.sockets.waiting import LoopWaits

#: poll's answer for a socket whose connect failed (refused, unreachable...), until
#: its error is collected: readable (EOF) and writable, an error, hung up.
_FAILED_CONNECT = select.POLLIN | select.POLLOUT | select.POLLERR | select.POLLHUP


class Polling(LoopWaits):
    """poll (function `proto.FN_POLL`)."""

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
            if entry.state is State.CONNECTING:
                continue  # nothing to report before the handshakes end
            if entry.error:  # an asynchronous connect failed: what Linux reports then
                revents[i] = _FAILED_CONNECT & (events | select.POLLERR | select.POLLHUP)
                continue
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
                waits, settling = self._waits(req.fds, deadline)
                if not waits:
                    break
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
                    await asyncio.gather(*waits, return_exceptions=True)
                    for entry, settled in settling:
                        if settled in entry.settled:
                            entry.settled.remove(settled)
                ready, revents = self._poll_now(req.fds)
                if ready or (deadline is not None and loop.time() >= deadline):
                    break
            ready, revents = self._poll_now(req.fds)
            return self._poll_answer(req.fds, ready, revents)

        return wait()

    def _waits(
        self, fds: tuple[tuple[int, int], ...], deadline: float | None
    ) -> tuple[list[asyncio.Future[Any]], list[tuple[Entry, asyncio.Future[None]]]]:
        """What a waiting poll waits for (on the loop): readiness of ready and
        listening sockets, the end of connects (also returned apart, as
        ``(entry, future)``, for the caller to drop from ``entry.settled``)."""
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[Any]] = []
        settling: list[tuple[Entry, asyncio.Future[None]]] = []
        for handle, events in fds:
            entry = self._table.get(handle)
            if entry is not None and entry.state is State.CONNECTING:
                settled: asyncio.Future[None] = loop.create_future()
                entry.settled.append(settled)  # the connect's end wakes it
                settling.append((entry, settled))
                waits.append(settled)
                continue
            if entry is None or entry.sock is None:
                continue
            if entry.state not in (State.READY, State.LISTENING):
                continue
            if events & select.POLLIN or not events & select.POLLOUT:
                waits.append(asyncio.ensure_future(self._wait(entry, False, deadline)))
            if events & select.POLLOUT:
                waits.append(asyncio.ensure_future(self._wait(entry, True, deadline)))
        return waits, settling

    def _sleep_answer(self, req: proto.PollReq) -> Answer:
        async def sleep() -> bytes:
            if req.timeout is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(req.timeout)
            return proto.resp(0)

        return sleep()
