"""Debian's CPython (/usr/bin/python3, unmodified, dynamically linked) in a VM, through
`vmrpc.run_python`, calling the host's Python modules with the guest client
``vmrpc_guest`` (guest/linux/sdk/python/)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from linux_support import KV

import vmrpc
from vmrpc.linux import LinuxVM, Mount
from vmrpc.linux.sdk import python_client_dir

from conftest import run_python as run_host_python

pytestmark = pytest.mark.kvm

PYTHON = Path("/usr/bin/python3")


GUEST_KV = """
import sys, vmrpc_guest
with vmrpc_guest.Module("kv", (1, 0)) as kv:
    print(kv.call(0, b"answer=" + sys.argv[1].encode()))
    print(kv.call(1, b"answer"))
    big = kv.call(1, b"missing")
    print(len(big))
    try:
        kv.call(2)
    except vmrpc_guest.VmrpcError as error:
        print(error.name, error.code)
try:
    vmrpc_guest.Module("kv", (2, 0))
except vmrpc_guest.VmrpcError as error:
    print(error.name)
print(vmrpc_guest.max_payload())
"""


def test_guest_python_calls_a_host_module() -> None:
    kv = KV()

    result = vmrpc.run_python(GUEST_KV, ["42"], modules=[kv])

    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == [
        "b'ok'",
        "b'42'",
        "0",
        "VMRPC_EHOSTFN -3",
        "VMRPC_ENOMODULE",
        str(vmrpc.MAX_PAYLOAD),
    ]
    assert kv.data == {b"answer": b"42"}


def test_guest_python_uses_an_event_queue() -> None:
    code = (
        "import vmrpc_guest\n"
        "q = vmrpc_guest.EventQueue('q')\n"
        "print(q.entries, q.max_event_size, q.get(block=False))\n"
        "q.put(b'ping from python')\n"
    )
    with LinuxVM(PYTHON, ["-c", code], python_client=True, timeout=60) as vm:
        q = vm.vm.make_ev_queue("q", capacity=8, max_event_size=32)
        assert vm.run() == 0, vm.stderr
        assert q.get_event(timeout=5) == b"ping from python"
    assert vm.stdout == b"8 32 None\n"


def test_the_guest_client_outside_a_vm_reports_no_vm_rpc() -> None:
    # Natively, the host kernel answers ENOSYS to the private calls: VMRPC_ENODEV.
    code = (
        "import vmrpc_guest\n"
        "try:\n"
        "    vmrpc_guest.max_payload()\n"
        "except vmrpc_guest.VmrpcError as e:\n"
        "    print(e.name)\n"
    )
    out = subprocess.run(
        [PYTHON, "-c", code],
        env={"PYTHONPATH": str(python_client_dir())},
        capture_output=True,
        check=True,
    )
    assert out.stdout == b"VMRPC_ENODEV\n"


def test_run_python_reads_and_writes_its_mounts(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("three words here")
    code = (
        "words = open('/data/in.txt').read().split()\n"
        "open('/data/out.txt', 'w').write(str(len(words)))\n"
        "import sys; sys.exit(7)\n"
    )

    result = vmrpc.run_python(code, mounts=[Mount(tmp_path, "/data")])

    assert result.returncode == 7, result.stderr
    assert (tmp_path / "out.txt").read_text() == "3"


def test_the_command_line_passes_dash_options_to_the_program() -> None:
    # Arguments after the program that are not vmrpc's own options are the program's,
    # even when they start with '-' (no `--` needed); vmrpc's own may follow them.
    program = "import sys; print(sys.argv[1:])"
    args = ["-c", program, "-x", "--not-ours", "--env", "A=1"]

    result = run_host_python("-m", "vmrpc", "run", "--linux", str(PYTHON), *args)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "['-x', '--not-ours']\n"
