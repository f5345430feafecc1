"""Loopback between two programs of one VM (docs/linux.md, "Several programs in one VM").

benches/net/netbench.c (the same static musl binary everywhere) moves bytes over TCP on
127.0.0.1 in three set-ups, alternated run by run so that load from elsewhere on this
shared machine hits all alike:

- native: ``netbench serve`` and a ``netbench`` client, two host processes, kernel
  loopback;
- one program: ``netbench local`` in a `LinuxVM` (listener and client in one program,
  the guest-local pipes of docs/sockets.md);
- two programs: ``netbench serve`` and a client in one `LinuxVM` (``also=``), their
  connection in the VM's loopback arena.

Printed per mode: the median of RUNS, the ratio to native, and for two programs the
futex-device waits and wakes per MiB (or per round trip) of both programs together
(load-independent: how often a side blocked and was woken through the host).
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import _netbench as nb
from _common import table, write_json

from vmrpc.linux import LinuxVM, Program

BYTES = 128 << 20
ROUNDS = 2000
RUNS = 3
PORT = 9300
MIB = 1 << 20


def value(fields: dict[str, str]) -> float:
    """MiB/s for bulk modes, microseconds per round trip for rr."""
    if "median_ns" in fields:
        return float(fields["median_ns"]) / 1000
    return float(fields["bytes"]) / MIB / (float(fields["ns"]) / 1e9)


def two_programs(exe: Path, args: list[str]) -> tuple[dict[str, str], dict[str, int]]:
    """The client beside ``netbench serve``; retried while the server is not listening."""
    for _ in range(50):
        with LinuxVM(exe, args, also=[Program(exe, ["serve", str(PORT)])], timeout=600) as vm:
            code = vm.run()
            if code == 0:
                stats = {
                    k: vm.stats[k] + vm.programs[1].stats[k] for k in ("futex_waits", "futex_wakes")
                }
                return nb.parse(vm.stdout.decode()), stats
    raise nb.NetbenchError(f"netbench {args} beside a server never connected")


def main() -> None:
    modes = {
        "send": (["send", str(PORT), str(BYTES)], "client -> server (MiB/s)"),
        "recv": (["recv", str(PORT), str(BYTES)], "server -> client (MiB/s)"),
        "rr": (["rr", str(PORT), str(ROUNDS)], "1-byte request/response (µs)"),
    }
    samples: dict[str, dict[str, list[float]]] = {m: {"native": [], "two": []} for m in modes}
    one: list[float] = []
    counts: dict[str, list[dict[str, int]]] = {m: [] for m in modes}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        exe = nb.build(Path(tmp))
        with nb.server(exe) as port:
            for _ in range(RUNS):
                for mode, (args, _label) in modes.items():
                    native_args = [args[0], str(port), args[2]]
                    samples[mode]["native"].append(value(nb.native(exe, *native_args)))
                    fields, stats = two_programs(exe, args)
                    samples[mode]["two"].append(value(fields))
                    counts[mode].append(stats)
                with LinuxVM(exe, ["local", str(BYTES)], timeout=600) as vm:
                    assert vm.run() == 0
                    one.append(value(nb.parse(vm.stdout.decode())))
    load_after = os.getloadavg()
    rows: list[list[str]] = []
    results: dict[str, Any] = {}
    for mode, (_args, label) in modes.items():
        native = statistics.median(samples[mode]["native"])
        two = statistics.median(samples[mode]["two"])
        per = BYTES / MIB if mode != "rr" else ROUNDS
        waits = statistics.median(c["futex_waits"] for c in counts[mode]) / per
        wakes = statistics.median(c["futex_wakes"] for c in counts[mode]) / per
        unit = "per MiB" if mode != "rr" else "per round trip"
        rows.append(
            [
                label,
                f"{native:.1f}",
                f"{two:.1f}",
                f"{two / native:.2f}",
                f"{waits:.2f} / {wakes:.2f} {unit}",
            ]
        )
        results[mode] = {
            "native": native,
            "two_programs": two,
            "futex_waits_per": waits,
            "futex_wakes_per": wakes,
        }
    one_mib = statistics.median(one)
    results["one_program_local_mib_s"] = one_mib
    print(
        table(["two programs in one VM", "native", "vmrpc", "ratio", "futex waits / wakes"], rows)
    )
    print(f"\none program (netbench local, guest-local pipes): {one_mib:.0f} MiB/s")
    print(f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    results["load_average"] = [load_before[0], load_after[0]]
    print(f"wrote {write_json('multiproc', results)}")


if __name__ == "__main__":
    main()
