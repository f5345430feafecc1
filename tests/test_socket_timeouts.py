"""Issue 13.14: a guest's connect follows its timeouts, handshakes included.

The peers accept and then say nothing: a SOCKS5 proxy that never answers the
greeting, a "TLS server" that never answers the ClientHello. The guest's connect
must end with ETIMEDOUT when its ``SO_SNDTIMEO`` (or the module's
``connect_timeout``) runs out, not after the old fixed 75 s.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Iterator

import pytest
from test_sockets import TcpServer, guest_errno

from vmrpc.sockets import TLS, Policy, Proxy, Rule, SocketOutsourcing

from conftest import VmFactory

SHORT_MS = 300
# Each case must end long before this; a connect that ignores the timeouts would
# take 75 s (TLS: 15 s) and fail here.
RUN_LIMIT_S = 10


@pytest.fixture
def silent_server() -> Iterator[TcpServer]:
    """Accepts and never says a word until the test ends."""
    release = threading.Event()

    def hold(conn: socket.socket) -> None:
        release.wait(RUN_LIMIT_S * 2)

    server = TcpServer(hold)
    yield server
    release.set()
    server.close()


def rule_for(route: str, server: TcpServer) -> tuple[Rule, int]:
    """A rule that sends the guest's connect to port 9 through the silent server."""
    if route == "socks5":
        return Rule(Proxy(f"socks5://127.0.0.1:{server.port}"), port=9), 9
    return Rule(TLS(server_hostname="localhost"), port=server.port), server.port


@pytest.mark.kvm
@pytest.mark.parametrize("route", ["socks5", "tls"])
@pytest.mark.parametrize("limit", ["SO_SNDTIMEO", "connect_timeout"])
def test_connect_through_a_silent_peer_times_out(
    vm_factory: VmFactory, silent_server: TcpServer, route: str, limit: str
) -> None:
    rule, port = rule_for(route, silent_server)
    args = ["127.0.0.1", str(port), "16", "1"]
    if limit == "SO_SNDTIMEO":
        module = SocketOutsourcing(Policy([rule]))
        args.append(str(SHORT_MS))
    else:
        module = SocketOutsourcing(Policy([rule]), connect_timeout=SHORT_MS / 1000)
    vm = vm_factory("tcp_echo_client", args=args, modules=[module])
    assert vm.run(timeout=RUN_LIMIT_S) == 2, vm.console
    assert "connect failed" in vm.console
    assert guest_errno(vm.console) == errno.ETIMEDOUT
    assert silent_server.accepted == 1
    failed = [r for r in module.audit if r.event.endswith("-failed")]
    assert [r.errno for r in failed] == [errno.ETIMEDOUT]
    assert module.stats["sockets_open"] == 0


def test_connect_timeout_must_be_positive_and_finite() -> None:
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="connect_timeout"):
            SocketOutsourcing(connect_timeout=bad)
