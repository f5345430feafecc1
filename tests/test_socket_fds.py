"""Issue 13.5: one VM's sockets cannot exhaust the process's fds for the others.

Run in a child process under a lowered ``RLIMIT_NOFILE`` (the limit is per
process): a guest opens connections until the host says no, and VM creation must
still work while that guest holds everything it got.
"""

from __future__ import annotations

import errno
import socket
import struct
import textwrap
from collections.abc import Iterator

import pytest

from vmrpc.sockets import Expose, Policy, Rule, SocketOutsourcing, fdbudget, proto
from vmrpc.sockets.fdbudget import FdBudget, ProtoError

from conftest import run_python

CHILD = textwrap.dedent(
    """
    import re, resource, socket, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    from vmrpc import VM
    from vmrpc.sockets import SocketOutsourcing

    # A listener that never accepts: connections wait in its backlog, so they cost
    # this process no fd on the server side.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    module = SocketOutsourcing()
    hog = VM("many_conns", args=["127.0.0.1", str(port), "400", "16"], modules=[module])
    rc = hog.run(timeout=60)
    match = re.search(r"connection (\\d+) failed errno=(\\d+)", hog.console)
    print("hog", rc, match and match[1], match and match[2], module.stats["sockets_open"])
    # The hog VM is still open and holds every socket it got.
    for i in range(3):
        vm = VM("hello", vcpus=2)
        assert vm.run(timeout=30) == 0, vm.console
        vm.close()
    print("created 3 VMs beside the hog")
    hog.close()
    """
)


@pytest.mark.kvm
def test_a_guest_cannot_starve_vm_creation_of_fds() -> None:
    child = run_python("-c", CHILD)
    assert child.returncode == 0, child.stdout + child.stderr
    hog = child.stdout.split("\n")[0].split()
    assert hog[0] == "hog", child.stdout
    rc, failed_at, err, held = int(hog[1]), int(hog[2]), int(hog[3]), int(hog[4])
    assert rc == 2  # many_conns stops at its first failed connect
    assert err == errno.ENFILE  # the process reserve, not the real limit, stopped it
    assert held == failed_at > 10  # it did get sockets: every one it made is still open
    assert "created 3 VMs beside the hog" in child.stdout


def test_per_vm_budget_is_emfile() -> None:
    budget = FdBudget(max_host_fds=4, reserve=0)
    budget.check(held=3)
    with pytest.raises(ProtoError) as info:
        budget.check(held=4)
    assert info.value.errno == errno.EMFILE
    assert not budget.allows(held=4)
    with pytest.raises(ValueError, match="max_host_fds"):
        FdBudget(0)
    with pytest.raises(ValueError, match="reserve"):
        SocketOutsourcing(fd_reserve=-1)


def test_exposed_listener_past_the_budget_is_emfile_and_leaks_no_entry() -> None:
    module = SocketOutsourcing(Policy([Rule(Expose(port=0))]), max_host_fds=1)
    addr = proto.ADDR.pack(proto.AF_INET, 7001, 0, 0, bytes(16))

    def listen() -> int:
        request = struct.pack("<IIII", proto.AF_INET, proto.SOCK_STREAM, 1, 0) + addr
        answer = module.rpc_listen(request)
        assert isinstance(answer, bytes)
        result: int = proto.RESP.unpack_from(answer)[0]
        return result

    try:
        first = listen()
        assert first > 0
        assert listen() == -errno.EMFILE
        assert module.audit[-1].errno == errno.EMFILE
        assert module.stats["sockets_open"] == 1
        closed = module.rpc_close(proto.HANDLE_REQ.pack(first, 0))
        assert closed == proto.resp(0)  # nothing waits on it: closed in the call
        assert listen() > 0  # the refused attempt left no entry behind
    finally:
        module.close()


def _loopback_connect(module: SocketOutsourcing, port: int) -> int:
    """A new socket's CONNECT to 127.0.0.1:port, as the guest sends it; its answer."""
    addr = (proto.AF_INET, port, 0, 0, bytes([127, 0, 0, 1]) + bytes(12))
    answer = module.rpc_connect(proto.CONNECT_REQ.pack(0, -1, proto.SOCK_STREAM, 0, *addr))
    assert isinstance(answer, bytes)
    result: int = proto.RESP.unpack_from(answer)[0]
    return result


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def test_a_loopback_connect_counts_the_process_fds_once(
    monkeypatch: pytest.MonkeyPatch, listener: int
) -> None:
    """A connect that ends at once checks its socket and its duplicate against one
    count of the process's fds (a connection's cost; docs/sockets.md)."""
    counts = []
    real = fdbudget.open_fds

    def counting() -> int:
        counts.append(1)
        return real()

    monkeypatch.setattr(fdbudget, "open_fds", counting)
    module = SocketOutsourcing()
    try:
        assert _loopback_connect(module, listener) == 0
        assert len(counts) == 1
        assert module.native_data_plane.attached == 1
    finally:
        module.close()


def test_the_duplicate_counts_the_socket_made_just_before(
    monkeypatch: pytest.MonkeyPatch, listener: int
) -> None:
    """With room in the reserve for the socket but not for its duplicate, the
    socket connects and Python serves it: the one count taken for the socket is
    raised by that socket before the duplicate is weighed."""
    in_use = 40
    monkeypatch.setattr(fdbudget, "open_fds", lambda: in_use)  # the count before the socket
    monkeypatch.setattr(fdbudget, "soft_limit", lambda: 1000)
    module = SocketOutsourcing(fd_reserve=1000 - in_use - 1)  # room for exactly one more
    try:
        assert _loopback_connect(module, listener) == 0
        assert module.stats["sockets_open"] == 1
        assert module.native_data_plane.attached == 0
    finally:
        module.close()
