"""Issue 13.1: no guest byte reaches the peer before connect, proxy and TLS are done.

A 2-vCPU guest (guest/apps/sock_race.c) connects on vCPU 0 while vCPU 1 keeps
sending on the host handles that connection can have, through the Python request
path (SEND) and the native zero-copy data plane (SEND_BUF). The peer is a raw TCP
listener that records every byte of every connection (`ByteWitness`): it never
completes a handshake, so each connect fails and every byte it saw was sent while
the socket was still connecting.
"""

from __future__ import annotations

import errno
import re
import select
import socket

import pytest
from test_sockets import ByteWitness, run_on_loop

from vmrpc.sockets import TLS, Policy, Proxy, Rule, SocketOutsourcing, proto

from conftest import VmFactory

PAYLOAD = b"GUEST-PLAINTEXT-RACE"  # sock_race.c's RACE_PAYLOAD
ROUNDS = 40


@pytest.mark.kvm
@pytest.mark.parametrize("route", ["tls", "socks5"])
def test_no_guest_data_before_the_handshakes_finish(vm_factory: VmFactory, route: str) -> None:
    witness = ByteWitness()
    try:
        if route == "tls":
            rule = Rule(TLS(server_hostname="localhost"), port=witness.port)
            guest_port, first = witness.port, b"\x16"  # a TLS handshake record
        else:
            rule = Rule(Proxy(f"socks5://127.0.0.1:{witness.port}"), port=9)
            guest_port, first = 9, b"\x05\x01\x00"  # SOCKS5 greeting
        module = SocketOutsourcing(Policy([rule]))
        vm = vm_factory(
            "sock_race", vcpus=2, args=["127.0.0.1", str(guest_port), str(ROUNDS)], modules=[module]
        )
        assert vm.run() == 0, vm.console
        match = re.search(r"connects_ok=(\d+) spam=(\d+) accepted=(\d+)", vm.console)
        assert match, vm.console
        connects_ok, spam, accepted = map(int, match.groups())
        assert connects_ok == 0  # the witness never completes a handshake
        assert spam > 0
        records = witness.wait_records()
        assert len(records) == ROUNDS
        for record in records:
            assert record.startswith(first), record[:64]
            assert PAYLOAD not in record
        assert accepted == 0, vm.console
        assert module.stats["native_sends"] == 0  # SEND_BUF never reached a socket
    finally:
        witness.close()


def _connect_req(handle: int, port: int, timeout_ms: int = -1) -> bytes:
    addr = (proto.AF_INET, port, 0, 0, bytes([127, 0, 0, 1]) + bytes(12))
    return proto.CONNECT_REQ.pack(handle, timeout_ms, 0, 0, *addr)


def _assert_no_data_path(module: SocketOutsourcing, handle: int, port: int) -> None:
    """Every data call on a CONNECTING socket is refused and poll reports nothing."""
    again = module.rpc_connect(_connect_req(handle, port))
    assert proto.RESP.unpack_from(again)[0] == -errno.EALREADY  # type: ignore[arg-type]
    send = module.rpc_send(proto.WAIT_REQ.pack(handle, 0, 0, 0) + PAYLOAD)
    assert proto.RESP.unpack_from(send)[0] == -errno.ENOTCONN  # type: ignore[arg-type]
    recv = module.rpc_recv(proto.WAIT_REQ.pack(handle, 0, 0, 64))
    assert proto.RESP.unpack_from(recv)[0] == -errno.ENOTCONN  # type: ignore[arg-type]
    poll = module.rpc_poll(proto.POLL_REQ.pack(0, 1) + proto.POLLFD.pack(handle, 0x5, 0))
    ready, _ = proto.RESP.unpack_from(poll)  # type: ignore[arg-type]
    assert ready == 0
    zero_copy = module.rpc_send_buf(proto.BUF_REQ.pack(handle, 4, 0))
    assert proto.RESP.unpack_from(zero_copy)[0] == -errno.EOPNOTSUPP  # type: ignore[arg-type]
    assert module.native_data_plane.stats["attached"] == 0


