"""getrusage (guest/linux/rusage.c, crates/vmm/src/vm/cpu_clock.rs; docs/linux.md).

tests/linux_programs/rusage.c checks its own getrusage answers against bounds that
hold on Linux too (CPU time that covers a burn measured on the thread's own clock,
a thread's time within the process's, a peak ru_maxrss that covers 32 MiB touched,
RUSAGE_CHILDREN zeros, EINVAL and EFAULT); it runs natively and in a VM and must
print the same lines, plus, in the VM, ru_maxrss below the VM's memory. No check
compares a time with a fixed number.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from linux_support import TIMEOUT, build_probe

from vmrpc.linux import LinuxVM

pytestmark = pytest.mark.kvm

SOURCE = Path(__file__).parent / "linux_programs" / "rusage.c"


@pytest.mark.parametrize("libc", ["glibc", "musl"])
def test_getrusage_answers_within_the_bounds_linux_meets(libc: str, tmp_path: Path) -> None:
    program = build_probe(libc, tmp_path, SOURCE)
    native = subprocess.run([program], capture_output=True, timeout=TIMEOUT, check=False)
    assert native.returncode == 0, native.stdout
    with LinuxVM(program, [str(256 * 1024)], timeout=TIMEOUT, threads=2, memory_mib=256) as vm:
        code = vm.run()
        want = native.stdout + b"ok maxrss-below-limit\n"
        assert (code, vm.stdout) == (0, want), vm.stdout.decode()
        assert "enosys_getrusage" not in vm.stats
