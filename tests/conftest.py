"""Shared fixtures of the vmrpc test suite.

Tests that boot VMs carry the ``kvm`` marker (or use `vm_factory`); they are skipped,
with the reason, when ``/dev/kvm`` is missing or cannot be opened. Every VM a test
builds through `vm_factory` is closed at teardown, also when the test fails; a failed
test's report gets each VM's console and counters.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from vmrpc import VM

KVM_DEVICE = "/dev/kvm"

#: A guest that runs longer than this is stopped: only a safety net, never a measurement.
SAFETY_TIMEOUT_S = 30.0


def kvm_unusable_reason() -> str | None:
    """Return why /dev/kvm cannot be used here, or None when it can be opened."""
    try:
        fd = os.open(KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return f"{KVM_DEVICE} does not exist: this machine offers no KVM"
    except PermissionError:
        return f"{KVM_DEVICE} exists but cannot be opened (permission denied; join group 'kvm')"
    except OSError as error:
        return f"{KVM_DEVICE} cannot be opened: {errno.errorcode.get(error.errno or 0, error)}"
    os.close(fd)
    return None


KVM_REASON = kvm_unusable_reason()

VmFactory = Callable[..., VM]

_VMS = pytest.StashKey[list[VM]]()


def pytest_report_header(config: pytest.Config) -> str:
    return f"kvm: {'usable' if KVM_REASON is None else KVM_REASON}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if KVM_REASON is None:
        return
    skip = pytest.mark.skip(reason=f"needs KVM: {KVM_REASON}")
    for item in items:
        if "kvm" in item.keywords or "vm_factory" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        for index, vm in enumerate(item.stash.get(_VMS, [])):
            label = f"vm {index} ({vm.image.name}, vcpus={vm.vcpus})"
            try:
                report.sections.append((f"{label} state", vm.state))
                report.sections.append((f"{label} console", vm.console or "<empty>"))
                stats = "\n".join(f"{k} {v}" for k, v in sorted(vm.stats.items()))
                report.sections.append((f"{label} counters", stats))
            except Exception as error:  # a dump must not hide the real failure
                report.sections.append((label, f"<could not dump: {error!r}>"))
    return report


@pytest.fixture
def vm_factory(request: pytest.FixtureRequest) -> Iterator[VmFactory]:
    """Build VMs: ``vm_factory("hello", vcpus=2, args=[...])``; all are closed at teardown.

    VMs get ``timeout=SAFETY_TIMEOUT_S`` unless the test passes its own.
    """
    if KVM_REASON is not None:
        pytest.skip(f"needs KVM: {KVM_REASON}")
    vms = request.node.stash.setdefault(_VMS, [])

    def make(image: str | os.PathLike[str], **kwargs: Any) -> VM:
        kwargs.setdefault("timeout", SAFETY_TIMEOUT_S)
        vm = VM(image, **kwargs)
        vms.append(vm)
        return vm

    yield make

    errors: list[BaseException] = []
    for vm in vms:
        try:
            vm.close()
        except Exception as error:
            errors.append(error)
    vms.clear()
    if errors:
        raise errors[0]


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
