"""The socket I/O exit (crates/vmm/src/devices/sock_io.rs): a receive or send of at
least 32 KiB on a host stream is served on the vCPU's own host thread, straight
between the host socket and guest memory, and may wait there.

`tests/linux_programs/bigrx.c` (glibc and musl, static) runs in a LinuxVM against a
host peer in this process: bulk data arrives byte-exact both ways through the exit
(its counters prove the path was taken), MSG_WAITALL collects a large buffer from a
peer that sends in pieces, a VM closed while its program is blocked in a large
receive closes at once, and hand-made requests from a hostile program get an errno.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from linux_support import TIMEOUT, build_probe
from test_linux_net import native
from test_linux_net_readahead import Peer, in_vm

from vmrpc.linux import LinuxVM
from vmrpc.sockets import SocketOutsourcing

pytestmark = pytest.mark.kvm

BIGRX = Path(__file__).parent / "linux_programs" / "bigrx.c"
TOTAL = 3 << 20  # more than one exit's worth (VMRPC_SOCKIO_MAX is 4 MiB with read-ahead)


@pytest.fixture(scope="module", params=["glibc", "musl"])
def bigrx(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_probe(request.param, tmp_path_factory.mktemp(request.param), BIGRX)


def _pattern(start: int, n: int) -> bytes:
    block = bytes(i % 251 for i in range(251 * 64))
    first = start % 251
    reps = (first + n) // len(block) + 1
    return (block * reps)[first : first + n]


def _send_pieces(pieces: list[int]) -> Callable[[socket.socket], int]:
    """A handler sending the stream pattern in the given piece sizes, then EOF."""

    def handler(conn: socket.socket) -> int:
        at = 0
        for n in pieces:
            conn.sendall(_pattern(at, n))
            at += n
        return at

    return handler


def _count_pattern(conn: socket.socket) -> tuple[int, int]:
    """Receives to EOF: (bytes, bytes off the pattern), then closes."""
    total = bad = 0
    while data := conn.recv(1 << 16):
        want = _pattern(total, len(data))
        bad += sum(a != b for a, b in zip(data, want, strict=True)) if data != want else 0
        total += len(data)
    return total, bad


@pytest.mark.parametrize("chunk", [64 << 10, 1 << 20])
def test_a_large_receive_is_byte_exact_through_the_exit(bigrx: Path, chunk: int) -> None:
    peer = Peer(_send_pieces([TOTAL]))
    try:
        module = SocketOutsourcing()
        with LinuxVM(bigrx, ["recv", str(peer.port), str(chunk)], timeout=TIMEOUT,
                     sockets=module) as vm:  # fmt: skip
            assert vm.run() == 0, vm.stdout
            out, stats = vm.stdout.decode(), vm.stats
    finally:
        peer.close()
    head, calls = out.rsplit(" calls ", 1)
    assert head == f"recv total {TOTAL} broken 0 end 0"
    # Every byte came through the exit (none through a socket RPC), at most two exits
    # per receive call: one that never waits (and fills the read-ahead, which serves
    # later calls without one) and, only when that one found nothing yet, one that
    # waits (how often depends on the peer's timing: 9 and 10 exits were seen for 8
    # and 9 calls).
    assert stats["sockio_bytes"] == TOTAL
    assert 0 < stats["sockio_calls"] <= 2 * int(calls)
    assert module.stats["native_recvs"] == 0, module.stats


def test_msg_waitall_collects_a_large_buffer_from_pieces(bigrx: Path) -> None:
    # 1 MiB asked with MSG_WAITALL; the peer sends it in small pieces, then 100 more.
    pieces = [1000] * 20 + [(1 << 20) - 20_000 + 100]
    peer = Peer(_send_pieces(pieces))
    try:
        code, out, _ = in_vm(bigrx, "waitall", str(peer.port), str(1 << 20))
        assert (code, out) == native(bigrx, "waitall", str(peer.port), str(1 << 20))
    finally:
        peer.close()
    assert out == f"waitall {1 << 20} broken 0\nthen total {(1 << 20) + 100} broken 0\n"


@pytest.mark.parametrize("chunk", [64 << 10, 3 << 20])
def test_a_large_send_arrives_byte_exact(bigrx: Path, chunk: int) -> None:
    peer = Peer(_count_pattern)
    try:
        with LinuxVM(bigrx, ["send", str(peer.port), str(TOTAL), str(chunk)],
                     timeout=TIMEOUT, sockets=SocketOutsourcing()) as vm:  # fmt: skip
            assert vm.run() == 0, vm.stdout
            out = vm.stdout.decode()
        assert peer.results.get(timeout=TIMEOUT) == (TOTAL, 0)
    finally:
        peer.close()
    # Sends go by zero-copy RPCs while the socket takes bytes; only what has to
    # wait for room goes through the exit (how much depends on the peer's pace).
    assert out == f"sent {TOTAL} eof 0\n"


def test_closing_the_vm_ends_a_blocked_large_receive(bigrx: Path) -> None:
    """The program waits in the exit (in poll(2) on its vCPU thread); close() from
    another thread stops the VM, which ends that wait: close returns and this test
    completes (a hang here is the failure)."""
    hold = threading.Event()
    peer = Peer(lambda conn: hold.wait(TIMEOUT))
    try:
        vm = LinuxVM(bigrx, ["block", str(peer.port)], timeout=TIMEOUT,
                     sockets=SocketOutsourcing())  # fmt: skip
        vm.start()
        _await_exit_wait(vm)
        vm.close()
        assert vm.stdout.decode() == "blocking\n"
    finally:
        hold.set()
        peer.close()


def _await_exit_wait(vm: LinuxVM) -> None:
    """Until the program waits in the exit (real state; the deadline guards a hang)."""
    deadline = time.monotonic() + TIMEOUT
    while vm.stats["sockio_waits"] < 1:
        assert time.monotonic() < deadline, vm.stdout
        time.sleep(0.005)


def test_a_receive_waiting_in_the_exit_leaves_the_socket_to_other_threads(
    bigrx: Path,
) -> None:
    """While one thread waits in a large receive, another thread's non-waiting receive
    on the same socket answers EAGAIN at once (the waiting exit holds no buffer the
    other needs); then data ends the wait."""
    srv = socket.create_server(("127.0.0.1", 0))
    with srv, LinuxVM(bigrx, ["shared", str(srv.getsockname()[1])], timeout=TIMEOUT,
                      sockets=SocketOutsourcing(), threads=2) as vm:  # fmt: skip
        vm.start()
        data, _ = srv.accept()
        ctl, _ = srv.accept()
        with data, ctl:
            ctl.settimeout(TIMEOUT)  # guards a hang only
            _await_exit_wait(vm)
            ctl.sendall(b"g")
            assert ctl.recv(1) == b"x", vm.stdout  # the other receive returned
            data.sendall(b"hello")
            assert vm.wait() == 0
        assert vm.stdout.decode() == "other EAGAIN\nwaiter 5\n"


def test_hostile_requests_to_the_exit_get_an_errno(bigrx: Path) -> None:
    hold = threading.Event()
    peer = Peer(lambda conn: hold.wait(TIMEOUT))
    try:
        code, out, _ = in_vm(bigrx, "hostile", str(peer.port))
    finally:
        hold.set()
        peer.close()
    e = errno
    assert (code, out.splitlines()) == (
        0,
        [
            "found 1",
            f"bad module {-e.EBADF}",
            f"bad handle {-e.EOPNOTSUPP}",
            f"outside RAM {-e.EFAULT}",
            f"MMIO window {-e.EFAULT}",
            f"wrapping {-e.EFAULT}",
            f"huge length {-e.EINVAL}",
            f"huge second {-e.EINVAL}",
            f"bad flags {-e.EINVAL}",
            f"bad timeout {-e.EINVAL}",
            f"still good {-e.EAGAIN}",
        ],
    )
