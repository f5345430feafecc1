"""vmrpc: small KVM virtual machines driven from Python.

The public API::

    from vmrpc import VM

    with VM("hello", args=["world"]) as vm:
        exit_code = vm.run(timeout=10)
        print(vm.console)

Errors derive from `VmrpcError`; guest failures (`GuestCrashed`, `GuestTimeout`) carry
the console tail and the vCPU registers, and `wait` on a killed VM raises `VmKilled`.
"""

from importlib import metadata as _metadata

from vmrpc._vmm import MAX_PAYLOAD, MAX_VCPUS
from vmrpc.errors import (
    ConfigError,
    EventQueueError,
    GuestBuildError,
    GuestCrashed,
    GuestError,
    GuestTimeout,
    HostFunctionTimeout,
    ImageError,
    KvmError,
    PoolError,
    QueueClosed,
    QueueCorrupt,
    VmKilled,
    VmrpcError,
)
from vmrpc.events import EventQueue
from vmrpc.hostmodule import HostModule, NativeModule, function
from vmrpc.images import builtin_images, image_path, sdk_include_dir, sdk_lib_dir
from vmrpc.linux import LinuxVM, PythonPool, PythonResult, PythonSnapshot, run_python
from vmrpc.vm import VM

try:
    __version__: str = _metadata.version("vmrpc")
    """The installed version of vmrpc."""
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0+unknown"

__all__ = [
    "MAX_PAYLOAD",
    "MAX_VCPUS",
    "VM",
    "ConfigError",
    "EventQueue",
    "EventQueueError",
    "GuestBuildError",
    "GuestCrashed",
    "GuestError",
    "GuestTimeout",
    "HostFunctionTimeout",
    "HostModule",
    "ImageError",
    "KvmError",
    "LinuxVM",
    "NativeModule",
    "PoolError",
    "PythonPool",
    "PythonResult",
    "PythonSnapshot",
    "QueueClosed",
    "QueueCorrupt",
    "VmKilled",
    "VmrpcError",
    "__version__",
    "builtin_images",
    "function",
    "image_path",
    "run_python",
    "sdk_include_dir",
    "sdk_lib_dir",
]