def _new_socket(module: SocketOutsourcing) -> int:
    answer = module.rpc_socket(proto.SOCKET_REQ.pack(2, 1, 0, 0))
    assert isinstance(answer, bytes)
    handle: int = proto.RESP.unpack(answer)[0]
    return handle


def test_a_connecting_socket_takes_no_data_in_any_path() -> None:
    """The state machine itself, without a guest: between the guest's CONNECT and the
    end of its handshakes every data call is refused and poll reports nothing. A TLS
    rule keeps the connect on the loop (a plain one to a closed port is refused at once)."""
    module = SocketOutsourcing(Policy([Rule(TLS(server_hostname="localhost"), port=9)]))
    handle = _new_socket(module)
    connecting = module.rpc_connect(_connect_req(handle, 9))
    assert not isinstance(connecting, bytes)  # the connect waits on the loop; not run yet
    try:
        _assert_no_data_path(module, handle, 9)
    finally:
        # Nothing listens on port 9: the connect itself is refused.
        refused = run_on_loop(connecting)
        module.close()
    assert proto.RESP.unpack_from(refused)[0] == -errno.ECONNREFUSED


def _full_listener() -> tuple[socket.socket, int, socket.socket]:
    """A listener whose accept queue is full (a connect to it waits: its SYN is
    dropped), its port, and the connection that fills the queue."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    return listener, port, socket.create_connection(("127.0.0.1", port))


def test_a_plain_connect_still_under_way_takes_no_data_in_any_path() -> None:
    """A plain connect that has not finished when the engine thread looks (the peer's
    accept queue is full, so its SYN waits) stays CONNECTING on the loop with the socket
    it started, and becomes READY only once the peer takes it."""
    listener, port, first = _full_listener()
    module = SocketOutsourcing()
    try:
        handle = _new_socket(module)
        connecting = module.rpc_connect(_connect_req(handle, port))
        assert not isinstance(connecting, bytes)
        assert module.stats["sockets_created"] == 1  # started on the engine thread
        _assert_no_data_path(module, handle, port)
        listener.accept()[0].close()  # room in the queue: the handshake can finish
        done = run_on_loop(connecting, timeout=30)
        assert proto.RESP.unpack_from(done)[0] == 0
        assert module.stats["sockets_created"] == 1  # the same socket, not a second one
        assert module.native_data_plane.stats["attached"] == 1
    finally:
        module.close()
        first.close()
        listener.close()


def test_a_plain_loopback_connect_and_close_never_wait_on_the_loop() -> None:
    """connect to a listening local peer is READY in the call, a refused one fails in
    the call (and the socket may connect again), and close of an idle socket closes it
    in the call: no coroutine for the loop, so no loop hop."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    module = SocketOutsourcing()
    try:
        handle = _new_socket(module)
        closed_port = socket.socket()
        closed_port.bind(("127.0.0.1", 0))  # bound, never listening: refused
        refused = module.rpc_connect(_connect_req(handle, closed_port.getsockname()[1]))
        closed_port.close()
        assert isinstance(refused, bytes)
        assert proto.RESP.unpack_from(refused)[0] == -errno.ECONNREFUSED
        ready = module.rpc_connect(_connect_req(handle, port))
        assert isinstance(ready, bytes)
        assert proto.RESP.unpack_from(ready)[0] == 0
        assert module.native_data_plane.stats["attached"] == 1
        peer = listener.accept()[0]
        closed = module.rpc_close(proto.HANDLE_REQ.pack(handle, 0))
        assert isinstance(closed, bytes)
        assert proto.RESP.unpack_from(closed)[0] == 0
        assert peer.recv(1) == b""  # the host socket is closed: the peer sees EOF
        peer.close()
        assert module.stats["sockets_open"] == 0
        assert module.native_data_plane.stats["attached"] == 0
        assert not any(key.startswith("waits.") for key in module.stats)
    finally:
        module.close()
        listener.close()


