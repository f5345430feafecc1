"""Fixtures of the vmrpc test suite that only this project needs.

The generic machinery (``vm_factory``, ``vm``, ``booted_vm``, the ``kvm`` marker, the
KVM skip and the failure report with console, counters and registers) is vmrpc's
pytest plugin, `vmrpc.pytest_plugin`, loaded through its ``pytest11`` entry point.
"""

from __future__ import annotations

import pytest

from vmrpc import VM
from vmrpc.pytest_plugin import VmFactory

# Re-exported for tests that still do `from conftest import VmFactory`.
__all__ = ["VmFactory"]


@pytest.fixture
def hello_vm(vm_factory: VmFactory) -> VM:
    """A `hello` VM, created but not started."""
    return vm_factory("hello")


@pytest.fixture
def spin_vm(vm_factory: VmFactory) -> VM:
    """A started `spin` VM (a guest that never exits); closed at teardown."""
    vm = vm_factory("spin")
    vm.start()
    return vm
