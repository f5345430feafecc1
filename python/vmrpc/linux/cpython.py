"""`run_python`: Python code in a micro-VM, run by the host's own unmodified CPython.

The guest's ``/usr/bin/python3`` is the host's (dynamically linked; its interpreter,
libraries and standard library come from the host's ``/usr`` and ``/lib*``, read-only).
Its files are the mounts given, its network is the `SocketOutsourcing` given (none by
default), and it can call the host's Python modules through ``import vmrpc_guest``::

    class Prices(vmrpc.HostModule):
        name, version = "prices", 1

        @vmrpc.function(0)
        def quote(self, symbol: bytes) -> bytes:
            return b"42.0"

    result = vmrpc.run_python(
        "import vmrpc_guest; print(vmrpc_guest.Module('prices').call(0, b'ACME'))",
        modules=[Prices()],
    )
    assert result.stdout == b"b'42.0'\\n"
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from vmrpc.linux.files import FileAccess, Mount
from vmrpc.linux.vm import LinuxVM
from vmrpc.modspec import ModuleLike
from vmrpc.sockets import SocketOutsourcing

__all__ = ["PythonResult", "run_python"]


@dataclass(frozen=True)
class PythonResult:
    """How the guest's Python ended: its exit status and what it wrote."""

    returncode: int
    stdout: bytes
    stderr: bytes


def run_python(
    code: str,
    args: Sequence[str] = (),
    *,
    python: str | os.PathLike[str] = "/usr/bin/python3",
    mounts: Sequence[Mount | str] = (),
    modules: Sequence[ModuleLike] = (),
    sockets: SocketOutsourcing | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | os.PathLike[str] | None = None,
    audit: Callable[[FileAccess], bool] | None = None,
    timeout: float | None = 60.0,
    memory_mib: int = 256,
) -> PythonResult:
    """Run ``python -c code args...`` in a new VM and wait for it.

    ``mounts``, ``modules``, ``sockets``, ``env``, ``stdin``, ``audit`` and
    ``memory_mib`` mean what they mean for `LinuxVM`; the guest Python client is
    always importable (``import vmrpc_guest``). A program that crashes raises
    `GuestCrashed`, one that runs past ``timeout`` seconds `GuestTimeout`.
    """
    with LinuxVM(
        python,
        ["-c", code, *args],
        mounts=mounts,
        modules=modules,
        sockets=sockets,
        env=env,
        stdin=stdin,
        audit=audit,
        timeout=timeout,
        memory_mib=memory_mib,
        python_client=True,
    ) as vm:
        returncode = vm.run()
        return PythonResult(returncode, vm.stdout, vm.stderr)