def _new_connect_req(port: int, options: bytes = b"") -> bytes:
    """CONNECT of a new stream socket (handle 0), non-blocking (timeout 0)."""
    addr = (proto.AF_INET, port, 0, 0, bytes([127, 0, 0, 1]) + bytes(12))
    return proto.CONNECT_REQ.pack(0, 0, proto.SOCK_STREAM, 0, *addr) + options


def _poll_req(handle: int, timeout_ms: int) -> bytes:
    return proto.POLL_REQ.pack(timeout_ms, 1) + proto.POLLFD.pack(handle, select.POLLOUT, 0)


def _revents(answer: bytes) -> int:
    revents: int = proto.POLLFD.unpack_from(answer, proto.RESP.size)[2] & 0xFFFF
    return revents


@pytest.mark.parametrize("outcome", ["accepted", "refused"])
def test_a_nonblocking_connect_answers_at_once_and_settles_later(outcome: str) -> None:
    """CONNECT of a new socket with timeout 0 to a peer that cannot answer yet (its
    accept queue is full): EINPROGRESS and the new handle at once, the option it
    carried already set; CONNECTING meanwhile (no data, no poll events); the end
    wakes a waiting poll; a failure is POLLERR and SO_ERROR, collected once."""
    listener, port, first = _full_listener()
    module = SocketOutsourcing()
    nodelay = proto.SOCKOPT_REQ.pack(0, socket.IPPROTO_TCP, socket.TCP_NODELAY, 4)
    try:
        answer = module.rpc_connect(_new_connect_req(port, nodelay + (1).to_bytes(4, "little")))
        assert isinstance(answer, bytes)
        result, handle = proto.RESP.unpack_from(answer)
        assert (result, module.stats["sockets_created"]) == (-errno.EINPROGRESS, 1)
        get = proto.SOCKOPT_REQ.pack(handle, socket.IPPROTO_TCP, socket.TCP_NODELAY, 4)
        assert module.rpc_getsockopt(get)[proto.RESP.size :] == (1).to_bytes(4, "little")  # type: ignore[index]
        _assert_no_data_path(module, handle, port)
        waiting = module.rpc_poll(_poll_req(handle, 30_000))
        assert not isinstance(waiting, bytes)  # waits for the connect's end
        if outcome == "accepted":
            listener.accept()[0].close()  # room in the queue: the SYN's retry gets in
        else:
            first.close()
            listener.close()  # nothing listens: the SYN's retry gets a reset
        polled = run_on_loop(waiting, timeout=30)
        again = module.rpc_connect(_connect_req(handle, port, timeout_ms=0))
        so_error = proto.SOCKOPT_REQ.pack(handle, socket.SOL_SOCKET, socket.SO_ERROR, 4)
        if outcome == "accepted":
            assert _revents(polled) == select.POLLOUT
            assert proto.RESP.unpack_from(again)[0] == -errno.EISCONN  # type: ignore[arg-type]
            assert module.native_data_plane.stats["attached"] == 1
        else:
            failed = select.POLLOUT | select.POLLERR | select.POLLHUP  # as asked, and Linux
            assert _revents(polled) == failed
            assert proto.RESP.unpack_from(again)[0] == -errno.ECONNREFUSED  # type: ignore[arg-type]
            error = module.rpc_getsockopt(so_error)
            assert error[proto.RESP.size :] == bytes(4)  # collected by the connect already  # type: ignore[index]
            assert _revents(module.rpc_poll(_poll_req(handle, 0))) & select.POLLERR == 0  # type: ignore[arg-type]
        assert module.stats["waits.connect"] == 1
    finally:
        module.close()
        first.close()
        listener.close()
