"""`LinuxVM`: one unmodified static Linux program in its own VM.

The VM runs the built-in ``linux`` image, vmrpc's Linux system-call personality
(``guest/linux/``). The VMM loads the program next to it (``_vmm.linux_setup``), and
the program's file calls go to a `FilesModule` registered on the VM::

    with vmrpc.LinuxVM("/bin/busybox", ["sha256sum", "/data/f"],
                       mounts=[Mount(Path("host_dir"), "/data", readonly=True)]) as vm:
        code = vm.run(timeout=30)
        print(vm.stdout.decode())
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from vmrpc import _vmm
from vmrpc._closing import Closing
from vmrpc.errors import ConfigError
from vmrpc.images import linux_personality_image
from vmrpc.linux.dynamic import interpreter, system_mounts
from vmrpc.linux.files import FileAccess, FilesModule, Mount, TraceRecord
from vmrpc.linux.netconf import write_etc
from vmrpc.linux.programs import Program
from vmrpc.linux.sdk import python_client_dir
from vmrpc.linux.synth import Synthetic
from vmrpc.modspec import ModuleLike
from vmrpc.sockets import SocketOutsourcing
from vmrpc.vm import VM

__all__ = ["DEFAULT_THREADS", "MAX_THREADS", "PYTHON_CLIENT_DIR", "LinuxVM"]

#: Where a program sees the guest Python client with ``python_client=True``.
PYTHON_CLIENT_DIR = "/usr/lib/vmrpc/python"
MAX_THREADS: int = _vmm.MAX_VCPUS
"""Most threads a program can run at once: one per vCPU (docs/linux.md, Threads).
It may have more (up to 64): the host schedules them over the vCPUs."""
DEFAULT_THREADS = 4
"""Threads a `LinuxVM` allows unless told otherwise (idle vCPUs wait in the host)."""


class LinuxVM(Closing):
    """A VM running one x86-64 Linux program, static or dynamically linked.

    Args:
        program: host path of the program (an ELF executable). A dynamically linked
            one (``PT_INTERP``) is loaded with its interpreter from ``sysroot``, and the
            sysroot's ``/usr``, ``/lib``, ``/lib64`` are mounted read-only at those paths
            (after ``mounts``, which win where they overlap; see `vmrpc.linux.dynamic`).
        args: its arguments (``argv[1:]``; ``argv[0]`` is ``program`` as given).
        mounts: host directories the program sees (`Mount`, or ``"HOST:GUEST[:ro]"``).
        env: its environment.
        stdin: bytes or a host file path for its standard input (default: empty).
        on_stdout / on_stderr: called with each chunk it writes (streaming).
        audit: file access hook; return ``False`` to deny (the program gets EACCES).
        trace: record every system call (`trace`, and `on_trace` as they come).
        rewrite_syscalls: rewrite the program's ``syscall`` instructions into calls
            through a nop sled at address 0 (zpoline), the fast path; without it every
            call traps to ``MSR_LSTAR`` (also the safety net for sites not rewritten).
            With it, reads of the page at address 0 do not fault (writes still do).
        cwd: its working directory (a guest path).
        timeout: default timeout of `run` and `wait`, in seconds.
        memory_mib: guest memory (the program, its heap and its 8 MiB stack share it).
        sysroot: host directory holding the interpreter and libraries of a dynamically
            linked program (default: the host's ``/``).
        sockets: the program's network (docs/linux.md): a `SocketOutsourcing` whose
            policy, audit and counters apply to its sockets as to a bare guest's.
            Without one the program has no network: every socket it connects, binds
            or exposes to the host fails (guest-local connections still work).
            With one, the program also gets a read-only ``/etc`` with ``hosts``,
            ``resolv.conf`` (the VM's resolver) and ``nsswitch.conf``
            (`vmrpc.linux.netconf`), unless ``mounts`` has ``/etc``.
        hosts: extra ``/etc/hosts`` entries (name -> address), with ``sockets``.
        modules: host modules the program may call through VM RPC (`vmrpc.linux.sdk`),
            in any form `VM.register_hm` takes; event queues: ``vm.vm.make_ev_queue``.
        python_client: make the guest Python client (``import vmrpc_guest``, see
            `vmrpc.linux.sdk.python_client_dir`) importable: mounted read-only at
            `PYTHON_CLIENT_DIR` and put first on ``PYTHONPATH``.
        threads: how many threads the program may run at once, 1 to `MAX_THREADS`:
            the VM's vCPUs. A program may have more threads (up to 64, a ``clone``
            beyond fails with EAGAIN); the host schedules them over the vCPUs.
        also: further programs (`Program`) to run at the same time, each with its own
            memory, vCPUs and fd table, the same ``mounts`` and ``sysroot``, and its
            own host network (`Program.sockets`, default none); loopback connections
            between the programs are served in a memory arena they share
            (docs/linux.md, "Several programs in one VM").
            `programs` lists them after this one; `run` and `wait` return this
            (the first) program's exit status and then stop the others.

    Raises `ImageError` for a program that cannot run here (not ELF, not x86-64,
    an interpreter that cannot be loaded), `ConfigError` for one that does not fit.
    """

    def __init__(
        self,
        program: str | os.PathLike[str],
        args: Sequence[str] = (),
        *,
        mounts: Sequence[Mount | str] = (),
        env: Mapping[str, str] | None = None,
        stdin: bytes | os.PathLike[str] | None = None,
        on_stdout: Callable[[bytes], object] | None = None,
        on_stderr: Callable[[bytes], object] | None = None,
        on_trace: Callable[[TraceRecord], object] | None = None,
        audit: Callable[[FileAccess], bool] | None = None,
        trace: bool = False,
        rewrite_syscalls: bool = True,
        cwd: str = "/",
        timeout: float | None = None,
        memory_mib: int = 256,
        sysroot: str | os.PathLike[str] | None = None,
        sockets: SocketOutsourcing | None = None,
        hosts: Mapping[str, str] | None = None,
        modules: Sequence[ModuleLike] = (),
        python_client: bool = False,
        threads: int = DEFAULT_THREADS,
        also: Sequence[Program] = (),
        _arena: _vmm.LoopbackArena | None = None,
    ) -> None:
        if isinstance(args, str):
            raise TypeError("args must be a sequence of strings, not a single string")
        if also and _arena is None:
            _arena = _vmm.LoopbackArena()
        self.programs: list[LinuxVM] = [self]
        """This program, then those of ``also`` (each a `LinuxVM` of its own)."""
        self.program = Path(program)
        """Host path of the program."""
        self._plane = _vmm.FilesDataPlane()
        self._code = _vmm.CodeRewriter()
        all_mounts = [m if isinstance(m, Mount) else Mount.parse(m) for m in mounts]
        self._etc: tempfile.TemporaryDirectory[str] | None = None
        if sockets is not None and not any(m.guest == "/etc" for m in all_mounts):
            self._etc = tempfile.TemporaryDirectory(prefix="vmrpc-etc-")
            write_etc(Path(self._etc.name), hosts)
            all_mounts.append(Mount(Path(self._etc.name), "/etc", readonly=True))
        if interpreter(self.program) is not None:
            all_mounts += system_mounts(sysroot)
        env = dict(env or {})
        if python_client:
            all_mounts.append(Mount(python_client_dir(), PYTHON_CLIENT_DIR, readonly=True))
            path = env.get("PYTHONPATH")
            env["PYTHONPATH"] = f"{PYTHON_CLIENT_DIR}:{path}" if path else PYTHON_CLIENT_DIR
        self.files = FilesModule(
            all_mounts,
            stdin=stdin,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            audit=audit,
            cwd=cwd,
            data_plane=self._plane,
            synthetic=Synthetic(exe=os.fspath(program)),
        )
        """The program's `FilesModule` (stdout, stderr, trace, unsupported calls)."""
        self.files.on_trace = on_trace
        self.sockets = sockets
        """The program's `SocketOutsourcing` (audit, stats), or None."""
        registered: list[ModuleLike] = [self.files]
        if sockets is not None:
            registered.append(sockets)
        registered.extend(modules)
        if not 1 <= threads <= MAX_THREADS:
            raise ConfigError(f"threads must be between 1 and {MAX_THREADS}, not {threads}")
        self.vm = VM(
            linux_personality_image(),
            memory_mib=memory_mib,
            timeout=timeout,
            modules=registered,
            vcpus=threads,
            # vCPU 0 runs the program; the personality starts the others at its
            # first threads (guest/linux/thread.c), so a program without threads
            # never pays for them.
            vcpus_on_demand=True,
            arena=_arena,
        )
        """The underlying `VM`."""
        argv = [os.fspath(program), *args]
        envp = [f"{k}={v}" for k, v in env.items()]
        try:
            self._plane.register(self.vm._vm)
            if rewrite_syscalls:
                self._code.register(self.vm._vm)
            self.layout: dict[str, int] = _vmm.linux_setup(
                self.vm._vm,
                str(self.program),
                argv,
                envp,
                argv[0],
                trace,
                rewrite_syscalls,
                None if sysroot is None else os.fspath(sysroot),
                self._plane,
            )
            """Where the program and its memory areas were placed (diagnostics)."""
            for extra in also:
                self.programs.append(
                    LinuxVM(
                        extra.program,
                        extra.args,
                        mounts=mounts,
                        env=extra.env,
                        stdin=extra.stdin,
                        on_stdout=extra.on_stdout,
                        on_stderr=extra.on_stderr,
                        rewrite_syscalls=rewrite_syscalls,
                        cwd=cwd,
                        timeout=timeout,
                        memory_mib=memory_mib,
                        sysroot=sysroot,
                        threads=extra.threads,
                        sockets=extra.sockets,
                        _arena=_arena,
                    )
                )
        except BaseException:
            self.close()
            raise

    def run(self, timeout: float | None = None) -> int:
        """Start the program and wait for it; return its exit status (0..255).

        Raises `GuestCrashed` if it faults (registers attached), `GuestTimeout`.
        """
        self.start()
        return self.wait(timeout)

    def start(self) -> None:
        """Start the program (and those of ``also``) without waiting (see `wait`)."""
        for program in self.programs[1:]:
            program.vm.start()
        self.vm.start()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the program's exit status; then stop those of ``also``."""
        try:
            return self.vm.wait(timeout)
        finally:
            for program in self.programs[1:]:
                program.vm.kill()

    @property
    def stdout(self) -> bytes:
        """What the program wrote to its standard output."""
        return self.files.stdout

    @property
    def stderr(self) -> bytes:
        """What the program wrote to its standard error."""
        return self.files.stderr

    @property
    def trace(self) -> list[TraceRecord]:
        """Its system calls (with ``trace=True``)."""
        return self.files.trace

    @property
    def stats(self) -> dict[str, int]:
        """The VM's counters, the files data plane's, code rewritten at run time
        (``code_syscall_sites``), plus ``enosys_<name>``: unsupported calls by name."""
        stats = dict(self.vm.stats)
        stats.update(self._plane.stats())
        stats.update(self._code.stats())
        for name, count in self.files.enosys.items():
            stats[f"enosys_{name}"] = count
        return stats

    def close(self) -> None:
        """Stop the VM and release it and the program's host files (with those of
        ``also``). Idempotent."""
        for program in self.programs[1:]:
            program.close()
        self.vm.close()
        if self._etc is not None:
            self._etc.cleanup()
            self._etc = None
