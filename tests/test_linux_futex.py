"""futex in the Linux personality, single-threaded (threads are the next slice).

tests/linux_programs/futex.c prints the result of each case; the first line must match
Linux exactly (the same binary runs natively), the last one is where a single-threaded
personality must differ: a wait nothing can end answers EDEADLK instead of hanging.
"""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest
from linux_support import TIMEOUT, libc_programs

from vmrpc.linux import LinuxVM

pytestmark = pytest.mark.kvm

program = libc_programs(Path(__file__).parent / "linux_programs" / "futex.c")


def test_futex_answers_like_linux_for_one_thread(program: Path) -> None:
    with LinuxVM(program, timeout=TIMEOUT) as vm:
        assert vm.run() == 0
        first, last = vm.stdout.decode().splitlines()
    want = (
        f"wake 0 changed {errno.EAGAIN} timed {errno.ETIMEDOUT} slept 1 "
        f"bitset {errno.ETIMEDOUT} zero {errno.EINVAL} misaligned {errno.EINVAL}"
    )
    assert first == want
    assert last == f"forever {errno.EDEADLK}"
    # A wake with nobody waiting is answered in the guest, without a host exit.
    assert vm.stats["futex_wakes"] == 0
    # The same binary on Linux, up to the wait that would hang there.
    native = subprocess.Popen([program], stdout=subprocess.PIPE)
    assert native.stdout is not None
    assert native.stdout.readline().decode().rstrip("\n") == want
    native.kill()
    native.wait(timeout=TIMEOUT)
