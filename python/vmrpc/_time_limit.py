"""Per-function time limits of host functions (``@vmrpc.function(n, time_limit=...)``).

A limited function runs as a coroutine on vmrpc's asyncio loop (`vmrpc._runtime`), so
the RPC engine never waits for it. When the limit passes, the guest's call returns
``VMRPC_ETIMEDOUT`` and the function's outcome is discarded.

- An ``async`` function is cancelled at the limit.
- A sync function runs in its own daemon thread: Python cannot stop a thread, so one that
  never returns stays blocked, but it keeps neither the VM, its `close`, nor interpreter
  exit waiting. Each call costs a thread start: limit only functions that may block.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from vmrpc import _vmm

__all__ = ["with_time_limit"]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the limit passed first
        return
    if error is None:
        future.set_result(result)
    elif isinstance(error, Exception):
        future.set_exception(error)
    else:
        # SystemExit, KeyboardInterrupt: asyncio would re-raise them out of its loop.
        future.set_exception(_vmm.HostAbort(error))


def _in_thread(fn: Callable[[bytes], Any], request: bytes) -> asyncio.Future[Any]:
    """Run ``fn(request)`` in a new daemon thread; its outcome settles the future."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def work() -> None:
        try:
            result, error = fn(request), None
        except BaseException as exc:  # handed to the caller as is
            result, error = None, exc
        # RuntimeError: the loop is gone (interpreter exit), nobody waits any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, future, result, error)

    name = f"vmrpc-hostfn-{getattr(fn, '__name__', '?')}"
    threading.Thread(target=work, name=name, daemon=True).start()
    return future


def with_time_limit(
    fn: Callable[[bytes], Any], limit: float
) -> Callable[[bytes], Coroutine[Any, Any, Any]]:
    """``fn`` as an async function that raises `HostFunctionTimeout` after ``limit`` s."""
    is_async = inspect.iscoroutinefunction(fn)

    @functools.wraps(fn)
    async def limited(request: bytes) -> Any:
        work = fn(request) if is_async else _in_thread(fn, request)
        try:
            async with asyncio.timeout(limit) as scope:
                return await work
        except TimeoutError:
            if scope.expired():
                raise _vmm.HostFunctionTimeout(
                    f"{getattr(fn, '__qualname__', fn)!s} did not finish within {limit} s"
                ) from None
            raise

    return limited
