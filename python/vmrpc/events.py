"""`EventQueue`: events between the host and a guest through shared memory.

A queue is created on the host with `VM.make_ev_queue` and opened by name in the guest
(``evq_open`` in ``vmrpc/evq.h``). It carries events both ways: what the host puts, the
guest gets, and the other way round. While both sides keep up, an event costs no VM exit,
no interrupt and no system call; a side that has to wait (queue empty or full) asks the
other for a notification and sleeps. The counters in `VM.stats` show it
(``events_guest_to_host``, ``events_host_to_guest``, ``evq_doorbells``, ``interrupts``).

Blocking calls release the GIL and can be interrupted with Ctrl-C; ``timeout`` is in
seconds (``None``, ``inf`` or too large to represent: wait forever; NaN or negative:
`ValueError`) and an expired one raises `TimeoutError`. Events larger
than `max_event_size` raise `ValueError`. Once the queue is deleted (`VM.del_ev_queue`) or
its VM closed, every call raises `QueueClosed`; so does a call that would wait for a VM
that has stopped (events already queued can still be taken).

``async for event in queue`` receives events from asyncio code without blocking the event
loop, and ends when the queue is closed::

    q = vm.make_ev_queue("ticks", capacity=1024, max_event_size=64)
    vm.start()
    async for event in q:
        handle(event)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from vmrpc import _vmm
from vmrpc.errors import QueueClosed

__all__ = ["EventQueue"]

#: How long one executor wait of ``async for`` lasts before it checks again; bounds how
#: long a worker thread outlives a cancelled iteration.
_ASYNC_WAIT_S = 0.1

Buffer = bytes | bytearray | memoryview


class EventQueue:
    """One event queue of a VM, host side. Made by `VM.make_ev_queue`."""

    __slots__ = ("_q",)

    def __init__(self, native: _vmm.EventQueue) -> None:
        self._q = native

    @property
    def name(self) -> str:
        """The name the guest opens the queue by."""
        return self._q.name

    @property
    def capacity(self) -> int:
        """Events each direction holds (a power of two)."""
        return self._q.capacity

    @property
    def max_event_size(self) -> int:
        """The largest event, in bytes."""
        return self._q.max_event_size

    @property
    def queue_id(self) -> int:
        """The queue's id in the guest ABI (its doorbell value)."""
        return self._q.queue_id

    @property
    def closed(self) -> bool:
        """True once the queue was deleted or its VM closed."""
        return self._q.closed

    # -- host -> guest -----------------------------------------------------------

    def put_event(self, data: Buffer, timeout: float | None = None) -> None:
        """Send one event to the guest, waiting while the queue is full."""
        self._q.put_event(data, timeout)

    def try_put(self, data: Buffer) -> bool:
        """Send one event if there is room; return False if the queue is full."""
        return self._q.try_put(data)

    # -- guest -> host -----------------------------------------------------------

    def get_event(self, timeout: float | None = None) -> bytes:
        """Receive one event from the guest, waiting while the queue is empty."""
        return self._q.get_event(timeout)

    def try_get(self) -> bytes | None:
        """Receive one event if there is one; return None if the queue is empty."""
        return self._q.try_get()

    def get_events(self, max_n: int, timeout: float | None = None) -> list[bytes]:
        """Receive up to ``max_n`` events in one go: the batch path.

        Waits for at least one event, unless ``timeout`` is 0 (then the list may be empty).
        """
        return self._q.get_events(max_n, timeout)

    def wait_readable(self, timeout: float | None = None) -> bool:
        """Wait until an event can be received, without receiving it; False on timeout."""
        return self._q.wait_readable(timeout)

    def ring_state(self) -> dict[str, int]:
        """Diagnostics: both rings' header words as the guest sees them now.

        ``g2h_head``, ``h2g_consumer_waiting``, ... (see ``struct vmrpc_ring`` in
        ``vmrpc/abi.h``), plus the host's own indices ``host_g2h_tail`` and
        ``host_h2g_head``. Useful when a guest seems stuck.
        """
        return self._q.ring_state()

    # -- asyncio -----------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        # Wait in a worker thread for an event to be *ready*, then take it on the loop's
        # thread: cancelling the iteration can never lose an event.
        loop = asyncio.get_running_loop()
        while True:
            try:
                event = self._q.try_get()
                if event is not None:
                    return event
                await loop.run_in_executor(None, self._q.wait_readable, _ASYNC_WAIT_S)
            except QueueClosed:
                raise StopAsyncIteration from None

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return (
            f"<EventQueue {self.name!r} capacity={self.capacity}"
            f" max_event_size={self.max_event_size}{state}>"
        )
