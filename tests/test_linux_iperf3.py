"""Debian's iperf3 client (dynamically linked) in a VM against a native ``iperf3 -s``,
its socket outsourced: the server counts the bytes the client sent (but those still in
flight when the test ends, see below), and what iperf3 asks of its socket (TCP_INFO,
TCP_CONGESTION, TCP_MAXSEG) is answered."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from linux_support import TIMEOUT
from test_netbench import nb

from vmrpc.linux import LinuxVM, Mount
from vmrpc.sockets import SocketOutsourcing

pytestmark = pytest.mark.kvm


def test_iperf3_client_in_the_vm_against_a_native_server(tmp_path: Path) -> None:
    iperf3 = shutil.which("iperf3")
    if iperf3 is None:
        pytest.fail("iperf3 is missing: install it with `sudo apt-get install iperf3`")
    port = nb.free_port()
    server = subprocess.Popen(
        [iperf3, "-s", "-1", "-J", "-p", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        while not nb.listening(port):
            assert server.poll() is None, "iperf3 -s exited"
            time.sleep(0.01)
        sockets = SocketOutsourcing()
        # -n: a fixed amount, not a duration; iperf3 keeps its buffer in a file in /tmp.
        args = ["-c", "127.0.0.1", "-p", str(port), "-n", "64M", "-J"]
        with LinuxVM(
            iperf3, args, sockets=sockets, mounts=[Mount(tmp_path, "/tmp")], timeout=TIMEOUT
        ) as vm:
            code = vm.run()
            client = json.loads(vm.stdout)
        served = json.loads(server.communicate(timeout=TIMEOUT)[0])
    finally:
        server.kill()
    assert code == 0, vm.stderr
    assert "error" not in client, client["error"]
    sent = client["end"]["sum_sent"]["bytes"]
    assert sent >= 64 << 20
    # iperf3 -s closes its data socket when the control connection says TEST_END, without
    # reading what is still queued, natively too; so the server may count less, by at
    # most what the two kernel buffers hold (a loss beyond that is a real loss).
    received = served["end"]["sum_received"]["bytes"]
    assert sent - in_flight_bound() <= received <= sent
    assert client["end"]["sender_tcp_congestion"]  # TCP_CONGESTION, from the host socket
    assert sockets.stats["sockets_created"] >= 2  # the control and the data connection


def in_flight_bound() -> int:
    """The most a loopback TCP connection can hold unread: the largest send buffer plus
    the largest receive buffer the host's kernel allows."""
    wmem = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    rmem = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
    return wmem + rmem
