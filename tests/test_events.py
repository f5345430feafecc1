"""Event queues end to end: Python on the host, the evq_* guest apps in C.

Guest apps (guest/apps): ``evq_produce Q N SIZE`` puts N sequence-numbered events,
``evq_consume Q N`` gets N and checks their numbers and payload pattern, ``evq_echo Q...``
echoes events until "quit" (vCPU i serves queue i), ``evqbench corrupt Q`` plays a hostile
guest. Their exit codes: 0 ok, 1 error or mismatch, 2 bad arguments, 3 VMRPC_ENOQUEUE.
Counter assertions compare snapshots taken while both sides are busy; no test asserts
timings.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Callable

import pytest

from vmrpc import (
    VM,
    ConfigError,
    EventQueue,
    EventQueueError,
    QueueClosed,
    QueueCorrupt,
    _testing,
)
from vmrpc.pytest_plugin import VmFactory

pytestmark = pytest.mark.kvm

EXIT_ENOQUEUE = 3
MILLION = 1_000_000

# The guest apps' payload (guest/apps/evq_pattern.h): byte i >= 8 of event k.
_PATTERNS = [bytes((base + i) & 0xFF for i in range(8, 16)) for base in range(256)]


def event(seq: int) -> bytes:
    """Event ``seq`` of 16 bytes, as evq_produce makes it."""
    return struct.pack("<Q", seq) + _PATTERNS[(seq * 31) & 0xFF]


def wait_console(vm: VM, text: str, timeout: float = 10.0) -> None:
    """Wait until the guest printed ``text`` (the guest's "ready" lines)."""
    deadline = time.monotonic() + timeout
    while text not in vm.console:
        assert time.monotonic() < deadline, f"no {text!r} on the console:\n{vm.console}"
        time.sleep(0.005)


def counters(vm: VM) -> dict[str, int]:
    keys = ("exits_total", "interrupts", "evq_doorbells")
    stats = vm.stats
    return {k: stats[k] for k in keys}


def per_event(before: dict[str, int], after: dict[str, int], events: int) -> dict[str, float]:
    return {k: (after[k] - before[k]) / events for k in before}


def assert_no_exits(cost: dict[str, float]) -> None:
    # Exits are deterministic: the event path has none, whatever the scheduling.
    assert cost["exits_total"] == 0, cost


# -- a million events each way ---------------------------------------------------------


def test_guest_to_host_million_in_order_with_batches(vm_factory: VmFactory) -> None:
    vm = vm_factory("evq_produce", args=["q", str(MILLION), "16"])
    q = vm.make_ev_queue("q", capacity=4096, max_event_size=16)
    vm.start()

    received: list[bytes] = []
    snapshots: dict[int, dict[str, int]] = {}
    while len(received) < MILLION:
        received += q.get_events(4096, timeout=20)
        for mark in (100_000, 900_000):
            if mark not in snapshots and len(received) >= mark:
                snapshots[mark] = counters(vm)
        assert len(received) <= MILLION

    assert vm.wait() == 0, vm.console
    assert "evq_produce ok n=1000000" in vm.console
    blob = b"".join(received)
    assert len(blob) == 16 * MILLION, "every event is 16 bytes"
    assert memoryview(blob).cast("Q")[::2].tolist() == list(range(MILLION)), "order, no loss"
    for k in range(0, MILLION, 9973):
        assert received[k] == event(k)
    assert vm.stats["events_guest_to_host"] == MILLION
    assert_no_exits(per_event(snapshots[100_000], snapshots[900_000], 800_000))


def test_host_to_guest_million_in_order(vm_factory: VmFactory) -> None:
    vm = vm_factory("evq_consume", args=["q", str(MILLION)])
    q = vm.make_ev_queue("q", capacity=4096, max_event_size=16)
    vm.start()

    put = q.put_event
    for k in range(100_000):
        put(event(k))
    before = counters(vm)
    for k in range(100_000, 900_000):
        put(event(k))
    after = counters(vm)
    for k in range(900_000, MILLION):
        put(event(k))

    assert vm.wait() == 0, vm.console
    assert "evq_consume ok n=1000000" in vm.console
    assert vm.stats["events_host_to_guest"] == MILLION
    assert_no_exits(per_event(before, after, 800_000))


@pytest.mark.parametrize("direction", ["guest_to_host", "host_to_guest"])
def test_steady_state_costs_no_exit_and_no_interrupt_per_event(
    vm_factory: VmFactory, direction: str
) -> None:
    """While both sides are busy, events cost no exit and (next to) no notification.

    The producer runs flat out and the consumer keeps up (a native host side, so that
    neither side waits for Python), so neither side should need to sleep. Counters are
    compared over the middle 80% of the run; a notification can still happen when the
    scheduler takes a side off its core (2 cores, shared with the other threads), so the
    bound is "far below one per event", not zero.
    """
    n = 2_000_000
    if direction == "guest_to_host":
        vm = vm_factory("evq_produce", args=["q", str(n), "64"])
    else:
        vm = vm_factory("evq_consume", args=["q", str(n)])
    q = vm.make_ev_queue("q", capacity=4096, max_event_size=64)
    vm.start()
    step = n // 10
    snapshots = []
    for k in range(10):
        if direction == "guest_to_host":
            assert _testing.drain_native(q, step, timeout=20)[0] == step
        else:
            assert _testing.feed_native(q, step, 64, timeout=20, first_seq=k * step) == step
        snapshots.append(counters(vm))
    assert vm.wait() == 0, vm.console

    cost = per_event(snapshots[0], snapshots[8], 8 * step)
    assert cost["exits_total"] == 0, cost
    assert cost["interrupts"] < 0.01, cost
    assert cost["evq_doorbells"] < 0.01, cost


# -- full, empty, timeouts, sizes --------------------------------------------------------


def test_full_and_empty_without_a_guest(hello_vm: VM) -> None:
    q = hello_vm.make_ev_queue("q", capacity=4, max_event_size=8)
    assert (q.name, q.capacity, q.max_event_size) == ("q", 4, 8)

    assert [q.try_put(bytes([i])) for i in range(5)] == [True, True, True, True, False]
    assert q.try_get() is None, "nothing came from the guest"
    assert q.get_events(10, timeout=0) == []
    assert hello_vm.ev_queues == ["q"]


def test_timeouts_raise_timeout_error(hello_vm: VM) -> None:
    q = hello_vm.make_ev_queue("q", capacity=1, max_event_size=8)
    with pytest.raises(TimeoutError, match="waiting for an event"):
        q.get_event(timeout=0.05)
    with pytest.raises(TimeoutError):
        q.get_events(8, timeout=0.02)
    assert q.wait_readable(timeout=0.02) is False
    q.put_event(b"x", timeout=0)
    with pytest.raises(TimeoutError, match="waiting for room"):
        q.put_event(b"y", timeout=0.05)
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        q.get_event(timeout=-1)


def test_bad_shapes_and_names(hello_vm: VM) -> None:
    for capacity in (0, 3, 65537, -1):
        with pytest.raises(ValueError, match="power of two"):
            hello_vm.make_ev_queue("q", capacity=capacity)
    for size in (0, 65529, -5):
        with pytest.raises(ValueError, match="max_event_size"):
            hello_vm.make_ev_queue("q", max_event_size=size)
    hello_vm.make_ev_queue("q")
    with pytest.raises(ConfigError, match="already exists"):
        hello_vm.make_ev_queue("q")
    with pytest.raises(ConfigError, match='no event queue named "nope"'):
        hello_vm.del_ev_queue("nope")


def test_arena_full_is_a_clear_error_and_space_is_not_reused(hello_vm: VM) -> None:
    def fill() -> list[EventQueue]:
        queues = []
        for i in range(100):
            queues.append(hello_vm.make_ev_queue(f"q{i}", capacity=1024, max_event_size=256))
        return queues

    with pytest.raises(EventQueueError, match="arena full"):
        fill()
    queues = hello_vm.ev_queues
    assert queues, "at least one 540 KiB queue fits in the 2 MiB arena"
    hello_vm.del_ev_queue(queues[0])
    with pytest.raises(EventQueueError, match="not reused"):
        hello_vm.make_ev_queue("again", capacity=1024, max_event_size=256)
    hello_vm.make_ev_queue("small", capacity=4, max_event_size=8)


def test_oversize_events_are_rejected_on_both_sides(vm_factory: VmFactory) -> None:
    vm = vm_factory("evq_produce", args=["q", "1", "33"])
    q = vm.make_ev_queue("q", capacity=4, max_event_size=32)

    with pytest.raises(ValueError, match=r"33 bytes is larger than max_event_size \(32 bytes\)"):
        q.put_event(bytes(33))
    with pytest.raises(ValueError, match="max_event_size"):
        q.try_put(bytearray(100))
    assert q.try_put(memoryview(bytes(32)))

    assert vm.run() == 1
    assert "evq_produce: put 0: ETOOBIG" in vm.console
    assert q.try_get() is None


# -- deletion in use ----------------------------------------------------------------------


def test_delete_in_use_fails_guest_and_host_waiters(vm_factory: VmFactory) -> None:
    vm = vm_factory("evq_consume", args=["q", "10"])
    q = vm.make_ev_queue("q", capacity=8, max_event_size=16)
    vm.start()
    wait_console(vm, "evq_consume ready")
    q.put_event(event(0))

    host_error: list[BaseException] = []

    def host_waiter() -> None:
        try:
            q.get_event(timeout=20)
        except BaseException as error:
            host_error.append(error)

    waiter = threading.Thread(target=host_waiter)
    waiter.start()
    # Delete only once both sides really wait: the guest has taken event 0 (the ring's tail
    # moved past it; its "notify me" flag alone may still be up from before event 0 came)
    # and both "notify me" flags are up (the guest consumer for host-to-guest events, the
    # host waiter for guest-to-host ones).
    while not (
        (state := q.ring_state())["h2g_tail"] == 1
        and state["h2g_consumer_waiting"]
        and state["g2h_consumer_waiting"]
    ):
        assert waiter.is_alive(), host_error
        assert vm.state == "running", vm.console
        time.sleep(0.001)
    vm.del_ev_queue(q)
    waiter.join(timeout=10)

    assert not waiter.is_alive()
    assert len(host_error) == 1, host_error
    assert isinstance(host_error[0], QueueClosed), host_error
    assert "was deleted" in str(host_error[0])
    assert vm.wait() == EXIT_ENOQUEUE, vm.console
    assert "evq_consume: get 1: ENOQUEUE" in vm.console
    assert q.closed
    with pytest.raises(QueueClosed):
        q.try_put(b"late")
    with pytest.raises(QueueClosed):
        q.try_get()
    assert vm.ev_queues == []


def test_a_guest_cannot_open_a_deleted_queue(vm_factory: VmFactory) -> None:
    vm = vm_factory("evq_consume", args=["q", "1"])
    vm.make_ev_queue("q")
    vm.del_ev_queue("q")
    assert vm.run() == EXIT_ENOQUEUE
    assert "open q: ENOQUEUE" in vm.console


def test_waits_end_when_the_vm_stops(vm_factory: VmFactory) -> None:
    vm = vm_factory("evq_produce", args=["q", "3", "8"])
    q = vm.make_ev_queue("q", capacity=4, max_event_size=8)
    assert vm.run() == 0
    assert len(q.get_events(10)) == 3, "what is queued can still be taken"
    with pytest.raises(QueueClosed, match="VM has stopped"):
        q.get_event(timeout=10)


# -- several queues, both directions at once ---------------------------------------------


def test_two_queues_interleaved_on_two_vcpus(vm_factory: VmFactory) -> None:
    vm = vm_factory("evq_echo", vcpus=2, args=["a", "b"])
    qa = vm.make_ev_queue("a", capacity=16, max_event_size=32)
    qb = vm.make_ev_queue("b", capacity=2, max_event_size=64)
    vm.start()

    sent: dict[str, list[bytes]] = {"a": [], "b": []}
    got: dict[str, list[bytes]] = {"a": [], "b": []}
    for k in range(3000):
        for q, size in ((qa, 32), (qb, 64)):
            data = struct.pack("<I", k) + bytes([k & 0xFF]) * (k % (size - 3))
            q.put_event(data, timeout=10)
            sent[q.name].append(data)
            got[q.name] += q.get_events(16, timeout=0)
    for q in (qa, qb):
        while len(got[q.name]) < len(sent[q.name]):
            got[q.name] += q.get_events(16, timeout=10)
        q.put_event(b"quit")

    assert vm.wait() == 0, vm.console
    assert got == sent
    assert "evq_echo ok n=3000 queue=a" in vm.console
    assert "evq_echo ok n=3000 queue=b" in vm.console


def test_python_producer_and_consumer_threads_with_a_guest_echo(vm_factory: VmFactory) -> None:
    vm = vm_factory("evq_echo", args=["q"])
    q = vm.make_ev_queue("q", capacity=64, max_event_size=16)
    vm.start()
    n = 50_000

    def produce() -> None:
        for k in range(n):
            q.put_event(event(k), timeout=10)

    producer = threading.Thread(target=produce)
    producer.start()
    echoed: list[bytes] = []
    while len(echoed) < n:
        echoed += q.get_events(64, timeout=10)
    producer.join()
    q.put_event(b"quit")

    assert vm.wait() == 0, vm.console
    assert echoed == [event(k) for k in range(n)]


# -- asyncio --------------------------------------------------------------------------------


def test_async_for_consumes_without_blocking_the_loop(vm_factory: VmFactory) -> None:
    n = 20_000
    vm = vm_factory("evq_produce", args=["q", str(n), "16"])
    q = vm.make_ev_queue("q", capacity=256, max_event_size=16)
    # Only a blocked loop lets this fire: deleting the queue then ends the iteration
    # (empty-handed) instead of hanging the test.
    watchdog = threading.Timer(20, vm.del_ev_queue, args=("q",))

    async def main() -> tuple[list[bytes], list[str]]:
        progress: list[str] = []

        async def starter() -> None:
            # The guest that produces the events starts only from the loop, and only
            # once the consumer really waits for an event (its flag in the ring is up):
            # so the events come only if the loop runs while the consumer waits.
            while not q.ring_state()["g2h_consumer_waiting"]:
                if q.closed:  # the watchdog fired
                    return
                await asyncio.sleep(0)
            progress.append("the loop ran while the consumer waited")
            vm.start()

        async def consume() -> list[bytes]:
            received = []
            async for ev in q:
                received.append(ev)
                if len(received) == n:
                    break
            return received

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0)  # the consumer starts waiting first
        start = asyncio.create_task(starter())
        received = await consumer
        await start
        return received, progress

    watchdog.start()
    try:
        received, progress = asyncio.run(main())
    finally:
        watchdog.cancel()
    assert progress == ["the loop ran while the consumer waited"]
    assert received == [event(k) for k in range(n)]
    assert vm.wait() == 0


