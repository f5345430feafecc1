"""`VM`: the Python face of one virtual machine.

A thin wrapper over the native `vmrpc._vmm.Vm`: it resolves built-in image names,
adds a default timeout and the context-manager protocol, and otherwise forwards every
call. State, console and counters live in the native object.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal, TypeAlias, cast

from vmrpc import _vmm, abi
from vmrpc._closing import Closing
from vmrpc.errors import ConfigError
from vmrpc.events import EventQueue
from vmrpc.hostmodule import NativeModule, encode_version, module_functions
from vmrpc.images import image_path
from vmrpc.modspec import ModuleLike, resolve_module

__all__ = ["VM", "VmState"]

log = logging.getLogger("vmrpc")

VmState: TypeAlias = Literal["created", "running", "exited", "crashed", "killed", "closed"]
"""The life of a VM: `VM.state`."""

#: How often `VM.iter_console` and `VM.aiter_console` look for new console output.
CONSOLE_POLL_S = 0.02


class VM(Closing):
    """A KVM virtual machine running one guest ELF image.

    Args:
        image: path of a guest ELF, or the name of a built-in image (``"hello"``,
            ``"smp"``, ...; see `vmrpc.builtin_images`).
        vcpus: number of virtual CPUs, 1 to 8.
        memory_mib: guest memory in MiB, an even number within the VMM's limits
            (a `ConfigError` names them). Integer settings out of range, and bools,
            raise `ConfigError`.
        args: the guest's command-line arguments (``arg[1]``, ``arg[2]``, ...).
        timeout: default timeout in seconds for `wait` and `run` (``None``: no limit).
        console_limit: how many bytes of console output are kept.
        modules: host modules to register right away, in any form `register_hm`
            takes: instances, `HostModule` subclasses, ``"pkg.mod:Class"`` or
            ``"native:NAME"``.
        rpc_spin_us: how long the RPC engine polls idle rings before it sleeps and
            waits for the guest's doorbell (default: the VMM's, 50 µs).
        cpu_limit: CPU budget of all the VM's vCPUs together, in host CPUs (``0.5``: half
            of one host CPU; at least 0.01, at most the host's CPU count), enforced by
            the kernel with a cgroup made for this VM and holding only its vCPU threads
            (cgroup v2 ``cpu.max`` or v1 CFS quota). ``None``: no limit. Needs root or a
            delegated cgroup; otherwise `ConfigError` says what is missing.
        vcpus_on_demand: start vCPU 0 only, and schedule guest threads over the
            vCPUs: the host makes another vCPU when a thread waits for one (the Linux
            personality's threads, docs/linux.md). Counted in ``stats["vcpus_created"]``.
        arena: a `_vmm.LoopbackArena` this VM maps at its fixed address and shares with
            the other VMs given it: how `LinuxVM`'s programs (``also``) reach each other
            (docs/linux.md, "Several programs in one VM").

    The configuration and the image are checked before any KVM object is created:
    `ConfigError` or `ImageError` come from the constructor. Use it as a context manager
    so that the VM is always closed::

        with VM("hello", args=["x"]) as vm:
            code = vm.run(timeout=10)
            print(vm.console)
    """

    def __init__(
        self,
        image: str | os.PathLike[str],
        *,
        vcpus: int = 1,
        memory_mib: int = 64,
        args: Sequence[str] = (),
        timeout: float | None = None,
        console_limit: int = 1 << 20,
        modules: Sequence[ModuleLike] = (),
        rpc_spin_us: int | None = None,
        cpu_limit: float | None = None,
        vcpus_on_demand: bool = False,
        arena: _vmm.LoopbackArena | None = None,
    ) -> None:
        if isinstance(args, str):
            raise TypeError("args must be a sequence of strings, not a single string")
        self.image: Path = image_path(image)
        """Path of the guest ELF image."""
        self.args: tuple[str, ...] = tuple(args)
        """The guest's arguments, as given."""
        self.timeout: float | None = timeout
        """Default timeout of `wait` and `run`, in seconds (``None``: none)."""
        spin = {} if rpc_spin_us is None else {"rpc_spin_us": rpc_spin_us}
        self._vm = _vmm.Vm(
            str(self.image),
            vcpus=vcpus,
            memory_mib=memory_mib,
            args=list(self.args),
            console_limit=console_limit,
            cpu_limit=cpu_limit,
            vcpus_on_demand=vcpus_on_demand,
            arena=arena,
            **spin,
        )
        self._closers: list[Callable[[], object]] = []
        """``close`` of registered host modules that have one, called by `close`."""
        self._queues: dict[str, EventQueue] = {}
        for module in modules:
            self.register_hm(module)
        log.debug("created VM image=%s vcpus=%d memory=%dMiB", self.image, vcpus, memory_mib)

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start all vCPUs. Raises `ConfigError` if the VM was already started."""
        self._vm.start()

    def wait(self, timeout: float | None = None) -> int:
        """Block until the guest exits and return its exit code.

        ``timeout`` defaults to the VM's `timeout`; ``None``, ``float("inf")`` and values
        too large to represent mean no timeout. The GIL is released while waiting and
        Ctrl-C interrupts the wait. A `SystemExit` or `KeyboardInterrupt` that a host
        function raised (and that stopped the VM) is raised here, once.

        Raises:
            GuestCrashed: the guest crashed (the exception carries registers and console).
            GuestTimeout: the timeout elapsed; the VM has been killed.
            VmKilled: the VM was killed (`kill`) before the guest exited.
            ConfigError: the VM was not started, or is closed.
            ValueError: ``timeout`` is negative or NaN.
        """
        return self._vm.wait(self.timeout if timeout is None else timeout)

    def run(self, timeout: float | None = None) -> int:
        """Start the VM and wait for the guest to exit; return its exit code."""
        self.start()
        return self.wait(timeout)

    def kill(self) -> None:
        """Stop all vCPUs. Idempotent, and safe before `start`."""
        self._vm.kill()

    def close(self) -> None:
        """Kill the VM and release its KVM file descriptors and memory. Idempotent.

        Then calls ``close()`` of every registered host module that has one (once), so
        modules release what they hold for this VM (sockets, files).
        """
        self._vm.close()
        closers, self._closers = self._closers, []
        for closer in closers:
            try:
                closer()
            except Exception:
                log.exception("closing host module %r failed", closer)

    # -- observation ---------------------------------------------------------------

    @property
    def console(self) -> str:
        """Console output so far (the last ``console_limit`` bytes, decoded as UTF-8).

        Still readable after `close`.
        """
        return self._vm.console

    def console_from(self, pos: int) -> tuple[str, int]:
        """Return the console text written since byte offset ``pos`` and the new offset.

        Start with ``pos=0`` and feed the returned offset back in to stream the console.
        """
        return self._vm.console_from(pos)

    def iter_console(self, poll: float = CONSOLE_POLL_S) -> Iterator[str]:
        """Yield console text as the guest writes it, until the VM stops.

        Every byte is yielded once, the output written just before the guest exits
        included: after the VM is seen stopped, one last read takes the tail. Start the
        VM before or while iterating; iteration ends when it exits, crashes, is killed
        or closed (`wait` then tells how it ended).
        """
        for text, last in self._console_reads():
            if text:
                yield text
            if not last:
                time.sleep(poll)

    async def aiter_console(self, poll: float = CONSOLE_POLL_S) -> AsyncIterator[str]:
        """`iter_console` for asyncio: the same text, without blocking the event loop."""
        for text, last in self._console_reads():
            if text:
                yield text
            if not last:
                await asyncio.sleep(poll)

    def _console_reads(self) -> Iterator[tuple[str, bool]]:
        """Successive reads of new console text, each with "this was the last read".

        The state is taken *before* each read: a read that follows seeing the VM stopped
        has everything the guest wrote, so it can be the last.
        """
        pos = 0
        while True:
            stopped = self.state not in ("created", "running")
            text, pos = self.console_from(pos)
            yield text, stopped
            if stopped:
                return

    @property
    def stats(self) -> dict[str, int]:
        """Counters of this VM: exits by kind (``exits_mmio``, ...), RPCs, events."""
        return self._vm.stats

    @property
    def state(self) -> VmState:
        """One of ``created``, ``running``, ``exited``, ``crashed``, ``killed``, ``closed``."""
        return cast(VmState, self._vm.state)

    @property
    def exit_code(self) -> int | None:
        """The guest's exit code once it has exited, else ``None``."""
        return self._vm.exit_code

    @property
    def vcpus(self) -> int:
        """Number of virtual CPUs."""
        return self._vm.vcpus

    @property
    def memory_mib(self) -> int:
        """Guest memory in MiB."""
        return self._vm.memory_mib

    @property
    def cgroup(self) -> str | None:
        """The cgroup directory holding the vCPU threads when ``cpu_limit`` is set.

        ``None`` without a limit, and once the VM is closed (the cgroup is removed).
        """
        return self._vm.cgroup

    # -- VM RPC --------------------------------------------------------------------

    def register_hm(self, module: ModuleLike) -> None:
        """Register a host module; guests can bind it from now on (before or while running).

        ``module`` is a `HostModule` or `NativeModule` instance, a `HostModule` subclass
        (instantiated with no arguments), or a string ``"pkg.mod:Class"``,
        ``"path/file.py:Class"`` or ``"native:NAME"`` (see `vmrpc.modspec`).

        Raises:
            ConfigError: a module with the same name and version is already registered.
            ModuleSpecError: a string names nothing importable.
            TypeError: ``module`` is none of these forms.
        """
        module = resolve_module(module)
        if isinstance(module, NativeModule):
            self._vm.register_native(module.name)
            return
        name = getattr(module, "name", None)
        if not isinstance(name, str):
            raise TypeError(f"{type(module).__name__}.name must be a str")
        functions = module_functions(module)
        handlers = module.native_handlers()
        self._vm.register_hm(name, encode_version(module.version), functions, handlers)
        closer = getattr(module, "close", None)
        if callable(closer):
            self._closers.append(closer)

    def unregister_hm(self, name: str, version: int | tuple[int, int] = 1) -> None:
        """Unregister a host module.

        Calls already running finish; later calls through existing handles, and later
        binds, get ``VMRPC_EGONE`` in the guest. Raises `ConfigError` if not registered.
        """
        self._vm.unregister_hm(name, encode_version(version))

    @property
    def modules(self) -> list[tuple[str, tuple[int, int]]]:
        """Registered host modules as ``(name, (major, minor))``."""
        return [(n, abi.version_parts(v)) for n, v in self._vm.modules]

    # -- event queues --------------------------------------------------------------

    def make_ev_queue(
        self, name: str, capacity: int = 1024, max_event_size: int = 256
    ) -> EventQueue:
        """Create an event queue the guest opens by ``name`` (before or while running).

        ``capacity`` events (a power of two, 1 to 65536) of up to ``max_event_size``
        bytes (1 to 65528) fit in each direction. Queues live in a 2 MiB arena of guest
        memory whose space is not reused while the VM lives.

        Raises:
            ValueError: ``capacity`` or ``max_event_size`` is out of range.
            ConfigError: a queue of that name exists, or the VM is closed.
            EventQueueError: the arena has no room left for the queue.
        """
        queue = EventQueue(self._vm.make_ev_queue(name, capacity, max_event_size))
        self._queues[name] = queue
        return queue

    def del_ev_queue(self, queue: EventQueue | str) -> None:
        """Delete an event queue (given as the queue or its name), also while in use.

        Host calls on it, waiting or not, raise `QueueClosed` from now on; the guest's
        get ``VMRPC_ENOQUEUE``. Raises `ConfigError` if there is no such queue.
        """
        if isinstance(queue, EventQueue):
            # Names are per VM: a queue object from another VM must not delete ours.
            if self._queues.get(queue.name) is not queue:
                raise ConfigError(f"event queue {queue.name!r} does not belong to this VM")
            name = queue.name
        else:
            name = queue
        self._vm.del_ev_queue(name)
        self._queues.pop(name, None)

    @property
    def ev_queues(self) -> list[str]:
        """Names of the live event queues, sorted."""
        return self._vm.ev_queues

    def __repr__(self) -> str:
        return (
            f"<VM {self.image.name} vcpus={self.vcpus} memory={self.memory_mib}MiB"
            f" state={self.state}>"
        )
