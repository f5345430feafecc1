"""`vmrpc.PythonSnapshot`: each run of Debian's /usr/bin/python3 (unmodified) in a fresh
VM started from a warm snapshot (crates/vmm/src/vm/snapshot.rs, guest/linux/snapshot.c,
guest/linux/sdk/python/vmrpc_snapshot.py). Each run must look like its own ``python3
-c``, see nothing of other runs, and leave the snapshot as it was."""

from __future__ import annotations

import errno
import socket
import threading
import time

import pytest
from linux_support import KV
from test_linux_python_pool import CONNECT, SNIPPETS, native

import vmrpc
from vmrpc import PythonResult, _vmm
from vmrpc.linux import LinuxVM, PythonSnapshot, SnapshotError
from vmrpc.linux.snapshot import _take
from vmrpc.sockets import Deny, Policy, Rule, SocketOutsourcing

pytestmark = pytest.mark.kvm

TIMEOUT = 60.0


@pytest.fixture(scope="module")
def snap() -> PythonSnapshot:
    return PythonSnapshot(timeout=TIMEOUT)


@pytest.mark.parametrize("name", SNIPPETS)
def test_a_run_matches_native_python_c(snap: PythonSnapshot, name: str) -> None:
    code, args, stdin = SNIPPETS[name]

    result = snap.run(code, args, stdin=stdin)

    assert result == native(code, args, stdin)


def test_runs_do_not_see_each_others_state(snap: PythonSnapshot) -> None:
    # The writer changes what the snapshot holds (a module's attribute, builtins,
    # sys.modules, the environment, the heap) in its own copy-on-write memory.
    writer = snap.run(
        "import builtins, json, sys, os, vmrpc_pool\n"
        "secret = 42\n"
        "json.dumps = lambda *a: 'patched'\n"
        "builtins.len = lambda x: -1\n"
        "vmrpc_pool.QUEUE = 'written'\n"
        "sys.path.append('/run-one')\n"
        "os.environ['RUN_ONE'] = '1'\n"
        "import decimal\n"
        "keep = bytearray(b'w' * (8 << 20))\n"
        "print(len('abc'), json.dumps(1))"
    )
    assert writer == PythonResult(0, b"-1 patched\n", b"")

    reader = snap.run(
        "import json, sys, os, vmrpc_pool\n"
        "print('secret' in globals(), len('abc'), json.dumps(1), '/run-one' in sys.path,\n"
        "      'RUN_ONE' in os.environ, 'decimal' in sys.modules, vmrpc_pool.QUEUE)"
    )

    assert reader == PythonResult(0, b"False 3 1 False False False vmrpc_pool\n", b"")


def test_memory_a_run_touches_first_is_its_own_not_the_snapshots(snap: PythonSnapshot) -> None:
    # Guest memory that was zero at the snapshot point is fresh anonymous memory in each
    # run, not holes of the snapshot's memfd (a fault there would add a page to it).
    before = snap.stored_bytes
    result = snap.run("x = bytearray(64 << 20); x[::4096] = b'a' * (16 << 10); print(len(x))")

    assert result == PythonResult(0, b"67108864\n", b"")
    assert snap.stored_bytes - before < 1 << 20


def test_every_run_gets_its_own_random_numbers() -> None:
    code = "import os, random; print(random.random(), os.urandom(16).hex(), hash('same seed'))"
    snap = PythonSnapshot(preload=["random"], timeout=TIMEOUT)
    one = snap.run(code).stdout.split()
    two = snap.run(code).stdout.split()

    assert one[0] != two[0]  # random is reseeded after the snapshot point
    assert one[1] != two[1]  # so is the personality's generator (os.urandom)
    assert one[2] == two[2]  # documented: one hash seed per snapshot


def test_a_run_may_start_threads_and_its_clocks_go_on() -> None:
    # Unlike a pool's forked child, a run is the VM's only program: threads work. Its
    # TSC is moved on by the time since the snapshot: time.time() is the host's.
    snap = PythonSnapshot(timeout=TIMEOUT)
    time.sleep(0.3)
    code = (
        "import threading, time\n"
        "t0 = time.monotonic()\n"
        "out = []\n"
        "t = threading.Thread(target=lambda: out.append(time.monotonic()))\n"
        "t.start(); t.join()\n"
        "print(out[0] >= t0, time.monotonic() >= t0, repr(time.time()))"
    )
    before = time.time()
    result = snap.run(code)
    after = time.time()

    ok_thread, ok_clock, wall = result.stdout.split()
    assert (result.returncode, ok_thread, ok_clock) == (0, b"True", b"True"), result
    assert before - 0.1 <= float(wall) <= after + 0.1


