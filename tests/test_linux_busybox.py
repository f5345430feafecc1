"""Debian's busybox-static, unmodified, in a VM: programs nobody here wrote."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from linux_support import TIMEOUT, require_busybox

from vmrpc.linux import FileAccess, LinuxVM, Mount

pytestmark = pytest.mark.kvm


def busybox(*args: str, **kwargs: object) -> tuple[int, bytes, bytes]:
    """Run ``busybox ARGS...``; return (exit status, stdout, stderr)."""
    with LinuxVM(require_busybox(), args, timeout=TIMEOUT, **kwargs) as vm:  # type: ignore[arg-type]
        code = vm.run()
        return code, vm.stdout, vm.stderr


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A host directory with a text file, a binary file and a subdirectory."""
    d = tmp_path / "data"
    d.mkdir()
    (d / "lines.txt").write_text("pear 3\napple 10\nfig 7\napple 2\n")
    (d / "blob.bin").write_bytes(os.urandom(200_000))  # several 60 KB host reads
    (d / "sub").mkdir()
    return d


def test_echo() -> None:
    assert busybox("echo", "hello", "world") == (0, b"hello world\n", b"")


def test_cat_wc_sort_of_mounted_files_and_stdin(data: Path) -> None:
    mount = [Mount(data, "/data", readonly=True)]
    assert busybox("cat", "/data/lines.txt", mounts=mount)[1] == (data / "lines.txt").read_bytes()
    code, out, _ = busybox("sort", "/data/lines.txt", mounts=mount)
    assert out == b"apple 10\napple 2\nfig 7\npear 3\n"
    code, out, _ = busybox("wc", "-l", "-w", stdin=b"a b\nc\n")
    assert (code, out.split()) == (0, [b"2", b"3"])


@pytest.mark.parametrize(("tool", "algo"), [("sha256sum", "sha256"), ("md5sum", "md5")])
def test_checksum_of_a_mounted_file_matches_hashlib(data: Path, tool: str, algo: str) -> None:
    code, out, err = busybox(tool, "/data/blob.bin", mounts=[Mount(data, "/data", readonly=True)])
    want = hashlib.new(algo, (data / "blob.bin").read_bytes()).hexdigest()
    assert (code, err) == (0, b"")
    assert out == f"{want}  /data/blob.bin\n".encode()


def test_ls_l_of_a_mounted_directory(data: Path) -> None:
    code, out, err = busybox("ls", "-l", "/data", mounts=[Mount(data, "/data")])
    assert (code, err) == (0, b""), err
    lines = out.decode().splitlines()
    by_name = {line.split()[-1]: line for line in lines if not line.startswith("total")}
    assert sorted(by_name) == ["blob.bin", "lines.txt", "sub"]
    assert by_name["sub"].startswith("d")
    assert by_name["blob.bin"].split()[4] == "200000"


def test_grep_sed_awk_over_mounted_files(data: Path) -> None:
    m = [Mount(data, "/data", readonly=True)]
    assert (
        busybox("grep", "-n", "apple", "/data/lines.txt", mounts=m)[1] == b"2:apple 10\n4:apple 2\n"
    )
    assert busybox("sed", "s/apple/APPLE/g", "/data/lines.txt", mounts=m)[1].count(b"APPLE") == 2
    out = busybox("awk", "{s += $2} END {print s}", "/data/lines.txt", mounts=m)[1]
    assert out == b"22\n"


def test_sh_with_builtins_only() -> None:
    script = "x=4; y=$((x * 5)); echo $y; echo to-err >&2; test $y -eq 20 && exit 42"
    assert busybox("sh", "-c", script) == (42, b"20\n", b"to-err\n")


def test_write_into_a_read_write_mount_is_seen_on_the_host(tmp_path: Path) -> None:
    code, _, err = busybox(
        "sh",
        "-c",
        "echo written > /w/out.txt; echo more >> /w/out.txt",
        mounts=[Mount(tmp_path, "/w")],
    )
    assert (code, err) == (0, b"")
    assert busybox("mkdir", "/w/d", mounts=[Mount(tmp_path, "/w")])[0] == 0
    assert (tmp_path / "out.txt").read_text() == "written\nmore\n"
    assert (tmp_path / "d").is_dir()


def test_write_into_a_read_only_mount_fails_with_erofs(tmp_path: Path) -> None:
    (tmp_path / "keep").write_text("original")
    code, _, err = busybox(
        "sh",
        "-c",
        "echo x > /r/new; echo y > /r/keep",
        mounts=[Mount(tmp_path, "/r", readonly=True)],
    )
    assert code != 0
    assert b"Read-only file system" in err
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "keep").read_text() == "original"


def test_hostile_paths_do_not_leave_the_mount(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    mounted = tmp_path / "m"
    mounted.mkdir()
    (mounted / "abs").symlink_to(secret)  # absolute symlink out of the mount
    (mounted / "rel").symlink_to("../secret.txt")  # relative symlink out of it
    (mounted / "ok").write_text("fine")
    m = [Mount(mounted, "/m")]
    for path in ["/m/../secret.txt", "/m/abs", "/m/rel", "/m/./../m/../secret.txt", "/secret.txt"]:
        code, out, _err = busybox("cat", path, mounts=m)
        assert code != 0, path
        assert b"SECRET" not in out, path
    assert busybox("cat", "/m/ok", mounts=m)[1] == b"fine"


def test_audit_hook_sees_and_can_deny_opens(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("A")
    (tmp_path / "b").write_text("B")
    seen: list[FileAccess] = []

    def audit(access: FileAccess) -> bool:
        seen.append(access)
        return not access.path.endswith("/b")

    code, out, err = busybox("cat", "/t/a", "/t/b", mounts=[Mount(tmp_path, "/t")], audit=audit)
    assert out == b"A"
    assert b"Permission denied" in err
    assert code == 1
    assert [(a.op, a.path) for a in seen if a.op == "open"] == [("open", "/t/a"), ("open", "/t/b")]


def test_trace_records_each_system_call() -> None:
    with LinuxVM(require_busybox(), ["echo", "hi"], trace=True, timeout=TIMEOUT) as vm:
        assert vm.run() == 0
    writes = [t for t in vm.trace if t.name == "write"]
    assert [(t.args[0], t.result) for t in writes] == [(1, 3)]
    assert vm.trace[0].name == "brk"
    assert "write(1, " in str(writes[0])


@pytest.mark.linux("/bin/busybox", ["printf", "%s-%s", "a", "b"])
def test_pytest_plugin_marker(linux_vm: LinuxVM) -> None:
    assert linux_vm.run() == 0
    assert linux_vm.stdout == b"a-b"


def test_file_data_moves_natively_not_through_python(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    mounts = [Mount(data, "/data", readonly=True), Mount(out, "/w")]
    with LinuxVM(require_busybox(), ["cp", "/data/blob.bin", "/w/copy"], mounts=mounts) as vm:
        assert vm.run(timeout=TIMEOUT) == 0, vm.stderr
        stats = vm.stats
    assert (out / "copy").read_bytes() == (data / "blob.bin").read_bytes()
    assert stats["files_native_bytes_read"] == 200_000
    assert stats["files_native_bytes_written"] == 200_000
