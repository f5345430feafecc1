"""Receive read-ahead of the guest socket library (guest/lib/sockets/readahead.c):
one host call fills a per-socket buffer and later receives are served from it.

`tests/linux_programs/rxprobe.c` (glibc and musl, static) runs natively and in a VM
against the same host peer and must print the same lines: with bytes received but
not yet read, poll, select and epoll (level and edge) report the socket readable,
FIONREAD counts them, MSG_PEEK sees them and leaves them, readv/recvmsg/MSG_DONTWAIT
take them, MSG_WAITALL completes across the buffer and the wire (and returns what it
has when SO_RCVTIMEO ends it), shutdown(SHUT_RD) keeps them readable, and a close
with unread bytes resets the connection as on Linux.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from linux_support import TIMEOUT, build_probe
from test_linux_net import native

from vmrpc.linux import LinuxVM
from vmrpc.sockets import SocketOutsourcing

pytestmark = pytest.mark.kvm

RXPROBE = Path(__file__).parent / "linux_programs" / "rxprobe.c"


@pytest.fixture(scope="module", params=["glibc", "musl"])
def rxprobe(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_probe(request.param, tmp_path_factory.mktemp(request.param), RXPROBE)


class Peer:
    """A TCP server on 127.0.0.1 running ``handler(conn)`` for each connection; what
    the handlers return is queued in ``results``."""

    def __init__(self, handler: Callable[[socket.socket], object]) -> None:
        self.results: queue.Queue[object] = queue.Queue()
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._srv.getsockname()[1]
        self._handler = handler
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            self.results.put(self._handler(conn))

    def close(self) -> None:
        self._srv.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone does not)
        self._srv.close()
        self._thread.join(5)


def _echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def _send_then_watch(conn: socket.socket) -> str:
    """Sends 1000 bytes, then reports how the client's close looked from here."""
    conn.sendall(bytes(1000))
    try:
        return "eof" if conn.recv(1) == b"" else "data"
    except ConnectionResetError:
        return "reset"


@pytest.fixture
def echo_peer() -> Iterator[Peer]:
    peer = Peer(_echo)
    yield peer
    peer.close()


def in_vm(program: Path, *args: str, threads: int = 1) -> tuple[int, str, SocketOutsourcing]:
    module = SocketOutsourcing()
    with LinuxVM(program, args, timeout=TIMEOUT, sockets=module, threads=threads) as vm:
        code = vm.run()
        return code, vm.stdout.decode(), module


def test_bytes_in_hand_behave_as_in_the_kernel_queue(rxprobe: Path, echo_peer: Peer) -> None:
    code, out, module = in_vm(rxprobe, "ahead", str(echo_peer.port))
    assert (code, out) == native(rxprobe, "ahead", str(echo_peer.port))
    assert code == 0
    lines = out.splitlines()
    # What the comparison relies on, spelled out (990 bytes in hand after 10 read).
    assert "poll 1 revents 1" in lines
    assert "select 1" in lines
    assert "epoll 1 data 7" in lines
    assert "epoll edge 1" in lines
    assert "FIONREAD 990" in lines
    assert "dontwait 970 pattern 1" in lines
    assert "waitall 100 pattern 1" in lines
    assert "waitall timed out 20 pattern 1" in lines
    assert "after SHUT_RD 15 pattern 1" in lines
    # The buffer served them: the receives that followed the first fill made no call.
    assert module.stats["native_recvs"] < 20, module.stats


def test_close_with_unread_bytes_resets_the_connection(rxprobe: Path) -> None:
    peer = Peer(_send_then_watch)
    try:
        assert in_vm(rxprobe, "reset", str(peer.port))[:2] == (0, "read 10\nclose 0\n")
        assert native(rxprobe, "reset", str(peer.port)) == (0, "read 10\nclose 0\n")
        seen = [peer.results.get(timeout=TIMEOUT) for _ in range(2)]
    finally:
        peer.close()
    assert seen == ["reset", "reset"]


SHARED_BYTES = 4 << 20


def _send_pattern(conn: socket.socket) -> None:
    """SHARED_BYTES where byte p is p % 251, then EOF."""
    block = bytes(i % 251 for i in range(251 * 256))
    sent = 0
    while sent < SHARED_BYTES:
        piece = block[: min(len(block), SHARED_BYTES - sent)]
        conn.sendall(piece)
        sent += len(piece)


def test_two_threads_reading_one_stream_get_contiguous_calls(rxprobe: Path) -> None:
    """Each vCPU's receive is served whole from the shared buffer, or refills it:
    no byte is lost, doubled, or handed out of order within a call."""
    peer = Peer(_send_pattern)
    try:
        want = native(rxprobe, "share", str(peer.port))
        got = in_vm(rxprobe, "share", str(peer.port), threads=2)
    finally:
        peer.close()
    total = SHARED_BYTES
    checksum = sum((p % 251) for p in range(251)) * (total // 251) + sum(range(total % 251))
    assert want == (0, f"share total {total} sum {checksum} broken 0\n")
    assert got[:2] == want
