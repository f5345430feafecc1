"""The ``files`` module's state and plumbing: the mount table and path resolution
below it (confined with ``openat2``, audited), the handle table shared with the
native data plane, the captured stdio, and the wire format's helpers.

`vmrpc.linux.files` builds the guest-callable functions on `FilesBase`. Imports
`mounts`, `confine`, `synth` and `tracefmt` of the package (never `files`).
"""

from __future__ import annotations

import errno
import os
import posixpath
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmrpc import _vmm
from vmrpc.hostmodule import HostModule
from vmrpc.linux.confine import openat2
from vmrpc.linux.mounts import Denied, FileAccess, Mount, MountRoot, split_path
from vmrpc.linux.synth import Synthetic
from vmrpc.linux.tracefmt import TraceRecord

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
AT_EMPTY_PATH = 0x1000
RENAME_NOREPLACE = 1
_REQ = struct.Struct("<6q")
_RESULT = struct.Struct("<q")


@dataclass
class Handle:
    fd: int
    mount: Mount | None
    guest_path: str
    is_dir: bool = False
    dirents: list[bytes] | None = None
    dirpos: int = 0


class FilesBase(HostModule):
    """State, path resolution, handles and wire helpers of `vmrpc.linux.FilesModule`
    (whose documentation lists the arguments)."""

    def __init__(
        self,
        mounts: Sequence[Mount] = (),
        *,
        stdin: bytes | os.PathLike[str] | None = None,
        on_stdout: Callable[[bytes], object] | None = None,
        on_stderr: Callable[[bytes], object] | None = None,
        audit: Callable[[FileAccess], bool] | None = None,
        cwd: str = "/",
        data_plane: _vmm.FilesDataPlane | None = None,
        synthetic: Synthetic | None = None,
    ) -> None:
        self._synth = synthetic if synthetic is not None else Synthetic()
        self._roots: list[MountRoot] = []
        for m in mounts:
            if not m.guest.startswith("/"):
                raise ValueError(f"guest mount point must be absolute: {m.guest!r}")
            fd = os.open(m.host, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            self._roots.append(MountRoot(m, split_path(m.guest), fd))
        # Longest guest path first: the most specific mount wins.
        self._roots.sort(key=lambda r: len(r.parts), reverse=True)
        if stdin is None:
            self._stdin = b""
        elif isinstance(stdin, bytes | bytearray):
            self._stdin = bytes(stdin)
        else:
            self._stdin = Path(stdin).read_bytes()
        self._stdin_pos = 0
        self._out = {1: bytearray(), 2: bytearray()}
        self._sinks = {1: on_stdout, 2: on_stderr}
        self._audit = audit
        self._plane = data_plane
        self._handles: dict[int, Handle] = {}
        # stdio is a pipe to the program, as when a shell captures its output.
        r, w = os.pipe()
        self._fifo_stat = os.fstat(r)
        os.close(r)
        os.close(w)
        self._next = 3
        self._cwd = cwd
        if data_plane is not None:
            data_plane.set_cwd(os.fsencode(cwd))
            # Without an audit hook, plain read-only opens and stats need no
            # Python: the plane serves them below the same mounts (pathops.rs).
            if audit is None:
                data_plane.set_mounts([(os.fsencode(r.mount.guest), r.fd) for r in self._roots])
        self.enosys: Counter[str] = Counter()
        """Unsupported system calls the program made, by name."""
        self.trace: list[TraceRecord] = []
        """The system calls the program made, when traced."""
        self.on_trace: Callable[[TraceRecord], object] | None = None
        """Called with each `TraceRecord` as it arrives, when traced."""

    @property
    def cwd(self) -> str:
        """The program's working directory (a guest path)."""
        return self._cwd

    @cwd.setter
    def cwd(self, path: str) -> None:
        self._cwd = path
        if self._plane is not None:
            self._plane.set_cwd(os.fsencode(path))

    @property
    def stdout(self) -> bytes:
        """Everything the program wrote to fd 1."""
        return bytes(self._out[1])

    @property
    def stderr(self) -> bytes:
        """Everything the program wrote to fd 2."""
        return bytes(self._out[2])

    def restart_stdio(self, stdin: bytes = b"") -> None:
        """Start the standard streams afresh: stdin reads ``stdin`` from its start,
        `stdout` and `stderr` are empty (`vmrpc.linux.PythonPool`, between runs)."""
        self._stdin = bytes(stdin)
        self._stdin_pos = 0
        self._out = {1: bytearray(), 2: bytearray()}

    def close(self) -> None:
        """Close every host fd this module holds."""
        for h in self._handles.values():
            os.close(h.fd)
        self._handles.clear()
        for r in self._roots:
            os.close(r.fd)
        self._roots.clear()

    # -- path resolution -------------------------------------------------------------

    def _absolute(self, dirh: int, path: str) -> str:
        if path.startswith("/"):
            return path
        if dirh == AT_FDCWD:
            return posixpath.join(self.cwd, path)
        h = self._lookup(dirh)
        if h is None:
            raise OSError(errno.EBADF, "bad dir handle")
        if not h.is_dir:
            raise OSError(errno.ENOTDIR, "not a directory")
        return posixpath.join(h.guest_path, path)

    def _locate(self, dirh: int, path: str) -> tuple[MountRoot, bytes, str]:
        """The mount a guest path falls in, the path below its root, the guest path."""
        guest = self._absolute(dirh, path)
        parts = split_path(guest)
        for root in self._roots:
            n = len(root.parts)
            if parts[:n] == root.parts:
                rest = "/".join(parts[n:]) or "."
                return root, os.fsencode(rest), guest
        raise OSError(errno.ENOENT, "no mount")

    def _check(self, op: str, guest: str, flags: int, root: MountRoot, writes: bool) -> None:
        if (
            self._audit is not None
            and self._audit(FileAccess(op, guest, flags, root.mount)) is False
        ):
            raise Denied
        if writes and root.mount.readonly:
            raise OSError(errno.EROFS, "read-only mount")

    def _open(self, root: MountRoot, rel: bytes, flags: int, mode: int = 0) -> int:
        try:
            return openat2(root.fd, rel, flags, mode)
        except OSError as e:
            # RESOLVE_BENEATH refused to leave the mount: to the guest, not allowed.
            if e.errno == errno.EXDEV:
                raise OSError(errno.EACCES, "outside the mount") from None
            raise

    def _device(self, op: str, dirh: int, path: str, flags: int) -> str | None:
        """The host device a synthesized ``/dev`` path stands for (audited), or None."""
        guest = self._absolute(dirh, path)
        dev = self._synth.device(guest)
        audit = self._audit
        if (
            dev is not None
            and audit is not None
            and audit(FileAccess(op, guest, flags, None)) is False
        ):
            raise Denied
        return dev

    def _parent(self, root: MountRoot, rel: bytes) -> tuple[int, bytes]:
        """An O_PATH fd of ``rel``'s parent (inside the mount) and the last name."""
        head, _, name = rel.rstrip(b"/").rpartition(b"/")
        if name in (b"", b".", b".."):
            raise OSError(errno.EBUSY if name != b".." else errno.ENOTEMPTY, "bad name")
        return self._open(root, head or b".", os.O_PATH | os.O_DIRECTORY), name

    # -- wire helpers ----------------------------------------------------------------

    @staticmethod
    def _args(request: bytes) -> tuple[tuple[int, ...], bytes]:
        if len(request) < _REQ.size:
            raise OSError(errno.EINVAL, "short request")
        return _REQ.unpack_from(request), request[_REQ.size :]

    @staticmethod
    def _paths(data: bytes) -> list[str]:
        return [os.fsdecode(p) for p in data.split(b"\0")]

    @staticmethod
    def _answer(result: int, data: bytes = b"") -> bytes:
        return _RESULT.pack(result) + data

    def _call(
        self, request: bytes, body: Callable[[tuple[int, ...], bytes], tuple[int, bytes]]
    ) -> bytes:
        self._reap()
        try:
            args, data = self._args(request)
            result, out = body(args, data)
            return self._answer(result, out)
        except Denied:
            return self._answer(-errno.EACCES)
        except OSError as e:
            return self._answer(-(e.errno or errno.EIO))

    def _reap(self) -> None:
        """Close handles adopted from the data plane that the program has closed."""
        if self._plane is not None:
            for h in self._plane.take_orphans():
                handle = self._handles.pop(h, None)
                if handle is not None:
                    os.close(handle.fd)

    def _lookup(self, h: int) -> Handle | None:
        """Handle ``h``, taking it over from the data plane if it was opened there."""
        handle = self._handles.get(h)
        if handle is None and self._plane is not None:
            adopted = self._plane.adopt(h)
            if adopted is not None:
                fd, guest, mount = adopted
                handle = Handle(fd, self._roots[mount].mount, os.fsdecode(guest))
                self._handles[h] = handle
        return handle

    def _handle(self, h: int) -> Handle:
        handle = self._lookup(h)
        if handle is None:
            raise OSError(errno.EBADF, "bad handle")
        return handle

    def _add(self, handle: Handle) -> int:
        # One handle space with the plane's own opens.
        if self._plane is not None:
            h = self._plane.new_handle()
        else:
            h = self._next
            self._next += 1
        self._handles[h] = handle
        return h

    def _emit(self, fd: int, data: bytes) -> None:
        self._out[fd] += data
        sink = self._sinks[fd]
        if sink is not None:
            sink(data)

    def _stat_handle(self, h: int) -> os.stat_result:
        if h in (0, 1, 2):
            return self._fifo_stat
        return os.fstat(self._handle(h).fd)

    def _stat_path(self, dirh: int, path: str, flags: int) -> os.stat_result:
        if path == "" and flags & AT_EMPTY_PATH:
            return self._stat_handle(dirh)
        dev = self._device("stat", dirh, path, flags)
        if dev is not None:
            return os.stat(dev)
        root, rel, guest = self._locate(dirh, path)
        self._check("stat", guest, flags, root, False)
        nofollow = os.O_NOFOLLOW if flags & AT_SYMLINK_NOFOLLOW else 0
        fd = self._open(root, rel, os.O_PATH | nofollow)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)
