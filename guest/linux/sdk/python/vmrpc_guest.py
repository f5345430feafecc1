"""VM RPC for Python programs inside a vmrpc Linux VM: call the host's Python modules.

A pure-Python client for the guest's CPython (it runs *inside* the VM, next to the
program; the host's ``vmrpc`` package is not there). It makes the Linux personality's
private system calls (``vmrpc/linux_calls.h``) through ``ctypes``, exactly as the C
library ``libvmrpc_linux.a`` does::

    import vmrpc_guest

    with vmrpc_guest.Module("kv", (1, 0)) as kv:   # bind_module
        kv.call(0, b"answer=42")                    # perform_rpc: bytes in, bytes out
        print(kv.call(1, b"answer"))

    q = vmrpc_guest.EventQueue("q")                 # a queue the host made
    q.put(b"ping")
    print(q.get())

`vmrpc.linux.run_python` and ``LinuxVM(python_client=True)`` put this file on the guest's
``sys.path``. Run outside vmrpc, a real kernel answers ENOSYS and calls raise
`VmrpcError` ``VMRPC_ENODEV``. The numbers come from ``vmrpc_guest_abi.py``, which the
build generates from the C headers (the one source of the ABI).
"""

from __future__ import annotations

import ctypes
import errno
import os

import vmrpc_guest_abi as abi

__all__ = ["EventQueue", "Module", "VmrpcError", "max_payload", "snapshot_point"]

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

#: VMRPC_E* value -> name, e.g. -1 -> "VMRPC_ENOMODULE".
ERROR_NAMES = {value: name for name, value in vars(abi).items() if name.startswith("VMRPC_E")}


class VmrpcError(OSError):
    """A VM RPC call failed; ``code`` is the VMRPC_E* value (negative), ``name`` its name."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.name = ERROR_NAMES.get(code, f"VM RPC error {code}")
        super().__init__(self.name)


def _call(nr: int, *args: int | bytes | ctypes.Array[ctypes.c_char] | None) -> int:
    # libc's syscall() turns a result in -4095..-1 into -1 and errno: the personality's
    # VMRPC_E* codes (small negatives) come back that way.
    ctypes.set_errno(0)
    result = int(
        _syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    )
    if result == -1 and ctypes.get_errno():
        code = ctypes.get_errno()
        raise VmrpcError(abi.VMRPC_ENODEV if code == errno.ENOSYS else -code)
    return result


def max_payload() -> int:
    """The largest request or response, in bytes."""
    return _call(abi.VMRPC_LINUX_NR_MAX_PAYLOAD)


def snapshot_point() -> None:
    """Let the host snapshot this VM here (`vmrpc.linux.PythonSnapshot`).

    The VM that takes the snapshot stops inside this call; each VM started from the
    snapshot returns from it, with the personality's random generator reseeded. Raises
    `OSError` (``EBUSY``) when no snapshot can be taken here: other threads run, or
    this is a forked child.
    """
    ctypes.set_errno(0)
    result = int(_syscall(ctypes.c_long(abi.VMRPC_LINUX_NR_SNAPSHOT)))
    if result == -1 and ctypes.get_errno():
        code = ctypes.get_errno()
        raise OSError(code, f"no snapshot taken: {os.strerror(code)}")


def _version(version: int | tuple[int, int]) -> int:
    major, minor = (version, 0) if isinstance(version, int) else version
    return (major << 16) | (minor & 0xFFFF)  # VMRPC_VERSION(major, minor), vmrpc/abi.h


class Module:
    """A bound host module (``bind_module``); `call` is ``perform_rpc``."""

    def __init__(self, name: str, version: int | tuple[int, int] = 1) -> None:
        self.name = name
        self.handle = _call(abi.VMRPC_LINUX_NR_BIND, name.encode(), _version(version))
        self._response = ctypes.create_string_buffer(max_payload())

    def call(self, function: int, request: bytes = b"") -> bytes:
        """Calls host function number ``function`` with ``request``; returns its answer."""
        n = _call(
            abi.VMRPC_LINUX_NR_RPC,
            self.handle,
            function,
            request,
            len(request),
            self._response,
            len(self._response),
        )
        return self._response.raw[:n]

    def close(self) -> None:
        """Unbinds the module (``unbind_module``); later calls raise VMRPC_EBADHANDLE."""
        if self.handle > 0:
            _call(abi.VMRPC_LINUX_NR_UNBIND, self.handle)
            self.handle = 0

    def __enter__(self) -> Module:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _EvqInfo(ctypes.Structure):
    _fields_ = [("entries", ctypes.c_uint), ("max_event_size", ctypes.c_uint)]


class EventQueue:
    """An event queue the host made (``VM.make_ev_queue``), opened by name (``evq_open``)."""

    def __init__(self, name: str) -> None:
        info = _EvqInfo()
        self.name = name
        self.queue = _call(abi.VMRPC_LINUX_NR_EVQ_OPEN, name.encode(), ctypes.addressof(info))
        self.entries = int(info.entries)
        self.max_event_size = int(info.max_event_size)
        self._buf = ctypes.create_string_buffer(self.max_event_size)

    def put(self, event: bytes, *, block: bool = True) -> bool:
        """Puts ``event``; without ``block``, returns False when the queue is full."""
        try:
            _call(abi.VMRPC_LINUX_NR_EVQ_PUT, self.queue, event, len(event), int(not block))
        except VmrpcError as error:
            if error.code == abi.VMRPC_EFULL and not block:
                return False
            raise
        return True

    def get(self, *, block: bool = True) -> bytes | None:
        """The next event; without ``block``, None when the queue is empty."""
        try:
            n = _call(
                abi.VMRPC_LINUX_NR_EVQ_GET, self.queue, self._buf, len(self._buf), int(not block)
            )
        except VmrpcError as error:
            if error.code == abi.VMRPC_EEMPTY and not block:
                return None
            raise
        return self._buf.raw[:n]
