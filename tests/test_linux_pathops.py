"""Native path operations (crates/vmm/src/linux/pathops.rs): read-only opens, stats and
closes served in Rust; the same answers as Python's, and Python's when an audit hook
must see every path (tests/linux_programs/pathops.c)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from linux_support import INSTALL_HINT, TIMEOUT

from vmrpc.linux import FileAccess, LinuxVM, Mount

pytestmark = pytest.mark.kvm

SOURCE = Path(__file__).parent / "linux_programs" / "pathops.c"

EXPECTED = [
    "stat 0 size 5",
    "fstat 0 same 1",
    "read 5 hello",
    "lseek 5",
    "close 0",
    "chdir 0",
    "relative 1",
    "escape -1 13",  # EACCES: RESOLVE_BENEATH refused to leave the mount
    "abs symlink -1 13",
    "lstat link 0 1",
    "missing -1 2",
    "dir 1",
    "openat dir 5",
    "done",
]


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pathops") / "pathops"
    try:
        subprocess.run(
            ["musl-gcc", "-static", "-O2", "-o", str(out), str(SOURCE)],
            check=True,
            capture_output=True,
        )
    except FileNotFoundError:
        pytest.fail(f"musl-gcc is missing: {INSTALL_HINT}")
    return out


@pytest.fixture
def mounted(tmp_path: Path) -> Mount:
    (tmp_path / "outside").write_text("SECRET")
    d = tmp_path / "d"
    d.mkdir()
    (d / "f").write_text("hello")
    (d / "abs").symlink_to(tmp_path / "outside")
    return Mount(d, "/d", readonly=True)


def run(program: Path, mount: Mount, **kwargs: object) -> tuple[list[str], dict[str, int]]:
    with LinuxVM(program, mounts=[mount], timeout=TIMEOUT, **kwargs) as vm:  # type: ignore[arg-type]
        assert vm.run() == 0, vm.stderr
        # Every handle the program closed is closed on the host too, the one Python
        # adopted for lseek included (private state: what a leak would leave behind).
        assert vm.files._handles == {}
        return vm.stdout.decode().splitlines(), vm.stats


def test_open_stat_close_are_served_natively(program: Path, mounted: Mount) -> None:
    lines, stats = run(program, mounted)
    assert lines == EXPECTED
    # stat, and the opens of /d/f and f (relative to the cwd, /d), are Rust's; the
    # escapes and the missing file fail there; the directory and openat(dirfd) are not.
    assert stats["files_native_opens"] == 2 + 40
    assert stats["files_native_stats"] == 2  # stat, lstat (abs symlink: refused)
    assert stats["files_native_fstats"] >= 1
    # Closes go in batches of 32: the first (adopted by Python for lseek), the second
    # and 30 of the loop's; the last 10 are still pending when the program exits.
    assert stats["files_native_closes"] == 32


def test_with_an_audit_hook_python_sees_every_path(program: Path, mounted: Mount) -> None:
    seen: list[FileAccess] = []

    def audit(access: FileAccess) -> bool:
        seen.append(access)
        return True

    lines, stats = run(program, mounted, audit=audit)
    assert lines == EXPECTED
    assert stats["files_native_opens"] == stats["files_native_stats"] == 0
    assert stats["files_native_fstats"] >= 1  # of an open file: no path, no audit
    assert ("open", "/d/f") in [(a.op, a.path) for a in seen]
    assert ("stat", "/d/f") in [(a.op, a.path) for a in seen]
