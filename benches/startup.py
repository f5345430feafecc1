"""Where a Linux program's start-up goes, from ``LinuxVM(...)`` to its exit status.

For ``busybox true`` and ``python3 -c pass`` (medians of RUNS, after one warm-up):

- ``VM()``: KVM objects, guest memory, devices, vCPU 0 (the `vmrpc.VM` constructor);
- ``linux_setup``: reading the program (and ld.so), copying their segments into guest
  memory with the ``syscall`` sites rewritten, the stack (``LinuxVM.layout``'s
  ``read_ns``/``load_ns``/``rest_ns``); the rest of the constructor is Python;
- ``run``: start to exit status (the personality's boot, the program, its calls);
- ``close``: tearing the VM down (KVM's own teardown of the VM is most of it);
- from a traced run (``trace=True``, which adds a host call per system call, so its
  total is not the untraced one): the time the personality spent in each system call,
  summed by name, and the time the `files` module spent in Python per function
  (its request handler timed here);
- ``vcpus_created`` from the VM's counters;
- ``close`` of a ``busybox true`` VM right after its exit, and after a 20 ms pause: the
  kernel's ``srcu_barrier`` in ``kvm_destroy_vm`` waits for the grace period of the
  I/O bus update made when the doorbell's ioeventfd was registered (docs/linux.md).

Run: ``python benches/startup.py``. Prints a table; writes no results file (the
benchmarks with targets are benches/linux.py and benches/python.py). Counters an older
vmrpc lacks (to compare with one) print as -1.
"""

from __future__ import annotations

import collections
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from vmrpc.linux import LinuxVM
from vmrpc.linux.filebase import FilesBase

RUNS = 9
PROGRAMS = {
    "busybox true": ("/bin/busybox", ["true"]),
    "python3 -c pass": ("/usr/bin/python3", ["-c", "pass"]),
}
Body = Callable[[tuple[int, ...], bytes], tuple[int, bytes]]


def ms(ns: float) -> str:
    return f"{ns / 1e6:.2f} ms"


def phases(program: str, args: list[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = collections.defaultdict(list)
    for i in range(RUNS + 1):
        t0 = time.perf_counter_ns()
        vm = LinuxVM(program, args, timeout=60)
        t1 = time.perf_counter_ns()
        code = vm.run()
        t2 = time.perf_counter_ns()
        stats = vm.stats
        vm.close()
        t3 = time.perf_counter_ns()
        assert code == 0, vm.stderr
        if i == 0:
            continue  # warm-up: caches of the process (rewritten sites, imports)
        layout = collections.defaultdict(lambda: -1, vm.layout)
        setup = layout["read_ns"] + layout["load_ns"] + layout["rest_ns"]
        out["constructor"].append(t1 - t0)
        out["  linux_setup: read"].append(layout["read_ns"])
        out["  linux_setup: load"].append(layout["load_ns"])
        out["  rest of the constructor"].append(t1 - t0 - setup)
        out["run (start to exit status)"].append(t2 - t1)
        out["close"].append(t3 - t2)
        out["total"].append(t3 - t0)
        out["vcpus_created"].append(stats.get("vcpus_created", -1))
    return out


@contextmanager
def python_time_per_function() -> Iterator[collections.Counter[str]]:
    """Times each `files` request handled in Python, by handler name."""
    spent: collections.Counter[str] = collections.Counter()
    original = FilesBase._call

    def timed(self: FilesBase, request: bytes, body: Body) -> bytes:
        t = time.perf_counter_ns()
        try:
            return original(self, request, body)
        finally:
            spent[body.__qualname__.split(".")[1]] += time.perf_counter_ns() - t

    FilesBase._call = timed  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        FilesBase._call = original  # type: ignore[method-assign]


def traced(program: str, args: list[str]) -> tuple[collections.Counter[str], dict[str, int]]:
    with python_time_per_function() as python_ns, LinuxVM(program, args, trace=True) as vm:
        assert vm.run(timeout=60) == 0
        calls: collections.Counter[str] = collections.Counter()
        handler_ns: collections.Counter[str] = collections.Counter()
        for record in vm.trace:
            calls[record.name] += 1
            handler_ns[record.name] += record.ns
    print("  traced: system calls by time in the personality (count, total)")
    for name, ns in handler_ns.most_common(8):
        print(f"    {name:<14} {calls[name]:>4}  {ms(ns)}")
    print(f"    all {sum(calls.values())} calls: {ms(sum(handler_ns.values()))}")
    print("  traced: the files module's Python handlers (total)")
    for name, ns in python_ns.most_common(6):
        print(f"    {name:<14} {ms(ns)}")
    return handler_ns, dict(calls)


def close_after(pause_s: float) -> float:
    times = []
    for _ in range(RUNS):
        vm = LinuxVM("/bin/busybox", ["true"], timeout=60)
        assert vm.run() == 0
        time.sleep(pause_s)
        t = time.perf_counter_ns()
        vm.close()
        times.append(time.perf_counter_ns() - t)
    return statistics.median(times)


def main() -> int:
    for pause in (0.0, 0.02):
        print(
            f"close of busybox true {pause * 1000:.0f} ms after its exit: {ms(close_after(pause))}"
        )
    for title, (program, args) in PROGRAMS.items():
        print(f"{title} (median of {RUNS})")
        for name, values in phases(program, args).items():
            value = statistics.median(values)
            shown = f"{value:.0f}" if name == "vcpus_created" else ms(value)
            print(f"  {name:<28} {shown}")
        traced(program, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
