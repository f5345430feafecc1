"""The syscall trace with decoded arguments: paths, open flags, fds, from Python
(`LinuxVM.trace`) and from ``--trace`` on the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from linux_support import TIMEOUT, require_busybox

from vmrpc.linux import LinuxVM, Mount, TraceRecord
from vmrpc.linux.tracefmt import format_call, format_result

pytestmark = pytest.mark.kvm


def traced(args: list[str], mounts: list[Mount]) -> list[TraceRecord]:
    with LinuxVM(require_busybox(), args, mounts=mounts, trace=True, timeout=TIMEOUT) as vm:
        vm.run()
        return vm.trace


def test_paths_flags_and_fds_are_decoded(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    trace = traced(["cat", "/d/f", "/d/missing"], [Mount(tmp_path, "/d", readonly=True)])
    opens = [t for t in trace if t.name == "openat"]
    assert [t.paths for t in opens] == [("/d/f",), ("/d/missing",)]
    assert str(opens[0]).startswith('openat(AT_FDCWD, "/d/f", O_RDONLY')
    assert " = 3 <" in str(opens[0])
    assert " = -ENOENT <" in str(opens[1])
    closes = [str(t) for t in trace if t.name == "close"]
    assert closes[0].startswith("close(3) = 0")


def test_two_paths_of_a_rename(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x")
    trace = traced(["mv", "/w/a", "/w/b"], [Mount(tmp_path, "/w")])
    renames = [t for t in trace if t.name.startswith("rename")]
    assert renames
    assert renames[-1].paths == ("/w/a", "/w/b")
    assert (tmp_path / "b").exists()


def test_cli_trace_prints_decoded_calls(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("hi\n")
    done = subprocess.run(
        [sys.executable, "-m", "vmrpc", "run", "--linux", "--trace", "--mount",
         f"{tmp_path}:/d:ro", str(require_busybox()), "--", "cat", "/d/f"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hi\n"
    assert '[trace] openat(AT_FDCWD, "/d/f", O_RDONLY' in done.stderr


def test_argument_kinds() -> None:
    # mmap's fd is a C int (-1 arrives as 0xffffffff), its flags are bits.
    assert format_call("mmap", (0, 4096, 3, 0x22, 0xFFFF_FFFF, 0)) == (
        "mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)"
    )
    assert format_call("openat", (-100, 1, 0o1101, 0o644), ["/x"]) == (
        'openat(AT_FDCWD, "/x", O_WRONLY|O_CREAT|O_TRUNC, 0644)'
    )
    assert format_call("getpid", (7, 8, 9)) == "getpid()"
    assert format_call("no_such_call", (1, 2, 3, 4)) == "no_such_call(1, 2, 3)"
    assert format_result("read", -2) == "-ENOENT"
    assert format_result("mmap", 0x7F0000) == "0x7f0000"
