"""Decoded arguments for the syscall trace: ``openat(AT_FDCWD, "/data/f", O_RDONLY|O_CLOEXEC)``.

The personality sends each call's six raw arguments and, for calls that take paths, the
paths (``guest/linux/trace.c``); `format_call` turns them into strace-like text from a
table of argument kinds per call. Calls not in the table show their first three
arguments as numbers.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

__all__ = ["TraceRecord", "format_call", "format_result"]

AT_FDCWD = -100


def _bits(value: int, names: Sequence[tuple[int, str]], zero: str = "0") -> str:
    """``A|B|0x40`` for the set bits of ``value`` that ``names`` know, the rest in hex."""
    parts = []
    for bit, name in names:
        if value & bit:
            parts.append(name)
            value &= ~bit
    if value:
        parts.append(hex(value))
    return "|".join(parts) or zero


_OPEN_BITS = [
    (os.O_CREAT, "O_CREAT"),
    (os.O_EXCL, "O_EXCL"),
    (os.O_NOCTTY, "O_NOCTTY"),
    (os.O_TRUNC, "O_TRUNC"),
    (os.O_APPEND, "O_APPEND"),
    (os.O_NONBLOCK, "O_NONBLOCK"),
    (os.O_DSYNC, "O_DSYNC"),
    (0o100000, "O_LARGEFILE"),
    (os.O_DIRECTORY, "O_DIRECTORY"),
    (os.O_NOFOLLOW, "O_NOFOLLOW"),
    (os.O_CLOEXEC, "O_CLOEXEC"),
    (os.O_PATH, "O_PATH"),
]
_AT_BITS = [
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x200, "AT_REMOVEDIR"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"),
]
_PROT_BITS = [(1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC")]
_MAP_BITS = [
    (0x01, "MAP_SHARED"),
    (0x02, "MAP_PRIVATE"),
    (0x10, "MAP_FIXED"),
    (0x20, "MAP_ANONYMOUS"),
    (0x100000, "MAP_FIXED_NOREPLACE"),
    (0x20000, "MAP_STACK"),
    (0x4000, "MAP_NORESERVE"),
]
_ACCESS_BITS = [(os.R_OK, "R_OK"), (os.W_OK, "W_OK"), (os.X_OK, "X_OK")]
_WHENCE = {0: "SEEK_SET", 1: "SEEK_CUR", 2: "SEEK_END", 3: "SEEK_DATA", 4: "SEEK_HOLE"}
_CLOCKS = {
    0: "CLOCK_REALTIME",
    1: "CLOCK_MONOTONIC",
    2: "CLOCK_PROCESS_CPUTIME_ID",
    3: "CLOCK_THREAD_CPUTIME_ID",
    4: "CLOCK_MONOTONIC_RAW",
    5: "CLOCK_REALTIME_COARSE",
    6: "CLOCK_MONOTONIC_COARSE",
    7: "CLOCK_BOOTTIME",
}
_FCNTL = {
    0: "F_DUPFD",
    1: "F_GETFD",
    2: "F_SETFD",
    3: "F_GETFL",
    4: "F_SETFL",
    1030: "F_DUPFD_CLOEXEC",
}
_IOCTL = {
    0x5401: "TCGETS",
    0x5413: "TIOCGWINSZ",
    0x5421: "FIONBIO",
    0x5451: "FIOCLEX",
    0x5450: "FIONCLEX",
}
_ARCH = {0x1001: "ARCH_SET_GS", 0x1002: "ARCH_SET_FS", 0x1003: "ARCH_GET_FS", 0x1004: "ARCH_GET_GS"}
_SIGPROCMASK = {0: "SIG_BLOCK", 1: "SIG_UNBLOCK", 2: "SIG_SETMASK"}


def _signal(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return str(n)


def _fd(n: int) -> str:
    # An fd is a C int: the kernel (and the personality) read the low 32 bits.
    n = (n & 0xFFFF_FFFF) - (1 << 32) if n & 0x8000_0000 else n & 0xFFFF_FFFF
    return "AT_FDCWD" if n == AT_FDCWD else str(n)


def _open_flags(n: int) -> str:
    mode = ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")[n & os.O_ACCMODE]
    rest = _bits(n & ~os.O_ACCMODE, _OPEN_BITS, "")
    return f"{mode}|{rest}" if rest else mode


#: Argument kinds: how one raw argument is shown ("path" takes the next path sent).
_KINDS: dict[str, Callable[[int], str]] = {
    "fd": _fd,
    "int": str,
    "ptr": lambda n: "NULL" if n == 0 else hex(n & 0xFFFF_FFFF_FFFF_FFFF),
    "oflags": _open_flags,
    "mode": lambda n: f"0{n & 0o7777:o}",
    "atflags": lambda n: _bits(n, _AT_BITS),
    "prot": lambda n: _bits(n, _PROT_BITS, "PROT_NONE"),
    "mflags": lambda n: _bits(n, _MAP_BITS),
    "access": lambda n: _bits(n, _ACCESS_BITS, "F_OK"),
    "whence": lambda n: _WHENCE.get(n, str(n)),
    "clock": lambda n: _CLOCKS.get(n, str(n)),
    "signal": _signal,
    "fcntl": lambda n: _FCNTL.get(n, str(n)),
    "ioctl": lambda n: _IOCTL.get(n, hex(n)),
    "arch": lambda n: _ARCH.get(n, hex(n)),
    "how": lambda n: _SIGPROCMASK.get(n, str(n)),
}

#: Argument kinds of the calls the trace decodes (the personality's, mostly).
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "read": ("fd", "ptr", "int"),
    "write": ("fd", "ptr", "int"),
    "pread64": ("fd", "ptr", "int", "int"),
    "pwrite64": ("fd", "ptr", "int", "int"),
    "readv": ("fd", "ptr", "int"),
    "writev": ("fd", "ptr", "int"),
    "open": ("path", "oflags", "mode"),
    "openat": ("fd", "path", "oflags", "mode"),
    "close": ("fd",),
    "stat": ("path", "ptr"),
    "lstat": ("path", "ptr"),
    "fstat": ("fd", "ptr"),
    "newfstatat": ("fd", "path", "ptr", "atflags"),
    "statx": ("fd", "path", "atflags", "ptr", "ptr"),
    "lseek": ("fd", "int", "whence"),
    "getdents64": ("fd", "ptr", "int"),
    "access": ("path", "access"),
    "faccessat": ("fd", "path", "access"),
    "faccessat2": ("fd", "path", "access", "atflags"),
    "readlink": ("path", "ptr", "int"),
    "readlinkat": ("fd", "path", "ptr", "int"),
    "unlink": ("path",),
    "unlinkat": ("fd", "path", "atflags"),
    "rmdir": ("path",),
    "mkdir": ("path", "mode"),
    "mkdirat": ("fd", "path", "mode"),
    "rename": ("path", "path"),
    "renameat": ("fd", "path", "fd", "path"),
    "renameat2": ("fd", "path", "fd", "path", "int"),
    "chdir": ("path",),
    "fchdir": ("fd",),
    "truncate": ("path", "int"),
    "ftruncate": ("fd", "int"),
    "fsync": ("fd",),
    "fdatasync": ("fd",),
    "getcwd": ("ptr", "int"),
    "dup": ("fd",),
    "dup2": ("fd", "fd"),
    "dup3": ("fd", "fd", "oflags"),
    "fcntl": ("fd", "fcntl", "int"),
    "ioctl": ("fd", "ioctl", "ptr"),
    "pipe": ("ptr",),
    "pipe2": ("ptr", "oflags"),
    "poll": ("ptr", "int", "int"),
    "brk": ("ptr",),
    "mmap": ("ptr", "int", "prot", "mflags", "fd", "int"),
    "munmap": ("ptr", "int"),
    "mprotect": ("ptr", "int", "prot"),
    "mremap": ("ptr", "int", "int", "int", "ptr"),
    "madvise": ("ptr", "int", "int"),
    "arch_prctl": ("arch", "ptr"),
    "set_tid_address": ("ptr",),
    "clock_gettime": ("clock", "ptr"),
    "clock_getres": ("clock", "ptr"),
    "clock_nanosleep": ("clock", "int", "ptr", "ptr"),
    "nanosleep": ("ptr", "ptr"),
    "getrandom": ("ptr", "int", "int"),
    "rt_sigaction": ("signal", "ptr", "ptr", "int"),
    "rt_sigprocmask": ("how", "ptr", "ptr", "int"),
    "kill": ("int", "signal"),
    "tgkill": ("int", "int", "signal"),
    "exit": ("int",),
    "exit_group": ("int",),
    "execve": ("path", "ptr", "ptr"),
    "sendfile": ("fd", "fd", "ptr", "int"),
    "set_robust_list": ("ptr", "int"),
    "rseq": ("ptr", "int", "int", "int"),
    "prlimit64": ("int", "int", "ptr", "ptr"),
    "prctl": ("int", "int"),
    "uname": ("ptr",),
    "sysinfo": ("ptr",),
    "umask": ("mode",),
    "sigaltstack": ("ptr", "ptr"),
    "sched_getaffinity": ("int", "int", "ptr"),
    "gettimeofday": ("ptr", "ptr"),
    "time": ("ptr",),
    **dict.fromkeys(
        ("getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid", "sched_yield"),
        (),
    ),
}


def format_call(name: str, args: Sequence[int], paths: Sequence[str] = ()) -> str:
    """``name(arg, ...)`` with the arguments decoded by kind (see `_SIGNATURES`)."""
    kinds = _SIGNATURES.get(name, ("int", "int", "int"))
    path_iter: Iterator[str] = iter(paths)
    shown = []
    for kind, value in zip(kinds, args, strict=False):
        if kind == "path":
            path = next(path_iter, None)
            shown.append(f'"{path}"' if path is not None else _KINDS["ptr"](value))
        else:
            shown.append(_KINDS[kind](value))
    return f"{name}({', '.join(shown)})"


def format_result(name: str, result: int) -> str:
    """``-ENOENT`` for an error, addresses in hex, other results in decimal."""
    if -4096 < result < 0:
        return f"-{errno.errorcode.get(-result, str(-result))}"
    if name in ("mmap", "mremap", "brk") and result > 0xFFFF:
        return hex(result)
    return str(result)


@dataclass(frozen=True)
class TraceRecord:
    """One system call of the program (``trace=True``): its six raw arguments, the paths
    it passed (in argument order), its result and the time the personality spent on it.
    ``str()`` decodes it strace-style (`format_call`)."""

    name: str
    args: tuple[int, ...]
    result: int
    ns: int
    paths: tuple[str, ...] = ()

    def __str__(self) -> str:
        call = format_call(self.name, self.args, self.paths)
        return f"{call} = {format_result(self.name, self.result)} <{self.ns} ns>"
