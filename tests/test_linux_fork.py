"""fork in the Linux personality, "child first" (docs/linux.md, "fork").

The child runs in its parent's memory while the parent is suspended; the parent's
memory and state come back when the child exits. tests/linux_programs/fork.c runs
natively and in the VM and must print the same lines (memory the child wrote is not
the parent's, fds the child closed stay open, wait statuses, nested forks, a signal
death, vfork, waitid). busybox sh's command substitution and subshells fork, and
busybox httpd forks a child per connection: a host client fetches from it.
"""

from __future__ import annotations

import hashlib
import http.client
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from linux_support import TIMEOUT, libc_programs, require_busybox

from vmrpc.linux import LinuxVM, Mount
from vmrpc.sockets import Expose, Policy, Rule, SocketOutsourcing

pytestmark = pytest.mark.kvm

program = libc_programs(Path(__file__).parent / "linux_programs" / "fork.c")


def test_fork_answers_like_linux(program: Path) -> None:
    native = subprocess.run([program], capture_output=True, check=True, timeout=TIMEOUT)
    with LinuxVM(program, timeout=TIMEOUT) as vm:
        assert vm.run() == 0, vm.stderr
        got = vm.stdout.decode().splitlines()
    want = native.stdout.decode().splitlines()
    assert got == want
    # What the lines say, so that a Linux that changed would not pass unnoticed.
    assert "wait: pid 1 exited 1 status 7" in got
    assert "memory: data 1 bss 0 heap 5 mmap p stack 1" in got
    assert "fd closed by the child: open" in got
    assert "nested: 13" in got
    assert "signaled: 1015" in got  # SIGTERM's default action
    assert "vfork: 5" in got


def sh(script: str) -> tuple[int, bytes, bytes]:
    with LinuxVM(require_busybox(), ["sh", "-c", script], timeout=TIMEOUT) as vm:
        code = vm.run()
        return code, vm.stdout, vm.stderr


def test_sh_command_substitution() -> None:
    code, out, err = sh("x=$(echo hi); echo got $x")
    assert (code, out) == (0, b"got hi\n"), err


def test_sh_subshells_and_their_status() -> None:
    code, out, err = sh("(exit 3); echo $?; (cd /; x=1); echo ${x:-unset} $(echo a; echo b)")
    assert (code, out) == (0, b"3\nunset a b\n"), err


def test_sh_pipeline_of_builtins() -> None:
    # Each side of the pipe is a forked child; the first ends before the second runs.
    code, out, err = sh("echo one two | { read a b; echo $b $a; }")
    assert (code, out) == (0, b"two one\n"), err


def test_sh_command_substitution_past_a_pipe_buffer() -> None:
    # The child writes 200 KB before its parent (suspended) reads any: the pipe grows.
    script = "x=$(i=0; while [ $i -lt 20000 ]; do echo 0123456789; i=$((i+1)); done); echo ${#x}"
    code, out, err = sh(script)
    assert (code, out, err) == (0, b"219999\n", b"")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        body: bytes = response.read()
        return body


def test_busybox_httpd_serves_the_host(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    page = b"<html><body>hello from busybox httpd</body></html>\n"
    blob = hashlib.sha256(b"seed").digest() * 4096  # 128 KiB of bytes of every value
    (www / "index.html").write_bytes(page)
    (www / "blob.bin").write_bytes(blob)
    module = SocketOutsourcing(Policy([Rule(Expose(host="127.0.0.1", port=0), port=8080)]))
    with LinuxVM(
        require_busybox(),
        ["httpd", "-f", "-p", "0.0.0.0:8080", "-h", "/www"],
        mounts=[Mount(www, "/www", readonly=True)],
        sockets=module,
        timeout=TIMEOUT,
    ) as vm:
        vm.start()
        host, port = module.wait_exposed(8080, timeout=TIMEOUT)
        base = f"http://{host}:{port}"
        for _ in range(3):
            assert fetch(f"{base}/index.html") == page
            assert fetch(f"{base}/blob.bin") == blob
        assert fetch(f"{base}/") == page
        with pytest.raises(urllib.error.HTTPError) as missing:
            fetch(f"{base}/missing.html")
        assert missing.value.code == 404
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        conn.request("GET", "/blob.bin")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, blob)
        conn.close()
        vm.close()  # httpd serves until it is stopped
