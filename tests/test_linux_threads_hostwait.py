"""Threads waiting for host calls hold no vCPU (docs/linux.md, Threads; rpc/wait.rs).

A thread blocked in a host call (a recv on a host socket, answered by the sockets host
module) waits in the host, its vCPU lent to other threads, instead of the runtime's
ring-0 halt gate. tests/linux_programs/hostwait.c (musl static, glibc dynamic) and
CPython run more threads blocked in recv than the VM has vCPUs while main computes;
the output is compared with the native run. No test measures time: each waits for
real state (the server's own count of messages), and a hang is the failure.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from linux_support import TIMEOUT

from vmrpc.linux import LinuxVM
from vmrpc.sockets import SocketOutsourcing

pytestmark = pytest.mark.kvm

SOURCE = Path(__file__).parent / "linux_programs" / "hostwait.c"
PYTHON = Path("/usr/bin/python3")
WORKERS = 4


class GatedServer:
    """Answers each worker's message only after main said "go".

    Main connects with "main N" and gets "ready" once N workers' messages arrived;
    each worker gets its message back once main sends "go" (``answer=False``: never).
    """

    def __init__(self, answer: bool = True) -> None:
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.answer = answer
        self.cond = threading.Condition()
        self.arrived = 0
        self.answered = 0
        self.go = False
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(TIMEOUT)  # guards a hang only
            msg = conn.recv(64)
            while msg.startswith(b"GET /") and b"\r\n\r\n" not in msg:
                more = conn.recv(4096)  # the whole request: no reset at close
                if not more:
                    break
                msg += more
            if msg.startswith(b"main "):
                want = int(msg.split()[1])
                with self.cond:
                    self.cond.wait_for(lambda: self.arrived >= want or self.closing, TIMEOUT)
                conn.sendall(b"ready")
                if conn.recv(2) == b"go":
                    with self.cond:
                        self.go = True
                        self.cond.notify_all()
                return
            with self.cond:
                self.arrived += 1
                self.cond.notify_all()
                # Without "go" (answer=False) it answers only after TIMEOUT, which
                # ends a hang of the VM's close (and the test notices).
                self.cond.wait_for(lambda: (self.go and self.answer) or self.closing, TIMEOUT)
                if self.closing:
                    return
                self.answered += 1
            if msg.startswith(b"GET /"):  # urllib: its path, as an HTTP answer
                path = msg.split()[1][1:]
                head = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(path)
                msg = head + path
            conn.sendall(msg)

    def wait_arrived(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.arrived >= n, TIMEOUT), self.arrived

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        self.srv.close()

    def __enter__(self) -> GatedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="module", params=["glibc", "musl"])
def program(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hostwait.c: glibc dynamic (gcc -pthread), musl static (musl-gcc)."""
    compiler = {"glibc": ["gcc", "-O2", "-pthread"], "musl": ["musl-gcc", "-O2", "-static"]}
    exe = tmp_path_factory.mktemp(request.param) / f"hostwait-{request.param}"
    argv = [*compiler[request.param], "-o", str(exe), str(SOURCE)]
    subprocess.run(argv, check=True, capture_output=True)
    return exe


def native(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=TIMEOUT, check=False)


def in_vm(program: Path, args: list[str], threads: int = 2) -> tuple[int, bytes, LinuxVM]:
    with LinuxVM(program, args, timeout=TIMEOUT, threads=threads,
                 sockets=SocketOutsourcing()) as vm:  # fmt: skip
        code = vm.run()
        return code, vm.stdout, vm


