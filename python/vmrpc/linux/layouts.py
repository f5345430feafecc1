"""Linux x86-64 structure layouts the ``files`` module answers with.

``struct stat`` (newfstatat, fstat), ``struct statx`` and ``struct linux_dirent64``
(getdents64), packed from Python's own `os.stat_result` and `os.DirEntry`. The native
path operations pack ``struct stat`` in Rust (``crates/vmm/src/linux/pathops.rs``);
the two must agree, which ``tests/test_linux_pathops.py`` checks by comparing answers.
"""

from __future__ import annotations

import os
import stat
import struct

__all__ = ["dirent_type", "pack_dirent", "pack_stat", "pack_statx"]

_STAT = struct.Struct("<QQQIIIiQqqqqqqqqq24x")
_STATX_HEAD = struct.Struct("<IIQIIIHxxQQQQ")
_STATX_TS = struct.Struct("<qIi")
_STATX_SIZE = 256
_STATX_BASIC_STATS = 0x7FF
_DIRENT = struct.Struct("<QqHB")  # d_ino, d_off, d_reclen, d_type; the name follows


def pack_stat(st: os.stat_result) -> bytes:
    """``struct stat`` (x86-64) of ``st``."""
    return _STAT.pack(
        st.st_dev,
        st.st_ino,
        st.st_nlink,
        st.st_mode,
        st.st_uid,
        st.st_gid,
        0,
        st.st_rdev,
        st.st_size,
        st.st_blksize,
        st.st_blocks,
        int(st.st_atime),
        st.st_atime_ns % 1_000_000_000,
        int(st.st_mtime),
        st.st_mtime_ns % 1_000_000_000,
        int(st.st_ctime),
        st.st_ctime_ns % 1_000_000_000,
    )


def pack_statx(st: os.stat_result) -> bytes:
    """``struct statx`` of ``st`` (the basic fields, 256 bytes)."""
    head = _STATX_HEAD.pack(
        _STATX_BASIC_STATS,
        st.st_blksize,
        0,
        st.st_nlink,
        st.st_uid,
        st.st_gid,
        st.st_mode,
        st.st_ino,
        st.st_size,
        st.st_blocks,
        0,
    )

    def ts(ns: int) -> bytes:
        return _STATX_TS.pack(ns // 1_000_000_000, ns % 1_000_000_000, 0)

    times = ts(st.st_atime_ns) + ts(st.st_ctime_ns) + ts(st.st_ctime_ns) + ts(st.st_mtime_ns)
    devs = struct.pack(
        "<IIII",
        os.major(st.st_rdev),
        os.minor(st.st_rdev),
        os.major(st.st_dev),
        os.minor(st.st_dev),
    )
    return (head + times + devs).ljust(_STATX_SIZE, b"\0")


def dirent_type(entry: os.DirEntry[str]) -> int:
    """``d_type`` of a directory entry (0, DT_UNKNOWN, if it cannot be examined)."""
    try:
        mode = entry.stat(follow_symlinks=False).st_mode
    except OSError:
        return 0
    return stat.S_IFMT(mode) >> 12


def pack_dirent(ino: int, offset: int, dtype: int, name: bytes) -> bytes:
    """One ``struct linux_dirent64``: NUL-terminated name, padded to 8 bytes."""
    size = (_DIRENT.size + len(name) + 1 + 7) & ~7
    return (_DIRENT.pack(ino, offset, size, dtype) + name).ljust(size, b"\0")
