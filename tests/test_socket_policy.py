"""Issue 13.2-13.4: the policy decides on the address the host kernel will use.

Unit and property tests of `canonicalize` and name rules, then real guests that try
the spellings of issue 13 against real listeners: IPv4-mapped IPv6, the unspecified
addresses, UDP, a TLS rule reached through a mapped address, and a name rule reached
by address.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_sockets import ByteWitness, TcpServer, echo, guest_errno, ipv6_unavailable, udp_echo

from vmrpc.sockets import (
    TLS,
    TLS_ERRNO,
    Allow,
    Deny,
    Expose,
    Flow,
    Policy,
    Rule,
    SocketOutsourcing,
    canonicalize,
)

from conftest import VmFactory

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address

# ---- canonicalize (no KVM) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "kernel"),
    [
        ("127.0.0.2", "127.0.0.2"),
        ("::ffff:127.0.0.2", "127.0.0.2"),
        ("::ffff:7f00:2", "127.0.0.2"),
        ("0:0:0:0:0:ffff:7f00:0002", "127.0.0.2"),
        ("::127.0.0.2", "127.0.0.2"),  # IPv4-compatible
        ("0.0.0.0", "127.0.0.1"),
        ("::ffff:0.0.0.0", "127.0.0.1"),
        ("::", "::1"),
        ("::1", "::1"),
        ("0:0::1", "::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("10.1.2.3", "10.1.2.3"),
    ],
)
def test_canonicalize_outbound(spelling: str, kernel: str) -> None:
    assert canonicalize(spelling) == ipaddress.ip_address(kernel)


def test_canonicalize_inbound_keeps_the_wildcard() -> None:
    assert canonicalize("0.0.0.0", "inbound") == V4("0.0.0.0")
    assert canonicalize("::", "inbound") == V6("::")
    assert canonicalize("::ffff:0.0.0.0", "inbound") == V4("0.0.0.0")
    # Inbound rules still see the wildcard listen as the wildcard.
    policy = Policy([Rule(Expose(), dest="0.0.0.0")])
    assert policy.decide(Flow("inbound", "tcp", "::ffff:0.0.0.0", 80))[0] == 0
    assert policy.decide(Flow("inbound", "tcp", "127.0.0.1", 80)) == (None, None)


def test_flow_describes_both_spellings() -> None:
    flow = Flow("outbound", "tcp", "::ffff:127.0.0.2", 80)
    assert flow.describe() == "outbound tcp [::ffff:127.0.0.2]:80 = 127.0.0.2"
    assert Flow("outbound", "tcp", "10.0.0.1", 80).describe() == "outbound tcp 10.0.0.1:80"


def spellings(ip: V4 | V6) -> list[str]:
    """Every spelling of one destination the guest can send (the host receives bytes,
    so the text forms of one byte string are one spelling; these are different bytes)."""
    kernel = canonicalize(ip)
    if isinstance(kernel, V6):
        out = [str(kernel), kernel.exploded]
        if kernel == V6("::1"):
            out.append("::")
        return out
    n = int(kernel)
    out = [str(kernel), f"::ffff:{kernel}", f"::ffff:{n >> 16:x}:{n & 0xFFFF:x}"]
    if n > 1:  # ::0.0.0.1 is ::1, ::0.0.0.0 is ::
        out.append(f"::{kernel}")
    if kernel == V4("127.0.0.1"):
        out += ["0.0.0.0", "::ffff:0.0.0.0"]
    return out


addresses = st.one_of(
    st.integers(0, 2**32 - 1).map(V4),
    st.sampled_from([V4("127.0.0.1"), V4("127.0.0.2"), V4("0.0.0.0"), V4("10.9.8.7")]),
    st.sampled_from([V6("::1"), V6("::"), V6("2001:db8::5"), V6("fe80::1")]),
    st.integers(0, 2**128 - 1).map(V6),
)
rule_dests = st.sampled_from(
    [
        "127.0.0.0/8",
        "127.0.0.2",
        "::ffff:127.0.0.2",
        "::ffff:127.0.0.0/104",
        "0.0.0.0",
        "::",
        "::1",
        "10.0.0.0/8",
        "::ffff:10.0.0.0/104",
        "2001:db8::/32",
        "0.0.0.0/0",
        "::/0",
        "localhost",
    ]
)
rules = st.lists(
    st.builds(
        Rule,
        st.sampled_from([Allow(), Deny(errno.EACCES), Deny(errno.EPERM)]),
        dest=rule_dests,
    ),
    min_size=1,
    max_size=5,
)


def localhost(name: str) -> Iterable[str]:
    return ["127.0.0.1", "::1"] if name == "localhost" else []


@given(address=addresses, rule_list=rules, protocol=st.sampled_from(["tcp", "udp"]))
def test_every_spelling_of_an_address_gets_one_decision(
    address: V4 | V6, rule_list: list[Rule], protocol: str
) -> None:
    policy = Policy(rule_list, resolver=localhost)
    forms = spellings(address)
    decisions = {
        form: policy.decide(Flow("outbound", protocol, form, 443))  # type: ignore[arg-type]
        for form in forms
    }
    assert len(set(decisions.values())) == 1, decisions


@given(address=addresses, other=addresses, data=st.data())
def test_every_spelling_of_a_rule_address_gets_one_decision(
    address: V4 | V6, other: V4 | V6, data: st.DataObject
) -> None:
    """The rule side: a rule written with any spelling of an address (or of an IPv4
    network in mapped form) decides like the plain one, for any flow."""
    flow_address = data.draw(st.sampled_from([address, other]))
    flows = [Flow("outbound", "tcp", form, 80) for form in spellings(flow_address)]
    decisions = set()
    for form in spellings(address):
        policy = Policy([Rule(Deny(), dest=form)])
        decisions.add(tuple(policy.decide(f)[0] for f in flows))
    assert len(decisions) == 1, decisions
    if isinstance(address, V4):
        prefix = data.draw(st.integers(0, 32))
        net = ipaddress.IPv4Network((int(address), prefix), strict=False)
        mapped = f"::ffff:{net.network_address}/{prefix + 96}"
        plain, spelled = Policy([Rule(Deny(), dest=str(net))]), Policy([Rule(Deny(), dest=mapped)])
        for f in flows:
            assert plain.decide(f) == spelled.decide(f), (net, mapped, f)


def test_v4_rules_match_v4_and_v6_rules_match_v6_after_canonicalization() -> None:
    policy = Policy([Rule(Deny(), dest="::/0"), Rule(Deny(errno.EPERM), dest="0.0.0.0/0")])
    # A mapped address is IPv4: the IPv6-everything rule does not take it.
    assert policy.decide(Flow("outbound", "tcp", "::ffff:1.2.3.4", 80))[0] == 1
    assert policy.decide(Flow("outbound", "tcp", "2001:db8::1", 80))[0] == 0


# ---- name rules (no KVM) ----------------------------------------------------------------


def test_name_rule_matches_the_addresses_the_name_resolves_to() -> None:
    answers = {"svc.test": ["192.0.2.7", "2001:db8::7"]}
    policy = Policy(
        [Rule(Deny(errno.EACCES), dest="svc.test")], resolver=lambda n: answers.get(n, [])
    )
    for address in ("192.0.2.7", "::ffff:192.0.2.7", "2001:db8::7"):
        assert policy.decide(Flow("outbound", "tcp", address, 80))[0] == 0, address
    assert policy.decide(Flow("outbound", "tcp", "192.0.2.8", 80)) == (None, Allow())
    # A new resolution moves the rule with the name.
    answers["svc.test"] = ["192.0.2.8"]
    policy.resolve_names()
    assert policy.decide(Flow("outbound", "tcp", "192.0.2.7", 80)) == (None, Allow())
    assert policy.decide(Flow("outbound", "tcp", "192.0.2.8", 80))[0] == 0


def test_name_that_fails_to_resolve_keeps_its_last_answer() -> None:
    calls: list[str] = []

    def resolver(name: str) -> list[str]:
        calls.append(name)
        if len(calls) > 1:
            raise socket.gaierror(socket.EAI_AGAIN, "temporary failure")
        return ["192.0.2.9"]

    policy = Policy([Rule(Deny(), dest="flaky.test")], resolver=resolver)
    assert policy.decide(Flow("outbound", "tcp", "192.0.2.9", 1))[0] == 0
    policy.resolve_names()
    assert calls == ["flaky.test", "flaky.test"]
    assert policy.decide(Flow("outbound", "tcp", "192.0.2.9", 1))[0] == 0


def test_stale_names_are_refreshed_in_the_background() -> None:
    answers = ["192.0.2.1"]
    entered, release = threading.Event(), threading.Event()

    def resolver(name: str) -> list[str]:
        if answers == ["192.0.2.2"]:  # the refresh: hold it until the test lets go
            entered.set()
            assert release.wait(10)
        return list(answers)

    policy = Policy([Rule(Deny(), dest="moving.test")], name_ttl=0, resolver=resolver)
    assert policy.decide(Flow("outbound", "tcp", "192.0.2.1", 1))[0] == 0  # resolves now
    answers[:] = ["192.0.2.2"]
    # Stale (ttl 0): this decision starts a refresh and, without waiting for it, uses
    # the old answer.
    assert policy.decide(Flow("outbound", "tcp", "192.0.2.1", 1))[0] == 0
    assert entered.wait(10)
    assert policy.decide(Flow("outbound", "tcp", "192.0.2.2", 1)) == (None, Allow())
    release.set()
    # The refresh publishes before its thread ends: wait for the thread, not for time
    # (a bounded poll here failed on a loaded machine).
    for thread in threading.enumerate():
        if thread.name == "vmrpc-policy-names":
            thread.join(10)
    assert policy.decide(Flow("outbound", "tcp", "192.0.2.2", 1))[0] == 0
    assert policy.decide(Flow("outbound", "tcp", "192.0.2.1", 1)) == (None, Allow())


def test_wildcard_names_are_not_resolved() -> None:
    calls: list[str] = []
    policy = Policy([Rule(Deny(), dest="*.test")], resolver=lambda n: calls.append(n) or [])
    policy.resolve_names()
    assert calls == []
    assert policy.decide(Flow("outbound", "tcp", "192.0.2.1", 1)) == (None, Allow())
    named = Flow("outbound", "tcp", "192.0.2.1", 1, frozenset({"a.test"}))
    assert policy.decide(named)[0] == 0


def test_localhost_rule_with_the_host_resolver() -> None:
    policy = Policy([Rule(Deny(), dest="localhost")])
    assert policy.decide(Flow("outbound", "tcp", "127.0.0.1", 80))[0] == 0
    assert policy.decide(Flow("outbound", "tcp", "0.0.0.0", 80))[0] == 0
    # Denying a name (or an address) says nothing about other loopback addresses:
    # 127.0.0.3 still reaches a listener bound to 0.0.0.0.
    assert policy.decide(Flow("outbound", "tcp", "127.0.0.3", 80)) == (None, Allow())


# ---- real guests -------------------------------------------------------------------------


@pytest.mark.kvm
@pytest.mark.parametrize(
    ("rules", "listen", "target"),
    [
        (["127.0.0.2"], "127.0.0.2", "::ffff:127.0.0.2"),
        (["127.0.0.0/8"], "127.0.0.2", "::ffff:7f00:2"),
        (["127.0.0.0/8", "::1"], "0.0.0.0", "0.0.0.0"),
        (["127.0.0.0/8", "::1"], "::", "::"),
        (["localhost"], "0.0.0.0", "127.0.0.1"),
    ],
)
def test_denied_address_is_denied_in_every_spelling(
    vm_factory: VmFactory, rules: list[str], listen: str, target: str
) -> None:
    if ":" in listen or ":" in target:
        reason = ipv6_unavailable()
        if reason:
            pytest.skip(reason)
    server = TcpServer(echo, host=listen)
    try:
        # Without the rule the guest really reaches the listener by that spelling.
        module = SocketOutsourcing()
        args = [target, str(server.port), "100"]
        vm = vm_factory("tcp_echo_client", args=args, modules=[module])
        assert vm.run() == 0, vm.console
        assert server.accepted == 1
        module = SocketOutsourcing(Policy([Rule(Deny(errno.EACCES), dest=rules)]))
        vm = vm_factory("tcp_echo_client", args=args, modules=[module])
        assert vm.run() == 2, vm.console
        assert "connect failed" in vm.console
        assert guest_errno(vm.console) == errno.EACCES
        assert server.accepted == 1
        [record] = module.audit
        assert record.action == "Deny"
        assert record.rule == 0
    finally:
        server.close()


@pytest.mark.kvm
@pytest.mark.parametrize(("target", "listen"), [("::ffff:127.0.0.2", "0.0.0.0"), ("::", "::")])
def test_udp_deny_in_every_spelling(vm_factory: VmFactory, target: str, listen: str) -> None:
    reason = ipv6_unavailable()
    if reason:
        pytest.skip(reason)
    with udp_echo(listen) as (port, sizes):
        module = SocketOutsourcing()
        vm = vm_factory("udp_echo", args=[target, str(port), "2", "64"], modules=[module])
        assert vm.run() == 0, vm.console  # the spelling reaches the server
        assert sizes == [64, 64]
        policy = Policy([Rule(Deny(errno.EPERM), dest=["127.0.0.0/8", "::1"])])
        module = SocketOutsourcing(policy)
        vm = vm_factory("udp_echo", args=[target, str(port), "2", "64"], modules=[module])
        assert vm.run() == 2, vm.console
        assert guest_errno(vm.console) == errno.EPERM
        assert sizes == [64, 64]


@pytest.mark.kvm
def test_tls_rule_reached_through_a_mapped_address_still_does_tls(vm_factory: VmFactory) -> None:
    reason = ipv6_unavailable()
    if reason:
        pytest.skip(reason)
    witness = ByteWitness(host="::")  # dual stack: takes 127.0.0.2 too
    try:
        module = SocketOutsourcing(Policy([Rule(TLS(), dest="127.0.0.2")]))
        args = ["::ffff:127.0.0.2", str(witness.port), "100"]
        vm = vm_factory("tcp_echo_client", args=args, modules=[module])
        assert vm.run() == 2, vm.console
        assert guest_errno(vm.console) == TLS_ERRNO
        [record] = witness.wait_records()
        assert record.startswith(b"\x16")  # a TLS ClientHello, not the guest's bytes
        assert [r.event for r in module.audit] == ["connect", "tls-failed"]
    finally:
        witness.close()
