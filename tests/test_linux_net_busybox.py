"""Debian's busybox-static in the VM with real network peers, under the host policy.

The original design's example end to end: `busybox wget` speaks plain HTTP while
the policy forces TLS (the wire carries TLS to a real TLS server), denies, or
routes through a real SOCKS5 proxy (pproxy); `busybox nc` both ways. Names go
through the VM's resolver (glibc's static resolver, /etc/resolv.conf) to the host.
"""

from __future__ import annotations

import errno
import http.server
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_sockets
from linux_support import TIMEOUT, require_busybox

from vmrpc.linux import LinuxVM, Mount
from vmrpc.sockets import TLS, Deny, Expose, Policy, Proxy, Rule, SocketOutsourcing

pytestmark = pytest.mark.kvm

#: A real SOCKS5 server (pproxy), shared with the bare guests' socket tests.
socks_proxy = test_sockets.socks_proxy

BODY = b"<html>hello from the host</html>\n" * 8


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    paths: list[str]

    def do_GET(self) -> None:
        self.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HttpServer:
    """An HTTP (or, with ``tls``, HTTPS) server on 127.0.0.1 recording the paths asked."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.paths: list[str] = []
        handler = type("Handler", (_Handler,), {"paths": self.paths})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    server = HttpServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    trustme = pytest.importorskip("trustme")
    ca, other_ca = trustme.CA(), trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    directory = tmp_path_factory.mktemp("tls")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    other_ca.cert_pem.write_to_path(str(directory / "other-ca.pem"))
    return {
        "server": server_ctx,
        "ca": str(directory / "ca.pem"),
        "wrong_ca": str(directory / "other-ca.pem"),
    }


@pytest.fixture
def etc_without_localhost(tmp_path: Path) -> Mount:
    """An /etc whose hosts file is empty: every name goes to the VM's resolver."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "hosts").write_text("")
    (etc / "resolv.conf").write_text("nameserver 127.0.0.53\n")
    (etc / "nsswitch.conf").write_text("hosts: files dns\n")
    return Mount(etc, "/etc", readonly=True)


def wget(url: str, module: SocketOutsourcing, **kwargs: Any) -> tuple[int, bytes, str]:
    busybox = require_busybox()
    with LinuxVM(
        busybox, ["wget", "-q", "-O", "-", url], sockets=module, timeout=TIMEOUT, **kwargs
    ) as vm:
        code = vm.run()
        return code, vm.stdout, vm.stderr.decode()


def test_wget_by_name_through_the_vms_resolver(
    http_server: HttpServer, etc_without_localhost: Mount
) -> None:
    module = SocketOutsourcing()
    code, out, err = wget(
        f"http://localhost:{http_server.port}/by-name", module, mounts=[etc_without_localhost]
    )
    assert (code, out, err) == (0, BODY, "")
    assert http_server.paths == ["/by-name"]
    assert module.stats["rpc.getaddrinfo"] >= 1  # the name went to the host's resolver
    # ...and the module knows it: name rules apply to the connection.
    [connect] = [r for r in module.audit if r.event == "connect"]
    assert connect.flow == f"outbound tcp 127.0.0.1:{http_server.port} (localhost)"


def test_wget_by_a_name_from_etc_hosts(http_server: HttpServer) -> None:
    module = SocketOutsourcing()
    code, out, _ = wget(
        f"http://web.test:{http_server.port}/hosts", module, hosts={"web.test": "127.0.0.1"}
    )
    assert (code, out) == (0, BODY)
    assert http_server.paths == ["/hosts"]
    assert "rpc.getaddrinfo" not in module.stats  # answered from /etc/hosts


def test_unknown_name_is_an_error_not_a_hang(etc_without_localhost: Mount) -> None:
    code, out, err = wget(
        "http://no-such-host.invalid:80/", SocketOutsourcing(), mounts=[etc_without_localhost]
    )
    assert code == 1
    assert out == b""
    assert "bad address 'no-such-host.invalid:80'" in err


def test_wget_plain_http_carried_over_forced_tls(
    tls_material: dict[str, Any], etc_without_localhost: Mount
) -> None:
    server = HttpServer(tls=tls_material["server"])
    try:
        # A rule by name: it matches because the name came through the VM's resolver.
        rule = Rule(TLS(server_hostname="localhost", cafile=tls_material["ca"]), dest="localhost")
        module = SocketOutsourcing(Policy([rule]))
        code, out, err = wget(
            f"http://localhost:{server.port}/secret", module, mounts=[etc_without_localhost]
        )
        assert (code, out, err) == (0, BODY, "")
        assert server.paths == ["/secret"]  # the server only speaks TLS: the wire was TLS
        assert [r.event for r in module.audit] == ["bind", "connect", "tls-established"]
    finally:
        server.close()


