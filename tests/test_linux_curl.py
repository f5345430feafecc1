"""Debian's curl (dynamically linked: glibc, libcurl, OpenSSL...) in a VM, its sockets
outsourced under the host's policy, against real servers on the host."""

from __future__ import annotations

import errno
import shutil
from typing import Any

import pytest
import test_linux_net_busybox as net
from linux_support import TIMEOUT

from vmrpc.linux import LinuxVM
from vmrpc.sockets import TLS, Deny, Policy, Rule, SocketOutsourcing

pytestmark = pytest.mark.kvm

http_server = net.http_server
tls_material = net.tls_material


def curl(url: str, module: SocketOutsourcing) -> tuple[int, bytes, bytes]:
    program = shutil.which("curl")
    if program is None:
        pytest.fail("curl is missing: install it with `sudo apt-get install curl`")
    with LinuxVM(program, ["-sS", url], sockets=module, timeout=TIMEOUT) as vm:
        return vm.run(), vm.stdout, vm.stderr


def test_curl_fetches_from_a_host_server(http_server: net.HttpServer) -> None:
    code, out, err = curl(f"http://127.0.0.1:{http_server.port}/index", SocketOutsourcing())
    assert (code, out, err) == (0, net.BODY, b"")
    assert http_server.paths == ["/index"]


def test_curl_asks_http_and_the_wire_carries_tls(tls_material: dict[str, Any]) -> None:
    server = net.HttpServer(tls=tls_material["server"])
    try:
        rule = Rule(TLS(server_hostname="localhost", cafile=tls_material["ca"]), port=server.port)
        module = SocketOutsourcing(Policy([rule]))
        code, out, err = curl(f"http://127.0.0.1:{server.port}/secret", module)
    finally:
        server.close()
    assert (code, out, err) == (0, net.BODY, b"")
    assert server.paths == ["/secret"]  # the server speaks only TLS
    assert "tls-established" in [r.event for r in module.audit]


def test_curl_under_deny_reports_the_errno(http_server: net.HttpServer) -> None:
    module = SocketOutsourcing(Policy([Rule(Deny(errno.ECONNREFUSED), port=http_server.port)]))
    code, out, err = curl(f"http://127.0.0.1:{http_server.port}/", module)
    assert code == 7  # curl's "failed to connect"
    assert out == b""
    assert http_server.paths == []
    assert b"Failed to connect" in err
    assert module.stats["sockets_created"] == 0  # denied before any host socket existed
