"""Event queue benchmark: events per second each way, 64-byte events, and their cost.

Guest side: guest/apps/evqbench.c puts (``produce``) or gets (``consume``) N events as
fast as it can. Host side, guest -> host: the native consumer ``drain_native`` (Rust,
no Python objects), Python ``get_events`` batches of 4096 and of 256, and one
``get_event`` per event; host -> guest: the native producer ``feed_native`` and one
Python ``put_event`` per event. The clock starts when the first event has crossed (so VM
start-up is not counted) and stops at the last one. Exits, interrupts and doorbells per
event come from the VM's counters over the middle of the run (both sides busy).

Baselines measured in the same run: the MMIO exit round trip (guest/apps/exitbench.c),
i.e. what one event would cost if each one exited to the VMM, and a Python
``queue.Queue`` carrying 64-byte bytes objects between two threads.

Targets (issue 4): >= 5 M events/s guest -> host into a Rust consumer, >= 1 M events/s
into Python with batch get, 0 exits per event in steady state.

Run: ``python benches/events.py`` (or ``python -m vmrpc bench events``).
"""

from __future__ import annotations

import queue
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Target, guest_bench_lines, print_verdicts, table, verdicts, write_json

from vmrpc import VM, EventQueue, _testing

SIZE = 64
CAPACITY = 4096
REPEATS = 5
EVQBENCH_LINE = re.compile(r"EVQBENCH mode=(\w+) n=(\d+) size=(\d+) ns=(\d+)(?: unit=(\w+))?")
COUNTERS = ("exits_total", "interrupts", "evq_doorbells")


def counters(vm: VM) -> dict[str, int]:
    stats = vm.stats
    return {k: stats[k] for k in COUNTERS}


class Run:
    """One VM running evqbench against one host consumer or producer."""

    def __init__(self, mode: str, n: int) -> None:
        args = (
            ["produce", "q", str(n), str(SIZE)] if mode == "produce" else ["consume", "q", str(n)]
        )
        self.vm = VM("evqbench", args=args, timeout=300)
        self.q: EventQueue = self.vm.make_ev_queue("q", CAPACITY, SIZE)
        self.n = n
        self.window: dict[str, int] = {}

    def guest_rate(self) -> float | None:
        """Events per second as the guest measured them (None if the TSC rate is unknown)."""
        m = EVQBENCH_LINE.search(self.vm.console)
        if not m or m[5]:
            return None
        return int(m[2]) / (int(m[4]) / 1e9)

    def finish(self) -> None:
        assert self.vm.wait() == 0, self.vm.console
        self.vm.close()


def guest_to_host(n: int, consume: Callable[[EventQueue, int], int]) -> dict[str, float]:
    """evqbench produces n events; `consume(q, k)` takes k and returns how many it took."""
    run = Run("produce", n)
    q = run.q
    run.vm.start()
    assert q.get_event(timeout=30)  # the guest is up and producing
    start = time.perf_counter()
    before = counters(run.vm)
    # Stop the counter window while the guest still produces (it is at most CAPACITY
    # events ahead), so its final print and exit are not counted.
    middle = n - 1 - 2 * CAPACITY
    taken = consume(q, middle)
    after = counters(run.vm)
    taken += consume(q, n - 1 - middle)
    elapsed = time.perf_counter() - start
    assert taken == n - 1
    run.finish()
    return result(
        n - 1,
        elapsed=elapsed,
        before=before,
        after=after,
        window=middle,
        guest_rate=run.guest_rate(),
    )


def host_to_guest(n: int, produce: Callable[[EventQueue, int, int], None]) -> dict[str, float]:
    """evqbench consumes n events; `produce(q, first_seq, k)` puts k of them."""
    run = Run("consume", n)
    q = run.q
    run.vm.start()
    # The guest's start-up (its "ready" line is one console exit) stays out of the window.
    for _ in run.vm.iter_console():
        if "evqbench ready" in run.vm.console:
            break
    produce(q, 0, 1)
    start = time.perf_counter()
    before = counters(run.vm)
    middle = n - 1 - 2 * CAPACITY
    produce(q, 1, middle)
    after = counters(run.vm)
    produce(q, 1 + middle, n - 1 - middle)
    elapsed = time.perf_counter() - start  # the last CAPACITY events may still be queued
    run.finish()
    return result(
        n - 1,
        elapsed=elapsed,
        before=before,
        after=after,
        window=middle,
        guest_rate=run.guest_rate(),
    )


def result(
    events: int,
    *,
    elapsed: float,
    before: dict[str, int],
    after: dict[str, int],
    window: int,
    guest_rate: float | None,
) -> dict[str, float]:
    out = {"events": events, "host_rate": events / elapsed}
    if guest_rate is not None:
        out["guest_rate"] = guest_rate
    for k in COUNTERS:
        out[f"{k}_per_event"] = (after[k] - before[k]) / window
    return out


# -- host consumers and producers ----------------------------------------------------------


def drain_native(q: EventQueue, k: int) -> int:
    return _testing.drain_native(q, k, timeout=60)[0]


def batches_of(size: int) -> Callable[[EventQueue, int], int]:
    def consume(q: EventQueue, k: int) -> int:
        got = 0
        while got < k:
            got += len(q.get_events(min(size, k - got), timeout=60))
        return got

    return consume


def one_by_one(q: EventQueue, k: int) -> int:
    get = q.get_event
    for _ in range(k):
        get(60)
    return k


def feed_native(q: EventQueue, first: int, k: int) -> None:
    assert _testing.feed_native(q, k, SIZE, timeout=60, first_seq=first) == k


def put_event(q: EventQueue, first: int, k: int) -> None:
    pad = bytes(SIZE - 8)
    put = q.put_event
    for seq in range(first, first + k):
        put(seq.to_bytes(8, "little") + pad)