def test_forced_tls_with_a_bad_certificate_is_an_error_never_plaintext(
    tls_material: dict[str, Any],
) -> None:
    server = HttpServer(tls=tls_material["server"])
    try:
        rule = Rule(TLS(server_hostname="localhost", cafile=tls_material["wrong_ca"]))
        module = SocketOutsourcing(Policy([rule]))
        code, out, err = wget(f"http://127.0.0.1:{server.port}/secret", module)
    finally:
        server.close()
    assert (code, out) == (1, b"")
    assert os.strerror(errno.EPROTO) in err  # TLS_ERRNO, in the program's error message
    assert server.paths == []  # no request reached the server, in clear or otherwise
    [failed] = [r for r in module.audit if r.event == "tls-failed"]
    assert "certificate" in failed.detail.lower()


def test_wget_under_deny_shows_the_errno(http_server: HttpServer) -> None:
    module = SocketOutsourcing(Policy([Rule(Deny(errno.EACCES), port=http_server.port)]))
    code, out, err = wget(f"http://127.0.0.1:{http_server.port}/", module)
    assert (code, out) == (1, b"")
    assert os.strerror(errno.EACCES) in err
    assert http_server.paths == []
    assert module.stats["sockets_created"] == 0


def test_wget_through_a_socks5_proxy(
    http_server: HttpServer, socks_proxy: tuple[int, subprocess.Popen[bytes]]
) -> None:
    proxy_port, proc = socks_proxy
    policy = Policy([Rule(Proxy(f"socks5://127.0.0.1:{proxy_port}"), port=http_server.port)])
    url = f"http://127.0.0.1:{http_server.port}/proxied"
    module = SocketOutsourcing(policy)
    assert wget(url, module)[:2] == (0, BODY)
    assert [r.action for r in module.audit] == ["Proxy"]
    # The route really is the proxy: without it the same fetch fails.
    proc.kill()
    proc.wait(10)
    code, _, err = wget(url, SocketOutsourcing(policy))
    assert code == 1
    assert os.strerror(errno.ECONNREFUSED) in err
    assert http_server.paths == ["/proxied"]


@pytest.fixture
def socks_proxy_login() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """pproxy requiring the username "alice" and the password "s3cret:/@"."""
    yield from test_sockets.run_pproxy("alice:s3cret:/@")


@pytest.mark.parametrize(
    ("credentials", "fetched"),
    [("alice:s3cret%3A%2F%40@", True), ("alice:wrong@", False), ("", False)],
)
def test_wget_through_a_socks5_proxy_that_requires_a_login(
    http_server: HttpServer,
    socks_proxy_login: tuple[int, subprocess.Popen[bytes]],
    credentials: str,
    fetched: bool,
) -> None:
    # The rule's URL carries the login (percent-escaped); the program knows nothing of it.
    proxy_port, _ = socks_proxy_login
    rule = Rule(Proxy(f"socks5://{credentials}127.0.0.1:{proxy_port}"), port=http_server.port)
    module = SocketOutsourcing(Policy([rule]))
    code, out, err = wget(f"http://127.0.0.1:{http_server.port}/login", module)
    if fetched:
        assert (code, out) == (0, BODY)
        assert http_server.paths == ["/login"]
    else:
        assert (code, out) == (1, b"")
        # A wrong password is EACCES. Offered no login, pproxy hangs up rather than
        # answering "no acceptable method", which reads as a refused connection.
        expected = errno.EACCES if credentials else errno.ECONNREFUSED
        assert os.strerror(expected) in err
        assert http_server.paths == []
        assert [r.event for r in module.audit][-1] == "proxy-failed"


def test_proxy_repr_hides_the_password() -> None:
    proxy = Proxy("socks5://alice:s3cret@127.0.0.1:1080")
    assert (proxy.username, proxy.password) == (b"alice", b"s3cret")
    assert "s3cret" not in repr(proxy)
    with pytest.raises(ValueError, match="1-255 bytes"):
        Proxy("socks5://alice:@127.0.0.1:1080")


def test_nc_to_a_host_server() -> None:
    received: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            received.append(data)
            conn.sendall(b"host got " + data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    busybox = require_busybox()
    port = str(listener.getsockname()[1])
    try:
        with LinuxVM(
            busybox,
            ["nc", "127.0.0.1", port],
            stdin=b"from the guest\n",
            sockets=SocketOutsourcing(),
        ) as vm:
            assert vm.run(TIMEOUT) == 0
            assert vm.stdout == b"host got from the guest\n"
    finally:
        listener.close()
        thread.join(TIMEOUT)
    assert received == [b"from the guest\n"]


def test_nc_listening_in_the_guest_exposed_to_the_host() -> None:
    module = SocketOutsourcing(Policy([Rule(Expose(host="127.0.0.1", port=0), port=8080)]))
    with LinuxVM(require_busybox(), ["nc", "-l", "-p", "8080"], sockets=module) as vm:
        vm.start()
        host, port = module.wait_exposed(8080, timeout=TIMEOUT)
        with socket.create_connection((host, port), timeout=TIMEOUT) as client:
            client.sendall(b"from the host\n")
            client.shutdown(socket.SHUT_WR)
        assert vm.wait(TIMEOUT) == 0
        assert vm.stdout == b"from the host\n"
    [listen] = [r for r in module.audit if r.event == "listen"]
    assert listen.action == "Expose"
