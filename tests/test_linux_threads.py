"""Threads in the Linux personality: clone, futex, thread exit (docs/linux.md, Threads).

tests/linux_programs/threads.c is built static with musl and dynamic with glibc, and
each mode's output is compared with the same binary run natively; CPython's
`threading` (Debian's /usr/bin/python3) likewise. Many tests run more threads than
the VM has vCPUs (the host schedules them, crates/vmm/src/vm/pool.rs). No test
measures time: each waits for the program's own output.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from linux_support import INSTALL_HINT, TIMEOUT, build_probe
from test_linux_net import tcp_echo  # noqa: F401 (a fixture)

from vmrpc import ConfigError
from vmrpc.linux import MAX_THREADS, LinuxVM
from vmrpc.sockets import SocketOutsourcing

pytestmark = pytest.mark.kvm

SOURCE = Path(__file__).parent / "linux_programs" / "threads.c"
PYTHON = Path("/usr/bin/python3")


def build_threads(libc: str, out_dir: Path) -> Path:
    """threads.c: musl static (musl-gcc), glibc dynamic (gcc -pthread)."""
    if libc == "musl":
        return build_probe("musl", out_dir, SOURCE)
    if shutil.which("gcc") is None:
        pytest.fail(f"gcc is missing: {INSTALL_HINT}")
    out = out_dir / "threads-glibc-dynamic"
    subprocess.run(
        ["gcc", "-O2", "-pthread", "-o", str(out), str(SOURCE)], check=True, capture_output=True
    )
    return out


@pytest.fixture(scope="module", params=["glibc", "musl"])
def program(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_threads(request.param, tmp_path_factory.mktemp(request.param))


def native(program: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([program, *args], capture_output=True, timeout=TIMEOUT, check=False)


def in_vm(program: Path, *args: str, threads: int = 4) -> tuple[int, bytes, LinuxVM]:
    with LinuxVM(program, args, timeout=TIMEOUT, threads=threads) as vm:
        code = vm.run()
        return code, vm.stdout, vm


@pytest.mark.parametrize(
    "args",
    [("sum", "3"), ("pipe",), ("poll",), ("robust",), ("limit", "3")],
    ids=[
        "mutex-condvar-join",
        "blocked-pipe-read",
        "blocked-poll-then-sleep",
        "robust-owner-died",
        "three-threads",
    ],
)
def test_pthread_modes_print_what_they_print_natively(program: Path, args: tuple[str, ...]) -> None:
    want = native(program, *args)
    assert want.returncode == 0, want.stderr
    code, out, vm = in_vm(program, *args)
    assert (code, out) == (0, want.stdout)
    # The threads really waited for each other in the host, not by spinning. Not in
    # "robust": its one wait is main's join, and the thread may be gone before it.
    if args != ("robust",):
        assert vm.stats["futex_waits"] > 0


def test_a_thread_blocked_in_a_host_recv_holds_no_other_thread(
    program: Path,
    tcp_echo: int,  # noqa: F811 (the fixture imported above)
) -> None:
    # The echo server answers only once main has sent: were the recv holding the
    # personality lock, main's send would wait for it forever.
    want = native(program, "sock", str(tcp_echo))
    assert want.returncode == 0, want.stderr
    with LinuxVM(
        program, ["sock", str(tcp_echo)], timeout=TIMEOUT, sockets=SocketOutsourcing()
    ) as vm:
        assert vm.run() == 0
        assert vm.stdout == want.stdout


def test_exit_group_from_a_thread_ends_the_program(program: Path) -> None:
    want = native(program, "exitgroup")
    code, out, _ = in_vm(program, "exitgroup")
    assert want.returncode == 7
    assert (code, out) == (7, want.stdout)


@pytest.mark.parametrize(
    "args",
    [("limit", "16"), ("sum", "48"), ("pipes", "8")],
    ids=["16-waiting-on-a-condvar", "48-mutex-condvar-join", "8-blocked-in-pipe-reads"],
)
def test_more_threads_than_vcpus_run_as_natively(program: Path, args: tuple[str, ...]) -> None:
    # Two vCPUs: the threads blocked in futex waits and pipe reads give theirs
    # up, the others (and main, which computes meanwhile) run on them.
    want = native(program, *args)
    assert want.returncode == 0, want.stderr
    code, out, vm = in_vm(program, *args, threads=2)
    assert (code, out) == (0, want.stdout)
    assert vm.stats["vcpus_created"] == 2
    assert vm.stats["context_switches"] > 0


def test_spinning_threads_do_not_starve_another(program: Path) -> None:
    # Four threads spin forever without a system call on two vCPUs; a fifth
    # must still get a vCPU, compute and finish (main joins it, then exits).
    want = native(program, "spin", "4")
    assert want.returncode == 0, want.stderr
    code, out, vm = in_vm(program, "spin", "4", threads=2)
    assert (code, out) == (0, want.stdout)
    assert vm.stats["preemptions"] > 0


def test_threads_switched_on_one_vcpu_keep_their_registers(program: Path) -> None:
    # One vCPU, two threads handing a futex word back and forth: every hand-over
    # saves one thread's context and loads the other's (each keeps a mark of its
    # own in xmm8 across its waits, which must survive: vector state is switched).
    want = native(program, "pingpong", "300")
    assert want.returncode == 0, want.stderr
    assert want.stdout == b"pingpong 300 done, xmm8 marks kept\n"
    code, out, vm = in_vm(program, "pingpong", "300", threads=1)
    assert (code, out) == (0, want.stdout)
    assert vm.stats["context_switches"] >= 300


def test_threads_beyond_the_personality_cap_are_eagain(program: Path) -> None:
    # 64 threads at most (LX_MAX_THREADS): main and 63 more.
    code, out, _ = in_vm(program, "limit", "70", threads=2)
    assert code == 0
    assert out.decode().splitlines() == [
        "started 63 of 70 (Resource temporarily unavailable)",
        "all joined",
    ]


def test_fork_beside_a_thread_fails_cleanly(program: Path) -> None:
    # A forked child runs in its parent's memory (docs/linux.md, "fork"): other
    # threads would run on in memory it changes, so fork is refused while they live.
    code, out, _ = in_vm(program, "fork")
    assert code == 0
    assert out.decode().splitlines() == [
        "fork alone: made a child",
        "fork beside a thread: Resource temporarily unavailable",
    ]


def test_threads_at_once_are_bounded_by_the_vcpus() -> None:
    with pytest.raises(ConfigError, match="threads"):
        LinuxVM(sys.executable, threads=MAX_THREADS + 1)
    with pytest.raises(ConfigError, match="threads"):
        LinuxVM(sys.executable, threads=0)


CPYTHON_THREADS = """
import queue, threading
def work(i, out):
    out[i] = sum(range(i * 100000, (i + 1) * 100000))
