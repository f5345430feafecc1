"""The C network benchmark works (benches/net/netbench.c, benches/_netbench.py).

Tiny sizes, no timing: the client runs in a `LinuxVM` (and natively) against the native
C server, through the same helpers benches/sockets.py uses, and what it reports must be
right: every byte counted on both ends, the data intact both ways (the server and the
client check the pattern), every 1-byte echo the byte sent, every connection answered.
"""

from __future__ import annotations

import dataclasses
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from linux_support import INSTALL_HINT

from vmrpc.linux import LinuxVM
from vmrpc.sockets import Allow, Deny, Policy, Rule, SocketOutsourcing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benches"))

import _netbench as nb

pytestmark = pytest.mark.kvm

#: Not a multiple of the program's 64 KiB chunk nor of its 251-byte pattern period.
BYTES = 300_007


@pytest.fixture(scope="module")
def exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return nb.build(tmp_path_factory.mktemp("netbench"))
    except nb.NetbenchError as e:
        pytest.fail(f"{e}; {INSTALL_HINT}")


@pytest.fixture(scope="module")
def port(exe: Path) -> Iterator[int]:
    with nb.server(exe) as p:
        yield p


def test_send_reaches_the_server_intact(exe: Path, port: int) -> None:
    got, stats = nb.in_vm(exe, "send", str(port), str(BYTES), "check")
    assert (got["acked"], got["bad"]) == (str(BYTES), "0")
    assert stats["bytes_sent"] == BYTES + 1  # the protocol byte
    assert stats["sockets_open"] == 0


def test_recv_gets_every_byte_intact(exe: Path, port: int) -> None:
    got, stats = nb.in_vm(exe, "recv", str(port), str(BYTES), "check")
    assert (got["got"], got["bad"]) == (str(BYTES), "0")
    assert stats["bytes_received"] == BYTES


def test_request_response_echoes_each_byte(exe: Path, port: int) -> None:
    got, stats = nb.in_vm(exe, "rr", str(port), "300")  # wraps the byte value
    assert (got["rounds"], got["mismatched"]) == ("300", "0")
    assert int(got["min_ns"]) <= int(got["median_ns"]) <= int(got["p99_ns"])
    assert stats["bytes_received"] == 300


def test_every_connection_is_answered(exe: Path, port: int) -> None:
    got, stats = nb.in_vm(exe, "conn", str(port), "5")
    assert (got["count"], got["answered"]) == ("5", "5")
    assert stats["sockets_created"] == stats["sockets_closed"] == 5
    assert stats["sockets_open"] == 0
    # One call into Python in all: the first connect (the socket() folded in); the
    # policy let it through plainly, so the next connects to the same address are
    # native (sockfast/connect.rs). TCP_NODELAY, the bytes and the close are the
    # native data plane's (a receive that had to wait is Python's on a loaded
    # machine: not counted here).
    waited = sum(stats[f"rpc.{f}"] - stats[f"native_{f}s"] for f in ("send", "recv"))
    assert stats["python_rpcs"] - waited == 1
    assert stats["rpc.connect"] == 5
    assert stats["native_connects"] == 4
    assert stats["native_setsockopts"] == stats["native_closes"] == 5


def _conn_run(
    exe: Path, port: int, count: int, policy: Policy
) -> tuple[SocketOutsourcing, dict[str, Any]]:
    module = SocketOutsourcing(policy)
    with LinuxVM(exe, ["conn", str(port), str(count)], sockets=module, timeout=120) as vm:
        assert vm.run() == 0, vm.stdout
        assert nb.parse(vm.stdout.decode())["answered"] == str(count)
        return module, module.stats


def test_native_connects_keep_the_audit_log_python_writes(exe: Path, port: int) -> None:
    """Connects served natively leave the same audit records as Python's, in order,
    and count as host sockets made and closed."""
    rules = [Rule(Deny(), dest="10.0.0.0/8"), Rule(Allow(), dest="127.0.0.0/8", port=port)]
    module, stats = _conn_run(exe, port, 6, Policy(rules))
    assert stats["native_connects"] == 5
    connects = [r for r in module.audit if r.event == "connect"]
    assert len(connects) == 6
    first = connects[0]
    assert (first.flow, first.action, first.rule) == (f"outbound tcp 127.0.0.1:{port}", "Allow", 1)
    assert all(dataclasses.replace(r, time=first.time) == first for r in connects)
    assert [r.time for r in connects] == sorted(r.time for r in connects)
    assert stats["sockets_created"] == stats["sockets_closed"] == 6
    assert stats["sockets_open"] == 0


def test_a_policy_by_name_keeps_every_connect_in_python(exe: Path, port: int) -> None:
    """A name rule's decision may change with the names, not the policy: no connect
    under such a policy is native."""
    rules = [Rule(Allow(), dest="*.example.invalid"), Rule(Allow(), dest="127.0.0.1")]
    module, stats = _conn_run(exe, port, 4, Policy(rules))
    assert stats["native_connects"] == 0
    assert stats["rpc.connect"] == 4
    assert len([r for r in module.audit if r.event == "connect"]) == 4


def test_local_connection_stays_in_the_guest(exe: Path) -> None:
    got, stats = nb.in_vm(exe, "local", str(BYTES))
    assert got["got"] == str(BYTES)
    assert stats["sockets_created"] == 0  # guest-local pipes, no host socket


@pytest.mark.parametrize(
    ("args", "key"),
    [(["send", "{port}", "1000", "check"], "acked"), (["recv", "{port}", "1000"], "got")],
)
def test_native_run_reports_alike(exe: Path, port: int, args: list[str], key: str) -> None:
    """The same binary natively: the baseline's numbers come from the same lines."""
    got = nb.native(exe, *(a.format(port=port) for a in args))
    assert got[key] == "1000"


def test_a_failure_is_an_error_not_a_number(exe: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        dead = str(closed.getsockname()[1])
        with pytest.raises(nb.NetbenchError, match="error=connect"):
            nb.native(exe, "rr", dead, "10")
        with pytest.raises(nb.NetbenchError, match="error=connect"):
            nb.in_vm(exe, "rr", dead, "10")
    assert nb.parse("NETBENCH mode=rr rounds=1\n") == {"mode": "rr", "rounds": "1"}
    with pytest.raises(nb.NetbenchError):
        nb.parse("no result line")
