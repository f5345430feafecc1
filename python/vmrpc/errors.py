"""The exception hierarchy of vmrpc.

The classes are created once in the native extension (so that Rust code raises them
directly) and re-exported from here; this is the one place Python code imports them from::

    VmrpcError
    ├── ConfigError     invalid configuration, or an operation in the wrong state
    ├── ImageError      guest image missing, not an ELF, wrong architecture
    ├── KvmError        a KVM ioctl failed (/dev/kvm missing, ...)
    ├── VmKilled        wait() on a VM that was killed before the guest exited
    └── GuestError      the guest failed; has .console, .registers, .vcpu, .reason
        ├── GuestCrashed    triple fault, KVM internal error, unexpected exit
        └── GuestTimeout    did not exit in time; the VM was killed
"""

from vmrpc._vmm import (
    ConfigError,
    GuestCrashed,
    GuestError,
    GuestTimeout,
    ImageError,
    KvmError,
    VmKilled,
    VmrpcError,
)

__all__ = [
    "ConfigError",
    "GuestCrashed",
    "GuestError",
    "GuestTimeout",
    "ImageError",
    "KvmError",
    "VmKilled",
    "VmrpcError",
]
