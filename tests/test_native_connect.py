"""Which connects Python hands to the native connect (crates/vmm/src/sockfast/connect.rs),
and that it takes them back whenever a decision could change.

The native side's own behaviour (what it serves, hostile requests, limits) is tested
in Rust; tests/test_netbench.py runs it in a VM (counters and the audit log).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from vmrpc import _runtime
from vmrpc.sockets import TLS, Allow, Deny, Policy, Proxy, Rule, SocketOutsourcing, proto


class Recorder:
    """The module's native data plane, with its gate calls recorded."""

    def __init__(self, plane: Any) -> None:
        self._plane = plane
        self.allowed: list[bytes] = []
        self.forgets = 0

    def allow_plain(self, addr: bytes, decision: int) -> bool:
        self.allowed.append(addr)
        return bool(self._plane.allow_plain(addr, decision))

    def forget_plain(self) -> None:
        self.forgets += 1
        self._plane.forget_plain()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plane, name)


@pytest.fixture
def port() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def module_with(policy: Policy) -> tuple[SocketOutsourcing, Recorder]:
    module = SocketOutsourcing(policy, connect_timeout=0.5)
    recorder = Recorder(module.native_data_plane)
    module.native_data_plane = recorder  # type: ignore[assignment]
    return module, recorder


def connect(module: SocketOutsourcing, port: int) -> object:
    addr = (proto.AF_INET, port, 0, 0, bytes([127, 0, 0, 1]) + bytes(12))
    return module.rpc_connect(proto.CONNECT_REQ.pack(0, -1, proto.SOCK_STREAM, 0, *addr))


def test_a_plainly_allowed_connect_hands_its_exact_address_over(port: int) -> None:
    module, recorder = module_with(Policy([Rule(Allow(), dest="127.0.0.0/8")]))
    try:
        answer = connect(module, port)
        assert isinstance(answer, bytes)
        assert proto.RESP.unpack_from(answer)[0] == 0
        want = proto.ADDR.pack(proto.AF_INET, port, 0, 0, bytes([127, 0, 0, 1]) + bytes(12))
        assert recorder.allowed == [want]
    finally:
        module.close()


@pytest.mark.parametrize(
    "rule",
    [
        Rule(Deny(), dest="127.0.0.1"),
        Rule(TLS(), dest="127.0.0.1"),
        Rule(Proxy("socks5://127.0.0.1:9"), dest="127.0.0.1"),
        Rule(Allow(), dest="localhost"),  # by name: names may change the decision
    ],
)
def test_deny_tls_proxy_and_name_rules_are_never_handed_over(port: int, rule: Rule) -> None:
    module, recorder = module_with(Policy([rule]))
    try:
        answer = connect(module, port)
        if asyncio.iscoroutine(answer):  # TLS and the proxy wait on the loop: they fail
            asyncio.run_coroutine_threadsafe(answer, _runtime.loop()).result(10)
        assert recorder.allowed == []
    finally:
        module.close()


class EveryOtherConnect(Policy):
    """A policy of the user's own that decides by count, not by address."""

    def __init__(self) -> None:
        super().__init__([Rule(Allow(), dest="127.0.0.0/8")])
        self.asked = 0

    def decide(self, flow: Any) -> Any:
        self.asked += 1
        return super().decide(flow) if self.asked % 2 else (None, Deny())


def test_a_policy_that_decides_otherwise_is_asked_about_every_connect(port: int) -> None:
    policy = EveryOtherConnect()
    module, recorder = module_with(policy)
    try:
        assert proto.RESP.unpack_from(connect(module, port))[0] == 0  # type: ignore[arg-type]
        assert recorder.allowed == []
        assert proto.RESP.unpack_from(connect(module, port))[0] != 0  # type: ignore[arg-type]
        assert policy.asked == 2
    finally:
        module.close()


def test_every_change_a_decision_depends_on_takes_the_destinations_back(port: int) -> None:
    policy = Policy([Rule(Allow(), dest="127.0.0.0/8")])
    module, recorder = module_with(policy)
    try:
        policy.rules = (Rule(Deny(), dest="127.0.0.1"),)
        assert recorder.forgets == 1
        module.policy = Policy()
        assert recorder.forgets == 2
        module._names.remember("example.invalid", [proto.Addr(proto.AF_INET, "127.0.0.1", 0)])
        assert recorder.forgets == 3
        policy.rules = ()  # the old policy: still told, harmless
        assert recorder.forgets == 4
    finally:
        module.close()


def test_a_change_between_decision_and_hand_over_wins(port: int) -> None:
    module, recorder = module_with(Policy())
    try:
        generation = module._plain_generation
        module.forget_native()  # e.g. the policy changed on another thread meanwhile
        addr = proto.Addr(proto.AF_INET, "127.0.0.1", port)
        module._allow_native(addr, (None, None, Allow()), generation)  # type: ignore[arg-type]
        assert recorder.allowed == []
    finally:
        module.close()


def _started_toward(port: int) -> tuple[int, int]:
    """A connect begun the native path's way: a non-blocking socket, its errno."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    err = sock.connect_ex(("127.0.0.1", port))
    return sock.detach(), err


def _connect_req(port: int) -> proto.ConnectReq:
    addr = proto.Addr(proto.AF_INET, "127.0.0.1", port)
    return proto.ConnectReq(0, None, addr, proto.SOCK_STREAM)


def test_a_connect_the_native_path_started_is_waited_for_by_python(port: int) -> None:
    """The hand-over (a connect not finished at once): Python goes on with the very
    socket, records the decision and counts the socket, as for its own."""
    module, _ = module_with(Policy())
    try:
        answer = module._connect(_connect_req(port), _started_toward(port))
        if asyncio.iscoroutine(answer):
            answer = asyncio.run_coroutine_threadsafe(answer, _runtime.loop()).result(10)
        assert isinstance(answer, bytes)
        result, handle = proto.RESP.unpack_from(answer)
        assert (result, handle > 0) == (0, True)
        assert module.stats["sockets_created"] == 1
        assert [r.event for r in module.audit] == ["connect"]
        assert module._entry(handle).ready
    finally:
        module.close()


def test_a_started_connect_the_policy_now_denies_is_closed() -> None:
    module, _ = module_with(Policy([Rule(Deny(), dest="127.0.0.1")]))
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        try:
            answer = module._connect(_connect_req(port), _started_toward(port))
            assert isinstance(answer, bytes)
            assert proto.RESP.unpack_from(answer)[0] < 0
            assert module.stats["sockets_open"] == 0
            peer, _ = server.accept()  # the connect had reached the listener
            with peer:
                peer.settimeout(10)
                assert peer.recv(1) == b""  # and was closed, not leaked
        finally:
            module.close()
