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
import struct

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


def test_a_connecting_socket_takes_no_data_in_any_path() -> None:
    """The state machine itself, without a guest: between the guest's CONNECT and the
    end of its handshakes every data call is refused and poll reports nothing."""
    module = SocketOutsourcing()
    handle = proto.RESP.unpack(module.rpc_socket(proto.SOCKET_REQ.pack(2, 1, 0, 0)))[0]
    addr = proto.ADDR.pack(proto.AF_INET, 9, 0, 0, bytes([127, 0, 0, 1]) + bytes(12))
    connecting = module.rpc_connect(struct.pack("<Ii", handle, -1) + addr)
    assert not isinstance(connecting, bytes)  # the connect waits on the loop; not run yet
    try:
        again = module.rpc_connect(struct.pack("<Ii", handle, -1) + addr)
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
    finally:
        # Nothing listens on port 9: the connect itself is refused.
        refused = run_on_loop(connecting)
        module.close()
    assert proto.RESP.unpack_from(refused)[0] == -errno.ECONNREFUSED
