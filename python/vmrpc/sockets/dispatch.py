"""Dispatch and errno: how a guest's request becomes an answer.

Every function of the sockets module goes through `Dispatcher._call`: count it,
parse the payload (`proto`), run the handler, and turn every failure into the
errno the guest gets (`errno_of`, `failure_errno`). A handler answers at once
(``bytes``) or returns a coroutine, which `_guard` runs on the loop.

Layering (imports flow one way, top to bottom)::

    module       SocketOutsourcing: the mixins below, composed; public API
    control  connect  options  poll  dataplane      one concern each
    waiting      readiness waits and closing, on the asyncio loop
    audit        policy decisions and the audit log
    table        the socket table and its state machine
    dispatch     this module: request -> handler -> answer, errno mapping
    dns  socks5  proto  policy  fdbudget  optnames  leaves: import no layer above

This module imports only `proto` and `policy` of the package.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from vmrpc import _runtime
from vmrpc.hostmodule import HostModule
from vmrpc.sockets import proto
from vmrpc.sockets.policy import TLS_ERRNO
from vmrpc.sockets.proto import ProtoError

log = logging.getLogger("vmrpc.sockets")

Answer = bytes | Coroutine[Any, Any, bytes]


class Closed(Exception):
    """The socket was closed while an operation waited on it."""


def failure_errno(fn: int, error: BaseException) -> int:
    """The errno a guest gets for an operation that ended with ``error``."""
    if isinstance(error, asyncio.CancelledError):
        return errno.ESHUTDOWN  # the VM is going away
    if isinstance(error, ProtoError):
        return error.errno
    if isinstance(error, Closed):
        return errno.EBADF
    if isinstance(error, OSError):
        return errno_of(error)
    log.error("sockets.%s failed", proto.FUNCTION_NAMES[fn], exc_info=error)
    return errno.EIO


def errno_of(error: BaseException) -> int:
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return TLS_ERRNO
    if isinstance(error, TimeoutError) and not getattr(error, "errno", None):
        return errno.ETIMEDOUT
    if isinstance(error, OSError) and error.errno:
        return error.errno
    return errno.EIO


class Dispatcher(HostModule):
    """Counters, the closed flag and the waiting tasks; the request path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_calls = 0  # coroutines handed to the loop and not finished
        self._closed = False

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def _sync_native(self) -> None:
        """Catches up with what the native data plane did alone (`table`)."""

    def _loop_calls_changed(self, n: int) -> None:
        """``n`` operations now wait on the loop (`table` tells the native plane)."""

    def _call(self, fn: int, payload: bytes, handler: Callable[[Any], Answer]) -> Answer:
        self._sync_native()
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
        except (OSError, Closed) as error:
            return fail(failure_errno(fn, error))
        if isinstance(answer, bytes):
            return answer
        self._loop_call(fn)
        return self._guard(fn, answer, fail)

    def _loop_call(self, fn: int) -> None:
        """Counts an operation handed to the loop (`_guard` counts it out)."""
        with self._lock:
            self._counts["waits." + proto.FUNCTION_NAMES[fn]] += 1
            self._loop_calls += 1
            self._loop_calls_changed(self._loop_calls)

    def _in_background(self, fn: int, coroutine: Coroutine[Any, Any, bytes]) -> None:
        """Runs ``coroutine`` on the loop with nobody waiting for its answer (a
        non-blocking connect going on after the guest's call has returned)."""
        self._loop_call(fn)
        guarded = self._guard(fn, coroutine, proto.error_resp)
        asyncio.run_coroutine_threadsafe(guarded, _runtime.loop())

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
            return fail(failure_errno(fn, error))
        finally:
            if task is not None:
                self._tasks.discard(task)
            with self._lock:
                self._loop_calls -= 1
                self._loop_calls_changed(self._loop_calls)
