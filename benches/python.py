"""CPython in a VM: the host's own /usr/bin/python3, unmodified, vs the same binary natively.

| measurement | target |
|---|---|
| ``python3 -c pass`` start to exit (VM creation included) vs native | <= 2x |
| a CPU-bound workload (nbody, timed inside Python) vs native | >= 0.9x speed |
| 1,000 ``os.stat`` calls (timed inside Python) vs native | <= 3x |
| host memory per idle CPython VM | <= 20 MiB |

Plus a warm pool (`vmrpc.PythonPool`: one VM, CPython started once, a fork per run):
``pass`` and a small json/hashlib workload per run vs the same ``python3 -c`` natively
(start to exit), and the pool's idle memory (Pss as below, less ``LazyFree``: the spare
fork snapshot the kernel may take back at once) after runs of ``pass``, then after runs
of the workload (guest pages a run touched stay resident).

Plus snapshots (`vmrpc.PythonSnapshot`: CPython started once to a snapshot point, then a
fresh VM per run mapping that memory copy-on-write, docs/linux.md "Snapshots"): ``pass``
and the workload start to exit vs native, and the host memory (Pss, as below) per idle
VM started from the snapshot (the snapshot's own memfd, once per snapshot, is reported
beside it and not counted in Pss).

Native and VM runs alternate, several of each, medians reported. The idle VMs have
imported nothing beyond the guest client and wait on an event queue (their vCPU halted);
their cost is the growth of this process's proportional set size (Pss) per VM.

Run: ``python benches/python.py`` (or ``python -m vmrpc bench python``).
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Target, print_verdicts, table, verdicts, write_json

from vmrpc.linux import LinuxVM, PythonPool, PythonSnapshot

PYTHON = "/usr/bin/python3"
RUNS = 5
POOL_RUNS = 21
IDLE_VMS = 4

NBODY = """
import time
def nbody(steps):
    bodies = [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 39.47],
              [4.84, -1.16, -0.10, 0.60, 2.81, -0.02, 0.037],
              [8.34, 4.12, -0.40, -1.01, 1.82, 0.008, 0.011],
              [12.89, -15.11, -0.22, 1.08, 0.86, -0.01, 0.0017],
              [15.37, -25.91, 0.17, 0.97, 0.59, -0.03, 0.002]]
    for _ in range(steps):
        for i, a in enumerate(bodies):
            for b in bodies[i + 1:]:
                dx, dy, dz = a[0] - b[0], a[1] - b[1], a[2] - b[2]
                mag = 0.01 / (dx * dx + dy * dy + dz * dz) ** 1.5
                a[3] -= dx * b[6] * mag; a[4] -= dy * b[6] * mag; a[5] -= dz * b[6] * mag
                b[3] += dx * a[6] * mag; b[4] += dy * a[6] * mag; b[5] += dz * a[6] * mag
        for body in bodies:
            body[0] += 0.01 * body[3]; body[1] += 0.01 * body[4]; body[2] += 0.01 * body[5]
    return bodies[0][0]
t = time.perf_counter(); nbody(40000); print("SECONDS", time.perf_counter() - t)
"""

WORKLOAD = """
import hashlib, json
doc = json.dumps({"rows": [[i, str(i)] for i in range(2000)]}, sort_keys=True)
print(hashlib.sha256(doc.encode()).hexdigest(), len(json.loads(doc)["rows"]))
"""

STATS = """
import os, time
t = time.perf_counter()
for _ in range(1000):
    os.stat("/usr/lib/python3.11/os.py")
