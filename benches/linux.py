"""Linux programs benchmark: the same static binaries natively and in vmrpc, one run.

Measured (issue 10's targets):

| measurement | target |
|---|---|
| null syscall (``syscall(SYS_getppid)``) | <= 1x native |
| ``clock_gettime(CLOCK_MONOTONIC)`` | <= 1x native |
| sequential read of a mounted file | >= 0.8x native throughput |
| 10,000 stat+open+close of small files | <= 3x native per operation |
| the same with every path operation in Python (an audit hook) | (before/after) |
| ``busybox true`` start to exit | <= 2x native fork+exec |

The program (benches/linux/bench.c, gcc -static) times itself with CLOCK_MONOTONIC;
``busybox true`` is timed by this script (VM creation to exit code vs
``subprocess.run``). The read test uses a 256 MiB file, not 1 GiB, to spare the
shared machine's disk; the verdict does not depend on the size.

Run: ``python benches/linux.py`` (or ``python -m vmrpc bench linux``).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Target, print_verdicts, table, verdicts, write_json

from vmrpc.linux import LinuxVM, Mount

HERE = Path(__file__).resolve().parent
BUSYBOX = "/bin/busybox"
READ_MIB = 256
STARTS = 15


def build(out: Path) -> Path:
    exe = out / "bench"
    subprocess.run(
        ["gcc", "-O2", "-static", "-o", str(exe), str(HERE / "linux" / "bench.c")],
        check=True,
    )
    return exe


def parse(stdout: bytes) -> float:
    line = stdout.decode().split()
    assert line[0] == "BENCH", stdout
    return float(line[2])


def native(exe: Path, *args: str) -> float:
    out = subprocess.run([str(exe), *args], capture_output=True, check=True).stdout
    return parse(out)


def guest(exe: Path, *args: str, mounts: list[Mount] | None = None, python: bool = False) -> float:
    # An audit hook keeps every path operation in Python (no native path operations):
    # the before/after of docs/linux.md's "Native path operations", in the same run.
    audit = (lambda access: True) if python else None
    with LinuxVM(exe, args, mounts=mounts or [], audit=audit, timeout=600) as vm:
        code = vm.run()
        assert code == 0, (code, vm.stderr)
        return parse(vm.stdout)


def start_to_exit() -> tuple[float, float]:
    nat: list[float] = []
    vm_times: list[float] = []
    for _ in range(STARTS):
        t0 = time.perf_counter_ns()
        subprocess.run([BUSYBOX, "true"], check=True)
        nat.append(time.perf_counter_ns() - t0)
        t0 = time.perf_counter_ns()
        with LinuxVM(BUSYBOX, ["true"], timeout=60) as vm:
            assert vm.run() == 0
        vm_times.append(time.perf_counter_ns() - t0)
    return statistics.median(nat), statistics.median(vm_times)


def main() -> int:
    rows = []
    results: dict[str, dict[str, float | str]] = {}

    decided: list[tuple[Target, float]] = []

    def record(
        name: str, *, nat: float, vm: float, unit: str, target: tuple[Literal["<=", ">="], float]
    ) -> None:
        """One row; the target is on the ratio vmrpc / native of this run."""
        ratio = vm / nat
        goal = Target(name, *target)
        decided.append((goal, ratio))
        rows.append(
            [name, f"{nat:.1f} {unit}", f"{vm:.1f} {unit}", f"{ratio:.2f}x", goal.cell(ratio)]
        )
        results[name] = {"native": nat, "vmrpc": vm, "unit": unit, "ratio": ratio}

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        exe = build(t)
        data = t / "data"
        data.mkdir()
        big = data / "big.bin"
        with big.open("wb") as f:
            for _ in range(READ_MIB):
                f.write(os.urandom(1 << 20))
        for i in range(100):
            (data / f"f{i}").write_bytes(b"x" * 100)
        mount = [Mount(data, "/data", readonly=True)]

        n_null = 200_000
        nat, vm = native(exe, "null", str(n_null)), guest(exe, "null", str(n_null))
        record("null syscall", nat=nat, vm=vm, unit="ns", target=("<=", 1))
        nat, vm = native(exe, "clock", str(n_null)), guest(exe, "clock", str(n_null))
        record("clock_gettime", nat=nat, vm=vm, unit="ns", target=("<=", 1))
        nat = native(exe, "read", "1", str(big))
        vm = guest(exe, "read", "1", "/data/big.bin", mounts=mount)
        record(
            f"read {READ_MIB} MiB",
            nat=nat,
            vm=vm,
            unit="MB/s",
            target=(">=", 0.8),
        )
        nat = native(exe, "stat", "10000", str(data))
        vm = guest(exe, "stat", "10000", "/data", mounts=mount)
        record("stat+open+close", nat=nat, vm=vm, unit="ns", target=("<=", 3))
        vm = guest(exe, "stat", "10000", "/data", mounts=mount, python=True)
        record(
            "stat+open+close via Python",
            nat=nat,
            vm=vm,
            unit="ns",
            target=("<=", 3),
        )
        nat, vm = start_to_exit()
        record(
            "busybox true start-to-exit",
            nat=nat / 1000,
            vm=vm / 1000,
            unit="us",
            target=("<=", 2),
        )

    print(table(["measurement", "native", "vmrpc", "ratio", "target (ratio)"], rows))
    print_verdicts(verdicts(decided))
    path = write_json("linux", {"results": results, "verdicts": verdicts(decided)})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
