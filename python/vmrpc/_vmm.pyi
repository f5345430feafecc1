"""Type stub for the native extension `vmrpc._vmm` (built from crates/vmm by maturin).

The extension is private: import the public names from `vmrpc` instead. `make test`
checks this stub against the built module with mypy's stubtest.
"""

import os
from collections.abc import Callable, Sequence
from typing import final

from typing_extensions import disjoint_base

__all__ = [
    "MAX_PAYLOAD",
    "MAX_VCPUS",
    "NATIVE_HANDLES",
    "CodeRewriter",
    "ConfigError",
    "EventQueue",
    "EventQueueError",
    "FilesDataPlane",
    "GuestCrashed",
    "GuestError",
    "GuestTimeout",
    "HostAbort",
    "HostFunctionTimeout",
    "ImageError",
    "KvmError",
    "LoopbackArena",
    "NativeHandler",
    "QueueClosed",
    "QueueCorrupt",
    "Snapshot",
    "SocketDataPlane",
    "Vm",
    "VmKilled",
    "VmrpcError",
    "_drain_native",
    "_feed_native",
    "_raw_kvm_cycles",
    "abi_table",
    "linux_setup",
    "record_working_set",
    "restore_snapshot",
    "take_snapshot",
]

class VmrpcError(Exception):
    """Base class of every error raised by vmrpc."""

class ConfigError(VmrpcError):
    """The VM configuration is invalid, or an operation does not fit the VM's state."""

class ImageError(VmrpcError):
    """The guest image is missing, not an ELF file, or not for x86-64."""

class KvmError(VmrpcError):
    """A KVM ioctl failed (for example /dev/kvm is missing or not accessible)."""

class VmKilled(VmrpcError):
    """The VM was killed before the guest exited (raised by `Vm.wait` after `Vm.kill`)."""

class GuestError(VmrpcError):
    """Base of guest failures; carries the vCPU state at the time of the failure."""

    console: str
    registers: dict[str, int]
    vcpu: int
    reason: str
    exception: str | None
    """The CPU exception that crashed the guest ("#PF", "#GP", "#UD", "#DE", ...), else None."""
    error_code: int | None
    """The exception's error code, for the vectors that have one."""
    address: int | None
    """The faulting address (cr2) of a page fault."""
    function: str | None
    """The function the faulting instruction is in (DWARF or symbol table), if known."""
    location: str | None
    """``file:line`` of the faulting instruction from the image's DWARF, if it has any."""

class GuestCrashed(GuestError):
    """The guest crashed: triple fault, KVM internal error or an unexpected exit."""

class EventQueueError(VmrpcError):
    """An event queue could not be created (its arena is full) or used."""

class QueueClosed(EventQueueError):
    """The event queue was deleted, its VM closed, or its VM stopped while a call waited."""

class QueueCorrupt(EventQueueError):
    """The guest wrote impossible values into the event queue's rings."""

class GuestTimeout(GuestError):
    """The guest did not exit within the timeout; the VM has been killed."""

class HostFunctionTimeout(VmrpcError):
    """A host function ran past its time limit; the guest got VMRPC_ETIMEDOUT."""

class HostAbort(VmrpcError):
    """Carries a SystemExit or KeyboardInterrupt out of an async host function (args[0])."""

MAX_VCPUS: int
"""The most vCPUs one VM may have."""

MAX_PAYLOAD: int
"""The largest VM RPC request or response, in bytes."""

NATIVE_HANDLES: int
"""Socket handles from here up are the native connect's (vmrpc.sockets keeps below)."""

@final
class LoopbackArena:
    """Guest memory shared by the VMs of a multi-program Linux VM (docs/linux.md)."""

    def __init__(self) -> None: ...
    @property
    def base(self) -> int: ...
    @property
    def size(self) -> int: ...

