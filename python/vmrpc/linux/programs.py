"""`Program`: a further program of a `LinuxVM` (``also=[...]``), docs/linux.md.

Each program runs in a KVM VM of its own (its own memory, page tables, vCPUs, fd
table and host modules), so no program can reach another's memory or descriptors.
What they share is a loopback arena: memory mapped at the same address into each, in
which the guest socket library keeps the listeners and byte pipes of loopback
connections between them, so those connections never use a host socket.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmrpc.sockets import SocketOutsourcing

__all__ = ["Program"]


@dataclass(frozen=True)
class Program:
    """A program to run beside a `LinuxVM`'s first one.

    Args:
        program: host path of the program (an ELF executable).
        args: its arguments (``argv[1:]``).
        env: its environment.
        threads: how many threads it may run at once (its own vCPUs).
        stdin: bytes for its standard input (default: empty).
        on_stdout / on_stderr: called with each chunk it writes.
        sockets: its host network (`SocketOutsourcing`, as `LinuxVM`'s ``sockets``);
            None: none (loopback connections to the other programs still work).
    """

    program: str | os.PathLike[str]
    args: Sequence[str] = ()
    env: Mapping[str, str] | None = None
    threads: int = 1
    stdin: bytes | None = None
    on_stdout: Callable[[bytes], object] | None = field(default=None, compare=False)
    on_stderr: Callable[[bytes], object] | None = field(default=None, compare=False)
    sockets: SocketOutsourcing | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, command: str) -> Program:
        """``"PROG ARGS..."`` split as a shell would (the CLI's ``--also``)."""
        words = shlex.split(command)
        if not words:
            raise ValueError("--also needs a program")
        return cls(words[0], tuple(words[1:]))
