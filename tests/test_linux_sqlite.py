"""Debian's sqlite3 shell (dynamically linked) on a database in a read-write mount, and
record locks (fcntl F_SETLK and friends) that host processes and the program both obey."""

from __future__ import annotations

import asyncio
import errno
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from linux_support import TIMEOUT

from vmrpc.linux import LinuxVM, Mount, locks

pytestmark = pytest.mark.kvm

SQLITE3 = shutil.which("sqlite3")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    db = tmp_path / "t.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table t(a integer, b text)")
        conn.executemany("insert into t values (?, ?)", [(i, f"row {i}") for i in range(100)])
    return db


def shell(db: Path, sql: str) -> tuple[int, bytes, bytes]:
    if SQLITE3 is None:
        pytest.fail("sqlite3 is missing: install it with `sudo apt-get install sqlite3`")
    with LinuxVM(SQLITE3, ["/data/" + db.name, sql], mounts=[Mount(db.parent, "/data")],
                 env={"HOME": "/data"}, timeout=TIMEOUT) as vm:  # fmt: skip
        return vm.run(), vm.stdout, vm.stderr


def test_sqlite3_shell_reads_and_writes_a_mounted_database(database: Path) -> None:
    code, out, err = shell(
        database, "insert into t values (1000, 'from the guest'); select count(*), sum(a) from t;"
    )

    assert (code, err) == (0, b"")
    assert out == f"101|{sum(range(100)) + 1000}\n".encode()
    with sqlite3.connect(database) as conn:
        assert conn.execute("select b from t where a = 1000").fetchone() == ("from the guest",)


HOLD_LOCK = """
import fcntl, sys
with open(sys.argv[1], "r+b") as f:
    fcntl.lockf(f, fcntl.LOCK_EX)  # all of the file, as a writer would
    print("locked", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


def test_a_host_process_lock_stops_the_guest_writer(database: Path) -> None:
    # Another host process holds a POSIX write lock on the database: sqlite3 in the VM
    # must see it (SQLITE_BUSY, "database is locked"), not write past it.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n"
        code, _, err = shell(database, "insert into t values (2000, 'blocked');")
        assert code != 0
        assert b"database is locked" in err
    finally:
        holder.communicate(timeout=TIMEOUT)
    code, _, err = shell(database, "insert into t values (2000, 'after');")
    assert (code, err) == (0, b"")
    with sqlite3.connect(database) as conn:
        assert conn.execute("select b from t where a = 2000").fetchall() == [("after",)]


@pytest.mark.parametrize(
    ("cmd", "flock"),
    [
        (locks.F_SETLK, b"\0" * 31),  # short
        (locks.F_SETLK, b"\0" * 33),  # long
        (locks.F_SETLK, locks.FLOCK.pack(7, 0, 0, 0, 0)),  # no such l_type
        (locks.F_SETLK, locks.FLOCK.pack(locks.F_WRLCK, 3, 0, 0, 0)),  # no such whence
        (locks.F_OFD_SETLK, locks.FLOCK.pack(locks.F_WRLCK, 0, 0, 0, 1234)),  # OFD: pid 0
        (99, locks.FLOCK.pack(locks.F_WRLCK, 0, 0, 0, 0)),  # not a lock command
    ],
)
def test_hostile_lock_requests_are_einval(tmp_path: Path, cmd: int, flock: bytes) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with path.open("r+b") as f, pytest.raises(OSError, match=r"flock|lock request|l_pid") as error:
        asyncio.run(locks.record_lock(f.fileno(), cmd, flock))
    assert error.value.errno == errno.EINVAL