def test_a_run_calls_a_host_module_and_the_socket_policy_applies() -> None:
    kv = KV()
    code = (
        "import sys, vmrpc_guest\n"
        "with vmrpc_guest.Module('kv', (1, 0)) as m:\n"
        "    m.call(0, sys.argv[1].encode())\n"
        "    print(m.call(1, b'k'))"
    )
    allowed = socket.create_server(("127.0.0.1", 0))
    denied = socket.create_server(("127.0.0.1", 0))
    ports = [str(allowed.getsockname()[1]), str(denied.getsockname()[1])]
    policy = Policy([Rule(Deny(errno.EACCES), port=denied.getsockname()[1])])
    try:
        snap = PythonSnapshot(
            modules=[kv], sockets=lambda: SocketOutsourcing(policy), timeout=TIMEOUT
        )
        first = snap.run(code, ["k=1"])
        connect = snap.run(CONNECT, ports)
    finally:
        allowed.close()
        denied.close()

    assert first == PythonResult(0, b"b'1'\n", b"")
    assert kv.data == {b"k": b"1"}
    assert connect == PythonResult(0, f"connected\n{errno.EACCES}\n".encode(), b"")


def test_runs_from_several_threads_run_in_parallel_vms(snap: PythonSnapshot) -> None:
    code = "import sys; print(sys.argv[1] * 3)"
    results: dict[int, PythonResult] = {}

    def run(i: int) -> None:
        results[i] = snap.run(code, [str(i)])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert results == {i: PythonResult(0, f"{i}{i}{i}\n".encode(), b"") for i in range(4)}


def test_a_preload_is_in_the_snapshot() -> None:
    snap = PythonSnapshot(preload=["json", "decimal"], timeout=TIMEOUT, prefault=False)
    result = snap.run("import sys; print('decimal' in sys.modules)")

    assert result == PythonResult(0, b"True\n", b"")
    assert snap.prefaulted_pages == 0
    assert 4 << 20 < snap.stored_bytes < 128 << 20


def test_a_preload_that_fails_raises_snapshot_error_with_its_traceback() -> None:
    with pytest.raises(SnapshotError) as caught:
        PythonSnapshot(preload=["no_such_module_here"], timeout=TIMEOUT)

    assert "before its snapshot point" in str(caught.value)
    assert b"ModuleNotFoundError: No module named 'no_such_module_here'" in caught.value.stderr


def _linux_python(code: str) -> LinuxVM:
    return LinuxVM("/usr/bin/python3", ["-c", code], python_client=True, timeout=TIMEOUT)


def test_a_vm_that_did_not_stop_at_a_snapshot_point_gives_a_clear_error() -> None:
    with _linux_python("pass") as vm:
        assert vm.run() == 0
        with pytest.raises(vmrpc.ConfigError, match="did not stop at a snapshot point"):
            _vmm.take_snapshot(vm.vm._vm)


def test_no_snapshot_with_a_host_file_open() -> None:
    code = "import vmrpc_guest; f = open('/usr/bin/python3', 'rb'); vmrpc_guest.snapshot_point()"
    refused = pytest.raises(SnapshotError, match="host files open at the snapshot point")
    with _linux_python(code) as vm, refused:
        _take(vm, TIMEOUT)


def test_no_snapshot_while_other_threads_run() -> None:
    code = (
        "import threading, vmrpc_guest\n"
        "stop = threading.Event()\n"
        "t = threading.Thread(target=stop.wait); t.start()\n"
        "try:\n"
        "    vmrpc_guest.snapshot_point()\n"
        "except OSError as e:\n"
        "    print(e.errno)\n"
        "stop.set(); t.join()"
    )
    with _linux_python(code) as vm:
        assert vm.run() == 0
        assert vm.stdout == f"{errno.EBUSY}\n".encode()


def test_a_snapshot_starts_only_a_vm_like_its_own() -> None:
    snap = PythonSnapshot(timeout=TIMEOUT, prefault=False)
    other = LinuxVM("/usr/bin/python3", ["-c", "pass"], memory_mib=128)
    with other as vm, pytest.raises(vmrpc.ConfigError, match="memory size"):
        _vmm.restore_snapshot(vm.vm._vm, snap._snapshot)


def test_bad_calls_are_refused(snap: PythonSnapshot) -> None:
    with pytest.raises(ValueError, match="NUL"):
        snap.run("print(1)\0")
    with pytest.raises(TypeError):
        snap.run("print(1)", "ab")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PythonSnapshot(preload="json")  # type: ignore[arg-type]
