"""What `PythonPool` and `PythonSnapshot` share: the configuration of the VMs that run a
warm CPython bootstrap, and a ``python -c`` job's payload."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from vmrpc.linux.files import FileAccess, Mount
from vmrpc.linux.vm import LinuxVM
from vmrpc.modspec import ModuleLike
from vmrpc.sockets import SocketOutsourcing


@dataclass(frozen=True)
class WarmConfig:
    """Every VM of a pool or a snapshot is made from this (see their ``Args``)."""

    python: str | os.PathLike[str]
    mounts: tuple[Mount | str, ...]
    modules: tuple[ModuleLike, ...]
    sockets: Callable[[], SocketOutsourcing] | None
    env: Mapping[str, str] = field(default_factory=dict)
    audit: Callable[[FileAccess], bool] | None = None
    preload: tuple[str, ...] = ()
    memory_mib: int = 256

    @classmethod
    def of(
        cls,
        *,
        python: str | os.PathLike[str],
        mounts: Sequence[Mount | str],
        modules: Sequence[ModuleLike],
        sockets: Callable[[], SocketOutsourcing] | None,
        env: Mapping[str, str] | None,
        audit: Callable[[FileAccess], bool] | None,
        preload: Sequence[str],
        memory_mib: int,
    ) -> WarmConfig:
        """The configuration of the pool's or snapshot's arguments, checked."""
        if isinstance(preload, str):
            raise TypeError("preload must be a sequence of module names, not a single string")
        return cls(
            python=python,
            mounts=tuple(mounts),
            modules=tuple(modules),
            sockets=sockets,
            env=dict(env or {}),
            audit=audit,
            preload=tuple(preload),
            memory_mib=memory_mib,
        )

    def linux_vm(
        self,
        bootstrap: str,
        extra: Sequence[ModuleLike] = (),
        stdin: bytes | os.PathLike[str] | None = None,
    ) -> LinuxVM:
        """A VM that runs ``python -c bootstrap preload...`` (not started), with
        ``extra`` modules beside the configured ones."""
        return LinuxVM(
            self.python,
            ["-c", bootstrap, *self.preload],
            mounts=self.mounts,
            modules=[*self.modules, *extra],
            sockets=None if self.sockets is None else self.sockets(),
            env=self.env,
            stdin=stdin,
            audit=self.audit,
            memory_mib=self.memory_mib,
            python_client=True,
        )


def job_payload(code: str, args: Sequence[str]) -> bytes:
    """``code`` and ``args`` as the bootstraps read them: NUL-separated, as argv."""
    if isinstance(args, str):
        raise TypeError("args must be a sequence of strings, not a single string")
    fields = [os.fsencode(f) for f in (code, *args)]
    if any(b"\0" in f for f in fields):
        raise ValueError("code and arguments cannot hold NUL bytes")
    return b"\0".join(fields)


def read_stdin(stdin: bytes | os.PathLike[str]) -> bytes:
    if isinstance(stdin, bytes | bytearray | memoryview):
        return bytes(stdin)
    with open(stdin, "rb") as f:
        return f.read()
