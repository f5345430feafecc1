"""VM RPC from Linux programs: tests/linux_programs/rpc_client.c, linked with the Linux
SDK (`vmrpc.linux.sdk`), calls a Python host module and an event queue."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from linux_support import INSTALL_HINT, KV, TIMEOUT

import vmrpc
from vmrpc.linux import LinuxVM
from vmrpc.linux import sdk as linux_sdk

pytestmark = pytest.mark.kvm

SOURCE = Path(__file__).parent / "linux_programs" / "rpc_client.c"


@pytest.fixture(scope="module", params=["musl-gcc", "gcc"])
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rpc") / f"rpc_client-{request.param}"
    try:
        return linux_sdk.build([SOURCE], out, compiler=request.param)
    except vmrpc.GuestBuildError as error:
        pytest.fail(f"{error} ({INSTALL_HINT})")


def test_a_linux_program_calls_a_host_module_and_an_event_queue(client: Path) -> None:
    kv = KV()
    with LinuxVM(client, timeout=TIMEOUT, modules=[kv]) as vm:
        queue = vm.vm.make_ev_queue("q", capacity=8, max_event_size=32)
        vm.start()
        got = [queue.get_event(timeout=TIMEOUT) for _ in range(3)]
        queue.put_event(b"pong")
        assert vm.wait() == 0, vm.stdout + vm.stderr
    assert got == [b"event 1", b"event 2", b"event 3"]
    assert kv.data == {b"k": b"hello"}
    lines = vm.stdout.decode().splitlines()
    assert lines[:3] == ["rpc k=hello: ok", "rpc k: hello", "rpc x: ENOFUNC (no such function)"]
    assert lines[3] == (
        "bind files: ENOMODULE (no such module/version), "
        "linux_exec: ENOMODULE (no such module/version)"
    )
    assert lines[4].endswith(": EBADHANDLE (handle not bound)")
    assert lines[5] == "rpc into the personality: EINVAL (malformed request)"
    assert lines[6] == "evq_open nosuch: ENOQUEUE (no such event queue)"
    assert lines[7:] == [
        "got: pong",
        "try_get: EEMPTY (event queue empty)",
        "unbind: 0, then rpc: EBADHANDLE (handle not bound)",
    ]


def test_outside_vmrpc_the_calls_report_enodev(client: Path) -> None:
    done = subprocess.run([client], capture_output=True, timeout=TIMEOUT, check=False)
    assert (done.returncode, done.stdout) == (1, b"bind kv: ENODEV (no VM RPC)\n")


def test_build_guest_linux_builds_a_program_that_runs(tmp_path: Path) -> None:
    out = tmp_path / "client"
    done = subprocess.run(
        [sys.executable, "-m", "vmrpc", "build-guest", "--linux", str(SOURCE), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    with LinuxVM(out, timeout=TIMEOUT) as vm:
        assert vm.run() == 1  # no "kv" module registered
    assert vm.stdout == b"bind kv: ENOMODULE (no such module/version)\n"
