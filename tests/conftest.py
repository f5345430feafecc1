"""Fixtures of the vmrpc test suite that only this project needs.

The generic machinery (``vm_factory``, ``vm``, ``booted_vm``, the ``kvm`` marker, the
KVM skip and the failure report with console, counters and registers) is vmrpc's
pytest plugin, `vmrpc.pytest_plugin`, loaded through its ``pytest11`` entry point.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import settings

from vmrpc import VM
from vmrpc.pytest_plugin import VmFactory

# Re-exported for tests that still do `from conftest import VmFactory`.
__all__ = ["CHILD_TIMEOUT_S", "VmFactory", "run_python"]

# Property tests have no deadline: a timing limit fails them on a loaded machine
# (the policy property test did, once, beside other builds), and the suite makes no
# timing assertions. Under CI the examples are derandomized, so a run can be repeated.
settings.register_profile("vmrpc", deadline=None, derandomize=os.environ.get("CI") == "true")
settings.load_profile("vmrpc")

#: A child process (the CLI, an example script) that runs longer is a failure.
CHILD_TIMEOUT_S = 90


def run_python(
    *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS...`` (this interpreter) without input; capture its output."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
        cwd=cwd,
        env=None if env is None else dict(env),
    )


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
