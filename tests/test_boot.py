"""Booting the built-in guests: console, arguments, SMP, crashes, timeouts, kill."""

from __future__ import annotations

import pytest

from vmrpc import VM, ConfigError, GuestCrashed, GuestTimeout, VmKilled
from vmrpc.pytest_plugin import VmFactory

pytestmark = pytest.mark.kvm

HELLO_LINE = "hello from vmrpc guest"
FAULT_ADDRESS = 0xDEAD0000000


def test_hello_prints_and_exits_zero(hello_vm: VM) -> None:
    assert hello_vm.state == "created"
    assert hello_vm.exit_code is None

    assert hello_vm.run() == 0

    assert HELLO_LINE in hello_vm.console
    assert hello_vm.state == "exited"
    assert hello_vm.exit_code == 0


def test_hello_receives_args(vm_factory: VmFactory) -> None:
    vm = vm_factory("hello", args=["a", "b c"])

    assert vm.run() == 0

    assert "arg[1]=a\n" in vm.console
    assert "arg[2]=b c\n" in vm.console


def test_hello_counts_exits(hello_vm: VM) -> None:
    hello_vm.run()

    stats = hello_vm.stats
    # Printing to the console device exits to the VMM (a port or an MMIO write).
    device_exits = stats["exits_pio_out"] + stats["exits_mmio"]
    assert device_exits > 0
    assert stats["exits_total"] >= device_exits


@pytest.mark.parametrize("vcpus", [1, 2, 4, 8])
def test_smp_runs_every_vcpu(vm_factory: VmFactory, vcpus: int) -> None:
    vm = vm_factory("smp", vcpus=vcpus)
    assert vm.vcpus == vcpus

    assert vm.run() == 0

    for index in range(vcpus):
        assert f"vcpu {index} of {vcpus}" in vm.console


def test_fault_raises_guest_crashed_with_registers(vm_factory: VmFactory) -> None:
    vm = vm_factory("fault")

    with pytest.raises(GuestCrashed) as info:
        vm.run()

    error = info.value
    # The runtime's #PF handler hands cr2 and the faulting registers to the VMM.
    assert error.exception == "#PF"
    assert error.address == FAULT_ADDRESS
    assert error.registers["cr2"] == FAULT_ADDRESS
    assert error.location is not None
    assert error.location.endswith("fault.c:16")
    assert {"rip", "rsp", "rflags", "cr3"} <= error.registers.keys()
    assert "touching unmapped memory" in error.console
    assert error.vcpu == 0
    assert error.reason
    assert vm.state == "crashed"
    assert vm.exit_code is None


def test_spin_times_out_and_is_killed(vm_factory: VmFactory) -> None:
    vm = vm_factory("spin")
    vm.start()

    with pytest.raises(GuestTimeout) as info:
        vm.wait(timeout=0.5)

    assert vm.state == "killed"
    assert {"rip", "rsp", "rflags"} <= info.value.registers.keys()
    # The process is fine afterwards: another VM boots normally.
    assert vm_factory("hello").run() == 0


def test_timeout_given_to_the_constructor_applies_to_run(vm_factory: VmFactory) -> None:
    vm = vm_factory("spin", timeout=0.5)

    with pytest.raises(GuestTimeout):
        vm.run()


def test_kill_running_vm_then_wait_returns(spin_vm: VM) -> None:
    assert spin_vm.state == "running"

    spin_vm.kill()

    with pytest.raises(VmKilled):
        spin_vm.wait(timeout=30)

    assert spin_vm.state == "killed"
    spin_vm.kill()  # idempotent


def test_kill_and_close_before_start_are_safe(hello_vm: VM) -> None:
    hello_vm.kill()
    hello_vm.close()
    hello_vm.close()

    assert hello_vm.state == "closed"


def test_wait_before_start_and_after_close(hello_vm: VM) -> None:
    with pytest.raises(ConfigError, match="not started"):
        hello_vm.wait(timeout=1)

    hello_vm.close()

    with pytest.raises(ConfigError, match="closed"):
        hello_vm.wait(timeout=1)


def test_negative_timeout_is_a_value_error(hello_vm: VM) -> None:
    hello_vm.start()

    with pytest.raises(ValueError, match="timeout"):
        hello_vm.wait(timeout=-1)
    assert hello_vm.wait() == 0


def test_counters_survive_close(hello_vm: VM) -> None:
    hello_vm.run()
    total = hello_vm.stats["exits_total"]

    hello_vm.close()

    assert hello_vm.stats["exits_total"] == total
    assert hello_vm.console.startswith("hello from vmrpc guest")


def test_context_manager_closes_a_running_vm() -> None:
    with VM("spin") as vm:
        vm.start()
        assert vm.state == "running"

    assert vm.state == "closed"


def test_two_vms_at_once(vm_factory: VmFactory, spin_vm: VM) -> None:
    hello = vm_factory("hello")

    assert hello.run() == 0

    assert HELLO_LINE in hello.console
    assert spin_vm.state == "running"


def test_crash_in_one_vm_leaves_another_running(vm_factory: VmFactory, spin_vm: VM) -> None:
    with pytest.raises(GuestCrashed):
        vm_factory("fault").run()

    assert spin_vm.state == "running"
    assert vm_factory("hello").run() == 0
    assert spin_vm.state == "running"


def test_console_from_streams_in_order(vm_factory: VmFactory) -> None:
    vm = vm_factory("hello", args=["x"])
    vm.run()

    pieces = []
    pos = 0
    while True:
        text, new_pos = vm.console_from(pos)
        if new_pos == pos:
            break
        pieces.append(text)
        pos = new_pos

    assert "".join(pieces) == vm.console
    assert vm.console_from(pos) == ("", pos)
