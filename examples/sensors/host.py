"""An event-driven guest: the host streams sensor readings, the guest raises alarms.

Run it (after ``make dev``)::

    .venv/bin/python examples/sensors/host.py [READINGS]

The host creates the event queue ``readings`` (`vmrpc.VM.make_ev_queue`), boots the
guest built from ``guest.c``, and then, in parallel, puts readings into the queue (a
feeder thread) and takes the guest's alarm and summary events out of it. While both
sides keep up, no event costs a VM exit; the counters printed at the end show it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import vmrpc
import vmrpc.guest

GUEST_SOURCE = Path(__file__).with_name("guest.c")
THRESHOLD = 30_000  # milli-degrees
QUEUE = "readings"
EVENT_TIMEOUT_S = 30.0


def readings(count: int, sensors: int = 4) -> Iterator[tuple[int, int]]:
    """A deterministic stream of ``(sensor, milli-degrees)``: slow waves with spikes."""
    for i in range(count):
        sensor = i % sensors
        value = 20_000 + sensor * 1_000 + (i * 37) % 5_000
        if i % 97 == 13:
            value += 15_000  # a spike above the threshold
        yield sensor, value


@dataclass
class Report:
    """What the guest sent back."""

    alarms: list[tuple[int, int]] = field(default_factory=list)
    """``(sensor, value)`` of each alarm, in order."""
    summaries: dict[int, str] = field(default_factory=dict)
    """The guest's summary line per sensor."""


def feed(queue: vmrpc.EventQueue, stream: Iterator[tuple[int, int]]) -> None:
    """Put every reading into ``queue``, then ``end``."""
    for sensor, value in stream:
        queue.put_event(f"reading {sensor} {value}".encode(), timeout=EVENT_TIMEOUT_S)
    queue.put_event(b"end", timeout=EVENT_TIMEOUT_S)


def collect(queue: vmrpc.EventQueue) -> Report:
    """Take the guest's events until ``done``."""
    report = Report()
    while (event := queue.get_event(timeout=EVENT_TIMEOUT_S)) != b"done":
        kind, _, rest = event.decode().partition(" ")
        if kind == "alarm":
            sensor, value = map(int, rest.split())
            report.alarms.append((sensor, value))
        elif kind == "summary":
            sensor_text, _, summary = rest.partition(" ")
            report.summaries[int(sensor_text)] = summary
    return report


def monitor(vm: vmrpc.VM, count: int) -> Report:
    """Run the guest in ``vm`` against ``count`` readings; return what it reported."""
    queue = vm.make_ev_queue(QUEUE, capacity=256, max_event_size=64)
    vm.start()
    feeder = threading.Thread(target=feed, args=(queue, readings(count)), daemon=True)
    feeder.start()
    try:
        return collect(queue)
    finally:
        feeder.join(EVENT_TIMEOUT_S)


def main(argv: list[str]) -> int:
    """Build the guest, stream readings through it, print alarms and summaries."""
    count = int(argv[0]) if argv else 1000
    elf = vmrpc.guest.build(GUEST_SOURCE)
    with vmrpc.VM(elf, args=[str(THRESHOLD)], timeout=60) as vm:
        report = monitor(vm, count)
        code = vm.wait()
        print(vm.console, end="")
        for sensor, value in report.alarms:
            print(f"alarm: sensor {sensor} at {value / 1000:.3f} degrees")
        for sensor, summary in sorted(report.summaries.items()):
            print(f"sensor {sensor}: {summary}")
        stats = vm.stats
        shown = ("events_host_to_guest", "events_guest_to_host", "exits_total", "interrupts")
        print("---", ", ".join(f"{key}={stats.get(key, 0)}" for key in shown))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
