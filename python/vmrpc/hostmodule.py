"""Host modules: Python classes whose numbered functions guest code calls.

A host module has a ``name``, a ``version`` and functions marked with
`function`; each takes the request as `bytes` and returns a bytes-like object or
``None`` (an empty answer). Functions may be ``async``: they then run on vmrpc's
asyncio loop and the guest's call completes when they finish, without holding up
calls from other vCPUs or to other modules::

    class KV(vmrpc.HostModule):
        name, version = "kv", 1

        def __init__(self) -> None:
            self.data: dict[bytes, bytes] = {}

        @vmrpc.function(0)
        def put(self, request: bytes) -> bytes:
            key, _, value = request.partition(b"=")
            self.data[key] = value
            return b"ok"

        @vmrpc.function(1)
        async def get(self, key: bytes) -> bytes:
            return self.data.get(key, b"")

Versions are ``major`` or ``(major, minor)``. A guest's
``bind_module(name, VMRPC_VERSION(major, minor))`` finds a module of that name with
the same major and a minor at least as high (the highest such minor wins).

What the guest's call returns:

- the bytes the function returned; ``None`` is an empty answer (0 bytes, success),
  the same as ``b""``: a function with nothing to say need not invent a value;
- ``VMRPC_EHOSTFN`` if it raised an `Exception`: the traceback is logged (logger
  ``vmrpc.rpc``) and the VM keeps running;
- ``VMRPC_ETIMEDOUT`` if it has a ``time_limit`` and did not finish in time;
- ``VMRPC_ESHUTDOWN`` if it raised `SystemExit` or `KeyboardInterrupt`: those are not
  swallowed. The VM is stopped and the exception is raised again by the VM's next
  `VM.wait` (or `VM.run`), in the thread that waits for the VM.

Sync functions run on the VM's RPC engine thread while it holds the GIL: keep them
quick, and make anything that waits (I/O, sleeps) ``async``. A sync function that
may block can get ``time_limit=`` seconds (see `function`). Stopping a VM
(``close()``, interpreter exit) never waits for a host function that does not return:
after a short grace period the engine thread is left behind until the function returns.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from vmrpc import abi
from vmrpc._time_limit import with_time_limit

if TYPE_CHECKING:
    from vmrpc._vmm import NativeHandler

__all__ = ["HostModule", "NativeModule", "encode_version", "function", "module_functions"]

_ATTR = "__vmrpc_function__"
_LIMIT_ATTR = "__vmrpc_time_limit__"
_MAX_FUNCTION = 2**32 - 1

F = TypeVar("F", bound=Callable[..., Any])


def function(number: int, *, time_limit: float | None = None) -> Callable[[F], F]:
    """Mark a method of a `HostModule` as guest-callable function ``number``.

    ``time_limit``: seconds after which the guest's call returns ``VMRPC_ETIMEDOUT``
    (``None``: no limit). A limited function runs off the RPC engine thread: an async
    one is cancelled at the limit, a sync one runs in its own daemon thread, which is
    abandoned if it never returns (see `vmrpc._time_limit`).
    """
    if not isinstance(number, int) or not 0 <= number <= _MAX_FUNCTION:
        raise ValueError(f"function number must be an int in 0..{_MAX_FUNCTION}, got {number!r}")
    if time_limit is not None and (
        isinstance(time_limit, bool)
        or not isinstance(time_limit, int | float)
        or not (time_limit > 0 and math.isfinite(time_limit))
    ):
        raise ValueError(f"time_limit must be a finite number of seconds > 0, got {time_limit!r}")

    def mark(fn: F) -> F:
        setattr(fn, _ATTR, number)
        setattr(fn, _LIMIT_ATTR, time_limit)
        return fn

    return mark


def encode_version(version: int | tuple[int, int]) -> int:
    """``major`` or ``(major, minor)`` as the ABI encodes it (`vmrpc.abi.version`)."""
    major, minor = (version, 0) if isinstance(version, int) else version
    return abi.version(major, minor)


class HostModule:
    """Base class of Python host modules; see the module documentation."""

    name: ClassVar[str]
    """The name guests bind to (1 to 255 bytes of UTF-8)."""
    version: ClassVar[int | tuple[int, int]] = 1
    """``major`` or ``(major, minor)``."""

    def native_handlers(self) -> Sequence[NativeHandler]:
        """Native (Rust) handlers that answer some calls before the module's functions.

        A module with a data plane in Rust (``vmrpc.sockets``) returns its handlers here;
        the VMM offers each call to them first, and a handler either answers it or hands
        it to the module's function of that number (which must exist). Default: none.
        """
        return ()


def module_functions(module: HostModule) -> dict[int, Callable[[bytes], Any]]:
    """The bound methods of ``module`` marked with `function`, by number."""
    found: dict[int, Callable[[bytes], Any]] = {}
    for attr, member in inspect.getmembers(type(module)):
        number = getattr(member, _ATTR, None)
        if number is None:
            continue
        if number in found:
            raise ValueError(
                f"{type(module).__name__}: function number {number} is used twice "
                f"({getattr(found[number], '__name__', '?')} and {attr})"
            )
        bound = getattr(module, attr)
        limit = getattr(member, _LIMIT_ATTR, None)
        found[number] = bound if limit is None else with_time_limit(bound, limit)
    if not found:
        raise ValueError(f"{type(module).__name__} has no @vmrpc.function methods")
    return found


@dataclass(frozen=True)
class NativeModule:
    """A host module implemented in Rust inside the VMM, registered by name.

    ``NativeModule("echo")``: version 1.0; function 0 returns the request, function 1
    returns nothing. It measures the transport itself (no Python on the path).
    """

    name: str
