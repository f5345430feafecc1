"""The ``files`` host module: a Linux program's file system calls, on the host.

The guest personality (``guest/linux/fs.c``) forwards every file call here over VM
RPC. Host directories are *mounted* at guest paths, read-only or read-write; a guest
path is mapped to the mount whose guest path is its longest leading match, and the
rest of it is opened with ``openat2(RESOLVE_BENEATH)`` below the mount's root (see
`vmrpc.linux.confine`). fds 0, 1 and 2 are the host's stdin (bytes or a file),
stdout and stderr (captured separately, and streamed to callbacks if given).

Wire format (``guest/linux/linux_abi.h``): a request is six little-endian signed
64-bit arguments followed by bytes (NUL-terminated paths, or data); the answer is one
signed 64-bit result (``>= 0``, or ``-errno``) followed by bytes.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import struct
import time

from vmrpc.hostmodule import function
from vmrpc.linux.filebase import (
    AT_FDCWD,
    AT_REMOVEDIR,
    AT_SYMLINK_NOFOLLOW,
    RENAME_NOREPLACE,
    FilesBase,
    Handle,
)
from vmrpc.linux.layouts import dirent_type, pack_dirent, pack_stat, pack_statx
from vmrpc.linux.locks import record_lock
from vmrpc.linux.mounts import FileAccess, Mount
from vmrpc.linux.syscalls import syscall_name
from vmrpc.linux.tracefmt import TraceRecord

__all__ = ["FileAccess", "FilesModule", "Mount", "TraceRecord"]

_TRACE_ARGS = struct.Struct("<5q")  # a trace record's arguments 1..5 (guest/linux/trace.c)
# Open flags a guest may pass through (the host adds O_CLOEXEC itself).
_OPEN_FLAGS = (
    os.O_ACCMODE
    | os.O_CREAT
    | os.O_EXCL
    | os.O_TRUNC
    | os.O_APPEND
    | os.O_NONBLOCK
    | os.O_DIRECTORY
    | os.O_NOFOLLOW
    | os.O_NOCTTY
    | os.O_DSYNC
    | os.O_SYNC
    | os.O_PATH
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class FilesModule(FilesBase):
    """The host side of a Linux program's files (see the module documentation).

    Args:
        mounts: host directories and where the guest sees them.
        stdin: the program's standard input: bytes, or a host file path.
        on_stdout / on_stderr: called with each chunk the program writes (streaming);
            the chunks are also kept in `stdout` / `stderr`.
        audit: called before each path operation with a `FileAccess`; returning
            ``False`` denies it (the program gets ``EACCES``).
        cwd: the program's initial working directory (a guest path).
        data_plane: a `_vmm.FilesDataPlane` registered on the same VM: regular files
            are attached to it on open, so their reads and writes bypass Python.
        synthetic: the ``/dev`` and ``/proc/self`` entries served without a mount
            (`Synthetic`; by default the devices only).
    """

    name = "files"
    version = 1

    # -- functions -------------------------------------------------------------------

    @function(0)
    def hello(self, request: bytes) -> bytes:
        return self._answer(time.time_ns())

    @function(1)
    def openat(self, request: bytes) -> bytes:
        def body(a: tuple[int, ...], data: bytes) -> tuple[int, bytes]:
            dirh, flags, mode = a[0], a[1] & _OPEN_FLAGS, a[2]
            dev = self._device("open", dirh, self._paths(data)[0], flags)
            if dev is not None:
                keep = os.O_ACCMODE | os.O_NONBLOCK | os.O_APPEND
                fd = os.open(dev, (flags & keep) | os.O_CLOEXEC | os.O_NOCTTY)
                return self._add(Handle(fd, None, dev)), b""
            root, rel, guest = self._locate(dirh, self._paths(data)[0])
            self._check("open", guest, flags, root, bool(flags & _WRITE_FLAGS))
            # The mode means something only with O_CREAT (musl's open passes whatever
            # is in the register), and openat2 refuses one without it (EINVAL).
            fd = self._open(root, rel, flags, mode & 0o7777 if flags & os.O_CREAT else 0)
            mode = os.fstat(fd).st_mode
            is_dir = stat.S_ISDIR(mode)
            h = self._add(Handle(fd, root.mount, posixpath.normpath(guest), is_dir))
            # Only regular files: a read there never waits for long on the engine.
            if self._plane is not None and stat.S_ISREG(mode) and not flags & os.O_PATH:
                self._plane.attach(h, fd)
            return h, b""

        return self._call(request, body)

    @function(2)
    def close_handle(self, request: bytes) -> bytes:
        def body(a: tuple[int, ...], data: bytes) -> tuple[int, bytes]:
            handle = self._lookup(a[0])
            self._handles.pop(a[0], None)
            if handle is not None:
                if self._plane is not None:
                    self._plane.detach(a[0])
                os.close(handle.fd)
            return 0, b""

        return self._call(request, body)

    def _read(self, h: int, count: int, offset: int | None) -> bytes:
        count = max(0, min(count, 65536))
        if h == 0 and offset is None:
            chunk = self._stdin[self._stdin_pos : self._stdin_pos + count]
            self._stdin_pos += len(chunk)
            return chunk
        if h in (0, 1, 2):
            raise OSError(errno.ESPIPE if offset is not None else errno.EBADF, "stdio")
        handle = self._handle(h)
        if handle.is_dir:
            raise OSError(errno.EISDIR, "is a directory")
        if offset is None:
            return os.read(handle.fd, count)
        return os.pread(handle.fd, count, offset)

    def _write(self, h: int, data: bytes, offset: int | None) -> int:
        if h in (1, 2) and offset is None:
            self._emit(h, data)
            return len(data)
        if h in (0, 1, 2):
            raise OSError(errno.ESPIPE if offset is not None else errno.EBADF, "stdio")
        handle = self._handle(h)
        if offset is None:
            return os.write(handle.fd, data)
        return os.pwrite(handle.fd, data, offset)

    @function(3)
    def read(self, request: bytes) -> bytes:
        return self._call(request, lambda a, d: (0, self._read(a[0], a[1], None)))

    @function(4)
    def write(self, request: bytes) -> bytes:
        return self._call(request, lambda a, d: (self._write(a[0], d, None), b""))

    @function(5)
    def pread(self, request: bytes) -> bytes:
        return self._call(request, lambda a, d: (0, self._read(a[0], a[1], a[2])))

    @function(6)
    def pwrite(self, request: bytes) -> bytes:
        return self._call(request, lambda a, d: (self._write(a[0], d, a[1]), b""))

    @function(7)
    def lseek(self, request: bytes) -> bytes:
        def body(a: tuple[int, ...], data: bytes) -> tuple[int, bytes]:
            if a[0] in (0, 1, 2):
                raise OSError(errno.ESPIPE, "stdio")
            handle = self._handle(a[0])
            if handle.is_dir:
                # Only rewinding is meaningful for our directory positions.
                handle.dirpos = a[1] if a[2] == os.SEEK_SET and a[1] >= 0 else handle.dirpos
                return handle.dirpos, b""
            return os.lseek(handle.fd, a[1], a[2]), b""

        return self._call(request, body)

    @function(8)
    def fstat(self, request: bytes) -> bytes:
        return self._call(request, lambda a, d: (0, pack_stat(self._stat_handle(a[0]))))

    @function(9)
    def fstatat(self, request: bytes) -> bytes:
        return self._call(
            request,
            lambda a, d: (0, pack_stat(self._stat_path(a[0], self._paths(d)[0], a[1]))),
        )

    @function(20)
    def statx(self, request: bytes) -> bytes:
        return self._call(
            request,
            lambda a, d: (0, pack_statx(self._stat_path(a[0], self._paths(d)[0], a[1]))),
        )

    def _dirents(self, handle: Handle) -> list[bytes]:
        if handle.dirents is None:
            st = os.fstat(handle.fd)
            records = [(st.st_ino, 4, b"."), (st.st_ino, 4, b"..")]
            with os.scandir(handle.fd) as it:
                for entry in it:
                    records.append((entry.inode(), dirent_type(entry), os.fsencode(entry.name)))
            handle.dirents = [
                pack_dirent(ino, i + 1, t, n) for i, (ino, t, n) in enumerate(records)
            ]
        return handle.dirents

    @function(10)
    def getdents(self, request: bytes) -> bytes:
        def body(a: tuple[int, ...], data: bytes) -> tuple[int, bytes]:
            handle = self._handle(a[0])
            if not handle.is_dir:
                raise OSError(errno.ENOTDIR, "not a directory")
            entries = self._dirents(handle)
            out = bytearray()
            while handle.dirpos < len(entries):
                rec = entries[handle.dirpos]
                if len(out) + len(rec) > a[1]:
                    if not out:
                        raise OSError(errno.EINVAL, "buffer too small")
                    break
                out += rec
                handle.dirpos += 1
            return len(out), bytes(out)

        return self._call(request, body)

    @function(11)
    def readlinkat(self, request: bytes) -> bytes:
        def body(a: tuple[int, ...], data: bytes) -> tuple[int, bytes]:
            link = self._synth.link(self._absolute(a[0], self._paths(data)[0]))
            if link is not None:
                target = os.fsencode(link)[: max(0, a[1])]
                return len(target), target
            root, rel, guest = self._locate(a[0], self._paths(data)[0])
            self._check("readlink", guest, 0, root, False)
            fd = self._open(root, rel, os.O_PATH | os.O_NOFOLLOW)
            try:
                target = os.readlink(b"", dir_fd=fd)
            finally:
                os.close(fd)
            target = target[: max(0, a[1])]
            return len(target), target

        return self._call(request, body)

    @function(12)
    def faccessat(self, request: bytes) -> bytes:
        def body(a: tuple[int, ...], data: bytes) -> tuple[int, bytes]:
            mode, flags = a[1], a[2]
            if mode & ~(os.R_OK | os.W_OK | os.X_OK):  # as Linux: only F_OK and R/W/X_OK
                raise OSError(errno.EINVAL, "access mode")
            root, rel, guest = self._locate(a[0], self._paths(data)[0])
            self._check("access", guest, mode, root, bool(mode & os.W_OK))
            nofollow = os.O_NOFOLLOW if flags & AT_SYMLINK_NOFOLLOW else 0
            fd = self._open(root, rel, os.O_PATH | nofollow)
            try:
                if not os.access(f"/proc/self/fd/{fd}", mode):
                    raise OSError(errno.EACCES, "access")
            finally:
                os.close(fd)
            return 0, b""

        return self._call(request, body)

    @function(13)
    def unlinkat(self, request: bytes) -> bytes:
        def body(a: tuple[int, ...], data: bytes) -> tuple[int, bytes]:
            root, rel, guest = self._locate(a[0], self._paths(data)[0])
            self._check("unlink", guest, a[1], root, True)
            parent, name = self._parent(root, rel)
            try:
                if a[1] & AT_REMOVEDIR:
                    os.rmdir(name, dir_fd=parent)
                else:
                    os.unlink(name, dir_fd=parent)
            finally:
                os.close(parent)
            return 0, b""

        return self._call(request, body)

    @function(14)
    def mkdirat(self, request: bytes) -> bytes:
        def body(a: tuple[int, ...], data: bytes) -> tuple[int, bytes]:
            root, rel, guest = self._locate(a[0], self._paths(data)[0])
            self._check("mkdir", guest, a[1], root, True)
            parent, name = self._parent(root, rel)
            try:
                os.mkdir(name, a[1] & 0o7777, dir_fd=parent)
            finally:
                os.close(parent)
            return 0, b""

        return self._call(request, body)

    @function(15)
    def renameat(self, request: bytes) -> bytes:
        def body(a: tuple[int, ...], data: bytes) -> tuple[int, bytes]:
            paths = self._paths(data)
            if len(paths) < 2:
                raise OSError(errno.EINVAL, "two paths expected")
            old_root, old_rel, old_guest = self._locate(a[0], paths[0])
            new_root, new_rel, new_guest = self._locate(a[1], paths[1])
            if old_root is not new_root:
                raise OSError(errno.EXDEV, "across mounts")
            self._check("rename", old_guest, a[2], old_root, True)
            self._check("rename", new_guest, a[2], new_root, True)
            if a[2] & ~RENAME_NOREPLACE:
                raise OSError(errno.EINVAL, "rename flags")
            old_parent, old_name = self._parent(old_root, old_rel)
            try:
                new_parent, new_name = self._parent(new_root, new_rel)
                try:
                    if a[2] & RENAME_NOREPLACE:
                        os.link(old_name, new_name, src_dir_fd=old_parent, dst_dir_fd=new_parent)
                        os.unlink(old_name, dir_fd=old_parent)
                    else:
                        os.rename(old_name, new_name, src_dir_fd=old_parent, dst_dir_fd=new_parent)
                finally:
                    os.close(new_parent)
            finally:
                os.close(old_parent)
            return 0, b""

        return self._call(request, body)

    @function(16)
    def ftruncate(self, request: bytes) -> bytes:
        def body(a: tuple[int, ...], data: bytes) -> tuple[int, bytes]:
            handle = self._handle(a[0])
            if handle.mount is not None and handle.mount.readonly:
                raise OSError(errno.EROFS, "read-only mount")
            os.ftruncate(handle.fd, a[1])
            return 0, b""

        return self._call(request, body)

    @function(17)
    def fsync(self, request: bytes) -> bytes:
        def body(a: tuple[int, ...], data: bytes) -> tuple[int, bytes]:
            if a[0] not in (0, 1, 2):
                os.fsync(self._handle(a[0]).fd)
            return 0, b""

        return self._call(request, body)

    @function(18)
    def getcwd(self, request: bytes) -> bytes:
        cwd = os.fsencode(self.cwd)
        return self._answer(len(cwd), cwd)

    @function(19)
    def chdir(self, request: bytes) -> bytes:
        def body(a: tuple[int, ...], data: bytes) -> tuple[int, bytes]:
            path = self._paths(data)[0]
            if path == "" and a[0] >= 0:
                handle = self._handle(a[0])
                if not handle.is_dir:
                    raise OSError(errno.ENOTDIR, "not a directory")
                self.cwd = handle.guest_path
                return 0, b""
            root, rel, guest = self._locate(AT_FDCWD, path)
            self._check("chdir", guest, 0, root, False)
            os.close(self._open(root, rel, os.O_PATH | os.O_DIRECTORY))
            self.cwd = posixpath.normpath(guest)
            return 0, b""

        return self._call(request, body)

    @function(23)
    async def lock(self, request: bytes) -> bytes:
        # Async: a blocking F_SETLKW waits on the loop, not on the VM's RPC thread.
        try:
            (h, cmd, *_), data = self._args(request)
            flock = await record_lock(self._handle(h).fd, cmd, data)
        except OSError as e:
            return self._answer(-(e.errno or errno.EIO))
        return self._answer(len(flock), flock)

    @function(21)
    def enosys_call(self, request: bytes) -> bytes:
        args, _ = self._args(request)
        self.enosys[syscall_name(args[0])] += 1
        return self._answer(0)

    @function(22)
    def trace_call(self, request: bytes) -> bytes:
        (nr, result, ns, a0, _, _), data = self._args(request)
        rest = _TRACE_ARGS.unpack_from(data) if len(data) >= _TRACE_ARGS.size else (0,) * 5
        paths = data[_TRACE_ARGS.size :].split(b"\0")[:-1]
        record = TraceRecord(
            syscall_name(nr), (a0, *rest), result, ns, tuple(os.fsdecode(p) for p in paths)
        )
        self.trace.append(record)
        if self.on_trace is not None:
            self.on_trace(record)
        return self._answer(0)
