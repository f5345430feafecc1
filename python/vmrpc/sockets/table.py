"""The socket table: one `Entry` per guest socket, and its state machine.

States (`State`): NEW -> CONNECTING -> READY, or NEW -> LISTENING; any -> CLOSED.
Only a READY entry carries data, and `SocketTable._ready` is the one way into READY
(it also hands plain TCP sockets to the native data plane). This module also makes
the host sockets (under the VM's fd budget) and keeps the counters `stats` reports.

A connected plain TCP socket's last calls are the native data plane's too: its
SETSOCKOPT (from the allow-list, `optnames`) and its CLOSE, which closes the host
socket at once on the engine thread, without Python. Python learns of such a close
before it serves its next call (`_sync_native`): until then the entry stays in the
table (so its handle is not reused) and its socket object names a placeholder.

Imports `dispatch` (below it), `proto`, `optnames` and `fdbudget`; see `dispatch` for
the layers.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import logging
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from vmrpc import _vmm
from vmrpc._vmm import NATIVE_HANDLES
from vmrpc.sockets import proto
from vmrpc.sockets.dispatch import Closed, Dispatcher
from vmrpc.sockets.fdbudget import FdBudget
from vmrpc.sockets.optnames import native_list
from vmrpc.sockets.proto import Addr, ProtoError

log = logging.getLogger("vmrpc.sockets")


class State(enum.Enum):
    """Where a socket-table entry is in its life.

    Only a READY entry carries data, in every path (the Python fast path, the request
    path, poll, and the native data plane, which learns of a socket only when it
    becomes READY). A stream socket is CONNECTING from the guest's connect until the
    TCP connect, the SOCKS5 handshake and the TLS handshake have all finished: a byte
    sent in that window would reach the peer (or the proxy) before the handshake, as
    plaintext (issue 13.1).
    """

    NEW = enum.auto()  # no host socket yet (a UDP socket gets one at its first sendto)
    CONNECTING = enum.auto()  # connect and handshakes under way: no data, no poll events
    READY = enum.auto()  # connected stream, or UDP socket: data may flow
    LISTENING = enum.auto()  # exposed host listener: accept only
    CLOSED = enum.auto()  # no new operation starts on it


@dataclass(eq=False)
class Entry:
    """One row of the socket table."""

    handle: int
    family: int  # proto.AF_*
    type: int  # proto.SOCK_*
    sock: socket.socket | None = None
    state: State = State.NEW
    tls: bool = False
    options: list[tuple[int, int, bytes]] = field(default_factory=list)
    peer: Addr | None = None  # as the guest sees it (the destination it asked for)
    udp_decisions: dict[tuple[str, int], int] = field(default_factory=dict)
    readers: list[asyncio.Future[None]] = field(default_factory=list)
    writers: list[asyncio.Future[None]] = field(default_factory=list)
    fd: int = -1  # registered with the loop while readers/writers wait
    exposed_key: tuple[str, int] | None = None
    error: int = 0  # a failed asynchronous connect's errno, until collected
    settled: list[asyncio.Future[None]] = field(default_factory=list)  # waiting for it
    fds_seen: int = 0  # the process's open fds, counted when its host socket was made
    started: int | None = None  # a connect the native path began: its errno so far

    @property
    def protocol(self) -> str:
        return "tcp" if self.type == proto.SOCK_STREAM else "udp"

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def ready(self) -> bool:
        """Data may flow (and the socket exists)."""
        return self.state is State.READY and self.sock is not None


class SocketTable(Dispatcher):
    """The table of one VM's sockets, and the exposed (host-mirrored) listeners."""

    def __init__(self, max_sockets: int, fd_budget: FdBudget) -> None:
        super().__init__()
        self.max_sockets = max_sockets
        self._fd_budget = fd_budget
        self.exposed: dict[tuple[str, int], tuple[str, int]] = {}
        self._table: dict[int, Entry] = {}
        self._exposed_cond = threading.Condition(self._lock)
        self.native_data_plane = _vmm.SocketDataPlane(native_list())
        """Serves the guest's zero-copy calls (SEND_BUF, RECV_BUF), SETSOCKOPT and
        CLOSE on connected plain TCP sockets in Rust, without Python
        (`vmrpc.VM.register_hm` hands it to the VMM). Sockets are attached once
        connected and detached before Python closes them; what would block falls
        back to SEND/RECV (`dataplane`), anything else to Python."""
        # Native connects (`connect`): their handles lie above Python's, and they
        # keep Python's limits, whose figures go to the native side.
        if max_sockets + 1 < NATIVE_HANDLES:
            self.native_data_plane.set_limits(
                max_sockets, fd_budget.max_host_fds, fd_budget.reserve
            )
        self._plain: list[tuple[Addr, object]] = []  # native connects' (peer, decision)

    def native_handlers(self) -> Sequence[_vmm.NativeHandler]:
        """The native data plane (see `native_data_plane`)."""
        return (self.native_data_plane,)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``sockets_created`` (host OS sockets), ``sockets_open``,
        ``rpcs`` and ``rpc.<function>``, ``bytes_sent``, ``bytes_received``, and of
        those the calls the native data plane answered (``native_sends``,
        ``native_recvs``, ``native_setsockopts``, ``native_closes``,
        ``native_connects``; its polls count in ``rpc.poll``); the rest,
        ``python_rpcs``, reached Python."""
        with self._lock:
            counts = dict(self._counts)
            open_ = sum(1 for e in self._table.values() if e.sock is not None)
        native = self.native_data_plane.stats
        for key, calls in (
            ("send", "sends"),
            ("recv", "recvs"),
            ("setsockopt", "setsockopts"),
            ("close", "closes"),
        ):
            counts["rpcs"] = counts.get("rpcs", 0) + native[calls]
            counts["rpc." + key] = counts.get("rpc." + key, 0) + native[calls]
            counts["native_" + calls] = native[calls]
        if native["polls"]:
            counts["rpcs"] += native["polls"]
            counts["rpc.poll"] = counts.get("rpc.poll", 0) + native["polls"]
        if native["connects"]:
            counts["rpcs"] += native["connects"]
            counts["rpc.connect"] = counts.get("rpc.connect", 0) + native["connects"]
        counts["native_connects"] = native["connects"]
        created = counts.get("sockets_created", 0) + native["connect_sockets"]
        counts["sockets_created"] = created
        counts["bytes_sent"] = counts.get("bytes_sent", 0) + native["bytes_sent"]
        counts["bytes_received"] = counts.get("bytes_received", 0) + native["bytes_received"]
        counts["sockets_closed"] = counts.get("sockets_closed", 0) + native["closes"]
        counts["python_rpcs"] = counts["rpcs"] - sum(
            native[k] for k in ("sends", "recvs", "setsockopts", "closes", "polls", "connects")
        )
        # Entries closed natively stay until Python's next call: their sockets are not
        # open; sockets connected natively are open before Python adopts them.
        counts["sockets_open"] = open_ - native["closed_pending"] + native["born"]
        return counts

    def _sync_native(self) -> None:
        """Forgets the sockets the native data plane closed (on the engine thread,
        like every call that may use them): their objects name a placeholder now.
        Adopts the sockets it connected (READY entries, as Python's own connect
        leaves them), and takes their audit records (`_native_audit`). Only on the
        engine thread, which alone connects natively: the counts stay exact."""
        native = self.native_data_plane
        for handle in native.take_closed():
            with self._lock:
                entry = self._table.pop(handle, None)
            if entry is not None:
                entry.state = State.CLOSED
                sock, entry.sock = entry.sock, None
                if sock is not None:
                    sock.close()
        born = native.take_born()
        for handle, fd, decision in born:
            sock = socket.socket(fileno=fd)
            peer = self._plain[decision][0]
            entry = Entry(handle, proto.AF_INET, proto.SOCK_STREAM, sock, State.READY, peer=peer)
            with self._lock:
                self._table[handle] = entry
        if born:  # they moved from the native side's count to this table's
            self._publish_counts()
        self._native_audit()

    def _native_audit(self) -> None:
        """Records the native connects' decisions (`audit` does)."""

    def _publish_counts(self, new_sockets: int = 0) -> None:
        """Tells the native connect this table's size and host sockets, with
        ``new_sockets`` about to be made: never fewer than there are. Called where
        they grow; where they shrink a stale (higher) figure only sends the native
        connect's calls here, until the next call that makes a socket."""
        with self._lock:
            entries = len(self._table)
            sockets = sum(1 for e in self._table.values() if e.sock is not None)
            self.native_data_plane.set_python_counts(entries, sockets + new_sockets)

    def _loop_calls_changed(self, n: int) -> None:
        self.native_data_plane.set_loop_calls(n)

    def _entry(self, handle: int) -> Entry:
        entry = self._table.get(handle)
        if entry is None or entry.closed:
            raise ProtoError(f"no socket {handle}", errno.EBADF)
        return entry

    def _connected(self, handle: int) -> tuple[Entry, socket.socket]:
        entry = self._entry(handle)
        if not entry.ready:
            raise ProtoError(f"socket {handle} is not connected", errno.ENOTCONN)
        assert entry.sock is not None
        return entry, entry.sock

    def _new_entry(self, family: int, type_: int) -> Entry:
        with self._lock:
            if self._closed:
                raise ProtoError("module closed", errno.ESHUTDOWN)
            if len(self._table) >= self.max_sockets:
                raise ProtoError("socket table full", errno.EMFILE)
            handle = next(h for h in range(1, self.max_sockets + 2) if h not in self._table)
            entry = Entry(handle, family, type_)
            self._table[handle] = entry
        self._publish_counts()
        return entry

    def _held_fds(self) -> int:
        """Host fds this VM holds: its sockets and the native data plane's duplicates."""
        with self._lock:
            sockets = sum(1 for e in self._table.values() if e.sock is not None)
        # Sockets connected natively hold a duplicate (attached) and their own fd.
        return sockets + self.native_data_plane.attached + self.native_data_plane.born

    def _host_socket(self, entry: Entry, family: int | None = None) -> socket.socket:
        in_use = self._fd_budget.check(self._held_fds())
        self._publish_counts(new_sockets=1)
        if family is None:
            family = socket.AF_INET if entry.family == proto.AF_INET else socket.AF_INET6
        kind = socket.SOCK_STREAM if entry.type == proto.SOCK_STREAM else socket.SOCK_DGRAM
        # Non-blocking from the start (one system call, not two: every connect makes one).
        sock = socket.socket(family, kind | socket.SOCK_NONBLOCK)
        for level, name, value in entry.options:
            try:
                sock.setsockopt(level, name, value)
            except OSError:  # e.g. IPV6_V6ONLY on an IPv4 route to a proxy
                log.debug("option %d/%d not applied to handle %d", level, name, entry.handle)
        self._count("sockets_created")
        entry.fds_seen = in_use + 1
        return sock

    def _drop(self, entry: Entry) -> None:
        """Forgets an entry that never had waiters (synchronous paths only)."""
        entry.state = State.CLOSED
        with self._lock:
            self._table.pop(entry.handle, None)
        if entry.sock is not None:
            self.native_data_plane.detach(entry.handle)
            entry.sock.close()

    def _local_answer(self, entry: Entry) -> bytes:
        assert entry.sock is not None
        local = proto.addr_from_sockaddr(entry.sock.family, entry.sock.getsockname())
        return proto.addr_resp(0, local)

    def _ready(self, entry: Entry, just_made: bool = False) -> None:
        """The one way into READY: data may flow from now on.

        A connected plain TCP socket is also handed to the native data plane (not TLS:
        the TLS object lives on the loop thread). The native plane serves only
        attached sockets, so it can never see a socket before it is READY.
        ``just_made``: the host socket was made in this same call, so its count of
        the process's fds is still current (a loopback connect: one count, not two).
        """
        if entry.state is State.CLOSED or entry.sock is None:
            raise Closed()  # closed while connecting: the caller closes the socket
        entry.state = State.READY
        # The duplicate is only a shortcut: without room for it, Python serves the socket.
        native = entry.type == proto.SOCK_STREAM and not entry.tls
        in_use = entry.fds_seen if just_made else None
        if native and self._fd_budget.allows(self._held_fds(), in_use=in_use):
            self.native_data_plane.attach(entry.handle, entry.sock.fileno())
