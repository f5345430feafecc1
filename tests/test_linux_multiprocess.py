"""Several programs in one VM (docs/linux.md, "Several programs in one VM").

`LinuxVM(..., also=[Program(...)])` runs each program in a KVM VM of its own (own
memory, vCPUs, fd table, host modules); they share only the loopback arena, in which
loopback connections between them are served (docs/sockets.md). Real programs (busybox
httpd and wget) and tests/linux_programs/multiproc.c (glibc and musl) check: each
program its own output at the same addresses, a connection between them byte-exact
with no host socket, threads M:N in a second program, the exit status, the CLI, and
isolation: another program's memory cannot be named (EFAULT), a private futex word is
private though both use the same address, and a program that rewrites the arena
cannot make another write outside it.
"""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

import pytest
from linux_support import TIMEOUT, libc_programs, require_busybox

from vmrpc.linux import LinuxVM, Mount, Program
from vmrpc.sockets import Expose, Policy, Rule, SocketOutsourcing

from conftest import run_python

pytestmark = pytest.mark.kvm

program = libc_programs(Path(__file__).parent / "linux_programs" / "multiproc.c")

#: The host's /usr/bin at /bin, so busybox sh finds busybox (as in test_linux_exec).
BIN = Mount(Path("/usr/bin"), "/bin", readonly=True)


def pair(path: Path, first: list[str], second: list[str], **kw: object) -> tuple[int, bytes]:
    """Runs two modes of multiproc.c side by side: the first's status and stdout."""
    with LinuxVM(path, first, also=[Program(path, second, **kw)], timeout=TIMEOUT) as vm:  # type: ignore[arg-type]
        code = vm.run()
        assert vm.stderr == b""
        return code, vm.stdout


def test_two_busybox_instances_at_the_same_addresses_each_with_its_own_output() -> None:
    busybox = require_busybox()
    with LinuxVM(
        busybox, ["echo", "first"], also=[Program(busybox, ["echo", "second"])], timeout=TIMEOUT
    ) as vm:
        vm.start()
        assert vm.programs[1].wait() == 0
        assert vm.wait() == 0
        first, second = vm.programs
        assert (first.stdout, second.stdout) == (b"first\n", b"second\n")
        assert first.layout["entry"] == second.layout["entry"]
        assert first.layout["sp"] == second.layout["sp"]


def test_busybox_wget_fetches_from_busybox_httpd_with_no_host_socket(tmp_path: Path) -> None:
    www, out = tmp_path / "www", tmp_path / "out"
    www.mkdir()
    out.mkdir()
    blob = hashlib.sha256(b"multi").digest() * 20000  # 640 KiB: several pipe rings
    (www / "blob.bin").write_bytes(blob)
    # wget may start before httpd listens: a refused connect is tried again.
    script = (
        "for i in $(busybox seq 100); do "
        "busybox wget -q -O /out/blob.bin http://127.0.0.1:8080/blob.bin && exit 0; "
        "busybox sleep 0.1; done; exit 9"
    )
    client_net = SocketOutsourcing()  # a host socket would be possible, and counted
    server_net = SocketOutsourcing(Policy([Rule(Expose(host="127.0.0.1", port=0), port=8080)]))
    httpd = Program(
        require_busybox(), ["httpd", "-f", "-p", "0.0.0.0:8080", "-h", "/www"], sockets=server_net
    )
    with LinuxVM(
        require_busybox(),
        ["sh", "-c", script],
        mounts=[BIN, Mount(www, "/www", readonly=True), Mount(out, "/out")],
        env={"PATH": "/bin"},
        sockets=client_net,
        also=[httpd],
        timeout=TIMEOUT,
    ) as vm:
        vm.start()
        # The same httpd serves a host client through its exposed listener.
        host, port = server_net.wait_exposed(8080, timeout=TIMEOUT)
        with urllib.request.urlopen(f"http://{host}:{port}/blob.bin", timeout=TIMEOUT) as r:
            assert r.read() == blob
        assert vm.wait() == 0, vm.stderr
    assert (out / "blob.bin").read_bytes() == blob
    assert client_net.stats["sockets_created"] == 0
    # The exposed listener and the host client's connection, nothing for wget's.
    assert server_net.stats["sockets_created"] == 2


def test_threads_of_a_second_program_run_m_to_n_over_its_vcpus(program: Path) -> None:
    # 6 threads over 2 vCPUs take 50 turns each on one futex word, then report.
    code, out = pair(program, ["serve", "9000"], ["threads", "9000", "6"], threads=2)
    assert (code, out) == (0, b"threads 6 sum %d\n" % (50 * sum(range(1, 7))))


def test_the_first_programs_status_is_the_vms_and_an_early_exit_ends_nothing() -> None:
    busybox = require_busybox()
    with LinuxVM(
        busybox,
        ["sh", "-c", "echo before; exit 3"],
        also=[Program(busybox, ["sh", "-c", "exit 5"]), Program(busybox, ["true"])],
        timeout=TIMEOUT,
    ) as vm:
        vm.start()
        assert [p.wait() for p in vm.programs[1:]] == [5, 0]
        assert vm.wait() == 3
        assert vm.stdout == b"before\n"


def test_a_program_that_exits_closes_its_end_of_a_connection(program: Path) -> None:
    # As at a Linux process's exit: the peer reads EOF rather than waiting for ever.
    code, out = pair(program, ["read-eof", "9003"], ["accept-exit", "9003"])
    assert (code, out) == (0, b"eof\n")


def test_another_programs_memory_has_no_address(program: Path) -> None:
    # Where a neighbour's memory would follow this program's 256 MiB: nothing, for
    # the personality's checks and for the host's futex device asked directly.
    elsewhere = (256 << 20) + 0x1000
    with LinuxVM(
        program, ["fault", str(elsewhere)], also=[Program(program, ["fault", "0"])], timeout=TIMEOUT
    ) as vm:
        assert vm.run() == 0
        assert vm.stdout.split(b" wait ")[1] == b"Bad address write Bad address host Bad address\n"


def test_a_private_futex_word_is_private_at_the_same_address(program: Path) -> None:
    # The peer wakes `word` without end; this program's wait on its own `word`
    # must end by its timeout, not by the peer's wakes.
    code, out = pair(program, ["private-wait", "9001"], ["private-wake", "9001"])
    assert code == 0
    assert out.startswith(b"wait ")
    assert b"woken" not in out


def test_a_program_rewriting_the_arena_cannot_make_another_write_outside_it(
    program: Path,
) -> None:
    # The hostile peer points the connection's buffers at the victim's `secret`.
    code, out = pair(program, ["victim", "9002"], ["hostile", "9002"])
    assert (code, out) == (0, b"secret intact\n")


def test_cli_also_runs_httpd_beside_wget(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hello from the other program\n")
    busybox = str(require_busybox())
    fetch = (
        "for i in $(busybox seq 100); do "
        "busybox wget -q -O - http://127.0.0.1:8080/hello.txt && exit 6; "
        "busybox sleep 0.1; done; exit 9"
    )
    result = run_python(
        "-m", "vmrpc", "run", "--linux", "--timeout", "60",
        "--mount", f"{tmp_path}:/www:ro", "--mount", "/usr/bin:/bin:ro", "--env", "PATH=/bin",
        "--also", f"{busybox} httpd -f -p 127.0.0.1:8080 -h /www",
        busybox, "--", "sh", "-c", fetch,
    )  # fmt: skip
    assert result.returncode == 6, result.stderr
    assert result.stdout == "hello from the other program\n"