# -- baselines ----------------------------------------------------------------------------


EXIT_OPS = 20000


def exit_rtt() -> tuple[float, float]:
    """(median ns, exits per operation) of the one-exit-per-event baseline."""
    with VM("exitbench", args=[str(EXIT_OPS)], timeout=120) as vm:
        assert vm.run() == 0, vm.console
        median = guest_bench_lines(vm.console)["exit_rtt"]["median"]
        return float(median), vm.stats["exits_total"] / EXIT_OPS


def python_queue_rate(n: int) -> float:
    """64-byte bytes objects through queue.Queue from one thread to another, per second."""
    q: queue.Queue[bytes] = queue.Queue(maxsize=CAPACITY)
    payload = bytes(SIZE)

    def producer() -> None:
        for _ in range(n):
            q.put(payload)

    t = threading.Thread(target=producer)
    start = time.perf_counter()
    t.start()
    for _ in range(n):
        q.get()
    elapsed = time.perf_counter() - start
    t.join()
    return n / elapsed


# -- main -----------------------------------------------------------------------------------


def median_run(measure: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Median of every number over REPEATS runs, plus the slowest and fastest rate.

    Rates swing by up to ~3x between runs here: on 2 shared cores it matters whether the
    guest's vCPU thread and the host thread run side by side (cache lines move between
    cores per batch) or take turns on one core; so the spread is reported too.
    """
    runs = [measure() for _ in range(REPEATS)]
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out["host_rate_min"] = min(r["host_rate"] for r in runs)
    out["host_rate_max"] = max(r["host_rate"] for r in runs)
    return out


def main() -> None:
    rust_target = Target("g2h Rust consumer events/s", ">=", 5e6)
    python_target = Target("g2h Python get_events(4096) events/s", ">=", 1e6)
    cases: list[tuple[str, str, Callable[[], dict[str, float]], Target | None]] = [
        (
            "g2h",
            "Rust consumer (drain_native)",
            lambda: guest_to_host(5_000_000, drain_native),
            rust_target,
        ),
        (
            "g2h",
            "Python get_events(4096)",
            lambda: guest_to_host(3_000_000, batches_of(4096)),
            python_target,
        ),
        ("g2h", "Python get_events(256)", lambda: guest_to_host(2_000_000, batches_of(256)), None),
        ("g2h", "Python get_event()", lambda: guest_to_host(500_000, one_by_one), None),
        ("h2g", "Rust producer (feed_native)", lambda: host_to_guest(5_000_000, feed_native), None),
        ("h2g", "Python put_event()", lambda: host_to_guest(1_000_000, put_event), None),
    ]
    exit_runs = [exit_rtt() for _ in range(REPEATS)]
    exit_ns = statistics.median(ns for ns, _ in exit_runs)
    exits_per_op = statistics.median(e for _, e in exit_runs)
    exit_rate = 1e9 / exit_ns
    pyq_rate = statistics.median(python_queue_rate(300_000) for _ in range(REPEATS))

    results: dict[str, object] = {}
    rows = []
    decided: list[tuple[Target, float]] = []
    for direction, label, measure, target in cases:
        r = median_run(measure)
        rate = r["host_rate"]
        results[f"{direction} {label}"] = r
        if target is not None:
            # The slowest run must meet it too: the median alone would hide a bad run.
            decided.append((target, rate))
            slowest = Target(f"{target.name}, slowest run", target.op, target.bound)
            decided.append((slowest, r["host_rate_min"]))
        no_exits = Target(f"{direction} {label}: exits per event", "<=", 0.0)
        decided.append((no_exits, r["exits_total_per_event"]))
        rows.append(
            [
                "guest -> host" if direction == "g2h" else "host -> guest",
                label,
                f"{rate / 1e6:.2f}",
                f"{r['host_rate_min'] / 1e6:.2f}-{r['host_rate_max'] / 1e6:.2f}",
                f"{r['guest_rate'] / 1e6:.2f}" if "guest_rate" in r else "",
                f"{rate / exit_rate:.0f}x",
                f"{rate / pyq_rate:.1f}x",
                f"{r['exits_total_per_event']:.2g}",
                f"{r['interrupts_per_event']:.2g}",
                f"{r['evq_doorbells_per_event']:.2g}",
                "" if target is None else target.cell(rate),
            ]
        )
    rows.append(
        [
            "baseline",
            "one MMIO exit per event",
            f"{exit_rate / 1e6:.3f}",
            "",
            "",
            "1x",
            "",
            f"{exits_per_op:.4f}",
            "",
            "",
            "",
        ]
    )
    rows.append(
        [
            "baseline",
            "Python queue.Queue, 2 threads",
            f"{pyq_rate / 1e6:.3f}",
            "",
            "",
            "",
            "1x",
            "",
            "",
            "",
            "",
        ]
    )
    print(f"{SIZE}-byte events, queue capacity {CAPACITY}, median of {REPEATS} runs\n")
    print(
        table(
            [
                "direction",
                "host side",
                "M events/s (host)",
                "min-max",
                "M events/s (guest)",
                "x exit",
                "x queue.Queue",
                "exits/event",
                "irqs/event",
                "doorbells/event",
                "target",
            ],
            rows,
        )
    )
    decided_json = verdicts(decided)
    print_verdicts(decided_json)
    path = write_json(
        "events",
        {
            "event_size": SIZE,
            "capacity": CAPACITY,
            "repeats": REPEATS,
            "baselines": {
                "exit_rtt_ns": exit_ns,
                "exit_baseline_exits_per_op": exits_per_op,
                "exit_bound_events_per_s": exit_rate,
                "python_queue_events_per_s": pyq_rate,
            },
            "results": results,
            "verdicts": decided_json,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
