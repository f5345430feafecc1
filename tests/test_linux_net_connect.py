"""A non-blocking connect returns at once; its outcome comes later (issue 11, item 5).

`tests/linux_programs/netprobe.c` mode ``slow`` (glibc and musl) connects, non-blocking,
to a peer that cannot answer yet: a listener whose accept queue is full drops the SYN.
The test lets the peer answer (or refuse: the listener closes) only once the program
has printed the connect's EINPROGRESS, so that line proves the call returned before
the peer took the connection. The outcome then reaches the program through poll,
select or epoll, and SO_ERROR; natively and in the VM the lines must be the same.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from linux_support import TIMEOUT, build_probe

from vmrpc.linux import LinuxVM
from vmrpc.sockets import SocketOutsourcing

pytestmark = pytest.mark.kvm

NETPROBE = Path(__file__).parent / "linux_programs" / "netprobe.c"
#: The program's first line: its connect has returned.
CUE = b"connect EINPROGRESS"
#: How long the program may take to print it (a connect that blocks never does).
CUE_WAIT_S = 15.0

Output = Callable[[bytes], object]


@pytest.fixture(scope="module", params=["glibc", "musl"])
def netprobe(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_probe(request.param, tmp_path_factory.mktemp(request.param), NETPROBE)


class SlowPeer:
    """A listener whose accept queue is full: a connect to it waits (Linux drops its
    SYN and the client retries) until `answer` or `refuse`."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port: int = self.listener.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port))  # fills the queue
        self.thread: threading.Thread | None = None

    def answer(self) -> None:
        """Makes room in the queue; the next connection gets its 4 bytes echoed."""

        def serve() -> None:
            self.listener.accept()[0].close()  # the filler
            conn, _ = self.listener.accept()
            with conn:
                conn.sendall(conn.recv(4))

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()

    def refuse(self) -> None:
        """Nothing listens any more: the client's next SYN gets a reset."""
        self.filler.close()
        self.listener.close()

    def close(self) -> None:
        if self.thread is not None:
            self.thread.join(TIMEOUT)
        self.filler.close()
        self.listener.close()


def run_native(program: Path, args: list[str], out: Output) -> tuple[int, str]:
    proc = subprocess.Popen([program, *args], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    got = b""
    while chunk := os.read(proc.stdout.fileno(), 4096):
        got += chunk
        out(chunk)
    return proc.wait(TIMEOUT), got.decode()


def run_vm(
    program: Path, args: list[str], out: Output, module: SocketOutsourcing
) -> tuple[int, str]:
    with LinuxVM(program, args, timeout=TIMEOUT, sockets=module, on_stdout=out) as vm:
        return vm.run(), vm.stdout.decode()


def run_with_cue(
    run: Callable[[Output], tuple[int, str]], then: Callable[[], None]
) -> tuple[bool, tuple[int, str]]:
    """Runs the program in a thread; once it printed `CUE` (or after `CUE_WAIT_S`),
    calls ``then``. Returns whether the cue came in time, and the program's result."""
    seen = threading.Event()
    printed: list[bytes] = []
    result: list[tuple[int, str]] = []

    def out(chunk: bytes) -> None:
        printed.append(chunk)
        if CUE in b"".join(printed):
            seen.set()

    thread = threading.Thread(target=lambda: result.append(run(out)), daemon=True)
    thread.start()
    in_time = seen.wait(CUE_WAIT_S)
    then()  # only now may the peer answer: the connect returned before it did
    thread.join(TIMEOUT)
    assert result, "the program did not finish"
    return in_time, result[0]


FIRST = "connect EINPROGRESS, again EALREADY, ready 0"
EXPECTED = {
    ("poll", "answer"): [
        FIRST,
        "poll: writable 1 error 0",
        "so_error 0",
        "nodelay 1",
        "connect now ok",
        "send 4",
        "recv 4",
    ],
    ("select", "answer"): [
        FIRST,
        "select: writable 1 error 0",
        "so_error 0",
        "nodelay 1",
        "connect now ok",
        "send 4",
        "recv 4",
    ],
    ("epoll", "refuse"): [FIRST, "epoll: writable 1 error 1", "so_error ECONNREFUSED", "nodelay 1"],
}


@pytest.mark.parametrize(("how", "outcome"), sorted(EXPECTED))
def test_nonblocking_connect_returns_before_the_peer_answers(
    netprobe: Path, how: str, outcome: str
) -> None:
    results = {}
    module = SocketOutsourcing()
    for side in ("native", "vm"):
        peer = SlowPeer()
        args = ["slow", str(peer.port), how]

        def run(out: Output, side: str = side, args: list[str] = args) -> tuple[int, str]:
            if side == "native":
                return run_native(netprobe, args, out)
            return run_vm(netprobe, args, out, module)

        try:
            in_time, results[side] = run_with_cue(run, getattr(peer, outcome))
        finally:
            peer.close()
        assert in_time, f"{side}: connect did not return while the peer could not answer"
    assert results["vm"] == results["native"]
    assert results["vm"] == (0, "\n".join(EXPECTED[how, outcome]) + "\n")
    # The connect went on in the host's loop, the guest's socket and option with it.
    assert module.stats["rpc.connect"] >= 2  # the connect, and the one that saw its end
    assert module.stats["waits.connect"] == 1
    assert module.stats.get("rpc.socket", 0) == module.stats["rpc.setsockopt"] == 0
    assert [r.event for r in module.audit] == ["connect"]
