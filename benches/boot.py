"""Boot benchmark: time from ``VM("hello")`` to its exit code, and memory per idle VM.

Baseline, measured in the same run: raw KVM, i.e. creating a VM with one vCPU, running
it to ``hlt`` and destroying it with bare ioctls (``_vmm.bench_raw_kvm_cycles``).
Targets (issue 2): median boot <= 2x that baseline; <= 5 MiB host memory per idle VM
beyond the guest RAM it touched; 10 VMs running at once in one process.

Run: ``python benches/boot.py`` (or ``python -m vmrpc bench boot``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import summary, table, us, write_json

from vmrpc import VM, _vmm

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


def guest_ram_touched_kib() -> int:
    """Resident KiB of the mappings that are guest RAM (anonymous, exactly MEMORY_MIB)."""
    total, size_kib, in_guest_ram = 0, MEMORY_MIB * 1024, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line[:1].isdigit() or line[:1] in "abcdef":
            in_guest_ram = False
        elif line.startswith("Size:"):
            in_guest_ram = int(line.split()[1]) == size_kib
        elif line.startswith("Rss:") and in_guest_ram:
            total += int(line.split()[1])
    return total


def idle_memory() -> dict[str, float]:
    """Start IDLE_VMS idle guests at once; host memory per VM beyond touched guest RAM."""
    # Warm up: the first VM pays for one-time process set-up (thread pools, caches).
    with VM("idle", memory_mib=MEMORY_MIB) as warm:
        warm.start()
        _wait_for(warm, "idle")
    before_rss, before_guest = rss_kib(), guest_ram_touched_kib()
    vms = [VM("idle", memory_mib=MEMORY_MIB) for _ in range(IDLE_VMS)]
    try:
        for vm in vms:
            vm.start()
        for vm in vms:
            _wait_for(vm, "idle")
        running = sum(vm.state == "running" for vm in vms)
        rss = rss_kib() - before_rss
        guest = guest_ram_touched_kib() - before_guest
    finally:
        for vm in vms:
            vm.close()
    return {
        "vms": IDLE_VMS,
        "running_at_once": running,
        "rss_per_vm_kib": rss / IDLE_VMS,
        "guest_ram_touched_per_vm_kib": guest / IDLE_VMS,
        "overhead_per_vm_kib": (rss - guest) / IDLE_VMS,
    }


def _wait_for(vm: VM, line: str) -> None:
    deadline = time.monotonic() + 30
    while line not in vm.console:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{vm!r} never printed {line!r}")
        time.sleep(0.001)


def main() -> None:
    raw = [float(t) for t in _vmm.bench_raw_kvm_cycles(RUNS)]
    boot = boot_times()
    raw_s, boot_s = summary(raw), summary(boot)
    mem = idle_memory()
    ratio = boot_s["median"] / raw_s["median"]
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
            "<= 2.00",
        ],
    ]
    print(table(["boot", "median µs", "p99 µs", "x baseline", "target"], rows))
    print()
    overhead_mib = mem["overhead_per_vm_kib"] / 1024
    print(
        table(
            [
                "idle VMs",
                "running at once",
                "RSS/VM MiB",
                "guest RAM touched/VM MiB",
                "overhead/VM MiB",
                "target",
            ],
            [
                [
                    IDLE_VMS,
                    mem["running_at_once"],
                    f"{mem['rss_per_vm_kib'] / 1024:.2f}",
                    f"{mem['guest_ram_touched_per_vm_kib'] / 1024:.2f}",
                    f"{overhead_mib:.2f}",
                    "<= 5 MiB, 10 at once",
                ]
            ],
        )
    )
    path = write_json(
        "boot",
        {
            "raw_kvm_ns": raw_s,
            "boot_ns": boot_s,
            "boot_vs_raw": ratio,
            "idle_memory": mem,
            "targets": {"boot_vs_raw": 2.0, "overhead_per_vm_mib": 5.0, "vms_at_once": 10},
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