@final
class Vm:
    """A KVM virtual machine running one guest ELF image."""

    def __new__(
        cls,
        image: str,
        *,
        vcpus: int = 1,
        memory_mib: int = 64,
        args: list[str] = ...,
        console_limit: int = 1 << 20,
        rpc_spin_us: int = ...,
        cpu_limit: float | None = None,
        vcpus_on_demand: bool = False,
        arena: LoopbackArena | None = None,
    ) -> Vm: ...
    @property
    def cgroup(self) -> str | None:
        """The cgroup directory holding the vCPU threads (``cpu_limit``), or None."""
    def start(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def kill(self) -> None: ...
    def close(self) -> None: ...
    @property
    def console(self) -> str: ...
    def console_from(self, pos: int) -> tuple[str, int]: ...
    @property
    def stats(self) -> dict[str, int]: ...
    @property
    def state(self) -> str: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def vcpus(self) -> int: ...
    @property
    def memory_mib(self) -> int: ...
    def register_hm(
        self,
        name: str,
        version: int,
        functions: dict[int, Callable[[bytes], object]],
        native_handlers: Sequence[NativeHandler] = ...,
    ) -> None: ...
    def register_native(self, name: str) -> None: ...
    def unregister_hm(self, name: str, version: int) -> None: ...
    @property
    def modules(self) -> list[tuple[str, int]]: ...
    def make_ev_queue(
        self, name: str, capacity: int = 1024, max_event_size: int = 256
    ) -> EventQueue: ...
    def del_ev_queue(self, name: str) -> None: ...
    @property
    def ev_queues(self) -> list[str]: ...

@final
class EventQueue:
    """One event queue of a VM, host side (see `vmrpc.EventQueue`)."""

    @property
    def name(self) -> str: ...
    @property
    def capacity(self) -> int: ...
    @property
    def max_event_size(self) -> int: ...
    @property
    def queue_id(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def try_put(self, data: bytes | bytearray | memoryview) -> bool: ...
    def put_event(
        self, data: bytes | bytearray | memoryview, timeout: float | None = None
    ) -> None: ...
    def try_get(self) -> bytes | None: ...
    def get_event(self, timeout: float | None = None) -> bytes: ...
    def get_events(self, max_n: int, timeout: float | None = None) -> list[bytes]: ...
    def wait_readable(self, timeout: float | None = None) -> bool: ...
    def ring_state(self) -> dict[str, int]: ...

@final
class FilesDataPlane:
    """Reads and writes of a Linux program's regular files, natively (docs/linux.md)."""

    def __init__(self) -> None: ...
    def register(self, vm: Vm) -> None: ...
    def attach(self, handle: int, fd: int) -> None: ...
    def detach(self, handle: int) -> None: ...
    def set_mounts(self, mounts: list[tuple[bytes, int]]) -> None: ...
    def set_cwd(self, cwd: bytes) -> None: ...
    def new_handle(self) -> int: ...
    def adopt(self, handle: int) -> tuple[int, bytes, int] | None: ...
    def take_orphans(self) -> list[int]: ...
    def stats(self) -> dict[str, int]: ...

@final
class CodeRewriter:
    """The ``linux_code`` host module: rewrites the ``syscall`` sites of code a Linux
    program maps executable at run time (shared libraries)."""

    def __init__(self) -> None: ...
    def register(self, vm: Vm) -> None:
        """Register it on ``vm`` (created, not started) as ``linux_code``."""

    def stats(self) -> dict[str, int]:
        """``code_mappings_rewritten`` and ``code_syscall_sites``."""

def linux_setup(
    vm: Vm,
    program: str | os.PathLike[str],
    argv: list[str],
    envp: list[str],
    execfn: str,
    trace: bool = False,
    rewrite: bool = True,
    sysroot: str | os.PathLike[str] | None = None,
    files: FilesDataPlane | None = None,
) -> dict[str, int]:
    """Load a Linux program (and its ELF interpreter, found under ``sysroot``) into a
    created ``linux`` VM (see `vmrpc.LinuxVM`); ``files``: the data plane through
    which execve reads programs (without it execve answers EACCES)."""

@final
class Snapshot:
    """A VM's memory and vCPU at its snapshot point (opaque; see `take_snapshot`)."""

    @property
    def stored_bytes(self) -> int:
        """Bytes of host memory the snapshot holds (the guest's pages that were not zero)."""

def take_snapshot(vm: Vm) -> Snapshot:
    """The snapshot of `vm`, which has stopped at its snapshot point."""

def restore_snapshot(vm: Vm, snapshot: Snapshot) -> None:
    """Makes `vm` (created, not started) go on from `snapshot`'s snapshot point."""

def record_working_set(vm: Vm, snapshot: Snapshot) -> int:
    """Records which pages `vm`, started from `snapshot` and stopped, touched; later VMs
    from `snapshot` fault them in before they run. Returns the count."""

def abi_table() -> tuple[
    dict[str, int | str], dict[str, tuple[int, list[tuple[str, int, int, str, int]]]]
]:
    """The guest ABI from its single source (crates/guest-kmod-bindings): ``(constants,
    structs)``, ``{name: value}`` and ``{struct name: (size, [(field, offset, size,
    element type, count), ...])}``; see `vmrpc.abi`."""

@disjoint_base
class NativeHandler:
    """Native (Rust) code that answers some calls of a host module before its Python
    functions (`vmrpc.HostModule.native_handlers`). Made by its subclasses only."""

@final
class SocketDataPlane(NativeHandler):
    """The native data plane of socket outsourcing (see vmrpc.sockets)."""

    def __new__(cls, options: list[tuple[int, int, int]] = ...) -> SocketDataPlane: ...
    def attach(self, handle: int, fd: int) -> None: ...
    def detach(self, handle: int) -> None: ...
    def clear(self) -> None: ...
    def set_loop_calls(self, n: int) -> None: ...
    def take_closed(self) -> list[int]: ...
    def set_limits(self, max_sockets: int, max_host_fds: int, reserve: int | None) -> None: ...
    def set_python_counts(self, entries: int, sockets: int) -> None: ...
    def allow_plain(self, addr: bytes, decision: int) -> bool: ...
    def forget_plain(self) -> None: ...
    def take_born(self) -> list[tuple[int, int, int]]: ...
    def take_audit(self) -> list[tuple[float, int]]: ...
    @staticmethod
    def take_started() -> tuple[int, int] | None: ...
    @property
    def born(self) -> int: ...
    @property
    def attached(self) -> int: ...
    @property
    def stats(self) -> dict[str, int]: ...

# Benchmark and test hooks, private (wrapped by `vmrpc._testing`).
def _drain_native(q: EventQueue, count: int, timeout: float | None = None) -> tuple[int, int]: ...
def _feed_native(
    q: EventQueue, count: int, size: int, timeout: float | None = None, first_seq: int = 0
) -> int: ...
def _raw_kvm_cycles(n: int) -> list[int]: ...
