"""VM RPC benchmark: null-RPC round trip, Rust and Python echo, engine spinning and asleep.

Measured inside the guest with rdtsc (guest/apps/rpcbench.c: median, p99, min of each
call) and on the host (wall time of a fixed number of calls through rpc_echo, divided
by the calls; it includes the guest's own loop, so it is an upper bound). Exits and
interrupts per RPC come from the VM's counters.

Baseline, measured in the same run by the same guest: an MMIO write that exits to the
VMM's user space and does nothing (``exit_rtt``). Targets (issue 3): Rust echo median
<= 0.25x one exit round trip while the engine spins, Python echo <= 1x, zero
user-space exits per RPC in steady state.

Run: ``python benches/rpc.py`` (or ``python -m vmrpc bench rpc``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import guest_bench_lines, table, us, write_json

from vmrpc import VM, HostModule, NativeModule, function

CALLS = 20000
HOST_CALLS = 20000
SPINNING = 10**6  # rpc_spin_us: the engine never sleeps during the run
ASLEEP = 0  # rpc_spin_us: the engine sleeps after every request


class PyEcho(HostModule):
    name, version = "echo", 1

    @function(0)
    def echo(self, request: bytes) -> bytes:
        return request


def module_for(kind: str) -> HostModule | NativeModule:
    return NativeModule("echo") if kind == "rust" else PyEcho()


def guest_measure(kind: str, spin_us: int) -> tuple[dict[str, int], dict[str, int]]:
    """(rpc, exit_rtt) BENCH lines of one rpcbench run."""
    with VM(
        "rpcbench",
        args=["echo", str(CALLS)],
        modules=[module_for(kind)],
        rpc_spin_us=spin_us,
        timeout=300,
    ) as vm:
        assert vm.run() == 0, vm.console
        lines = guest_bench_lines(vm.console)
    return lines["rpc_echo"], lines["exit_rtt"]


def host_measure(kind: str, spin_us: int) -> dict[str, float]:
    with VM(
        "rpc_echo",
        args=["echo", str(HOST_CALLS), "0"],
        modules=[module_for(kind)],
        rpc_spin_us=spin_us,
        timeout=300,
    ) as vm:
        vm.start()
        start = time.perf_counter_ns()
        assert vm.wait() == 0, vm.console
        elapsed = time.perf_counter_ns() - start
        stats = vm.stats
    rpcs = stats["rpcs"]
    # The guest prints one line at the end: that is its only exit besides RPC doorbells.
    return {
        "wall_ns_per_call": elapsed / HOST_CALLS,
        "exits_per_rpc": stats["exits_total"] / rpcs,
        "interrupts_per_rpc": stats["interrupts"] / rpcs,
        "doorbells_per_rpc": stats["doorbells"] / rpcs,
    }


def main() -> None:
    results: dict[str, dict[str, object]] = {}
    exit_base: dict[str, int] = {}
    rows = []
    for kind in ("rust", "python"):
        for mode, spin in (("spinning", SPINNING), ("asleep", ASLEEP)):
            rpc, exit_rtt = guest_measure(kind, spin)
            h = host_measure(kind, spin)
            ratio = rpc["median"] / exit_rtt["median"]
            target = {"rust": "<= 0.25", "python": "<= 1.00"}[kind] if mode == "spinning" else ""
            exit_base = exit_base or exit_rtt
            results[f"{kind}_{mode}"] = {
                "guest_ns": rpc,
                "exit_rtt_ns": exit_rtt,
                "ratio_to_exit": ratio,
                "host": h,
            }
            rows.append(
                [
                    f"{kind} echo, engine {mode}",
                    us(rpc["median"]),
                    us(rpc["p99"]),
                    us(rpc["min"]),
                    us(h["wall_ns_per_call"]),
                    f"{ratio:.3f}",
                    target,
                    f"{h['exits_per_rpc']:.4f}",
                    f"{h['interrupts_per_rpc']:.4f}",
                ]
            )
    base = exit_base
    rows.insert(
        0,
        [
            "MMIO exit round trip (baseline)",
            us(base["median"]),
            us(base["p99"]),
            us(base["min"]),
            "",
            "1.000",
            "",
            "1",
            "0",
        ],
    )
    print(
        table(
            [
                "null RPC (0-byte request)",
                "guest median µs",
                "p99 µs",
                "min µs",
                "host wall µs/call",
                "x exit",
                "target",
                "exits/RPC",
                "irqs/RPC",
            ],
            rows,
        )
    )
    path = write_json(
        "rpc",
        {
            "calls": CALLS,
            "results": results,
            "targets": {"rust_spinning": 0.25, "python_spinning": 1.0, "exits_per_rpc": 0},
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