def test_async_for_ends_when_the_queue_is_deleted(hello_vm: VM) -> None:
    q = hello_vm.make_ev_queue("q")

    async def main() -> list[bytes]:
        async def delete_soon() -> None:
            # Delete once the iteration really waits (its flag in the ring is up), so
            # the blocked waiter's wake path runs, not the closed-before-waiting one.
            while not q.ring_state()["g2h_consumer_waiting"]:
                await asyncio.sleep(0)
            hello_vm.del_ev_queue("q")

        deleter = asyncio.create_task(delete_soon())
        received = [ev async for ev in q]
        await deleter
        return received

    assert asyncio.run(main()) == []


# -- hostile guest, native helpers ---------------------------------------------------------


def test_a_corrupt_ring_raises_queue_corrupt(vm_factory: VmFactory) -> None:
    vm = vm_factory("evqbench", args=["corrupt", "q"])
    q = vm.make_ev_queue("q", capacity=8, max_event_size=16)
    vm.start()
    wait_console(vm, "evqbench corrupt: bad length")
    with pytest.raises(QueueCorrupt, match="has length 17, more than max_event_size 16"):
        q.get_event(timeout=5)
    q.put_event(b"next")
    wait_console(vm, "evqbench corrupt: bad head")
    for call in (q.try_get, lambda: q.get_events(4, timeout=1), q.wait_readable):
        with pytest.raises(QueueCorrupt, match=r"head \d+ is not within 8 events"):
            call()
    assert q.try_put(b"still fine"), "the other direction is unaffected"
    assert vm.wait() == 0


