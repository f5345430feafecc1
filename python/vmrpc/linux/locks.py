"""Record locks for the files host module: fcntl ``F_GETLK``/``F_SETLK``/``F_SETLKW`` and
the open-file-description forms (``F_OFD_*``) of a Linux program, taken on the host's
own descriptor of the file, so host processes and the program exclude each other.

The guest sends ``struct flock`` as Linux lays it out on x86-64 (checked here before
use). A blocking set (``F_SETLKW``) never blocks the host's thread: it retries the
non-blocking form, sleeping on the asyncio loop between tries.

Caveat: a program's POSIX locks (not OFD) are the *host process's* locks, and POSIX
locks never conflict within one process: two VMs of one host process, or a VM and its
host Python, do not exclude each other with them (OFD locks do).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import struct

__all__ = ["FLOCK", "LOCK_COMMANDS", "record_lock"]

#: struct flock on x86-64 Linux: l_type, l_whence, (pad), l_start, l_len, l_pid, (pad).
FLOCK = struct.Struct("<hh4xqqi4x")
F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
F_GETLK, F_SETLK, F_SETLKW = 5, 6, 7
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
#: The fcntl commands this module serves, and the non-blocking form of each.
LOCK_COMMANDS = {
    F_GETLK: F_GETLK,
    F_SETLK: F_SETLK,
    F_SETLKW: F_SETLK,
    F_OFD_GETLK: F_OFD_GETLK,
    F_OFD_SETLK: F_OFD_SETLK,
    F_OFD_SETLKW: F_OFD_SETLK,
}
_BLOCKING = (F_SETLKW, F_OFD_SETLKW)
#: Longest sleep between two tries of a blocking set, in seconds.
_MAX_BACKOFF = 0.05


def _checked(cmd: int, flock: bytes) -> bytes:
    if cmd not in LOCK_COMMANDS or len(flock) != FLOCK.size:
        raise OSError(errno.EINVAL, "not a lock request")
    l_type, whence, start, length, pid = FLOCK.unpack(flock)
    if l_type not in (F_RDLCK, F_WRLCK, F_UNLCK) or whence not in (0, 1, 2):
        raise OSError(errno.EINVAL, "bad struct flock")
    if cmd in (F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW) and pid != 0:
        raise OSError(errno.EINVAL, "OFD locks take l_pid 0")
    # Re-packed from the checked fields: the padding the host kernel sees is zero.
    return FLOCK.pack(l_type, whence, start, length, 0)


async def record_lock(fd: int, cmd: int, flock: bytes) -> bytes:
    """Apply lock command ``cmd`` with the guest's ``flock`` to host descriptor ``fd``.

    Returns the resulting ``struct flock`` (what ``F_GETLK`` reports; ``l_pid`` is 0
    for a holder outside the VM, which the program cannot name). Raises `OSError`
    with the errno the program should see.
    """
    request = _checked(cmd, flock)
    backoff = 0.001
    while True:
        try:
            answer = fcntl.fcntl(fd, LOCK_COMMANDS[cmd], request)
        except OSError as error:
            if cmd not in _BLOCKING or error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)
            continue
        l_type, whence, start, length, _ = FLOCK.unpack(answer)
        return FLOCK.pack(l_type, whence, start, length, 0)