out = [0] * 4
ts = [threading.Thread(target=work, args=(i, out)) for i in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print("sums", out, sum(out))
q = queue.Queue()
def producer():
    for i in range(100): q.put(i)
    q.put(None)
res = []
def consumer():
    while (x := q.get()) is not None: res.append(x * x)
a = threading.Thread(target=producer); b = threading.Thread(target=consumer)
b.start(); a.start(); a.join(); b.join()
print("queue", len(res), sum(res))
cond = threading.Condition(); n = [0]
def inc():
    for _ in range(1000):
        with cond:
            n[0] += 1
            cond.notify_all()
ws = [threading.Thread(target=inc) for _ in range(3)]
for w in ws: w.start()
with cond:
    cond.wait_for(lambda: n[0] == 3000)
for w in ws: w.join()
print("counter", n[0], threading.active_count())
"""


def cpython_in_vm_and_natively(code: str, threads: int) -> LinuxVM:
    """Runs `code` in Debian's python3 natively and in a VM; the same output, or fail."""
    if not PYTHON.exists():
        pytest.skip(f"{PYTHON} (Debian's python3) is not installed")
    want = subprocess.run([PYTHON, "-c", code], capture_output=True, timeout=TIMEOUT, check=True)
    with LinuxVM(PYTHON, ["-c", code], timeout=TIMEOUT, threads=threads) as vm:
        assert vm.run() == 0, vm.stderr.decode()
        assert vm.stdout == want.stdout
        return vm


def test_cpython_threading_matches_native() -> None:
    vm = cpython_in_vm_and_natively(CPYTHON_THREADS, threads=6)
    assert vm.stats["futex_waits"] > 0


CPYTHON_MANY_THREADS = """
import threading
from concurrent.futures import ThreadPoolExecutor
threading.stack_size(512 * 1024)  # 16 threads' default 8 MiB stacks would not fit the VM
def work(i):
    return sum(range(i * 20000, (i + 1) * 20000))
with ThreadPoolExecutor(max_workers=16) as ex:
    print("pool", sum(ex.map(work, range(64))))
barrier = threading.Barrier(16)
hits = []
lock = threading.Lock()
def meet(i):
    barrier.wait()
    with lock:
        hits.append(i)
ts = [threading.Thread(target=meet, args=(i,)) for i in range(16)]
for t in ts: t.start()
for t in ts: t.join()
print("barrier", len(hits), sorted(hits) == list(range(16)), threading.active_count())
"""


def test_cpython_runs_more_threads_than_vcpus() -> None:
    # 16 threads at once (the barrier needs all of them) on two vCPUs.
    vm = cpython_in_vm_and_natively(CPYTHON_MANY_THREADS, threads=2)
    assert vm.stats["vcpus_created"] == 2
