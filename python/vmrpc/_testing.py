"""Benchmark and test aids, private to vmrpc's own tests and benchmarks (not API).

The fastest possible native event consumer and producer, and the raw-KVM baseline of
the boot benchmark. They run in Rust (``vmrpc._vmm``), make no Python objects per event,
and release the GIL while they wait.
"""

from __future__ import annotations

from vmrpc import _vmm
from vmrpc.events import EventQueue


def drain_native(q: EventQueue, count: int, timeout: float | None = None) -> tuple[int, int]:
    """Receive ``count`` events of ``q`` in native code, making no Python objects.

    Returns ``(events, bytes)``; fewer events if ``timeout`` passes first.
    """
    return _vmm._drain_native(q._q, count, timeout)


def feed_native(
    q: EventQueue, count: int, size: int, timeout: float | None = None, first_seq: int = 0
) -> int:
    """Send ``count`` events of ``size`` bytes to ``q`` from native code; return how many.

    Events are numbered from ``first_seq`` like the guest's ``evq_produce`` numbers them
    (sequence number in the first 8 bytes, then its byte pattern). Returns fewer than
    ``count`` if ``timeout`` passes first.
    """
    return _vmm._feed_native(q._q, count, size, timeout, first_seq)


def raw_kvm_cycles(n: int) -> list[int]:
    """``n`` cycles of raw KVM (create a VM and one vCPU, run to ``hlt``, destroy), in
    nanoseconds each: the boot benchmark's baseline."""
    return _vmm._raw_kvm_cycles(n)
