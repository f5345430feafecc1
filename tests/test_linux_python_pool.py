"""`vmrpc.PythonPool`: one warm CPython per VM (Debian's /usr/bin/python3, unmodified)
forking a child per run (guest/linux/sdk/python/vmrpc_pool.py). Each run must look like
its own ``python3 -c``: outputs and status as native, nothing left for the next run."""

from __future__ import annotations

import errno
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from linux_support import KV

import vmrpc
from vmrpc import PythonPool, PythonResult
from vmrpc.linux import Mount
from vmrpc.sockets import Deny, Policy, Rule, SocketOutsourcing

pytestmark = pytest.mark.kvm

PYTHON = "/usr/bin/python3"
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def pool() -> Iterator[PythonPool]:
    with PythonPool(timeout=TIMEOUT) as warm:
        yield warm


def native(code: str, args: tuple[str, ...] = (), stdin: bytes = b"") -> PythonResult:
    done = subprocess.run(
        [PYTHON, "-c", code, *args], input=stdin, capture_output=True, env={}, check=False
    )
    return PythonResult(done.returncode, done.stdout, done.stderr)


SNIPPETS = {
    "print": ("print('hello'); print('world', end='')", (), b""),
    "exit-3": ("import sys; print('before'); sys.exit(3)", (), b""),
    "exit-none": ("raise SystemExit", (), b""),
    "exit-message": ("import sys; sys.exit('bye')", (), b""),
    "exit-300": ("import sys; sys.exit(300)", (), b""),
    "raise": ("def f():\n    1 / 0\nprint('x')\nf()", (), b""),
    "chained": ("try:\n    {}['k']\nexcept KeyError:\n    raise ValueError('v')", (), b""),
    "syntax": ("print('unfinished'", (), b""),
    "stdin": ("import sys; data = sys.stdin.read(); print(len(data), data.upper())", (), b"abc\n"),
    "stdin-bytes": ("import os; print(os.read(0, 100))", (), b"\x00\xff raw"),
    "argv": ("import sys; print(sys.argv)", ("a", "-b", "--c=d", "é"), b""),
    "work": (
        "import hashlib, json\n"
        "doc = json.dumps({'n': list(range(500))}, sort_keys=True)\n"
        "print(hashlib.sha256(doc.encode()).hexdigest(), len(json.loads(doc)['n']))",
        (),
        b"",
    ),
    "streams": (
        "import sys\nfor i in range(3):\n    print(i); print(-i, file=sys.stderr)",
        (),
        b"",
    ),
    "big": ("import sys; sys.stdout.write('x' * 300000)", (), b""),
    "atexit": ("import atexit; atexit.register(print, 'at exit'); print('main')", (), b""),
    "excepthook": (
        "import sys\n"
        "sys.excepthook = lambda t, v, tb: print('hooked', t.__name__, tb.tb_lineno)\n"
        "raise KeyError(1)",
        (),
        b"",
    ),
    "main": ("print(__name__, sorted(k for k in globals() if k != '__builtins__'))", (), b""),
}


@pytest.mark.parametrize("name", SNIPPETS)
def test_a_run_matches_native_python_c(pool: PythonPool, name: str) -> None:
    code, args, stdin = SNIPPETS[name]

    result = pool.run(code, args, stdin=stdin)

    assert result == native(code, args, stdin)


def test_runs_do_not_see_each_others_memory(pool: PythonPool) -> None:
    first = pool.run(
        "import builtins, json, sys, os\n"
        "secret = 42\n"
        "json.dumps = lambda *a: 'patched'\n"
        "builtins.len = lambda x: -1\n"
        "sys.path.append('/run-one')\n"
        "os.environ['RUN_ONE'] = '1'\n"
        "import decimal\n"
        "print(len('abc'), json.dumps(1))"
    )
    assert first == PythonResult(0, b"-1 patched\n", b"")

    second = pool.run(
        "import json, sys, os\n"
        "print('secret' in globals(), len('abc'), json.dumps(1), '/run-one' in sys.path,\n"
        "      'RUN_ONE' in os.environ, 'decimal' in sys.modules)"
    )

    assert second == PythonResult(0, b"False 3 1 False False False\n", b"")


