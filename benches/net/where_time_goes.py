"""Where the C client's time goes in the VM: a diagnostic, not a benchmark.

For one netbench mode, run the client in a `LinuxVM` against the native server a few
times and print, per run:

- the client's own result line, and the native client's for the same mode right after;
- per host thread of the VM (``vmrpc-vcpu0``, ``vmrpc-engine``...): the share of the
  run's wall time it spent on a CPU and runnable but waiting in the run queue
  (``/proc/self/task/TID/schedstat``, sampled every 10 ms until the thread ends), and
  the CPU it was last seen on;
- the share of host calls whose wait outlasted the guest's 200 µs spin and halted the
  vCPU (``vm.stats["interrupts"] / vm.stats["rpcs"]``);
- the host-side service time of each socket RPC that reaches Python (call to answer,
  median), by function. Calls the native data plane serves in Rust never reach Python.

``--pin`` puts the RPC engine threads on CPU 0 and the vCPU on CPU 1 (an experiment:
does it matter that they share a core?); ``--nice N`` renices the VMM's threads.

Run: ``python benches/net/where_time_goes.py rr 3000 [--pin] [--nice -15]``
(modes and sizes as netbench's: send/recv BYTES, rr ROUNDS, conn COUNT, local BYTES).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _netbench as nb

from vmrpc.linux import LinuxVM
from vmrpc.sockets import SocketOutsourcing

ThreadStat = tuple[str, int, int, str]  # name, ns on a CPU, ns in the run queue, last CPU


def threads() -> dict[int, ThreadStat]:
    out: dict[int, ThreadStat] = {}
    for tid in os.listdir("/proc/self/task"):
        base = f"/proc/self/task/{tid}"
        try:
            name = Path(f"{base}/comm").read_text().strip()
            on_cpu, queued, _ = map(int, Path(f"{base}/schedstat").read_text().split())
            cpu = Path(f"{base}/stat").read_text().rsplit(")", 1)[1].split()[36]
        except OSError:  # it ended meanwhile
            continue
        out[int(tid)] = (name, on_cpu, queued, cpu)
    return out


class Sampler(threading.Thread):
    """Keeps the last schedstat of every thread, and applies --pin / --nice to new
    VMM threads as they appear."""

    def __init__(self, pin: bool, nice: int | None) -> None:
        super().__init__(daemon=True)
        self.pin, self.nice = pin, nice
        self.before = threads()
        self.last: dict[int, ThreadStat] = {}
        self.cpus: dict[int, set[str]] = defaultdict(set)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            now = threads()
            for tid, stat in now.items():
                if stat[0].startswith("vmrpc-") and tid not in self.last:
                    self.adjust(tid, stat[0])
                self.cpus[tid].add(stat[3])
            self.last.update(now)
            time.sleep(0.01)  # rarely: the sampler must not load the CPUs it measures

    def adjust(self, tid: int, name: str) -> None:
        if self.pin:
            os.sched_setaffinity(tid, {0} if "engine" in name else {1})
        if self.nice is not None:
            os.setpriority(os.PRIO_PROCESS, tid, self.nice)

    def report(self, wall_ns: int) -> list[str]:
        lines = []
        for tid, (name, on_cpu, queued, _) in sorted(self.last.items()):
            _, on0, q0, _ = self.before.get(tid, (name, 0, 0, ""))
            on, q = (on_cpu - on0) / wall_ns, (queued - q0) / wall_ns
            if name.startswith("vmrpc-") and (on > 0.01 or q > 0.01):
                cpus = ",".join(sorted(self.cpus[tid]))
                lines.append(
                    f"  {name:14s} on a CPU {on:4.0%}, waiting in the run queue {q:4.0%}"
                    f" (CPUs seen: {cpus})"
                )
        return lines


def timed(module: SocketOutsourcing) -> dict[str, list[int]]:
    """Wraps the module's RPC handlers to time each call, to its answer if it waits."""
    times: dict[str, list[int]] = defaultdict(list)
    for name in [n for n in dir(module) if n.startswith("rpc_")]:
        handler: Callable[[bytes], Any] = getattr(module, name)

        def wrap(
            payload: bytes, handler: Callable[[bytes], Any] = handler, name: str = name
        ) -> Any:
            t0 = time.perf_counter_ns()
            answer = handler(payload)
            if isinstance(answer, bytes):
                times[name].append(time.perf_counter_ns() - t0)
                return answer
            return waited(answer, name, t0)

        async def waited(answer: Coroutine[Any, Any, bytes], name: str, t0: int) -> bytes:
            try:
                return await answer
            finally:
                times[name + " (waited on the loop)"].append(time.perf_counter_ns() - t0)

        setattr(module, name, wrap)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["send", "recv", "rr", "conn", "local"])
    ap.add_argument("n")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pin", action="store_true")
    ap.add_argument("--nice", type=int)
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exe = nb.build(Path(tmp))
        with nb.server(exe) as port:
            args = [ns.mode, ns.n] if ns.mode == "local" else [ns.mode, str(port), ns.n]
            for _ in range(ns.runs):
                module = SocketOutsourcing()
                times = timed(module)
                with LinuxVM(exe, args, sockets=module, timeout=600) as vm:
                    sampler = Sampler(ns.pin, ns.nice)
                    sampler.start()
                    t0 = time.perf_counter_ns()
                    code = vm.run()
                    wall = time.perf_counter_ns() - t0
                    sampler.done.set()
                    sampler.join()
                    out, stats = vm.stdout.decode().strip(), vm.stats
                print(f"vmrpc  (exit {code}): {out}")
                print(f"native: {nb.native(exe, *args)}")
                halted = stats["interrupts"] / max(1, stats["rpcs"])
                print(
                    f"  load average {os.getloadavg()[0]:.1f}; {stats['rpcs']} host calls, "
                    f"{halted:.0%} of them halted the vCPU"
                )
                for line in sampler.report(wall):
                    print(line)
                for name, ns_list in sorted(times.items()):
                    print(
                        f"  {name:40s} n={len(ns_list):6d} "
                        f"median {statistics.median(ns_list) / 1000:8.1f} µs"
                    )


if __name__ == "__main__":
    main()
