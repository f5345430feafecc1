"""The Python boundary of the VMM: every argument a careless caller can pass ends in a
Python exception of the documented kind, never in a Rust panic (`PanicException`, a
BaseException that ``except Exception`` misses), and closing a VM releases what it holds.
"""

from __future__ import annotations

import math
import os

import pytest

import vmrpc
from vmrpc import ConfigError, HostModule, QueueClosed, _testing, function
from vmrpc.pytest_plugin import VmFactory

pytestmark = pytest.mark.kvm

NO_TIMEOUT = [1e300, math.inf, 1e19]
"""Mean "no timeout": 1e300 s overflows `Duration`, 1e19 s overflows `Instant`."""
BAD_TIMEOUTS = [math.nan, -1.0, -1e-9, -math.inf]


@pytest.mark.parametrize("timeout", NO_TIMEOUT)
def test_huge_and_infinite_timeouts_mean_no_timeout(vm_factory: VmFactory, timeout: float) -> None:
    vm = vm_factory("hello", args=["x"])
    assert vm.run(timeout) == 0, vm.console
    assert vm.wait(timeout) == 0


@pytest.mark.parametrize("timeout", NO_TIMEOUT)
def test_event_queue_waits_with_huge_timeouts_get_the_guests_events(
    vm_factory: VmFactory, timeout: float
) -> None:
    # Issue 13.6's own call: q.get_event(1e300) waiting on a live queue.
    vm = vm_factory("evq_produce", args=["q", "3", "8"])
    q = vm.make_ev_queue("q", capacity=4, max_event_size=8)
    vm.start()
    assert q.wait_readable(timeout)
    events = [q.get_event(timeout)]
    while len(events) < 3:
        events += q.get_events(3 - len(events), timeout)
    assert [len(e) for e in events] == [8, 8, 8]
    assert vm.wait(timeout) == 0, vm.console


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS)
def test_nan_and_negative_timeouts_are_value_errors(vm_factory: VmFactory, timeout: float) -> None:
    vm = vm_factory("hello", args=["x"])
    vm.start()
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        vm.wait(timeout)
    q = vm.make_ev_queue("q", capacity=4, max_event_size=8)
    calls = [
        lambda: q.get_event(timeout),
        lambda: q.put_event(b"x", timeout),
        lambda: q.get_events(1, timeout),
        lambda: q.wait_readable(timeout),
        lambda: _testing.drain_native(q, 1, timeout),
        lambda: _testing.feed_native(q, 1, 8, timeout),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="timeout must be >= 0"):
            call()
    assert vm.wait() == 0


@pytest.mark.parametrize("timeout", NO_TIMEOUT)
def test_event_queue_calls_take_huge_timeouts(vm_factory: VmFactory, timeout: float) -> None:
    vm = vm_factory("hello", args=["x"])
    q = vm.make_ev_queue("q", capacity=4, max_event_size=8)
    # Room and no events: these return without waiting, after computing their deadline.
    q.put_event(b"x", timeout)
    assert _testing.feed_native(q, 1, 8, timeout) == 1
    assert q.get_events(1, 0) == []
    vm.close()
    # A closed queue fails every call the same way, whatever the timeout.
    for call in (
        lambda: q.get_event(timeout),
        lambda: q.get_events(1, timeout),
        lambda: q.wait_readable(timeout),
        lambda: _testing.drain_native(q, 1, timeout),
    ):
        with pytest.raises(QueueClosed):
            call()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("vcpus", -1),
        ("vcpus", 2**32),
        ("vcpus", 2**70),
        ("vcpus", True),
        ("memory_mib", -1),
        ("memory_mib", -(2**63)),
        ("memory_mib", True),
        ("memory_mib", False),
        ("console_limit", -1),
    ],
)
def test_out_of_range_and_bool_settings_are_config_errors(setting: str, value: int) -> None:
    # Checked before any KVM object exists: no VM to close.
    with pytest.raises(ConfigError, match=setting):
        vmrpc.VM("hello", **{setting: value})


def test_an_endless_spin_setting_ends_at_the_timeout(vm_factory: VmFactory) -> None:
    # Host waiters spin for rpc_spin_us before they block; the deadline still ends it.
    with pytest.raises(ConfigError, match="rpc_spin_us"):
        vmrpc.VM("hello", rpc_spin_us=2**64 - 1)
    vm = vm_factory("hello", rpc_spin_us=2**63 - 1)
    q = vm.make_ev_queue("q", capacity=1, max_event_size=8)
    with pytest.raises(TimeoutError):
        q.get_event(timeout=0.01)


def test_a_setting_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        vmrpc.VM("hello", vcpus="2")  # type: ignore[arg-type]


def test_names_with_nul_are_refused(vm_factory: VmFactory) -> None:
    class Nul(HostModule):
        name, version = "ec\0ho", 1

        @function(0)
        def f(self, request: bytes) -> bytes:
            return request

    vm = vm_factory("hello")
    with pytest.raises(ConfigError, match="NUL"):
        vm.register_hm(Nul())
    with pytest.raises(ValueError, match="NUL"):
        vm.make_ev_queue("q\0")
    assert vm.modules == []
    assert vm.ev_queues == []


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_close_releases_the_event_queues_fds(vm_factory: VmFactory) -> None:
    vm_factory("hello").close()  # anything opened once per process is open now
    before = open_fds()
    vm = vm_factory("hello")
    queues = [vm.make_ev_queue(f"q{i}", capacity=1, max_event_size=8) for i in range(50)]
    deleted = vm.make_ev_queue("deleted", capacity=1, max_event_size=8)
    with_queues = open_fds()
    assert with_queues >= before + 2 * 51, "two eventfds per queue"
    vm.del_ev_queue(deleted)
    assert open_fds() == with_queues - 2, "a deleted queue releases its two at once"
    vm.close()
    # The queue objects are still alive, closed, and hold no descriptor.
    assert all(q.closed for q in queues)
    assert open_fds() == before
    with pytest.raises(QueueClosed):
        queues[0].put_event(b"x")


def test_console_is_kept_after_close(vm_factory: VmFactory) -> None:
    vm = vm_factory("hello", args=["kept"])
    assert vm.run() == 0
    text = vm.console
    assert "arg[1]=kept" in text
    vm.close()
    assert vm.console == text
    assert vm.console_from(0) == (text, len(text.encode()))