def test_every_run_gets_its_own_random_numbers() -> None:
    # random imported before the fork: each child must not inherit one state.
    code = "import os, random; print(random.random(), os.urandom(16).hex(), hash('same seed'))"
    with PythonPool(preload=["random"], timeout=TIMEOUT) as pool:
        one = pool.run(code).stdout.split()
        two = pool.run(code).stdout.split()

    assert one[0] != two[0]  # random is reseeded in each child
    assert one[1] != two[1]  # the personality's generator is not forked
    assert one[2] == two[2]  # documented: one hash seed per VM


def test_a_run_calls_a_host_module() -> None:
    kv = KV()
    code = (
        "import sys, vmrpc_guest\n"
        "with vmrpc_guest.Module('kv', (1, 0)) as m:\n"
        "    m.call(0, sys.argv[1].encode())\n"
        "    print(m.call(1, b'k'))"
    )
    with PythonPool(modules=[kv], timeout=TIMEOUT) as pool:
        assert pool.run(code, ["k=1"]) == PythonResult(0, b"b'1'\n", b"")
        assert pool.run(code, ["k=2"]) == PythonResult(0, b"b'2'\n", b"")
    assert kv.data == {b"k": b"2"}


def test_what_a_run_binds_or_opens_ends_with_it() -> None:
    # The personality holds 64 bound handles and 16 open queues: runs that never unbind
    # filled them (the 65th bind and the 16th queue failed) before a forked child's
    # binds and opens were released at its end (guest/linux/rpc.c).
    code = (
        "import vmrpc_guest\n"
        "kv = vmrpc_guest.Module('kv', (1, 0))\n"
        "q = vmrpc_guest.EventQueue('vmrpc_pool')\n"
        "print(kv.call(1, b'k'))"
    )
    with PythonPool(modules=[KV()], timeout=TIMEOUT) as pool:
        results = {pool.run(code) for _ in range(66)}

    assert results == {PythonResult(0, b"b''\n", b"")}


def test_files_written_to_a_read_write_mount_persist(tmp_path: Path) -> None:
    with PythonPool(mounts=[Mount(tmp_path, "/w")], timeout=TIMEOUT) as pool:
        # The second file is left open in a global: finalization writes and closes it.
        wrote = pool.run(
            "open('/w/a.txt', 'w').write('from run one')\n"
            "f = open('/w/b.txt', 'w')\n"
            "f.write('left open')"
        )
        read = pool.run("print(open('/w/a.txt').read(), open('/w/b.txt').read(), sep='|')")

    assert wrote == PythonResult(0, b"", b"")
    assert read == PythonResult(0, b"from run one|left open\n", b"")
    assert (tmp_path / "b.txt").read_text() == "left open"


def held_kib() -> int:
    """This process's Pss less what the kernel may take back at once (``LazyFree``)."""
    text = Path("/proc/self/smaps_rollup").read_text()
    kib = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", text, re.M)}
    return kib["Pss"] - kib["LazyFree"]


def test_an_idle_pool_does_not_keep_a_copy_of_the_interpreter() -> None:
    # Each run's fork copies CPython's memory (~16 MiB) to the host and back. Kept in
    # a Vec, freed on the RPC engine thread, that copy stayed in the thread's malloc
    # arena from the second run on; now its mapping is kept lazily freed (fork.rs).
    with PythonPool(timeout=TIMEOUT) as pool:
        started = held_kib()  # the bootstrap is ready: it has not forked yet
        for _ in range(5):
            pool.run("pass")
        grown_kib = held_kib() - started

    assert grown_kib < 8 * 1024


