"""The exception hierarchy of vmrpc.

The classes are created once in the native extension (so that Rust code raises them
directly) and re-exported from here; this is the one place Python code imports them from.
`GuestBuildError` is raised by Python code only (`vmrpc.guest`) and is defined here::

    VmrpcError
    ├── ConfigError     invalid configuration, or an operation in the wrong state
    ├── ImageError      guest image missing, not an ELF, wrong architecture
    ├── KvmError        a KVM ioctl failed (/dev/kvm missing, ...)
    ├── VmKilled        wait() on a VM that was killed before the guest exited
    ├── EventQueueError an event queue could not be created (arena full) or used
    │   ├── QueueClosed     the queue was deleted, its VM closed, or a wait outlived the VM
    │   └── QueueCorrupt    the guest wrote impossible values into the queue's rings
    ├── GuestBuildError building a guest failed: no C compiler, a compile or link error
    ├── PoolError       a `PythonPool`'s bootstrap did not start, or ended, or failed to fork
    ├── HostFunctionTimeout  a host function passed its ``time_limit`` (guest: ETIMEDOUT)
    └── GuestError      the guest failed; has .console, .registers, .vcpu, .reason
        │                   and, for a CPU exception, .exception ("#PF"), .error_code,
        │                   .address (of a page fault), .function and .location
        │                   ("file:line" from the image's DWARF)
        ├── GuestCrashed    a CPU exception, triple fault, KVM internal error, unexpected exit
        └── GuestTimeout    did not exit in time; the VM was killed
"""

from vmrpc._vmm import (
    ConfigError,
    EventQueueError,
    GuestCrashed,
    GuestError,
    GuestTimeout,
    HostFunctionTimeout,
    ImageError,
    KvmError,
    QueueClosed,
    QueueCorrupt,
    VmKilled,
    VmrpcError,
)

__all__ = [
    "ConfigError",
    "EventQueueError",
    "GuestBuildError",
    "GuestCrashed",
    "GuestError",
    "GuestTimeout",
    "HostFunctionTimeout",
    "ImageError",
    "KvmError",
    "PoolError",
    "QueueClosed",
    "QueueCorrupt",
    "VmKilled",
    "VmrpcError",
]


class GuestBuildError(VmrpcError):
    """Building a guest from C sources failed (`vmrpc.guest.build`, ``vmrpc build-guest``).

    No C compiler was found, a source is missing, the guest SDK is not installed, or the
    compiler or linker failed; then the message contains the compiler's own error
    output, which is also in `stderr`, and `command` is the command that failed.
    """

    def __init__(self, message: str, *, command: list[str] | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.command: list[str] | None = command
        """The compiler or linker command that failed, if one ran."""
        self.stderr: str = stderr
        """The compiler's error output (empty if no compiler ran)."""


class PoolError(VmrpcError):
    """A warm CPython pool (`vmrpc.linux.PythonPool`) lost its bootstrap: it did not start
    (a ``preload`` module failed to import, say), it ended, or it could not fork a run.
    The pool discards that VM and starts a fresh one for the next run. `stderr` holds
    what the bootstrap wrote (an import error's traceback)."""

    def __init__(self, message: str, *, stderr: bytes = b"") -> None:
        super().__init__(message)
        self.stderr: bytes = stderr
        """What the guest wrote to stderr since the pool's last run began."""
