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


STDLIB_WORKLOAD = """
import asyncio, hashlib, json, math, sqlite3, sys
data = {"rows": [[i, i * 0.5, str(i)] for i in range(2000)]}
text = json.dumps(data, sort_keys=True)
assert json.loads(text) == data
print(hashlib.sha256(text.encode()).hexdigest())
print(f"{math.fsum(math.sin(i) for i in range(10000)):.12f}", math.factorial(30))
db = sqlite3.connect(sys.argv[1] + "/t.db")
db.execute("create table t(a integer, b text)")
db.executemany("insert into t values (?, ?)", [(i, str(i)) for i in range(5000)])
db.commit()
print(db.execute("select count(*), sum(a), max(b) from t").fetchone())
async def twice(x):
    await asyncio.sleep(0)
    return 2 * x
async def main():
    return sum(await asyncio.gather(*(twice(i) for i in range(100))))
print(asyncio.run(main()))
"""


def test_stdlib_workload_matches_native(tmp_path: Path) -> None:
    # json, hashlib, math, sqlite3 on a read-write mount, asyncio: the same output as the
    # same interpreter natively.
    (tmp_path / "vm").mkdir()
    (tmp_path / "native").mkdir()
    native = subprocess.run(
        [PYTHON, "-c", STDLIB_WORKLOAD, str(tmp_path / "native")], capture_output=True, check=True
    )

    result = vmrpc.run_python(STDLIB_WORKLOAD, ["/w"], mounts=[Mount(tmp_path / "vm", "/w")])

    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == native.stdout
    assert (tmp_path / "vm" / "t.db").read_bytes()[:16] == b"SQLite format 3\0"


ASYNCIO_ECHO = """
import asyncio, socket

a, b = socket.socketpair()  # asyncio's own wake-up pipe is one too
a.sendall(b"ping")
print(b.recv(4))
a.close()
print(b.recv(4))

async def handle(reader, writer):
    while data := await reader.read(1024):
        writer.write(data.upper())
        await writer.drain()
    writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for i in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"hello {i}".encode())
        await writer.drain()
        print((await reader.readexactly(7)).decode())
        writer.close()
        await writer.wait_closed()
    server.close()
    await server.wait_closed()

asyncio.run(main())
"""


def test_asyncio_tcp_echo_server_and_client_in_the_guest() -> None:
    # Both ends in one guest program (epoll, non-blocking sockets, socketpair): the
    # connections stay in guest memory, no network module is even given.
    result = vmrpc.run_python(ASYNCIO_ECHO)

    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == b"b'ping'\nb''\nHELLO 0\nHELLO 1\nHELLO 2\n"


def test_socketpair_refuses_what_linux_refuses() -> None:
    code = (
        "import socket\n"
        "try:\n"
        "    socket.socketpair(socket.AF_INET)\n"
        "except OSError as e:\n"
        "    print(e.errno)\n"
    )
    native = subprocess.run([PYTHON, "-c", code], capture_output=True, check=True)

    result = vmrpc.run_python(code)

    assert result.stdout == native.stdout == b"95\n"  # EOPNOTSUPP
