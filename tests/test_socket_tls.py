"""Issue 15.3: forced TLS, checked byte by byte at the peer.

For each case the guest (tcp_echo_client) connects under a TLS rule, directly and
through a real SOCKS5 proxy (pproxy, with ``Proxy(..., tls=TLS(...))``), and the peer
records every byte it receives. Each must fail with EPROTO and the peer must never
see the guest's payload:

- a raw TCP listener (`ByteWitness`): the first byte is 0x16, a TLS handshake record;
- a TLS server whose certificate (from the trusted CA) names another host;
- a plain TCP server that answers like an HTTP server (not a TLS record).

The peer's bytes are checked before the guest's answer, so each wire check can fail
on its own. Mutants seen to fail (applied by hand): ``check_hostname = False`` fails the
wrong-name case; no TLS at all (``_tls`` returning at once) fails the raw-listener and
plain-server cases on their first-byte checks.
"""

from __future__ import annotations

import errno
import socket
import time
from dataclasses import dataclass
from typing import Any

import pytest
import test_sockets
from test_sockets import ByteWitness, TcpServer, guest_errno

from vmrpc.sockets import TLS, TLS_ERRNO, Policy, Proxy, Rule, SocketOutsourcing

from conftest import VmFactory

socks_proxy = test_sockets.socks_proxy
tls_material = test_sockets.tls_material

SIZE = 64
# What tcp_echo_client sends first (its pattern for round 0).
PAYLOAD = bytes((i * 7 + 1) & 0xFF for i in range(SIZE))


def tls_rule(route: str, port: int, config: TLS, request: pytest.FixtureRequest) -> Rule:
    if route == "direct":
        return Rule(config, port=port)
    proxy_port, _ = request.getfixturevalue("socks_proxy")
    return Rule(Proxy(f"socks5://127.0.0.1:{proxy_port}", tls=config), port=port)


@dataclass
class Attempt:
    """How the guest's connect under TLS ended, for checks after the peer's."""

    code: int
    console: str
    module: SocketOutsourcing


def connect_under_tls(
    vm_factory: VmFactory, ca: str, route: str, request: pytest.FixtureRequest, port: int
) -> Attempt:
    """The guest connects to ``port`` under TLS for "localhost" and sends its payload
    if that succeeds."""
    config = TLS(server_hostname="localhost", cafile=ca)
    module = SocketOutsourcing(Policy([tls_rule(route, port, config, request)]))
    vm = vm_factory("tcp_echo_client", args=["127.0.0.1", str(port), str(SIZE)], modules=[module])
    attempt = Attempt(vm.run(), vm.console, module)
    # Closing the VM closes any host socket it still has, so the peer sees every
    # connection end even when the connect wrongly succeeded.
    vm.close()
    return attempt


def assert_eproto(attempt: Attempt) -> None:
    """The guest's connect failed with EPROTO, audited, with no socket left open."""
    assert attempt.code == 2, attempt.console
    assert "connect failed" in attempt.console
    assert guest_errno(attempt.console) == TLS_ERRNO == errno.EPROTO
    assert [r.event for r in attempt.module.audit] == ["connect", "tls-failed"]
    assert attempt.module.stats["sockets_open"] == 0


class Recorder(TcpServer):
    """A server that records what its handler receives (after TLS, if wrapped). It
    echoes every chunk, or, given ``reply``, answers the first chunk with it and
    closes, as an HTTP server does after a 400 (so a client waiting for more ends)."""

    def __init__(self, *, reply: bytes | None = None, wrap: Any = None) -> None:
        self.received: list[bytes] = []
        self.reply = reply
        super().__init__(self._respond, wrap=wrap)

    def _respond(self, conn: socket.socket) -> None:
        data = b""
        try:
            while chunk := conn.recv(65536):
                data += chunk
                conn.sendall(chunk if self.reply is None else self.reply)
                if self.reply is not None:
                    break
        except ConnectionError:  # the client gave up on our answer: fine
            pass
        finally:
            self.received.append(data)

    def wait_done(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) + len(self.errors) < self.accepted:
            assert time.monotonic() < deadline, "server did not finish"
            time.sleep(0.01)


ROUTES = ["direct", "socks5"]


@pytest.mark.kvm
@pytest.mark.parametrize("route", ROUTES)
def test_raw_listener_sees_a_client_hello_first_and_never_the_payload(
    vm_factory: VmFactory, tls_material: dict[str, Any], route: str, request: pytest.FixtureRequest
) -> None:
    witness = ByteWitness()
    try:
        attempt = connect_under_tls(vm_factory, tls_material["ca"], route, request, witness.port)
        [record] = witness.wait_records()
        assert record[:1] == b"\x16"  # TLS record type: handshake
        assert record[1:2] == b"\x03"  # TLS major version
        assert PAYLOAD[:8] not in record
        assert_eproto(attempt)
    finally:
        witness.close()


@pytest.mark.kvm
@pytest.mark.parametrize("route", ROUTES)
def test_certificate_for_another_name_is_eproto(
    vm_factory: VmFactory, tls_material: dict[str, Any], route: str, request: pytest.FixtureRequest
) -> None:
    server = Recorder(wrap=tls_material["other_name_server"])
    try:
        attempt = connect_under_tls(vm_factory, tls_material["ca"], route, request, server.port)
        server.wait_done()
        assert server.received == []  # no handshake, so not one byte of application data
        assert server.errors  # the server saw the client abort its handshake
        assert_eproto(attempt)
        assert "hostname" in attempt.module.audit[-1].detail.lower(), attempt.module.audit[-1]
        # Control: the same server and CA, asked for the name it has, work.
        config = TLS(server_hostname="other.test", cafile=tls_material["ca"])
        module = SocketOutsourcing(Policy([tls_rule(route, server.port, config, request)]))
        vm = vm_factory(
            "tcp_echo_client", args=["127.0.0.1", str(server.port), str(SIZE)], modules=[module]
        )
        assert vm.run() == 0, vm.console
        server.wait_done()
        assert server.received == [PAYLOAD]
    finally:
        server.close()


@pytest.mark.kvm
@pytest.mark.parametrize("route", ROUTES)
def test_plain_tcp_server_is_eproto(
    vm_factory: VmFactory, tls_material: dict[str, Any], route: str, request: pytest.FixtureRequest
) -> None:
    server = Recorder(reply=b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    try:
        attempt = connect_under_tls(vm_factory, tls_material["ca"], route, request, server.port)
        server.wait_done()
        [received] = server.received
        assert received[:1] == b"\x16"
        assert PAYLOAD[:8] not in received
        assert_eproto(attempt)
    finally:
        server.close()


def test_proxy_tls_must_be_a_tls_action() -> None:
    with pytest.raises(TypeError, match="TLS"):
        Proxy("socks5://127.0.0.1:1080", tls="yes")  # type: ignore[arg-type]
