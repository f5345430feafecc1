"""`VM(..., cpu_limit=...)`: a per-VM cgroup holding only the vCPU threads, with a CPU quota.

These tests read the kernel's cgroup files, not timings. They need a usable cgroup
hierarchy with the cpu controller (root here); where there is none they skip and say so.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmrpc import VM, ConfigError

pytestmark = pytest.mark.kvm


def threads_file(cgroup: Path) -> Path:
    """The file listing a cgroup's threads: v1 ``tasks``, v2 ``cgroup.threads``."""
    v1 = cgroup / "tasks"
    return v1 if v1.exists() else cgroup / "cgroup.threads"


def cgroup_threads(cgroup: Path) -> set[int]:
    return {int(t) for t in threads_file(cgroup).read_text().split()}


def quota(cgroup: Path) -> tuple[int, int]:
    """(quota, period) in µs, from v1 CFS files or v2 ``cpu.max``."""
    v1 = cgroup / "cpu.cfs_quota_us"
    if v1.exists():
        return int(v1.read_text()), int((cgroup / "cpu.cfs_period_us").read_text())
    q, p = (cgroup / "cpu.max").read_text().split()
    return int(q), int(p)


def thread_name(tid: int) -> str:
    return Path(f"/proc/self/task/{tid}/comm").read_text().strip()


def own_vm_cgroups(parent: Path) -> list[Path]:
    """This process's VM cgroups under ``parent``."""
    return sorted(parent.glob(f"vmrpc-{os.getpid()}-*"))


@pytest.fixture
def limited_spin() -> Iterator[VM]:
    """A started 2-vCPU `spin` guest limited to half a host CPU."""
    try:
        vm = VM("spin", vcpus=2, cpu_limit=0.5)
    except ConfigError as e:
        pytest.skip(f"no usable cgroup CPU controller here: {e}")
    try:
        vm.start()
        yield vm
    finally:
        vm.close()


def test_vcpu_threads_and_only_they_are_in_the_vm_cgroup(limited_spin: VM) -> None:
    assert limited_spin.cgroup is not None
    cgroup = Path(limited_spin.cgroup)
    # start() returns once every vCPU thread has entered the cgroup.
    members = {t: thread_name(t) for t in cgroup_threads(cgroup)}
    vcpus = sorted(n for n in members.values() if n.startswith("vmrpc-vcpu"))
    assert vcpus == ["vmrpc-vcpu0", "vmrpc-vcpu1"]
    # KVM's worker for this VM is forked from the first vCPU to run, so it may follow
    # it into the cgroup (its work is the VM's); no host thread of vmrpc or Python is.
    others = set(members.values()) - set(vcpus)
    assert others <= {"kvm-nx-lpage-re"}, members
    assert threading.get_native_id() not in members
    assert os.getpid() not in members
    # Half a host CPU: 5 ms per 10 ms period (crates/vmm/src/cgroup.rs).
    assert quota(cgroup) == (5_000, 10_000)


def test_cgroup_removed_at_close(limited_spin: VM) -> None:
    assert limited_spin.cgroup is not None
    cgroup = Path(limited_spin.cgroup)
    assert cgroup.is_dir()
    limited_spin.close()
    assert not cgroup.exists()
    assert limited_spin.cgroup is None


def test_no_cgroup_leak_across_many_vms(limited_spin: VM) -> None:
    assert limited_spin.cgroup is not None
    parent = Path(limited_spin.cgroup).parent
    limited_spin.close()
    for i in range(150):
        # Alternate: started and killed, run to exit, never started.
        vm = VM("spin" if i % 3 == 0 else "hello", cpu_limit=0.2)
        try:
            if i % 3 == 0:
                vm.start()
            elif i % 3 == 1:
                assert vm.run(timeout=30) == 0
        finally:
            vm.close()
    assert own_vm_cgroups(parent) == []


def test_no_limit_no_cgroup() -> None:
    with VM("hello") as vm:
        assert vm.cgroup is None


@pytest.mark.parametrize(
    "bad", [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, True, False, 0.001]
)
def test_bad_limits_refused(bad: float) -> None:
    with pytest.raises(ConfigError, match="cpu_limit"):
        VM("hello", cpu_limit=bad)


def test_limit_above_host_cpus_refused() -> None:
    host = os.cpu_count() or 1
    with pytest.raises(ConfigError, match=f"to {host} "):
        VM("hello", cpu_limit=host + 0.5)


def test_non_number_limit_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        VM("hello", cpu_limit="half")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("parent", "expected"),
    [
        # procfs refuses mkdir even for root: like a read-only or foreign cgroupfs.
        ("v1:/proc", r"cannot create the VM's cgroup /proc/vmrpc-.*root"),
        ("v2:/nonexistent-cgroup-root", r"cannot create the VM's cgroup /nonexistent"),
        ("v3:/sys/fs/cgroup", "VMRPC_CGROUP_PARENT must be"),
    ],
)
def test_unusable_cgroups_are_a_clear_config_error(
    monkeypatch: pytest.MonkeyPatch, parent: str, expected: str
) -> None:
    monkeypatch.setenv("VMRPC_CGROUP_PARENT", parent)
    with pytest.raises(ConfigError, match=expected):
        VM("hello", cpu_limit=0.5)
    # A VM without a limit never touches cgroups.
    with VM("hello") as vm:
        assert vm.run(timeout=30) == 0
