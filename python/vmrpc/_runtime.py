"""The asyncio loop that runs `async` host functions.

One daemon thread per process runs an event loop. The RPC engine hands it the
coroutine an async host function returned, with a callback that answers the guest
when the coroutine finishes; meanwhile the engine goes on serving other vCPUs and
other modules.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from vmrpc import _vmm

__all__ = ["loop", "submit"]


class _Runner:
    """Owns the loop and its thread; started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                new_loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(new_loop)
                    new_loop.call_soon(ready.set)
                    new_loop.run_forever()

                threading.Thread(target=run, name="vmrpc-asyncio", daemon=True).start()
                ready.wait()
                self._loop = new_loop
            return self._loop


_runner = _Runner()


def loop() -> asyncio.AbstractEventLoop:
    """The shared event loop, started on first use in a daemon thread."""
    return _runner.loop()


async def _carry_exits(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Await ``coroutine``; a SystemExit or KeyboardInterrupt leaves as `HostAbort`.

    asyncio re-raises those two out of the loop itself, which would end the shared loop
    (and every async host function of the process) instead of reaching the VM's owner.
    """
    try:
        return await coroutine
    except (SystemExit, KeyboardInterrupt) as exc:
        raise _vmm.HostAbort(exc) from exc


def submit(coroutine: Coroutine[Any, Any, Any], on_done: Callable[[Future[Any]], object]) -> None:
    """Run ``coroutine`` on the shared loop and call ``on_done(future)`` when it ends."""
    future = asyncio.run_coroutine_threadsafe(_carry_exits(coroutine), loop())
    future.add_done_callback(on_done)
