"""The C network benchmark works (benches/net/netbench.c, benches/_netbench.py).

Tiny sizes, no timing: the client runs in a `LinuxVM` (and natively) against the native
C server, through the same helpers benches/sockets.py uses, and what it reports must be
right: every byte counted on both ends, the data intact both ways (the server and the
client check the pattern), every 1-byte echo the byte sent, every connection answered.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from linux_support import INSTALL_HINT

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
    # One call into Python per connection: the connect, with the socket() folded in.
    # TCP_NODELAY, the bytes and the close are the native data plane's (a receive
    # that had to wait is Python's on a loaded machine: not counted here).
    waited = sum(stats[f"rpc.{f}"] - stats[f"native_{f}s"] for f in ("send", "recv"))
    assert stats["python_rpcs"] - waited == stats["rpc.connect"] == 5
    assert stats["native_setsockopts"] == stats["native_closes"] == 5


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