# 20: more threads than a VM has vCPUs' channels (8), so threads call on channels the
# RPC engine polls only once the guest raised `chans_in_use` (rpc/engine.rs).
@pytest.mark.parametrize("workers", [WORKERS, 20])
def test_threads_blocked_in_recv_leave_the_vcpus_to_main(program: Path, workers: int) -> None:
    """Main, then the worker threads, block in recv on 2 vCPUs; main must then get a
    vCPU to compute and send "go", or nobody is ever answered. With the halt-gate wait
    the waiting threads held both vCPUs and this hung until the timeout."""
    with GatedServer() as server:
        want = native([str(program), "recv", str(workers), str(server.port)])
    assert want.returncode == 0, want.stderr
    with GatedServer() as server:
        code, out, vm = in_vm(program, ["recv", str(workers), str(server.port)])
    assert (code, out) == (0, want.stdout)
    assert out.count(b" got w") == workers
    # They waited in the host: half for an RPC's answer (woken by it), half in
    # the socket I/O exit.
    assert vm.stats["rpc_host_waits"] >= workers // 2
    assert vm.stats["rpc_host_wakes"] >= workers // 2
    assert vm.stats["sockio_waits"] >= workers // 2


CPYTHON_RECV = """
import socket, sys, threading, urllib.request
port, n, how = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
got = [b""] * n
def worker(i):
    if how == "urllib":
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/w{i}") as r:  # blocking
            got[i] = r.read()
        return
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"w%d" % i)
        got[i] = s.recv(64)
main = socket.create_connection(("127.0.0.1", port))
main.sendall(b"main %d" % n)
threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
print(main.recv(5, socket.MSG_WAITALL).decode())
print("computed", sum(i % 7 for i in range(200000)), flush=True)
main.sendall(b"go")
for t in threads:
    t.join()
for i, g in enumerate(got):
    print(i, g.decode())
"""


@pytest.mark.parametrize("how", ["recv", "urllib"])
def test_cpython_threads_blocked_in_host_calls_leave_the_vcpus_to_main(how: str) -> None:
    """CPython: four threads blocked in socket.recv, or in urllib's urlopen, on 2
    vCPUs while the main thread computes (hung until the timeout before)."""
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} is missing")
    with GatedServer() as server:
        want = native([str(PYTHON), "-c", CPYTHON_RECV, str(server.port), str(WORKERS), how])
    assert want.returncode == 0, want.stderr
    assert want.stdout.count(b" w") == WORKERS
    with GatedServer() as server:
        args = ["-c", CPYTHON_RECV, str(server.port), str(WORKERS), how]
        code, out, _ = in_vm(PYTHON, args)
    assert (code, out) == (0, want.stdout)


def test_closing_the_vm_ends_waits_for_host_calls_at_once(program: Path) -> None:
    """Four threads wait in recv for answers that never come; close() from this
    thread stops the VM, which ends every host wait: close returns (a hang here is
    the failure) with the threads' waits ended."""
    with GatedServer(answer=False) as server:
        vm = LinuxVM(program, ["block", str(WORKERS), str(server.port)], timeout=TIMEOUT,
                     sockets=SocketOutsourcing(), threads=2)  # fmt: skip
        vm.start()
        server.wait_arrived(WORKERS)
        deadline = time.monotonic() + TIMEOUT  # guards a hang only
        while vm.stdout != b"ready\n":  # main is past its own wait, the others in theirs
            assert time.monotonic() < deadline, vm.stdout
            time.sleep(0.005)
        vm.close()
        # The stop ended the waits, not an answer (the server answers only after
        # TIMEOUT: a close that waited for that would see answers here).
        assert server.answered == 0
    assert vm.stats["rpc_host_waits"] >= WORKERS // 2
    assert vm.stats["sockio_waits"] >= WORKERS // 2


def test_hostile_requests_to_the_wait_register_get_exact_errors(tmp_path: Path) -> None:
    """Requests written to VMRPC_MMIO_RPC_WAIT by the program itself: a channel out of
    range is VMRPC_EINVAL (-7), a head that moved returns 0 at once, a request the host
    cannot reach is dropped; the program goes on."""
    exe = tmp_path / "hostwait-musl"
    argv = ["musl-gcc", "-O2", "-static", "-o", str(exe), str(SOURCE)]
    subprocess.run(argv, check=True, capture_output=True)
    code, out, _ = in_vm(exe, ["hostile"])
    assert (code, out.decode().splitlines()) == (
        0,
        [
            "channel 64: -7",
            "channel 0xffffffff: -7",
            "own channel, head moved: 0",
            "unused channel, head moved: 0",
            "still good: 1",
        ],
    )
