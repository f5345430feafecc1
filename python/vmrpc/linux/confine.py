"""Opening guest paths on the host, confined to a mount.

Confinement is the kernel's: every path is opened with ``openat2(2)`` relative to
the mount's root (or a directory handle inside it) with ``RESOLVE_BENEATH``, so
``..``, symlinks and absolute symlinks cannot leave the mount, whatever the guest
path says. Nothing here trusts a string check of a guest path.
"""

from __future__ import annotations

import ctypes
import errno
import os

__all__ = ["RESOLVE_BENEATH", "RESOLVE_NO_MAGICLINKS", "openat2"]

_SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


def openat2(dir_fd: int, path: bytes, flags: int, mode: int = 0) -> int:
    """``openat2(dir_fd, path, {flags | O_CLOEXEC, mode, RESOLVE_BENEATH})``; an fd.

    Raises `OSError`. An escape attempt fails with ``EXDEV`` (the kernel's answer).
    """
    if b"\0" in path:
        raise OSError(errno.EINVAL, "NUL in path")
    how = _OpenHow(flags | os.O_CLOEXEC, mode, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
    fd = _syscall(
        ctypes.c_long(_SYS_OPENAT2),
        ctypes.c_int(dir_fd),
        ctypes.c_char_p(path or b"."),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(fd)
