"""getrusage (guest/linux/rusage.c, crates/vmm/src/vm/cpu_clock.rs; docs/linux.md).

tests/linux_programs/rusage.c checks its own getrusage answers against bounds that
hold on Linux too (CPU time that covers a burn measured on the thread's own clock,
a thread's time within the process's, a peak ru_maxrss that covers 32 MiB touched,
RUSAGE_CHILDREN zeros, EINVAL and EFAULT); it runs natively and in a VM and must
print the same lines. No check compares a time with a fixed number.
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
    with LinuxVM(program, [], timeout=TIMEOUT, threads=2) as vm:
        code = vm.run()
        assert (code, vm.stdout) == (0, native.stdout), vm.stdout.decode()
        assert "enosys_getrusage" not in vm.stats
