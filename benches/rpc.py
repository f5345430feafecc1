"""VM RPC benchmark: null-RPC round trip, Rust and Python echo, engine spinning and asleep.

Measured inside the guest with rdtsc (guest/apps/rpcbench.c: median, p99, min of each
call) and on the host (wall time of a fixed number of calls through rpc_echo, divided
by the calls; it includes the guest's own loop, so it is an upper bound). Exits and
interrupts per RPC come from the VM's counters.

Baseline, measured in the same run by the same guest: an MMIO write that exits to the
VMM's user space and does nothing (``exit_rtt``); its exits and interrupts per operation
come from the counters of an ``exitbench`` run. Targets (issue 3): Rust echo median
<= 0.25x one exit round trip while the engine spins, Python echo <= 1x, zero
user-space exits per RPC in steady state. Steady state is measured as the marginal
cost: the counters of a run of 2N calls minus those of a run of N calls, divided by N,
so the run's fixed exits (start-up, the final console line) cancel out. Every verdict
is computed from this run's numbers.

Run: ``python benches/rpc.py`` (or ``python -m vmrpc bench rpc``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Target, guest_bench_lines, print_verdicts, table, us, verdicts, write_json

from vmrpc import VM, HostModule, NativeModule, function

CALLS = 20000
HOST_CALLS = 20000
EXIT_CALLS = 5000
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


def echo_run(kind: str, spin_us: int, calls: int) -> tuple[float, dict[str, int]]:
    """(wall ns, counters) of one rpc_echo run of ``calls`` RPCs."""
    with VM(
        "rpc_echo",
        args=["echo", str(calls), "0"],
        modules=[module_for(kind)],
        rpc_spin_us=spin_us,
        timeout=300,
    ) as vm:
        vm.start()
        start = time.perf_counter_ns()
        assert vm.wait() == 0, vm.console
        elapsed = time.perf_counter_ns() - start
        stats = vm.stats
    assert stats["rpcs"] >= calls, stats
    return float(elapsed), stats


def host_measure(kind: str, spin_us: int) -> dict[str, float]:
    """Wall time per call, and the marginal exits/interrupts/doorbells per RPC."""
    elapsed, short = echo_run(kind, spin_us, HOST_CALLS)
    _, long = echo_run(kind, spin_us, 2 * HOST_CALLS)

    def marginal(counter: str) -> float:
        return (long[counter] - short[counter]) / (long["rpcs"] - short["rpcs"])

    # Exits (the target) are compared at the margin; interrupts and doorbells are not
    # expected to be zero, and their margin is noise (it can go negative): per RPC of
    # the longer run instead.
    return {
        "wall_ns_per_call": elapsed / HOST_CALLS,
        "exits_per_rpc": marginal("exits_total"),
        "interrupts_per_rpc": long["interrupts"] / long["rpcs"],
        "doorbells_per_rpc": long["doorbells"] / long["rpcs"],
        "exits_per_run": float(short["exits_total"]),
    }


def exit_baseline_counters() -> dict[str, float]:
    """Exits and interrupts per operation of the baseline (one MMIO exit each)."""
    with VM("exitbench", args=[str(EXIT_CALLS)], timeout=300) as vm:
        assert vm.run() == 0, vm.console
        stats = vm.stats
    return {
        "exits_per_op": stats["exits_total"] / EXIT_CALLS,
        "interrupts_per_op": stats["interrupts"] / EXIT_CALLS,
    }


def main() -> None:
    results: dict[str, dict[str, object]] = {}
    exit_base: dict[str, int] = {}
    rows = []
    decided: list[tuple[Target, float]] = []
    speed_targets = {
        "rust": Target("rust echo (engine spinning) / exit", "<=", 0.25),
        "python": Target("python echo (engine spinning) / exit", "<=", 1.0),
    }
    for kind in ("rust", "python"):
        for mode, spin in (("spinning", SPINNING), ("asleep", ASLEEP)):
            rpc, exit_rtt = guest_measure(kind, spin)
            h = host_measure(kind, spin)
            ratio = rpc["median"] / exit_rtt["median"]
            target = ""
            if mode == "spinning":
                target = speed_targets[kind].cell(ratio)
                decided.append((speed_targets[kind], ratio))
            no_exits = Target(f"{kind} echo (engine {mode}): exits per RPC", "<=", 0.0)
            decided.append((no_exits, h["exits_per_rpc"]))
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
    base_counters = exit_baseline_counters()
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
            f"{base_counters['exits_per_op']:.4f}",
            f"{base_counters['interrupts_per_op']:.4f}",
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
                "exits/RPC (marginal)",
                "irqs/RPC",
            ],
            rows,
        )
    )
    decided_json = verdicts(decided)
    print_verdicts(decided_json)
    path = write_json(
        "rpc",
        {
            "calls": CALLS,
            "results": results,
            "baseline_counters": base_counters,
            "verdicts": decided_json,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
