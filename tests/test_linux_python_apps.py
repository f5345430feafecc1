"""CPython's sqlite3 and asyncio in a LinuxVM (issue 12, item 3; docs/linux.md).

sqlite3 needs fcntl record locks (guest/linux/flock.c); asyncio needs
socketpair(AF_UNIX) for its self-pipe (guest/linux/socketpair.c) and epoll.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
from linux_support import TIMEOUT
from test_linux_net import tcp_echo  # noqa: F401 (a fixture)

from vmrpc.linux import LinuxVM, Mount
from vmrpc.sockets import SocketOutsourcing

pytestmark = pytest.mark.kvm

PYTHON = Path("/usr/bin/python3")

SQLITE = """
import sqlite3
c = sqlite3.connect("/data/t.db")
c.execute("create table t (k integer primary key, v text)")
c.executemany("insert into t (v) values (?)", [(str(i),) for i in range(100)])
c.commit()
print(c.execute("select count(*), sum(k) from t").fetchone())
"""

ASYNCIO_CLIENT = """
import asyncio, sys
async def main(port):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    out = []
    for msg in (b"hello", b"threads", b"asyncio"):
        w.write(msg)
        await w.drain()
        out.append(await r.readexactly(len(msg)))
    w.close()
    await w.wait_closed()
    print(out)
asyncio.run(main(int(sys.argv[1])))
"""

SOCKETPAIR = """
import socket
a, b = socket.socketpair()
a.sendall(b"ping")
print(b.recv(4))
b.close()
print(a.recv(1))
"""


@pytest.fixture(autouse=True)
def python3() -> None:
    if not PYTHON.exists():
        pytest.skip(f"{PYTHON} (Debian's python3) is not installed")


def test_sqlite3_writes_a_database_in_a_read_write_mount(tmp_path: Path) -> None:
    with LinuxVM(PYTHON, ["-c", SQLITE], mounts=[Mount(tmp_path, "/data")], timeout=TIMEOUT) as vm:
        assert vm.run() == 0, vm.stderr.decode()
        assert vm.stdout == b"(100, 5050)\n"
    # The host reads what the guest wrote.
    with sqlite3.connect(tmp_path / "t.db") as db:
        assert db.execute("select count(*), max(v) from t").fetchone() == (100, "99")


def test_socketpair_gives_a_connected_stream_pair() -> None:
    want = subprocess.run([PYTHON, "-c", SOCKETPAIR], capture_output=True, check=True)
    with LinuxVM(PYTHON, ["-c", SOCKETPAIR], timeout=TIMEOUT) as vm:
        assert vm.run() == 0, vm.stderr.decode()
        assert vm.stdout == want.stdout == b"b'ping'\nb''\n"


def test_asyncio_client_talks_to_a_host_echo_server(tcp_echo: int) -> None:  # noqa: F811
    args = ["-c", ASYNCIO_CLIENT, str(tcp_echo)]
    want = subprocess.run([PYTHON, *args], capture_output=True, check=True, timeout=TIMEOUT)
    with LinuxVM(PYTHON, args, timeout=TIMEOUT, sockets=SocketOutsourcing()) as vm:
        assert vm.run() == 0, vm.stderr.decode()
        assert vm.stdout == want.stdout
