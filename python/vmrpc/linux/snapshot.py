"""`PythonSnapshot`: each ``python -c`` run in a fresh VM started from a warm snapshot.

`run_python` boots a VM and CPython for each call (~80 ms here, most of it CPython's
start-up). A `PythonPool` keeps one warm CPython and forks it per run, inside one VM.
A snapshot does the start-up once: its VM runs the bootstrap ``vmrpc_snapshot``
(shipped beside ``vmrpc_guest``) up to its snapshot point, after the ``preload``
imports, and the VMM keeps that VM's memory (in a memfd) and vCPU. Each `run` then
builds a new VM with the same configuration, maps that memory copy-on-write (nothing
is copied until the run writes a page, and no run's writes reach the snapshot), gives
it the vCPU, and lets it run the job from the snapshot point::

    snap = vmrpc.PythonSnapshot(preload=["json"])
    result = snap.run("import sys, json; print(json.dumps(sys.argv[1:]))", ["a"])
    assert result == PythonResult(0, b'["a"]\\n', b"")

What a run sees (docs/linux.md, "Snapshots"):

- Its own VM: memory, vCPU, host modules (``modules`` given as classes are made
  anew per run), files module and network. Runs do not see each other's globals,
  files written in the guest's ``/tmp``, or anything else of each other's.
- Its stdout, stderr and exit status are exactly its own, as with ``python -c``.
- ``os.urandom`` and ``random`` differ per run (the personality's generator gets a
  fresh host seed at the snapshot point, ``random`` is reseeded from it); the
  ``str`` hash seed is the snapshot's, the same in every run.
- Modules the bootstrap imported (``vmrpc_guest``, ``vmrpc_pool``, ``ctypes``,
  ``preload``) are in ``sys.modules`` already; clocks go on from the snapshot (the
  TSC is moved on by the time since), so ``time.time()`` is right.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Mapping, Sequence

from vmrpc import _vmm
from vmrpc.errors import PoolError, VmKilled
from vmrpc.hostmodule import HostModule, function
from vmrpc.linux.cpython import PythonResult
from vmrpc.linux.files import FileAccess, Mount
from vmrpc.linux.vm import LinuxVM
from vmrpc.linux.warm import WarmConfig, job_payload, read_stdin
from vmrpc.modspec import ModuleLike
from vmrpc.sockets import SocketOutsourcing

__all__ = ["PythonSnapshot", "SnapshotError"]

_BOOTSTRAP = "import vmrpc_snapshot; vmrpc_snapshot.serve()"
#: The job module's name (guest/linux/sdk/python/vmrpc_snapshot.py, ``JOB``).
_JOB = "vmrpc_snapshot_job"


class SnapshotError(PoolError):
    """The snapshot could not be taken: the bootstrap ended before its snapshot point
    (a ``preload`` import failed: ``stderr`` has its traceback), or the VM was not
    quiescent there (host files open, other threads)."""


class _Job(HostModule):
    """Hands a restored VM its job: function 0 answers the payload from an offset."""

    name = _JOB

    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    @function(0)
    def part(self, request: bytes) -> bytes:
        (offset,) = struct.unpack("<Q", request[:8].ljust(8, b"\0"))
        return self._payload[offset : offset + _vmm.MAX_PAYLOAD]


class PythonSnapshot:
    """A warm CPython snapshot; `run` starts a fresh VM from it per call.

    Args: as for `PythonPool` (``python``, ``mounts``, ``modules``, ``sockets``: a
    factory, one `SocketOutsourcing` per VM, ``env``, ``audit``, ``preload``,
    ``timeout``, ``memory_mib``). A module given as an instance is shared by every
    run's VM: give a class for a module that keeps state per VM. ``prefault``: run
    ``pass`` once after the snapshot and fault the pages it touched into every later
    run's memory before its vCPU starts (docs/linux.md, "Snapshots": 2x faster here).

    Raises `SnapshotError` if the snapshot cannot be taken.
    """

    def __init__(
        self,
        *,
        python: str | os.PathLike[str] = "/usr/bin/python3",
        mounts: Sequence[Mount | str] = (),
        modules: Sequence[ModuleLike] = (),
        sockets: Callable[[], SocketOutsourcing] | None = None,
        env: Mapping[str, str] | None = None,
        audit: Callable[[FileAccess], bool] | None = None,
        preload: Sequence[str] = (),
        timeout: float | None = 60.0,
        memory_mib: int = 256,
        prefault: bool = True,
    ) -> None:
        self._config = WarmConfig.of(
            python=python,
            mounts=mounts,
            modules=modules,
            sockets=sockets,
            env=env,
            audit=audit,
            preload=preload,
            memory_mib=memory_mib,
        )
        self.timeout = timeout
        """Default time limit of `run`, in seconds."""
        vm = self._config.linux_vm(_BOOTSTRAP)
        try:
            self._snapshot = _take(vm, timeout)
            self._cwd = vm.files.cwd
        finally:
            vm.close()
        self.prefaulted_pages = 0
        """Pages each run faults in before it starts (``prefault``)."""
        if prefault:
            # A first run, of ``pass``, shows which pages every run touches.
            self.prefaulted_pages = self._learn("pass", timeout)

    @property
    def stored_bytes(self) -> int:
        """Bytes of host memory the snapshot holds (the guest's pages that were not zero);
        runs do not add to it: memory they touch first is their own."""
        return self._snapshot.stored_bytes

    def run(
        self,
        code: str,
        args: Sequence[str] = (),
        *,
        stdin: bytes | os.PathLike[str] | None = None,
        timeout: float | None = None,
    ) -> PythonResult:
        """Run ``python -c code args...`` in a new VM started from the snapshot.

        ``stdin``: bytes or a host file path (default: empty). ``timeout``: seconds,
        default the snapshot's `timeout`. Raises `GuestTimeout`, `GuestCrashed` as
        `run_python` does; ``ValueError`` for a NUL byte in ``code`` or an argument.
        """
        limit = self.timeout if timeout is None else timeout
        with self.start(code, args, stdin=stdin) as vm:
            return PythonResult(vm.wait(limit), vm.stdout, vm.stderr)

    def start(
        self,
        code: str,
        args: Sequence[str] = (),
        *,
        stdin: bytes | os.PathLike[str] | None = None,
        before_start: Callable[[LinuxVM], object] | None = None,
    ) -> LinuxVM:
        """`run` without waiting: the new VM, started (``vm.wait()``, then ``vm.close()``;
        it is a context manager). ``before_start`` is called with it before it starts
        (to make an event queue on ``vm.vm``, say)."""
        payload = job_payload(code, args)
        data = b"" if stdin is None else read_stdin(stdin)
        vm = self._config.linux_vm(_BOOTSTRAP, [_Job(payload)], data)
        try:
            vm.files.cwd = self._cwd
            _vmm.restore_snapshot(vm.vm._vm, self._snapshot)
            if before_start is not None:
                before_start(vm)
            vm.start()
        except BaseException:
            vm.close()
            raise
        return vm

    def _learn(self, code: str, timeout: float | None) -> int:
        """Runs ``code`` and records the pages it touched (``prefault``)."""
        with self.start(code) as vm:
            vm.wait(timeout)
            return _vmm.record_working_set(vm.vm._vm, self._snapshot)


def _take(vm: LinuxVM, timeout: float | None) -> _vmm.Snapshot:
    """Runs ``vm`` to its snapshot point and takes the snapshot."""
    try:
        status = vm.run(timeout)
    except VmKilled:
        pass  # how a VM that stopped at its snapshot point ends
    else:
        raise SnapshotError(
            f"the bootstrap exited with status {status} before its snapshot point",
            stderr=vm.stderr,
        )
    vm.files._reap()  # the closes the guest sent at its snapshot point
    open_files = len(vm.files._handles) + vm.stats.get("files_native_open", 0)
    if open_files:
        raise SnapshotError(f"{open_files} host files open at the snapshot point")
    return _vmm.take_snapshot(vm.vm._vm)
