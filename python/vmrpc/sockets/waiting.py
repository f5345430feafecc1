"""Waiting on the asyncio loop: readiness waits for a guest socket, retried
non-blocking I/O with a deadline, and closing (which ends the waits).

Sockets are registered with vmrpc's loop (`vmrpc._runtime`) only while someone
waits, and are closed only on the loop thread. Imports `audit` (below it); see
`dispatch` for the layers.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
from collections.abc import Callable
from typing import Any

from vmrpc import _runtime
from vmrpc.sockets.audit import PolicyAudit
from vmrpc.sockets.dispatch import Closed
from vmrpc.sockets.table import Entry, State

log = logging.getLogger("vmrpc.sockets")

CLOSE_WAIT_S = 5.0


class LoopWaits(PolicyAudit):
    """Waits and closing on the loop; the base of the mixins whose operations wait."""

    def _wake(self, entry: Entry, write: bool) -> None:
        waiters = entry.writers if write else entry.readers
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        waiters.clear()
        self._unregister(entry, write)

    def _unregister(self, entry: Entry, write: bool) -> None:
        if entry.fd < 0:
            return
        loop = asyncio.get_running_loop() if _on_loop() else _runtime.loop()
        if write:
            loop.remove_writer(entry.fd)
        else:
            loop.remove_reader(entry.fd)

    async def _wait(self, entry: Entry, write: bool, deadline: float | None) -> bool:
        """Waits until the socket is readable (writable); False on timeout."""
        loop = asyncio.get_running_loop()
        if entry.closed or entry.sock is None:
            raise Closed()
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
        self, entry: Entry, op: Callable[[], Any], write: bool, deadline: float | None
    ) -> Any:
        """Retries a non-blocking ``op`` until it stops asking to wait; EAGAIN on timeout."""
        while True:
            if entry.closed or entry.sock is None:
                raise Closed()
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

    def _close_entry(self, entry: Entry) -> None:
        """Closes on the loop thread: fails the waiters, unregisters, closes."""
        entry.state = State.CLOSED
        for waiters, write in ((entry.readers, False), (entry.writers, True)):
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(Closed())
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
            await asyncio.wait(tasks, timeout=CLOSE_WAIT_S)
        self._sync_native()
        for entry in list(self._table.values()):
            self._close_entry(entry)
        log.debug("sockets module closed: %s", self.stats)


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
