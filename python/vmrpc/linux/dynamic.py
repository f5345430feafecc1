"""Dynamically linked programs: their interpreter, and the system mounts they need.

A program with ``PT_INTERP`` is loaded by the VMM with its interpreter (glibc's
``/lib64/ld-linux-x86-64.so.2``) taken from the host, or from a sysroot the caller
names. ld.so then opens the shared libraries through the ``files`` module, so the
directories they live in must be mounted: by default the host's (or the sysroot's)
``/usr``, ``/lib``, ``/lib64`` read-only at the same paths. ``/etc`` is not mounted by
default (ld.so works without ``/etc/ld.so.cache``; mount it to give the program more).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from vmrpc.linux.files import Mount

__all__ = ["SYSTEM_DIRS", "interpreter", "system_mounts"]

#: The directories mounted read-only for a dynamically linked program.
SYSTEM_DIRS = ("/usr", "/lib", "/lib64")

_PT_INTERP = 3
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")


def interpreter(program: str | os.PathLike[str]) -> str | None:
    """The ``PT_INTERP`` path of an x86-64 ELF, or None (static, or not ELF: the VMM
    reports what is wrong with it)."""
    try:
        with open(program, "rb") as f:
            head = f.read(_EHDR.size)
            if len(head) < _EHDR.size or head[:4] != b"\x7fELF" or head[4] != 2:
                return None
            fields = _EHDR.unpack(head)
            phoff, phentsize, phnum = fields[5], fields[9], fields[10]
            if phentsize != _PHDR.size or phnum > 128:
                return None
            f.seek(phoff)
            table = f.read(phnum * _PHDR.size)
            for p_type, _flags, offset, *_rest, filesz, _memsz, _align in _PHDR.iter_unpack(
                table[: len(table) - len(table) % _PHDR.size]
            ):
                if p_type == _PT_INTERP and 0 < filesz <= 4096:
                    f.seek(offset)
                    return os.fsdecode(f.read(filesz).split(b"\0", 1)[0])
    except OSError:
        return None
    return None


def system_mounts(sysroot: str | os.PathLike[str] | None = None) -> list[Mount]:
    """Read-only mounts of `SYSTEM_DIRS` that exist under ``sysroot`` (default ``/``)."""
    root = Path(sysroot) if sysroot is not None else Path("/")
    out = []
    for d in SYSTEM_DIRS:
        host = root / d.lstrip("/")
        if host.is_dir():
            out.append(Mount(host, d, readonly=True))
    return out