def test_a_run_that_times_out_is_replaced_by_a_fresh_vm() -> None:
    with PythonPool(timeout=TIMEOUT) as pool:
        assert pool.run("x = 1").returncode == 0

        with pytest.raises(vmrpc.GuestTimeout):
            pool.run("while True: pass", timeout=1)

        assert pool.run("print('still here')") == PythonResult(0, b"still here\n", b"")
        assert pool.vms_started == 2


def test_a_run_that_crashes_the_vm_is_replaced_by_a_fresh_vm() -> None:
    with PythonPool(timeout=TIMEOUT) as pool:
        # A write to address 8 faults: in the VM a fault ends the VM.
        with pytest.raises(vmrpc.GuestCrashed):
            pool.run("import ctypes; ctypes.memset(8, 0, 1)")

        assert pool.run("print('next')") == PythonResult(0, b"next\n", b"")
        assert pool.vms_started == 2


def test_runs_from_several_threads_are_each_exact(pool: PythonPool) -> None:
    results: dict[int, PythonResult] = {}

    def worker(n: int) -> None:
        results[n] = pool.run("import sys; print(sys.argv[1] * 3)", [str(n)])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert results == {n: PythonResult(0, f"{n}{n}{n}\n".encode(), b"") for n in range(6)}


def test_a_run_cannot_start_threads_and_the_pool_goes_on(pool: PythonPool) -> None:
    # A forked child cannot make threads in this VM (docs/linux.md, "fork"): documented.
    result = pool.run("import threading; threading.Thread(target=print).start()")

    assert result.returncode == 1
    assert result.stderr.endswith(b"RuntimeError: can't start new thread\n")
    assert pool.run("print('ok')") == PythonResult(0, b"ok\n", b"")


CONNECT = (
    "import socket, sys\n"
    "for port in sys.argv[1:]:\n"
    "    try:\n"
    "        socket.create_connection(('127.0.0.1', int(port)), timeout=10).close()\n"
    "        print('connected')\n"
    "    except OSError as e:\n"
    "        print(e.errno)\n"
)


def test_the_socket_policy_applies_to_every_run() -> None:
    allowed = socket.create_server(("127.0.0.1", 0))
    denied = socket.create_server(("127.0.0.1", 0))
    ports = [str(allowed.getsockname()[1]), str(denied.getsockname()[1])]
    policy = Policy([Rule(Deny(errno.EACCES), port=denied.getsockname()[1])])
    try:
        with PythonPool(sockets=lambda: SocketOutsourcing(policy), timeout=TIMEOUT) as pool:
            first = pool.run(CONNECT, ports)
            second = pool.run(CONNECT, ports)
        with PythonPool(timeout=TIMEOUT) as offline:
            none = offline.run(CONNECT, ports[:1])
    finally:
        allowed.close()
        denied.close()

    assert first == second == PythonResult(0, f"connected\n{errno.EACCES}\n".encode(), b"")
    assert none == PythonResult(0, f"{errno.ENETDOWN}\n".encode(), b"")  # no network at all


def test_a_preload_is_imported_before_the_runs() -> None:
    with PythonPool(preload=["json", "decimal"], timeout=TIMEOUT) as pool:
        result = pool.run("import sys; print('decimal' in sys.modules)")

    assert result == PythonResult(0, b"True\n", b"")


def test_a_preload_that_fails_raises_pool_error_with_its_traceback() -> None:
    with pytest.raises(vmrpc.PoolError) as caught:
        PythonPool(preload=["no_such_module_here"], timeout=TIMEOUT)

    assert b"ModuleNotFoundError: No module named 'no_such_module_here'" in caught.value.stderr


def test_bad_calls_are_refused() -> None:
    pool = PythonPool(timeout=TIMEOUT)
    with pytest.raises(ValueError, match="NUL"):
        pool.run("print(1)\0")
    with pytest.raises(TypeError):
        pool.run("print(1)", "not a list")
    pool.close()
    with pytest.raises(vmrpc.ConfigError):
        pool.run("pass")
