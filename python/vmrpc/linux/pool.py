"""`PythonPool`: a warm CPython in a VM that runs ``python -c`` jobs in milliseconds.

`run_python` starts a VM and CPython for each call (~80 ms here, most of it CPython's
start-up in a fresh VM). A pool starts them once: its VM runs the bootstrap
``vmrpc_pool`` (shipped beside ``vmrpc_guest``), which imports what it is asked to
(``preload``) and then forks one child per run. Fork in the VM is "child first": the
child runs in the bootstrap's memory and that memory comes back when it exits, so each
run starts from the same warm interpreter and leaves nothing in it::

    with vmrpc.PythonPool(mounts=["/srv/data:/data:ro"], preload=["json"]) as pool:
        result = pool.run("import sys, json; print(json.dumps(sys.argv[1:]))", ["a"])
        assert result == PythonResult(0, b'["a"]\\n', b"")

What a run sees and what it does not (docs/linux.md, "A warm pool"):

- Its stdout, stderr and exit status are exactly its own, as with ``python -c``.
- Memory is not shared between runs: globals, module attributes, monkeypatches and
  imports of one run are gone for the next. Files written to a read-write mount stay.
- Every run forks from one interpreter: the same ``str`` hash seed in every run of a
  VM. ``random`` is reseeded in each child (CPython does it at fork) and
  ``os.urandom`` is never repeated (the personality's generator is not forked).
- Modules the bootstrap imported (``vmrpc_guest``, ``ctypes``, ``preload``) are in
  ``sys.modules`` already, and a traceback of ``traceback.print_stack()`` shows the
  bootstrap's frames below the run's.
- A run cannot start threads (a forked child cannot in this VM: ``RuntimeError:
  can't start new thread``).
- Runs in one pool are not a boundary against each other: run code shares the VM with
  the bootstrap, and can reach its event queue or write over the personality (docs,
  "Trust"). Runs that must not trust each other need a pool each (or `run_python`).

A run that passes its timeout raises `GuestTimeout`, one that crashes the VM
`GuestCrashed`, one that ends the bootstrap `PoolError`; the pool discards that VM and
the next run starts a fresh one. `run` from several threads runs one job at a time
(one VM); make several pools to run jobs in parallel.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from vmrpc._closing import Closing
from vmrpc.errors import ConfigError, PoolError, QueueClosed
from vmrpc.events import EventQueue
from vmrpc.linux.cpython import PythonResult
from vmrpc.linux.files import FileAccess, Mount
from vmrpc.linux.vm import LinuxVM
from vmrpc.linux.warm import WarmConfig, job_payload, read_stdin
from vmrpc.modspec import ModuleLike
from vmrpc.sockets import SocketOutsourcing

__all__ = ["PythonPool"]

#: The bootstrap's queue and wire format (guest/linux/sdk/python/vmrpc_pool.py).
QUEUE = "vmrpc_pool"
_BOOTSTRAP = "import vmrpc_pool; vmrpc_pool.serve()"
_EVENT_SIZE = 4096
_EVENTS = 8
_READY = b"R"
_JOB = b"J"
_DONE = b"D"
_FORK_FAILED = b"F"


class PythonPool(Closing):
    """One warm VM running the host's CPython, serving `run` calls one at a time.

    Args:
        python: the guest's Python (default: the host's ``/usr/bin/python3``).
        mounts, modules, env, audit, memory_mib: as for `run_python`, for every run.
            A module given as an instance is registered on each VM the pool starts and
            its ``close()`` (if any) is called when that VM is discarded: give a class
            for a module that keeps state per VM.
        sockets: makes the network of each VM the pool starts (one `SocketOutsourcing`
            serves one VM), e.g. ``lambda: SocketOutsourcing(Policy([...]))``. None:
            no network. The current VM's is `LinuxVM.sockets` of `vm`.
        preload: modules the bootstrap imports once, before any run (a run that
            imports them finds them already imported).
        timeout: each run's time limit in seconds (``None`` or ``inf``: none), and
            the start's.

    Raises `PoolError` if the bootstrap does not start (a ``preload`` import failed:
    its traceback is in ``stderr``), as `run_python` raises for what `LinuxVM` refuses.
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
        self.vms_started = 0
        """VMs this pool has started: 1, plus one per VM discarded and replaced."""
        self._lock = threading.Lock()
        self._closed = False
        self._vm: LinuxVM | None = None
        self._queue: EventQueue | None = None
        with self._lock:
            self._start()

    @property
    def vm(self) -> LinuxVM | None:
        """The pool's current VM (its `stats`, its `sockets`), or None after a discard."""
        return self._vm

    def run(
        self,
        code: str,
        args: Sequence[str] = (),
        *,
        stdin: bytes | os.PathLike[str] | None = None,
        timeout: float | None = None,
    ) -> PythonResult:
        """Run ``python -c code args...`` in a fork of the warm interpreter; wait for it.

        ``stdin``: bytes or a host file path (default: empty). ``timeout``: seconds,
        default the pool's `timeout` (``inf``: no limit).

        Raises:
            GuestTimeout: the run passed its timeout (the VM is discarded).
            GuestCrashed: the run crashed the VM (discarded).
            PoolError: the bootstrap ended (its VM is discarded) or could not fork.
            ValueError: ``code`` or an argument holds a NUL byte (as for a process).
            ConfigError: the pool is closed.
        """
        payload = job_payload(code, args)
        data = b"" if stdin is None else read_stdin(stdin)
        limit = self.timeout if timeout is None else timeout
        with self._lock:
            if self._closed:
                raise ConfigError("the pool is closed")
            vm, queue = self._vm, self._queue
            if vm is None or queue is None:
                vm, queue = self._start()
            vm.files.restart_stdio(data)
            answer = self._exchange(vm, queue, payload, limit)
            if answer[:1] == _FORK_FAILED:
                reason = answer[1:].decode(errors="replace")
                raise PoolError(f"the bootstrap could not fork: {reason}")
            if answer[:1] != _DONE or len(answer) != 5:
                self._discard()
                raise PoolError(f"the bootstrap answered {answer[:16]!r}", stderr=vm.stderr)
            status = int.from_bytes(answer[1:], "little", signed=True)
            return PythonResult(status, vm.stdout, vm.stderr)

    def close(self) -> None:
        """Stop the pool's VM; later runs raise `ConfigError`. Waits for a run in
        progress. Idempotent."""
        with self._lock:
            self._closed = True
            self._discard()

    # -- the VM ------------------------------------------------------------------------

    def _start(self) -> tuple[LinuxVM, EventQueue]:
        """A new VM whose bootstrap is ready (under the lock)."""
        vm = self._config.linux_vm(_BOOTSTRAP)
        try:
            queue = vm.vm.make_ev_queue(QUEUE, capacity=_EVENTS, max_event_size=_EVENT_SIZE)
            vm.start()
            self.vms_started += 1
            self._vm, self._queue = vm, queue
            ready = self._answer(vm, queue, _deadline(self.timeout))
        except BaseException:
            self._discard()
            vm.close()
            raise
        if ready != _READY:
            self._discard()
            raise PoolError(f"the bootstrap said {ready[:16]!r}, not ready", stderr=vm.stderr)
        return vm, queue

    def _exchange(
        self, vm: LinuxVM, queue: EventQueue, payload: bytes, limit: float | None
    ) -> bytes:
        """Send one job, return the bootstrap's answer (under the lock)."""
        deadline = _deadline(limit)
        try:
            queue.put_event(_JOB + len(payload).to_bytes(8, "little"), _left(deadline))
            for at in range(0, len(payload), _EVENT_SIZE):
                queue.put_event(payload[at : at + _EVENT_SIZE], _left(deadline))
        except TimeoutError:
            self._fail(vm, timed_out=True)
        except QueueClosed:
            self._fail(vm, timed_out=False)
        return self._answer(vm, queue, deadline)

    def _answer(self, vm: LinuxVM, queue: EventQueue, deadline: float | None) -> bytes:
        try:
            return queue.get_event(_left(deadline))
        except TimeoutError:
            self._fail(vm, timed_out=True)
        except QueueClosed:
            self._fail(vm, timed_out=False)

    def _fail(self, vm: LinuxVM, *, timed_out: bool) -> NoReturn:
        """Discard ``vm`` and raise what ended its run: `GuestTimeout` (``timed_out``:
        a wait of 0 kills it and raises that), `GuestCrashed`, or `PoolError` if it
        exited."""
        try:
            status = vm.vm.wait(0 if timed_out else float("inf"))
        finally:
            self._discard()
        raise PoolError(f"the bootstrap exited with status {status}", stderr=vm.stderr)

    def _discard(self) -> None:
        if self._vm is not None:
            self._vm.close()
        self._vm = self._queue = None


def _deadline(limit: float | None) -> float | None:
    if limit is None or limit == float("inf"):
        return None
    return time.monotonic() + limit


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
