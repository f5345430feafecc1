"""Network system calls of Linux programs, on the socket outsourcing (docs/linux.md).

`tests/linux_programs/netprobe.c` (glibc and musl, static) runs natively and in a
VM against the same host peers, and must print the same lines; what differs by
design (a non-blocking connect's EINPROGRESS, SIGPIPE's exit status) is checked
on its own.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from linux_support import TIMEOUT, build_probe

from vmrpc.linux import LinuxVM, Mount
from vmrpc.sockets import SocketOutsourcing

pytestmark = pytest.mark.kvm

NETPROBE = Path(__file__).parent / "linux_programs" / "netprobe.c"


@pytest.fixture(scope="module", params=["glibc", "musl"])
def netprobe(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_probe(request.param, tmp_path_factory.mktemp(request.param), NETPROBE)


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


@pytest.fixture
def tcp_echo() -> Iterator[int]:
    """A TCP echo server on 127.0.0.1; closes each connection at its peer's EOF."""
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    srv.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone does not)
    srv.close()
    thread.join(5)


@pytest.fixture
def udp_echo() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while True:
            data, peer = sock.recvfrom(65536)
            if stop.is_set():
                return
            sock.sendto(data, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as waker:
        waker.sendto(b"", sock.getsockname())  # ends the recvfrom (close alone does not)
    thread.join(5)
    sock.close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        yield probe.getsockname()[1]


def in_vm(program: Path, *args: str, sockets: SocketOutsourcing | None = None) -> tuple[int, str]:
    module = sockets if sockets is not None else SocketOutsourcing()
    with LinuxVM(program, args, timeout=TIMEOUT, sockets=module) as vm:
        code = vm.run()
        return code, vm.stdout.decode()


def native(program: Path, *args: str) -> tuple[int, str]:
    r = subprocess.run([program, *args], capture_output=True, timeout=TIMEOUT, check=False)
    return r.returncode, r.stdout.decode()


@pytest.mark.parametrize("mode", ["basics", "wait", "hostile"])
def test_same_results_as_native(netprobe: Path, tcp_echo: int, mode: str) -> None:
    got = in_vm(netprobe, mode, str(tcp_echo))
    assert got == native(netprobe, mode, str(tcp_echo))
    assert got[0] == 0


def test_basics_lines(netprobe: Path, tcp_echo: int) -> None:
    """What the native comparison relies on, spelled out."""
    code, out = in_vm(netprobe, "basics", str(tcp_echo))
    assert code == 0
    lines = out.splitlines()
    assert "TCP_KEEPIDLE 30 len 4" in lines
    assert "TCP_KEEPINTVL 7 len 4" in lines
    assert "SO_RCVTIMEO 3.500000 len 16" in lines
    assert "echo one-tw|o-three" in lines
    assert "recvmsg total 13 one-tw|o-three" in lines
    assert "read after shutdown 0" in lines
    assert "send on a pipe fd ENOTSOCK" in lines


def test_output_buffers_are_checked_before_waiting(netprobe: Path, tcp_echo: int) -> None:
    # Stricter than Linux, which finds these only once it has something to copy.
    assert in_vm(netprobe, "efault", str(tcp_echo)) == (
        0,
        "recv bad buffer EFAULT\nepoll_wait bad array EFAULT\n",
    )


def test_unix_sockets_fail_cleanly(netprobe: Path) -> None:
    # glibc's nscd probe takes this answer and goes on without nscd.
    assert in_vm(netprobe, "unix") == (0, "unix socket EAFNOSUPPORT\n")


def test_resolver_answers_queries_and_rejects_malformed_ones(netprobe: Path) -> None:
    module = SocketOutsourcing()
    code, out = in_vm(netprobe, "dns", sockets=module)
    assert code == 0
    assert out.splitlines() == [
        "short: no answer",  # no id to answer
        "A localhost: id 1234 qr 1 rcode 0 answers 1 127.0.0.1",
        "MX localhost: id 1234 qr 1 rcode 4 answers 0",  # NOTIMP
        "pointer: id 1234 qr 1 rcode 1 answers 0",  # FORMERR: no compression in a question
        "label past end: id 1234 qr 1 rcode 1 answers 0",
        "two questions: id 1234 qr 1 rcode 1 answers 0",
        "an answer: no answer",  # QR set: never answered (no loops)
        "A nxdomain: id 1234 qr 1 rcode 3 answers 0",
    ]
    # Only well-formed questions reached the host's resolver.
    assert module.stats["rpc.getaddrinfo"] == 3  # localhost; invalid, then its NXDOMAIN check


def test_getaddrinfo_through_the_vms_resolver(netprobe: Path, tmp_path: Path) -> None:
    """Static glibc and musl resolve through resolv.conf's nameserver: the VM's resolver."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "hosts").write_text("10.9.8.7\tfrom-hosts.test\n")
    (etc / "resolv.conf").write_text("nameserver 127.0.0.53\n")
    (etc / "nsswitch.conf").write_text("hosts: files dns\n")
    mount = Mount(etc, "/etc", readonly=True)
    for name, expected, code, host_lookup in [
        ("from-hosts.test", "from-hosts.test: 10.9.8.7 port 80\n", 0, False),
        ("localhost", "localhost: 127.0.0.1 port 80\n", 0, True),  # not in hosts: DNS
        ("no-such-name.invalid", "no-such-name.invalid: EAI_NONAME\n", 1, True),
    ]:
        module = SocketOutsourcing()  # one per VM
        with LinuxVM(netprobe, ["resolve", name], sockets=module, mounts=[mount]) as vm:
            assert (vm.run(TIMEOUT), vm.stdout.decode()) == (code, expected)
        assert ("rpc.getaddrinfo" in module.stats) == host_lookup
        # The query and its answer stayed in the guest: no host UDP socket.
        assert module.stats["sockets_created"] == 0


def test_connection_inside_the_program_is_specialized_in_the_guest(netprobe: Path) -> None:
    module = SocketOutsourcing()
    got = in_vm(netprobe, "self", sockets=module)
    assert got == native(netprobe, "self")
    assert "accept4 ok cloexec 1 nonblock 1" in got[1]
    assert "recv 10" in got[1]
    assert module.stats["sockets_created"] == 0  # no host socket: guest-local pipes
    [listen] = [r for r in module.audit if r.event == "listen"]
    assert listen.action == "stay-in-guest"


def test_policy_and_audit_apply_as_for_bare_guests(netprobe: Path, tcp_echo: int) -> None:
    module = SocketOutsourcing()
    assert in_vm(netprobe, "basics", str(tcp_echo), sockets=module)[0] == 0
    assert [r.event for r in module.audit] == ["connect"]
    assert module.audit[0].flow == f"outbound tcp 127.0.0.1:{tcp_echo}"
    assert module.stats["sockets_created"] == 1
    assert module.stats["sockets_open"] == 0  # close reached the host


def test_nonblocking_connect(netprobe: Path, tcp_echo: int, closed_port: int) -> None:
    code, out = in_vm(netprobe, "nonblock", str(closed_port), str(tcp_echo))
    assert code == 0
    assert out == native(netprobe, "nonblock", str(closed_port), str(tcp_echo))[1]
    assert out.splitlines() == [
        "refused: pollerr 1 so_error ECONNREFUSED",
        "so_error again 0",
        "open: connect ok so_error 0",
        "recv nothing yet EAGAIN",
        "send 4",
        "poll in 1 revents 1",
        "recv 4",
    ]


def test_nonblocking_connect_says_einprogress(netprobe: Path, tcp_echo: int) -> None:
    with LinuxVM(
        netprobe, ["nonblock", "1", str(tcp_echo)], trace=True, sockets=SocketOutsourcing()
    ) as vm:
        assert vm.run(TIMEOUT) == 0
        connects = [r for r in vm.trace if r.name == "connect"]
    assert [r.result for r in connects] == [-115, -115]  # EINPROGRESS both times


def test_udp(netprobe: Path, udp_echo: int) -> None:
    got = in_vm(netprobe, "udp", str(udp_echo))
    assert got == native(netprobe, "udp", str(udp_echo))
    assert got[1].splitlines() == [
        "sendto 5",
        "FIONREAD ok 5",
        "recvfrom 5 hello from port ok 1 len 16",
        "sendmsg 8",
        "recvmsg 8 data|gram namelen 16 port ok 1",
    ]


def test_epipe_and_sigpipe(netprobe: Path, tcp_echo: int) -> None:
    code, out = in_vm(netprobe, "sigpipe", str(tcp_echo))
    native_code, native_out = native(netprobe, "sigpipe", str(tcp_echo))
    assert native_code == -signal.SIGPIPE
    assert code == 128 + signal.SIGPIPE  # as a shell reports the default action's death
    assert out == native_out
    assert "still alive" not in out
