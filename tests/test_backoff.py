"""Idle spin-waits back off: a vCPU waiting on a spinlock ends up giving its host CPU away.

guest/apps/neighbour.c ``wait``: vCPU 0 takes a spinlock and halts holding it; every
other vCPU waits for it forever. After a bounded spin the runtime's back-off
(guest/rt/backoff.c) writes the yield register, which the VMM counts (``yields``).
The test waits for that counter (real state), not for a time.
"""

from __future__ import annotations

import time

import pytest

from vmrpc import VM

pytestmark = pytest.mark.kvm

#: Safety net only: the wait below ends as soon as the counter moves.
SAFETY_S = 60


def wait_for_yields(vm: VM, at_least: int) -> int:
    deadline = time.monotonic() + SAFETY_S
    while vm.stats["yields"] < at_least:
        assert vm.state == "running", vm.console
        assert time.monotonic() < deadline, f"no back-off to the host: {vm.stats}"
        time.sleep(0.01)
    return vm.stats["yields"]


def test_spinlock_waiters_give_the_host_cpu_away() -> None:
    with VM("neighbour", vcpus=3, args=["wait"]) as vm:
        vm.start()
        # 20: more than the few yields of the application vCPUs' start-up wait
        # (rt_start), so only waiting on the lock can reach it.
        wait_for_yields(vm, 20)
        # The waiters never got the lock (the guest would have exited with 1).
        assert vm.state == "running"
        assert "got a lock" not in vm.console