print("SECONDS", time.perf_counter() - t)
"""

IDLE = """
import vmrpc_guest
q = vmrpc_guest.EventQueue("idle")
q.put(b"ready")
q.get()
"""

SECONDS = re.compile(rb"SECONDS ([0-9.e-]+)")


def timed(stdout: bytes) -> float:
    match = SECONDS.search(stdout)
    assert match, stdout
    return float(match.group(1))


def native(code: str) -> bytes:
    return subprocess.run([PYTHON, "-c", code], capture_output=True, check=True).stdout


def in_vm(code: str) -> bytes:
    with LinuxVM(PYTHON, ["-c", code], timeout=600) as vm:
        status = vm.run()
        assert status == 0, (status, vm.stderr)
        return vm.stdout


def start_to_exit() -> tuple[float, float]:
    nat, vm = [], []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        native("pass")
        nat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        in_vm("pass")
        vm.append(time.perf_counter() - t0)
    return statistics.median(nat), statistics.median(vm)


def warm_pool(code: str, pool: PythonPool) -> tuple[float, float]:
    """Medians of ``python3 -c code`` natively and of ``pool.run(code)``, alternating."""
    nat, warm = [], []
    for _ in range(POOL_RUNS):
        t0 = time.perf_counter()
        expected = native(code)
        nat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = pool.run(code)
        warm.append(time.perf_counter() - t0)
        assert (result.returncode, result.stdout) == (0, expected), result
    return statistics.median(nat), statistics.median(warm)


Pair = tuple[float, float]


def pool_rows() -> tuple[Pair, Pair, Pair, Pair]:
    """The warm pool: ``pass``, the workload, the workload with its modules preloaded,
    and the idle pool's memory in MiB: after runs of ``pass``, then after runs of the
    workload (guest pages a run touched stay resident)."""
    before = held_kib()
    with PythonPool(timeout=600) as pool:
        for _ in range(3):  # the first runs fault the bootstrap's pages in
            pool.run("pass")
        idle = (held_kib() - before) / 1024
        for _ in range(3):
            pool.run(WORKLOAD)
        memory = idle, (held_kib() - before) / 1024
        rows = warm_pool("pass", pool), warm_pool(WORKLOAD, pool)
    with PythonPool(preload=["hashlib", "json"], timeout=600) as pool:
        pool.run(WORKLOAD)
        return *rows, warm_pool(WORKLOAD, pool), memory


def snapshot_rows() -> tuple[Pair, Pair, Pair, float, float]:
    """Snapshots: ``pass``, the workload, and the workload from a snapshot that preloaded
    its modules (native, snapshot run) start to exit, the host memory per idle VM started
    from the snapshot and the snapshot's size, in MiB."""
    snap = PythonSnapshot(timeout=600)
    preloaded = PythonSnapshot(preload=["hashlib", "json"], timeout=600)
    rows = []
    for code, snap_of in (("pass", snap), (WORKLOAD, snap), (WORKLOAD, preloaded)):
        nat, runs = [], []
        for _ in range(POOL_RUNS):
            t0 = time.perf_counter()
            expected = native(code)
            nat.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            result = snap_of.run(code)
            runs.append(time.perf_counter() - t0)
            assert (result.returncode, result.stdout) == (0, expected), result
        rows.append((statistics.median(nat), statistics.median(runs)))
    before = pss_kib()
    vms, queues = [], []
    try:
        for _ in range(IDLE_VMS):

            def make_queue(vm: LinuxVM) -> None:
                queues.append(vm.vm.make_ev_queue("idle", capacity=4, max_event_size=16))

            vms.append(snap.start(IDLE, before_start=make_queue))
            assert queues[-1].get_event(timeout=120) == b"ready"
        grown = pss_kib() - before
        for vm, q in zip(vms, queues, strict=True):
            q.put_event(b"go")
            assert vm.wait() == 0
    finally:
        for vm in vms:
            vm.close()
    return rows[0], rows[1], rows[2], grown / 1024 / IDLE_VMS, snap.stored_bytes / (1 << 20)


def inside(code: str) -> tuple[float, float]:
    nat = [timed(native(code)) for _ in range(RUNS)]
    vm = [timed(in_vm(code)) for _ in range(RUNS)]
    return statistics.median(nat), statistics.median(vm)


def pss_kib() -> int:
    text = Path("/proc/self/smaps_rollup").read_text()
    return int(re.search(r"^Pss:\s+(\d+) kB", text, re.M).group(1))  # type: ignore[union-attr]


def held_kib() -> int:
    """Pss less ``LazyFree``: pages the kernel may take back at once (a pool's spare fork
    snapshot, ``crates/vmm/src/linux/fork.rs``) are not held."""
    text = Path("/proc/self/smaps_rollup").read_text()
    kib = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", text, re.M)}
    return kib["Pss"] - kib["LazyFree"]


def idle_memory_mib() -> float:
    before = pss_kib()
    vms = []
    try:
        for _ in range(IDLE_VMS):
            vm = LinuxVM(PYTHON, ["-c", IDLE], timeout=600, python_client=True)
            q = vm.vm.make_ev_queue("idle", capacity=4, max_event_size=16)
            vms.append((vm, q))
            vm.start()
            assert q.get_event(timeout=120) == b"ready"
        grown = pss_kib() - before
        for vm, q in vms:
            q.put_event(b"go")
            assert vm.wait() == 0
    finally:
        for vm, _ in vms:
            vm.close()
    return grown / 1024 / IDLE_VMS


