"""No leaks across many VMs, and many VMs at once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vmrpc import VM, VmKilled
from vmrpc.pytest_plugin import VmFactory

pytestmark = pytest.mark.kvm


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_many_vms_leak_no_file_descriptors() -> None:
    # One VM first, so that anything opened once per process is already open.
    with VM("hello") as vm:
        assert vm.run(timeout=30) == 0
    before = open_fds()

    for _ in range(50):
        with VM("hello") as vm:
            assert vm.run(timeout=30) == 0

    assert open_fds() - before == 0


def test_close_releases_file_descriptors_without_a_run() -> None:
    before = open_fds()
    for _ in range(20):
        VM("hello").close()

    assert open_fds() - before == 0


def test_ten_spinning_vms_all_killed(vm_factory: VmFactory) -> None:
    vms = [vm_factory("spin") for _ in range(10)]
    for vm in vms:
        vm.start()
    assert all(vm.state == "running" for vm in vms)

    for vm in vms:
        vm.kill()
    for vm in vms:
        with pytest.raises(VmKilled):
            vm.wait(timeout=30)

    assert [vm.state for vm in vms] == ["killed"] * 10


EXIT_WITH_LIVE_VMS = """
import vmrpc

class Echo(vmrpc.HostModule):
    name, version = "echo", 1

    @vmrpc.function(0)
    def echo(self, request):
        return request

done = vmrpc.VM("rpc_echo", args=["echo", "10", "8"], modules=[Echo()])
assert done.run(timeout=30) == 0  # its RPC engine has called into Python
spinning = vmrpc.VM("spin", modules=[Echo()])
spinning.start()
raise RuntimeError("uncaught, with VMs still alive")
"""


@pytest.mark.kvm
def test_interpreter_exits_with_vms_still_alive() -> None:
    """A script that dies (or ends) without closing its VMs still exits: vmrpc stops
    them at exit, before interpreter finalization could deadlock on their threads."""
    result = subprocess.run(
        [sys.executable, "-c", EXIT_WITH_LIVE_VMS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "uncaught, with VMs still alive" in result.stderr
