"""vCPUs started on demand (crates/vmm/src/vm/launch.rs, guest/linux/vcpu_abi.h).

A `LinuxVM` starts vCPU 0 only; the personality asks the host for another vCPU when
``clone`` first needs one. Counted by ``stats["vcpus_created"]`` (KVM_CREATE_VCPU
calls), so nothing here measures time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_linux_threads import build_threads, in_vm, native

from vmrpc import VM
from vmrpc.linux import LinuxVM

pytestmark = pytest.mark.kvm

BUSYBOX = Path("/bin/busybox")


def test_a_program_that_never_clones_creates_one_vcpu() -> None:
    with LinuxVM(BUSYBOX, ["true"], threads=4) as vm:
        assert vm.run() == 0
        assert vm.stats["vcpus_created"] == 1


@pytest.mark.parametrize("libc", ["glibc", "musl"])
def test_threads_get_vcpus_as_they_are_cloned(libc: str, tmp_path: Path) -> None:
    program = build_threads(libc, tmp_path)
    want = native(program, "limit", "3")
    assert want.returncode == 0, want.stderr
    # Three waiting threads at once: vCPUs 1..3 are created for them, no more
    # (threads=6 allows five more).
    code, out, vm = in_vm(program, "limit", "3", threads=6)
    assert (code, out) == (0, want.stdout)
    assert vm.stats["vcpus_created"] == 4
    # One more than the VM allows still fails cleanly (EAGAIN) after on-demand starts.
    code, out, vm = in_vm(program, "limit", "4", threads=3)
    assert (code, out.splitlines()[0]) == (0, b"started 2 of 4 (Resource temporarily unavailable)")
    assert vm.stats["vcpus_created"] == 3


def test_bare_guests_still_get_every_vcpu_at_start() -> None:
    with VM("smp", vcpus=3) as vm:
        assert vm.run(timeout=30) == 0
        assert vm.stats["vcpus_created"] == 3