def main() -> int:
    start_nat, start_vm = start_to_exit()
    cpu_nat, cpu_vm = inside(NBODY)
    stat_nat, stat_vm = inside(STATS)
    idle = idle_memory_mib()
    (pass_nat, pass_pool), (work_nat, work_pool), (pre_nat, pre_pool), (pool_idle, pool_used) = (
        pool_rows()
    )
    (snap_nat, snap_pass), (snap_wnat, snap_work), (snap_pnat, snap_pre), snap_idle, snap_size = (
        snapshot_rows()
    )

    start_ratio = start_vm / start_nat
    speed = cpu_nat / cpu_vm
    stat_ratio = stat_vm / stat_nat
    targets = [
        (Target("python3 -c pass start to exit vs native", "<=", 2), start_ratio),
        (Target("CPU-bound workload speed vs native", ">=", 0.9), speed),
        (Target("1,000 os.stat vs native", "<=", 3), stat_ratio),
        (Target("host memory per idle CPython VM (MiB)", "<=", 20), idle),
        (Target("warm pool: python3 -c pass vs native", "<=", 2), pass_pool / pass_nat),
        (Target("warm pool: json/hashlib workload vs native", "<=", 2), work_pool / work_nat),
        (Target("warm pool, modules preloaded: the workload vs native", "<=", 2),
         pre_pool / pre_nat),
        (Target("host memory of an idle warm pool (MiB)", "<=", 20), pool_idle),
        (Target("host memory of an idle warm pool after workload runs (MiB)", "<=", 20),
         pool_used),
        (Target("snapshot: python3 -c pass start to exit vs native", "<=", 2),
         snap_pass / snap_nat),
        (Target("snapshot: json/hashlib workload vs native", "<=", 2), snap_work / snap_wnat),
        (Target("snapshot, modules preloaded: the workload vs native", "<=", 2),
         snap_pre / snap_pnat),
        (Target("host memory per idle VM started from a snapshot (MiB)", "<=", 20), snap_idle),
    ]  # fmt: skip
    decided = verdicts(targets)
    rows = [
        ["python3 -c pass", f"{start_nat * 1e3:.1f} ms", f"{start_vm * 1e3:.1f} ms",
         f"{start_ratio:.2f}x", targets[0][0].cell(start_ratio)],
        ["nbody (40,000 steps)", f"{cpu_nat:.2f} s", f"{cpu_vm:.2f} s",
         f"{speed:.2f}x speed", targets[1][0].cell(speed)],
        ["1,000 os.stat", f"{stat_nat * 1e3:.2f} ms", f"{stat_vm * 1e3:.2f} ms",
         f"{stat_ratio:.2f}x", targets[2][0].cell(stat_ratio)],
        ["memory per idle VM", "", f"{idle:.1f} MiB", "", targets[3][0].cell(idle)],
        ["warm pool: python3 -c pass", f"{pass_nat * 1e3:.1f} ms", f"{pass_pool * 1e3:.1f} ms",
         f"{pass_pool / pass_nat:.2f}x", targets[4][0].cell(pass_pool / pass_nat)],
        ["warm pool: json/hashlib workload", f"{work_nat * 1e3:.1f} ms",
         f"{work_pool * 1e3:.1f} ms", f"{work_pool / work_nat:.2f}x",
         targets[5][0].cell(work_pool / work_nat)],
        ["warm pool, preload=[hashlib, json]: workload", f"{pre_nat * 1e3:.1f} ms",
         f"{pre_pool * 1e3:.1f} ms", f"{pre_pool / pre_nat:.2f}x",
         targets[6][0].cell(pre_pool / pre_nat)],
        ["memory of an idle warm pool (after pass runs)", "", f"{pool_idle:.1f} MiB", "",
         targets[7][0].cell(pool_idle)],
        ["the same after workload runs", "", f"{pool_used:.1f} MiB", "",
         targets[8][0].cell(pool_used)],
        ["snapshot, fresh VM per run: python3 -c pass", f"{snap_nat * 1e3:.1f} ms",
         f"{snap_pass * 1e3:.1f} ms", f"{snap_pass / snap_nat:.2f}x",
         targets[9][0].cell(snap_pass / snap_nat)],
        ["snapshot, fresh VM per run: workload", f"{snap_wnat * 1e3:.1f} ms",
         f"{snap_work * 1e3:.1f} ms", f"{snap_work / snap_wnat:.2f}x",
         targets[10][0].cell(snap_work / snap_wnat)],
        ["snapshot, preload=[hashlib, json]: workload", f"{snap_pnat * 1e3:.1f} ms",
         f"{snap_pre * 1e3:.1f} ms", f"{snap_pre / snap_pnat:.2f}x",
         targets[11][0].cell(snap_pre / snap_pnat)],
        ["memory per idle VM from a snapshot (Pss)", "", f"{snap_idle:.1f} MiB", "",
         targets[12][0].cell(snap_idle)],
        ["the snapshot itself (memfd, once)", "", f"{snap_size:.1f} MiB", "", ""],
    ]  # fmt: skip
    print(table(["measurement", "native", "vmrpc", "ratio", "target"], rows))
    print_verdicts(decided)
    path = write_json(
        "python",
        {
            "runs": RUNS,
            "start_s": {"native": start_nat, "vmrpc": start_vm},
            "nbody_s": {"native": cpu_nat, "vmrpc": cpu_vm},
            "stat1000_s": {"native": stat_nat, "vmrpc": stat_vm},
            "idle_vm_mib": idle,
            "pool_runs": POOL_RUNS,
            "pool_pass_s": {"native": pass_nat, "vmrpc": pass_pool},
            "pool_workload_s": {"native": work_nat, "vmrpc": work_pool},
            "pool_preloaded_workload_s": {"native": pre_nat, "vmrpc": pre_pool},
            "pool_idle_mib": pool_idle,
            "pool_idle_after_workload_mib": pool_used,
            "snapshot_pass_s": {"native": snap_nat, "vmrpc": snap_pass},
            "snapshot_workload_s": {"native": snap_wnat, "vmrpc": snap_work},
            "snapshot_preloaded_workload_s": {"native": snap_pnat, "vmrpc": snap_pre},
            "snapshot_idle_vm_mib": snap_idle,
            "snapshot_stored_mib": snap_size,
            "verdicts": decided,
        },
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
