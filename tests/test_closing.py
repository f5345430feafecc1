"""One context-manager behaviour for every object that owns a VM (`vmrpc._closing`).

`VM`, `LinuxVM` and `PythonPool` each had their own copy of ``__enter__``/``__exit__``;
they now share `Closing`'s, so a change to it (or a class that overrides it) shows here.
"""

from __future__ import annotations

import pytest
from linux_support import TIMEOUT, require_busybox

from vmrpc import VM
from vmrpc._closing import Closing
from vmrpc.linux import LinuxVM, PythonPool


@pytest.mark.parametrize("cls", [VM, LinuxVM, PythonPool])
def test_every_vm_owner_uses_the_one_context_manager(cls: type[Closing]) -> None:
    assert issubclass(cls, Closing)
    assert cls.__enter__ is Closing.__enter__
    assert cls.__exit__ is Closing.__exit__


@pytest.mark.kvm
def test_a_with_block_closes_the_vm_and_lets_the_exception_through() -> None:
    vm = VM("hello")

    def fail_inside() -> None:
        with vm:
            raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        fail_inside()
    assert vm.state == "closed"


@pytest.mark.kvm
def test_a_linux_vm_closes_at_the_end_of_its_block() -> None:
    with LinuxVM(require_busybox(), ["true"], timeout=TIMEOUT) as lvm:
        assert lvm.run() == 0
    assert lvm.vm.state == "closed"
