"""Boot benchmark: time from ``VM("hello")`` to its exit code, and memory per idle VM.

Baseline, measured in the same run: raw KVM, i.e. creating a VM with one vCPU, running
it to ``hlt`` and destroying it with bare ioctls (``vmrpc._testing.raw_kvm_cycles``).
Targets (issue 2): median boot <= 2x that baseline; <= 5 MiB host memory per idle VM
beyond the guest RAM it touched; 10 VMs running at once in one process. The memory
figure is the process's RSS growth per idle VM, guest RAM included: stricter than the
target, and measurable (the guest RAM mappings of several VMs are adjacent anonymous
mappings that the kernel merges, so /proc/self/smaps cannot tell them apart).

Run: ``python benches/boot.py`` (or ``python -m vmrpc bench boot``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Target, print_verdicts, summary, table, us, verdicts, write_json

from vmrpc import VM, _testing

RUNS = 60
IDLE_VMS = 10
MEMORY_MIB = 64


def boot_times() -> list[float]:
    times: list[float] = []
    for _ in range(RUNS):
        start = time.perf_counter_ns()
        with VM("hello", memory_mib=MEMORY_MIB) as vm:
            code = vm.run(timeout=30)
        times.append(time.perf_counter_ns() - start)
        assert code == 0
    return times


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def idle_memory() -> dict[str, float]:
    """Start IDLE_VMS idle guests at once; RSS growth per VM (guest RAM it touched included)."""
    # Warm up: the first VM pays for one-time process set-up (thread pools, caches).
    with VM("idle", memory_mib=MEMORY_MIB) as warm:
        warm.start()
        _wait_for(warm, "idle")
    before_rss = rss_kib()
    vms = [VM("idle", memory_mib=MEMORY_MIB) for _ in range(IDLE_VMS)]
    try:
        for vm in vms:
            vm.start()
        for vm in vms:
            _wait_for(vm, "idle")
        running = sum(vm.state == "running" for vm in vms)
        rss = rss_kib() - before_rss
    finally:
        for vm in vms:
            vm.close()
    return {
        "vms": IDLE_VMS,
        "running_at_once": running,
        "rss_per_vm_kib": rss / IDLE_VMS,
    }


def _wait_for(vm: VM, line: str) -> None:
    deadline = time.monotonic() + 30
    while line not in vm.console:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{vm!r} never printed {line!r}")
        time.sleep(0.001)


def main() -> None:
    raw = [float(t) for t in _testing.raw_kvm_cycles(RUNS)]
    boot = boot_times()
    raw_s, boot_s = summary(raw), summary(boot)
    mem = idle_memory()
    ratio = boot_s["median"] / raw_s["median"]
    boot_target = Target("boot median / raw KVM", "<=", 2.0)
    memory_target = Target("RSS per idle VM (MiB)", "<=", 5.0)
    at_once_target = Target("idle VMs running at once", ">=", IDLE_VMS)
    rss_mib = mem["rss_per_vm_kib"] / 1024
    rows = [
        [
            "raw KVM: create VM + vCPU, run to hlt, destroy (baseline)",
            us(raw_s["median"]),
            us(raw_s["p99"]),
            "1.00",
            "",
        ],
        [
            f'VM("hello") -> exit code ({MEMORY_MIB} MiB, 1 vCPU)',
            us(boot_s["median"]),
            us(boot_s["p99"]),
            f"{ratio:.2f}",
            boot_target.cell(ratio),
        ],
    ]
    print(table(["boot", "median µs", "p99 µs", "x baseline", "target"], rows))
    print()
    print(
        table(
            ["idle VMs", "running at once", "RSS growth/VM MiB (guest RAM included)", "target"],
            [
                [
                    IDLE_VMS,
                    mem["running_at_once"],
                    f"{rss_mib:.2f}",
                    f"{memory_target.cell(rss_mib)}; {at_once_target.cell(mem['running_at_once'])}",
                ]
            ],
        )
    )
    decided = verdicts(
        [
            (boot_target, ratio),
            (memory_target, rss_mib),
            (at_once_target, mem["running_at_once"]),
        ]
    )
    print_verdicts(decided)
    path = write_json(
        "boot",
        {
            "raw_kvm_ns": raw_s,
            "boot_ns": boot_s,
            "boot_vs_raw": ratio,
            "idle_memory": mem,
            "verdicts": decided,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