@pytest.mark.parametrize(
    ("image", "args", "run"),
    [
        (
            "evq_produce",
            ["q", "300000", "64"],
            lambda q: _testing.drain_native(q, 300_000, timeout=20),
        ),
        (
            "evq_consume",
            ["q", "300000"],
            lambda q: (_testing.feed_native(q, 300_000, 64, timeout=20), 0),
        ),
    ],
    ids=["drain_native", "feed_native"],
)
def test_native_helpers(
    vm_factory: VmFactory,
    image: str,
    args: list[str],
    run: Callable[[EventQueue], tuple[int, int]],
) -> None:
    vm = vm_factory(image, args=args)
    q = vm.make_ev_queue("q", capacity=1024, max_event_size=64)
    vm.start()
    events, _ = run(q)
    assert events == 300_000
    assert vm.wait() == 0, vm.console
    assert " ok n=300000" in vm.console


def test_del_ev_queue_refuses_another_vms_queue(vm_factory: VmFactory) -> None:
    """Queue names are per VM: a queue object of VM B must not delete VM A's queue."""
    a, b = vm_factory("hello"), vm_factory("hello")
    qa, qb = a.make_ev_queue("q"), b.make_ev_queue("q")
    with pytest.raises(ConfigError, match="does not belong"):
        a.del_ev_queue(qb)
    assert not qa.closed
    a.del_ev_queue(qa)
    assert qa.closed
    assert not qb.closed
    b.del_ev_queue("q")
    assert qb.closed
