"""Socket outsourcing benchmark: bulk TCP throughput both ways and 1-byte request/response.

Peers: a bench server in a separate process (this script with ``--serve``) speaking a
tiny protocol: ``S`` + data until EOF, answered by one byte (sink); ``R`` + u64 length,
answered by that many bytes and EOF (source); ``P`` then 1-byte ping-pong (echo).

Outsourced path: the guest ``sockbench`` (guest/apps/sockbench.c) through
`vmrpc.sockets.SocketOutsourcing`, timed in the guest with rdtsc. Baseline, measured in
the same run against the same server: a plain Python ``socket`` client on the host
(native loopback). Also reported: in-guest loopback throughput between two vCPUs
(guest-local pipes, no host involvement).

Targets (issue 5): throughput >= 0.8x native, request/response <= 2x native.

Run: ``python benches/sockets.py`` (or ``python -m vmrpc bench sockets``).
"""

from __future__ import annotations

import re
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Target, guest_bench_lines, print_verdicts, table, verdicts, write_json

from vmrpc import VM
from vmrpc.sockets import SocketOutsourcing

BULK_BYTES = 128 << 20
LOCAL_BYTES = 256 << 20
RR_ROUNDS = 5000
RUNS = 5
CHUNK = 65536

THROUGHPUT_LINE = re.compile(r"BENCH name=(\S+) bytes=(\d+) ns=(\d+)")


# ---- the bench server (a separate process) -------------------------------------------


def _serve_conn(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    kind = conn.recv(1)
    buf = bytearray(1 << 20)
    if kind == b"S":
        while conn.recv_into(buf):
            pass
        conn.sendall(b"k")
    elif kind == b"R":
        header = b""
        while len(header) < 8:
            header += conn.recv(8 - len(header))
        (left,) = struct.unpack("<Q", header)
        block = memoryview(bytes(CHUNK * 4))
        while left:
            n = conn.send(block[: min(left, len(block))])
            left -= n
    elif kind == b"P":
        while byte := conn.recv(1):
            conn.sendall(byte)
    conn.close()


def serve() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve_conn, args=(conn,), daemon=True).start()


# ---- native baseline (host Python client) --------------------------------------------


def _dial(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def native_send(port: int, total: int) -> float:
    """Seconds to push ``total`` bytes to the sink (until its acknowledgement)."""
    block = memoryview(bytes(CHUNK))
    with _dial(port) as sock:
        start = time.perf_counter()
        sock.sendall(b"S")
        left = total
        while left:
            left -= sock.send(block[: min(left, CHUNK)])
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b"k"
        return time.perf_counter() - start


def native_recv(port: int, total: int) -> float:
    buf = bytearray(CHUNK)
    with _dial(port) as sock:
        start = time.perf_counter()
        sock.sendall(b"R" + struct.pack("<Q", total))
        got = 0
        while n := sock.recv_into(buf):
            got += n
        assert got == total
        return time.perf_counter() - start


def native_rr(port: int, rounds: int) -> float:
    """Median nanoseconds of one 1-byte request/response."""
    samples = []
    with _dial(port) as sock:
        sock.sendall(b"P")
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            sock.sendall(b"x")
            sock.recv(1)
            samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples)


# ---- outsourced path (the guest) ------------------------------------------------------


def guest_run(args: list[str], vcpus: int = 1) -> tuple[str, dict[str, int]]:
    module = SocketOutsourcing()
    with VM("sockbench", args=args, vcpus=vcpus, modules=[module], timeout=300) as vm:
        code = vm.run()
        assert code == 0, vm.console
        return vm.console, module.stats


def guest_throughput(mode: str, port: int, total: int) -> tuple[float, dict[str, int]]:
    console, stats = guest_run([mode, "127.0.0.1", str(port), str(total)])
    _, nbytes, ns = THROUGHPUT_LINE.findall(console)[0]
    assert int(nbytes) == total, console
    return int(ns) / 1e9, stats


def guest_rr(port: int, rounds: int) -> float:
    console, _ = guest_run(["rr", "127.0.0.1", str(port), str(rounds)])
    return float(guest_bench_lines(console)["tcp_rr"]["median"])


def guest_local(total: int) -> float:
    console, stats = guest_run(["local", str(total)], vcpus=2)
    assert stats["sockets_created"] == 0
    _, nbytes, ns = THROUGHPUT_LINE.findall(console)[0]
    return int(nbytes) / (int(ns) / 1e9)


