"""VM RPC for Linux programs: the SDK that `LinuxVM` programs link (docs/linux.md).

``_guest/linux/include/vmrpc_linux.h`` declares ``bind_module``, ``perform_rpc`` and the
event-queue calls; ``_guest/linux/lib/libvmrpc_linux.a`` makes them as private system
calls that the personality serves. The library uses no libc, so the same archive links
into static programs built with ``musl-gcc -static`` or ``gcc -static``::

    musl-gcc -static -O2 -I "$SDK/include" prog.c "$SDK/lib/libvmrpc_linux.a" -o prog

where ``$SDK`` is `linux_sdk_dir`, or: ``vmrpc build-guest --linux prog.c``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from vmrpc import guest
from vmrpc.errors import GuestBuildError
from vmrpc.images import linux_personality_image

__all__ = ["build", "compile_command", "linux_sdk_dir", "python_client_dir"]

_HEADER = "vmrpc_linux.h"
_LIBRARY = "libvmrpc_linux.a"
#: Compilers tried in this order when none is given: musl first (small static programs).
_COMPILERS = ("musl-gcc", "gcc")


def linux_sdk_dir() -> Path:
    """Return the Linux programs' SDK directory (``include/`` and ``lib/``).

    Raises:
        GuestBuildError: the SDK is not installed (run ``make dev`` in a checkout).
    """
    root = linux_personality_image().parent
    for needed in (root / "include" / _HEADER, root / "lib" / _LIBRARY):
        if not needed.is_file():
            raise GuestBuildError(
                f"the Linux SDK is incomplete (missing {needed}); run `make dev` in a vmrpc "
                "checkout, or install a vmrpc wheel"
            )
    return root


def python_client_dir() -> Path:
    """Return the directory of the guest's Python client (``vmrpc_guest.py`` and the
    generated ``vmrpc_guest_abi.py``): Python programs in a VM import it to call host
    modules (`vmrpc.linux.run_python`, ``LinuxVM(python_client=True)``)."""
    root = linux_sdk_dir() / "python"
    if not (root / "vmrpc_guest.py").is_file():
        raise GuestBuildError(f"the Linux SDK has no Python client in {root}; run `make dev`")
    return root


def compile_command(
    sources: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    compiler: str | None = None,
    cflags: Sequence[str] = (),
) -> list[str]:
    """Return the command that builds ``sources`` into a static program using the SDK.

    ``compiler`` defaults to musl-gcc, else gcc, on PATH.
    """
    if isinstance(cflags, str):
        raise TypeError("cflags must be a sequence of strings, not a single string")
    root = linux_sdk_dir()
    names = (compiler,) if compiler else _COMPILERS
    found = next((path for name in names if (path := shutil.which(name))), None)
    if found is None:
        raise GuestBuildError(
            f"no compiler for Linux programs (looked for {', '.join(names)}); install "
            "musl-tools or gcc"
        )
    return [
        found,
        "-static",
        "-O2",
        "-I",
        str(root / "include"),
        *cflags,
        *(os.fspath(s) for s in sources),
        str(root / "lib" / _LIBRARY),
        "-o",
        os.fspath(output),
    ]


def build(
    sources: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    compiler: str | None = None,
    cflags: Sequence[str] = (),
) -> Path:
    """Build a static Linux program that can call VM RPC; return its path.

    Raises:
        GuestBuildError: no compiler, no SDK, or the compiler failed (its messages).
    """
    command = compile_command(sources, output, compiler=compiler, cflags=cflags)
    warnings = guest._run(command, "building the Linux program")
    if warnings:
        guest.log.warning("%s", warnings)
    return Path(output)
