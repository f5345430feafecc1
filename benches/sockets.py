"""Socket outsourcing benchmark: the same C client natively and in vmrpc, one run.

The client and the server are the project's own C program, benches/net/netbench.c,
built static with musl-gcc (benches/_netbench.py): the server runs natively; the very
same client binary runs natively and in a `LinuxVM` with socket outsourcing, against
that server, alternately, RUNS times; each number is the median of the runs. The
client times itself with CLOCK_MONOTONIC:

- bulk throughput both ways (BULK_BYTES in 64 KiB calls; a send ends when the server
  has counted every byte, a receive at EOF),
- 1-byte request/response with TCP_NODELAY (median round trip of RR_ROUNDS),
- connections per second (connect, 1-byte exchange, close; CONNS of them),
- a listener and a client in one program, moving LOCAL_BYTES between them: in the VM
  the connection is specialized (guest-local pipes, no host socket); natively it is
  kernel loopback.

Also measured, against the same server, and labelled as such: the bare runtime's
guest ``sockbench`` (guest/apps/sockbench.c, vmrpc's own socket API, timed with rdtsc),
and its in-guest loopback between two vCPUs.

Targets (issue 11, item 5): throughput both ways >= 0.8x native, 1-byte
request/response <= 1.5x native, connections/s >= 0.5x native, in-guest specialized
connection >= 1x native loopback.

Run: ``python benches/sockets.py`` (or ``python -m vmrpc bench sockets``).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _netbench as nb
from _common import Target, guest_bench_lines, print_verdicts, table, verdicts, write_json

from vmrpc import VM
from vmrpc.linux import LinuxVM, Mount
from vmrpc.sockets import SocketOutsourcing

BULK_BYTES = 128 << 20
LOCAL_BYTES = 256 << 20
RR_ROUNDS = 5000
CONNS = 500
RUNS = 15

MIB = 1 << 20
THROUGHPUT_LINE = re.compile(r"BENCH name=(\S+) bytes=(\d+) ns=(\d+)")

#: (client mode, row label, unit, target)
MEASUREMENTS: list[tuple[str, str, str, Target]] = [
    (
        "send",
        "TCP throughput client → server (MiB/s)",
        "MiB/s",
        Target("TCP client->server throughput / native", ">=", 0.8),
    ),
    (
        "recv",
        "TCP throughput server → client (MiB/s)",
        "MiB/s",
        Target("TCP server->client throughput / native", ">=", 0.8),
    ),
    (
        "rr",
        "1-byte request/response, median (µs)",
        "µs",
        Target("1-byte request/response / native", "<=", 1.5),
    ),
    (
        "conn",
        "connections/s (connect, 1-byte exchange, close)",
        "conn/s",
        Target("connections/s / native", ">=", 0.5),
    ),
    (
        "local",
        "listener + client in one program (MiB/s): VM specialized vs native loopback",
        "MiB/s",
        Target("in-guest specialized connection / native loopback", ">=", 1.0),
    ),
]

#: The bare runtime's loopback is two vCPUs of one guest; the native column is still
#: the C client's one-program loopback.
BARE_LABELS = {"local": "in-guest loopback, 2 vCPUs, vs native one-program loopback"}


def value(fields: dict[str, str]) -> float:
    """A client's result line as the table's number: MiB/s, µs or connections/s."""
    mode = fields["mode"]
    ns = int(fields["ns"])
    if mode == "send":
        assert fields["acked"] == fields["bytes"], fields
        return int(fields["bytes"]) / MIB / (ns / 1e9)
    if mode in ("recv", "local"):
        assert fields["got"] == fields["bytes"], fields
        return int(fields["bytes"]) / MIB / (ns / 1e9)
    if mode == "rr":
        assert fields["mismatched"] == "0", fields
        return int(fields["median_ns"]) / 1000
    assert mode == "conn", fields
    assert fields["answered"] == fields["count"], fields
    return int(fields["count"]) / (ns / 1e9)


def client_args(key: str, port: int) -> list[str]:
    sizes = {"send": BULK_BYTES, "recv": BULK_BYTES, "rr": RR_ROUNDS, "conn": CONNS}
    if key == "local":
        return ["local", str(LOCAL_BYTES)]
    return [key, str(port), str(sizes[key])]


# ---- the bare runtime's guest (vmrpc's own socket API) --------------------------------


def sockbench(args: list[str], vcpus: int = 1) -> tuple[str, dict[str, int]]:
    module = SocketOutsourcing()
    with VM("sockbench", args=args, vcpus=vcpus, modules=[module], timeout=300) as vm:
        code = vm.run()
        assert code == 0, vm.console
        return vm.console, module.stats


def sockbench_value(key: str, port: int) -> float:
    if key == "rr":
        console, _ = sockbench(["rr", "127.0.0.1", str(port), str(RR_ROUNDS)])
        return guest_bench_lines(console)["tcp_rr"]["median"] / 1000
    if key == "local":
        console, stats = sockbench(["local", str(LOCAL_BYTES)], vcpus=2)
        assert stats["sockets_created"] == 0
    else:
        console, _ = sockbench([key, "127.0.0.1", str(port), str(BULK_BYTES)])
    _, nbytes, ns = THROUGHPUT_LINE.findall(console)[0]
    return int(nbytes) / MIB / (int(ns) / 1e9)


# ---- Debian's iperf3 client, natively and in a LinuxVM, against a native iperf3 -s -----

IPERF3 = "/usr/bin/iperf3"
IPERF3_BYTES = "1G"
IPERF3_TARGET = Target("iperf3 client throughput / native", ">=", 0.8)


def iperf3_gbits(in_vm: bool, tmp: Path) -> float:
    """One iperf3 test (-n IPERF3_BYTES) against a fresh native `iperf3 -s -1`; the
    receiver's Gbit/s."""
    port = nb.free_port()
    server = subprocess.Popen([IPERF3, "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not nb.listening(port):
            assert time.monotonic() < deadline, "iperf3 -s does not listen"
            assert server.poll() is None, "iperf3 -s exited"
            time.sleep(0.01)
        args = ["-c", "127.0.0.1", "-p", str(port), "-n", IPERF3_BYTES, "-J"]
        if in_vm:
            with LinuxVM(
                IPERF3, args, sockets=SocketOutsourcing(), mounts=[Mount(tmp, "/tmp")],
                timeout=300,
            ) as vm:  # fmt: skip
                assert vm.run() == 0, vm.stderr
                out = vm.stdout
        else:
            out = subprocess.run([IPERF3, *args], capture_output=True, check=True).stdout
        report = json.loads(out)
        assert "error" not in report, report["error"]
        return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9
    finally:
        server.wait(timeout=30)


def iperf3_summary(runs: dict[str, list[float]]) -> tuple[float, list[str], dict[str, Any]]:
    """The iperf3 runs as (vmrpc / native, table row, JSON record)."""
    nat, vm = statistics.median(runs["native"]), statistics.median(runs["vm"])
    ratio = vm / nat
    row = ["Debian's iperf3 client (Gbit/s)", fmt(nat), fmt(vm), f"{ratio:.2f}"]
    record = {"unit": "Gbit/s", "native": nat, "vmrpc": vm, "ratio": ratio, "runs": runs}
    return ratio, [*row, IPERF3_TARGET.cell(ratio)], record


# ---- the run ---------------------------------------------------------------------------


def fmt(x: float) -> str:
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def main() -> None:
    samples: dict[str, dict[str, list[float]]] = {
        key: {"native": [], "vm": [], "sockbench": []} for key, *_ in MEASUREMENTS
    }
    vm_runs: dict[str, list[dict[str, int]]] = {key: [] for key, *_ in MEASUREMENTS}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        exe = nb.build(Path(tmp))
        with nb.server(exe) as port:
            # Warm up the server, the page cache and the VMM's first-VM costs.
            nb.native(exe, "rr", str(port), "500")
            nb.in_vm(exe, "rr", str(port), "500")
            sockbench(["rr", "127.0.0.1", str(port), "500"])
            # Native and vmrpc alternate, so that load from elsewhere on this shared
            # machine hits both alike.
            for _ in range(RUNS):
                for key, *_ in MEASUREMENTS:
                    args = client_args(key, port)
                    samples[key]["native"].append(value(nb.native(exe, *args)))
                    fields, stats = nb.in_vm(exe, *args)
                    samples[key]["vm"].append(value(fields))
                    vm_runs[key].append(stats)
                    if key != "conn":
                        samples[key]["sockbench"].append(sockbench_value(key, port))
        iperf3_runs: dict[str, list[float]] = {"native": [], "vm": []}
        for _ in range(RUNS):  # alternating, like the rest
            for side, runs in iperf3_runs.items():
                runs.append(iperf3_gbits(side == "vm", Path(tmp)))
    load_after = os.getloadavg()

    pairs: list[tuple[Target, float]] = []
    rows: list[list[str]] = []
    bare_rows: list[list[str]] = []
    results: dict[str, dict[str, Any]] = {}
    for key, label, unit, target in MEASUREMENTS:
        m = {side: statistics.median(v) for side, v in samples[key].items() if v}
        # vmrpc / native for times (rr, target <=) and rates (target >=) alike.
        r = m["vm"] / m["native"]
        results[key] = {
            "unit": unit,
            "native": m["native"],
            "vmrpc": m["vm"],
            "ratio": r,
            "runs": samples[key],
            "vm_halted_wait_share_runs": [halted_share(st) for st in vm_runs[key]],
        }
        pairs.append((target, r))
        rows.append([label, fmt(m["native"]), fmt(m["vm"]), f"{r:.2f}", target.cell(r)])
        if "sockbench" in m:
            b = m["sockbench"] / m["native"]
            results[key]["sockbench"] = m["sockbench"]
            results[key]["sockbench_ratio"] = b
            bare = BARE_LABELS.get(key, label.split(" (")[0])
            bare_rows.append(
                [f"{bare} ({unit})", fmt(m["native"]), fmt(m["sockbench"]), f"{b:.2f}"]
            )

    i_ratio, i_row, results["iperf3"] = iperf3_summary(iperf3_runs)
    pairs.append((IPERF3_TARGET, i_ratio))
    rows.append(i_row)
    decided = verdicts(pairs)
    print(table(["measurement", "native C client", "C client in vmrpc", "ratio", "target"], rows))
    print()
    print(
        table(
            ["bare runtime guest (sockbench)", "native C client", "sockbench", "ratio"],
            bare_rows,
        )
    )
    per_op = per_operation(vm_runs)
    print()
    for line in per_op_lines(per_op):
        print(line)
    print(f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    print_verdicts(decided)
    path = write_json(
        "sockets",
        {
            "bulk_bytes": BULK_BYTES,
            "local_bytes": LOCAL_BYTES,
            "rr_rounds": RR_ROUNDS,
            "conns": CONNS,
            "runs": RUNS,
            "client": "benches/net/netbench.c, musl-gcc -O2 -static, natively and in LinuxVM",
            "server": "the same binary, `netbench serve`, natively",
            "load_average_before": load_before,
            "load_average_after": load_after,
            "results": results,
            "vm_per_operation": per_op,
            "vm_stats_last_run": {key: runs[-1] for key, runs in vm_runs.items()},
            "verdicts": decided,
        },
    )
    print(f"wrote {path}")


def slept(stats: Mapping[str, int]) -> int:
    """Host calls whose wait outlasted the guest's spin: a Linux program's thread then
    sleeps in the host (`rpc_host_waits`), a bare guest halts (ended by an interrupt)."""
    return stats.get("vm.rpc_host_waits", 0) + stats.get("vm.interrupts", 0)


def halted_share(stats: dict[str, int]) -> float:
    """The share of the VM's host calls whose wait outlasted the guest's spin."""
    return slept(stats) / max(1, stats["vm.rpcs"])


def per_operation(runs: dict[str, list[dict[str, int]]]) -> dict[str, dict[str, Any]]:
    """Host calls per operation of the VM client, over all runs: socket RPCs, the
    share served by the native data plane, those that reached Python, waits handed to
    Python's event loop, socket I/O exits (large receives and sends on the vCPU's
    thread), and waits that outlasted the spin."""
    ops: dict[str, tuple[str, float]] = {
        "send": ("MiB", BULK_BYTES / MIB),
        "recv": ("MiB", BULK_BYTES / MIB),
        "rr": ("round trip", RR_ROUNDS),
        "conn": ("connection", CONNS),
    }
    out: dict[str, dict[str, Any]] = {}
    for key, (unit, per_run) in ops.items():
        total: Counter[str] = Counter()
        for stats in runs[key]:
            total.update(stats)
        n = per_run * len(runs[key])
        waits = sum(v for k, v in total.items() if k.startswith("waits."))
        out[key] = {
            "per": unit,
            "socket_rpcs": total["rpcs"] / n,
            "native_data_calls": (total["native_sends"] + total["native_recvs"]) / n,
            "python_calls": total["python_rpcs"] / n,
            "sockio_exits": total["vm.sockio_calls"] / n,
            "python_waits": waits / n,
            "halted_waits": slept(total) / n,
            "halted_share_of_all_host_calls": slept(total) / max(1, total["vm.rpcs"]),
        }
    return out


def per_op_lines(per_op: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"vmrpc {key}: {v['socket_rpcs']:.2f} socket RPCs per {v['per']} "
        f"({v['native_data_calls']:.2f} data calls on the native data plane, "
        f"{v['python_calls']:.2f} calls into Python, {v['python_waits']:.2f} waits in Python), "
        f"{v['sockio_exits']:.2f} socket I/O exits; "
        f"{v['halted_share_of_all_host_calls']:.0%} of host calls outlasted the spin"
        for key, v in per_op.items()
    ]


if __name__ == "__main__":
    main()
