"""Debian's dynamically linked programs in the Linux personality.

The VMM loads the program and its interpreter (the host's glibc ld.so); ld.so maps
libc and the other libraries from the default read-only mounts of the host's /usr,
/lib and /lib64, and their syscall sites are rewritten as they are mapped.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from linux_support import TIMEOUT, needs_pvm_lstar

from vmrpc import ImageError
from vmrpc.linux import LinuxVM, Mount
from vmrpc.linux.dynamic import interpreter

pytestmark = [
    pytest.mark.kvm,
    pytest.mark.skipif(
        interpreter("/bin/true") != "/lib64/ld-linux-x86-64.so.2",
        reason="needs a host with Debian's dynamically linked glibc programs",
    ),
]


def run(program: str, *args: str, **kwargs: object) -> tuple[int, bytes, bytes, dict[str, int]]:
    with LinuxVM(program, args, timeout=TIMEOUT, **kwargs) as vm:  # type: ignore[arg-type]
        code = vm.run()
        return code, vm.stdout, vm.stderr, vm.stats


@pytest.mark.parametrize(("program", "want"), [("/bin/true", 0), ("/bin/false", 1)])
def test_exit_codes(program: str, want: int) -> None:
    assert run(program)[:3] == (want, b"", b"")


def test_echo_and_the_libraries_code_is_rewritten() -> None:
    code, out, err, stats = run("/bin/echo", "hello", "dynamic", "world")
    assert (code, out, err) == (0, b"hello dynamic world\n", b"")
    # libc.so was mapped executable at run time, and its sites rewritten.
    assert stats["code_mappings_rewritten"] >= 1
    assert stats["code_syscall_sites"] > 100


@needs_pvm_lstar
def test_without_rewriting_ld_so_and_libc_go_through_lstar() -> None:
    code, out, _, stats = run("/bin/echo", "via", "lstar", rewrite_syscalls=False)
    assert (code, out) == (0, b"via lstar\n")
    assert stats["code_syscall_sites"] == 0


def test_env_prints_its_environment() -> None:
    code, out, _, _ = run("/usr/bin/env", env={"A": "1", "B": "two words"})
    assert (code, out) == (0, b"A=1\nB=two words\n")


def test_ls_of_a_mounted_directory(tmp_path: Path) -> None:
    names = ["b.txt", "a.bin", "zeta", "dir"]
    for n in names[:3]:
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "dir").mkdir()
    code, out, err, _ = run("/bin/ls", "/m", mounts=[Mount(tmp_path, "/m", readonly=True)])
    assert (code, err) == (0, b"")
    assert out.decode().split() == sorted(names)


def test_sha256sum_of_a_mounted_file(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    (tmp_path / "blob").write_bytes(data)
    code, out, _, _ = run("/usr/bin/sha256sum", "/m/blob", mounts=[f"{tmp_path}:/m:ro"])
    assert code == 0
    assert out.decode() == f"{hashlib.sha256(data).hexdigest()}  /m/blob\n"


def test_a_missing_file_is_an_error_exit(tmp_path: Path) -> None:
    code, out, err, _ = run("/usr/bin/sha256sum", "/m/nope", mounts=[f"{tmp_path}:/m:ro"])
    assert (code, out) == (1, b"")
    assert b"/m/nope: No such file or directory" in err


def test_proc_self_exe_and_dev_entries_are_synthesized() -> None:
    assert run("/usr/bin/readlink", "/proc/self/exe")[:2] == (0, b"/usr/bin/readlink\n")
    assert run("/usr/bin/wc", "-c", "/dev/null")[:2] == (0, b"0 /dev/null\n")
    code, first, _, _ = run("/usr/bin/head", "-c", "32", "/dev/urandom")
    second = run("/usr/bin/head", "-c", "32", "/dev/urandom")[1]
    assert code == 0
    assert len(first) == len(second) == 32
    assert first != second


def test_a_sysroot_supplies_the_interpreter_and_libraries(tmp_path: Path) -> None:
    # A sysroot whose /usr, /lib, /lib64 are the host's, reached through symlinks.
    for d in ("usr", "lib", "lib64"):
        (tmp_path / d).symlink_to(Path("/") / d)
    assert run("/bin/echo", "from", "sysroot", sysroot=tmp_path)[:2] == (0, b"from sysroot\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "lib64").mkdir()
    with pytest.raises(ImageError, match="interpreter"):
        run("/bin/echo", "x", sysroot=empty)


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no /usr/bin/python3 on the host")
def test_debians_python3_runs_unmodified() -> None:
    # Before the single-threaded futex, glibc aborted it ("The futex facility returned
    # an unexpected error code", status 134).
    code, out, err, stats = run("/usr/bin/python3", "-c", "print(sum(range(10**6)))")
    assert (code, out, err) == (0, b"499999500000\n", b"")
    assert stats["code_mappings_rewritten"] >= 2  # libc, libm, ... as mapped


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no /usr/bin/python3 on the host")
def test_python3_imports_extension_modules() -> None:
    program = (
        "import json, hashlib, math\n"
        "print(json.dumps({'r': math.sqrt(2)}), hashlib.sha256(b'vmrpc').hexdigest())\n"
    )
    code, out, _, _ = run("/usr/bin/python3", "-c", program)
    want = f'{{"r": {2**0.5!r}}} {hashlib.sha256(b"vmrpc").hexdigest()}\n'
    assert (code, out.decode()) == (0, want)