def mib_s(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / (1 << 20)


def main() -> None:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        results: dict[str, dict[str, float]] = {}

        def best(fn: object) -> list[float]:
            return [fn() for _ in range(RUNS)]  # type: ignore[operator]

        # Warm up the server process (its first connections are slower) and the VMM.
        native_rr(port, 500)
        native_send(port, 16 << 20)
        guest_rr(port, 500)
        # Native and outsourced runs alternate, so that load from elsewhere on the
        # machine hits both alike; each number is the median of RUNS runs.
        send_native, recv_native, rr_native = [], [], []
        send_guest_runs, recv_guest_runs, rr_guest = [], [], []
        for _ in range(RUNS):
            send_native.append(native_send(port, BULK_BYTES))
            send_guest_runs.append(guest_throughput("send", port, BULK_BYTES))
            recv_native.append(native_recv(port, BULK_BYTES))
            recv_guest_runs.append(guest_throughput("recv", port, BULK_BYTES))
            rr_native.append(native_rr(port, RR_ROUNDS))
            rr_guest.append(guest_rr(port, RR_ROUNDS))
        local = best(lambda: guest_local(LOCAL_BYTES))
        send_stats = send_guest_runs[0][1]

        def tp(seconds: list[float]) -> float:
            return mib_s(BULK_BYTES, statistics.median(seconds))

        results["send_mib_s"] = {
            "native": tp(send_native),
            "outsourced": tp([s for s, _ in send_guest_runs]),
        }
        results["recv_mib_s"] = {
            "native": tp(recv_native),
            "outsourced": tp([s for s, _ in recv_guest_runs]),
        }
        results["rr_median_us"] = {
            "native": statistics.median(rr_native) / 1000,
            "outsourced": statistics.median(rr_guest) / 1000,
        }
        local_mib = statistics.median(local) / (1 << 20)
        for key in ("send_mib_s", "recv_mib_s"):
            results[key]["ratio"] = results[key]["outsourced"] / results[key]["native"]
        rr = results["rr_median_us"]
        rr["ratio"] = rr["outsourced"] / rr["native"]
        # The Python baseline's round trip swings with load on this 2-core machine
        # (15-60 µs seen): also compare against its best run.
        rr["native_best"] = min(rr_native) / 1000
        rr["ratio_to_best"] = rr["outsourced"] / rr["native_best"]

        send_target = Target("TCP guest->host throughput / native", ">=", 0.8)
        recv_target = Target("TCP host->guest throughput / native", ">=", 0.8)
        rr_target = Target("1-byte request/response / native median", "<=", 2.0)
        rr_best_target = Target("1-byte request/response / best native run", "<=", 2.0)
        decided = verdicts(
            [
                (send_target, results["send_mib_s"]["ratio"]),
                (recv_target, results["recv_mib_s"]["ratio"]),
                (rr_target, rr["ratio"]),
                (rr_best_target, rr["ratio_to_best"]),
            ]
        )
        rows = [
            [
                "TCP throughput guest->host (MiB/s)",
                f"{results['send_mib_s']['native']:.0f}",
                f"{results['send_mib_s']['outsourced']:.0f}",
                f"{results['send_mib_s']['ratio']:.2f}",
                send_target.cell(results["send_mib_s"]["ratio"]),
            ],
            [
                "TCP throughput host->guest (MiB/s)",
                f"{results['recv_mib_s']['native']:.0f}",
                f"{results['recv_mib_s']['outsourced']:.0f}",
                f"{results['recv_mib_s']['ratio']:.2f}",
                recv_target.cell(results["recv_mib_s"]["ratio"]),
            ],
            [
                "1-byte request/response, median (µs)",
                f"{rr['native']:.1f}",
                f"{rr['outsourced']:.1f}",
                f"{rr['ratio']:.2f}",
                rr_target.cell(rr["ratio"]),
            ],
            [
                "  same, against the best native run (µs)",
                f"{rr['native_best']:.1f}",
                f"{rr['outsourced']:.1f}",
                f"{rr['ratio_to_best']:.2f}",
                rr_best_target.cell(rr["ratio_to_best"]),
            ],
            ["in-guest loopback, 2 vCPUs (MiB/s)", "", f"{local_mib:.0f}", "", ""],
        ]
        print(table(["measurement", "native loopback", "outsourced", "ratio", "target"], rows))
        rpcs_per_mib = send_stats.get("rpc.send", 0) / (BULK_BYTES / (1 << 20))
        print(f"\nsend path: {rpcs_per_mib:.1f} RPCs per MiB (zero-copy: up to 1 MiB per RPC)")
        print_verdicts(decided)
        path = write_json(
            "sockets",
            {
                "bulk_bytes": BULK_BYTES,
                "rr_rounds": RR_ROUNDS,
                "runs": RUNS,
                "results": results,
                "in_guest_loopback_mib_s": local_mib,
                "send_module_stats": send_stats,
                "baseline": "host Python socket client against the same server process",
                "verdicts": decided,
            },
        )
        print(f"wrote {path}")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        main()
