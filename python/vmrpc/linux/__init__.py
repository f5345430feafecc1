"""Linux programs in a VM: unmodified static x86-64 executables (docs/linux.md)."""

from vmrpc.linux.cpython import PythonResult, run_python
from vmrpc.linux.files import FileAccess, FilesModule, Mount, TraceRecord
from vmrpc.linux.pool import PythonPool
from vmrpc.linux.programs import Program
from vmrpc.linux.snapshot import PythonSnapshot, SnapshotError
from vmrpc.linux.syscalls import syscall_name
from vmrpc.linux.vm import DEFAULT_THREADS, MAX_THREADS, LinuxVM

__all__ = [
    "DEFAULT_THREADS",
    "MAX_THREADS",
    "FileAccess",
    "FilesModule",
    "LinuxVM",
    "Mount",
    "Program",
    "PythonPool",
    "PythonResult",
    "PythonSnapshot",
    "SnapshotError",
    "TraceRecord",
    "run_python",
    "syscall_name",
]
