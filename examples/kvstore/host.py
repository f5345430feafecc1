"""A key-value store host module, and a guest in C that keeps its data in it.

Run it (after ``make dev``)::

    .venv/bin/python examples/kvstore/host.py [N]

It builds ``guest.c`` with `vmrpc.guest.build` (cached after the first time), boots it
with the `KVStore` module registered, prints the guest's console and what the store
holds afterwards, and exits with the guest's exit code. The same from the command line::

    python -m vmrpc build-guest examples/kvstore/guest.c -o kvstore.elf
    python -m vmrpc run kvstore.elf --module examples/kvstore/host.py:KVStore
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import vmrpc
import vmrpc.guest

GUEST_SOURCE = Path(__file__).with_name("guest.c")

FOUND, MISSING = b"\x01", b"\x00"


class KVStore(vmrpc.HostModule):
    """An in-memory key-value store; guests bind it as ``kvstore`` version 1.

    Keys and values are bytes. The functions, by number (see guest.c):

    - 0 ``put``: request ``key\\0value``, answer empty
    - 1 ``get``: request ``key``, answer ``\\x01value`` or ``\\x00`` when missing
    - 2 ``delete``: request ``key``, answer ``\\x01`` if it was there, else ``\\x00``
    - 3 ``keys``: request ``prefix``, answer the matching keys, sorted, ``\\n``-joined

    Calls can come from several vCPUs; a lock keeps each one atomic.
    """

    name, version = "kvstore", 1

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        """The store's contents."""
        self._lock = threading.Lock()

    @vmrpc.function(0)
    def put(self, request: bytes) -> None:
        """Store ``value`` under ``key``; the request is ``key\\0value``."""
        key, sep, value = request.partition(b"\0")
        if not sep or not key:
            raise ValueError(f"put wants key\\0value, got {request!r}")
        with self._lock:
            self.data[key] = value

    @vmrpc.function(1)
    def get(self, key: bytes) -> bytes:
        """Return ``\\x01`` + the value of ``key``, or ``\\x00`` if there is none."""
        with self._lock:
            value = self.data.get(key)
        return MISSING if value is None else FOUND + value

    @vmrpc.function(2)
    def delete(self, key: bytes) -> bytes:
        """Remove ``key``; answer whether it was there."""
        with self._lock:
            return FOUND if self.data.pop(key, None) is not None else MISSING

    @vmrpc.function(3)
    def keys(self, prefix: bytes) -> bytes:
        """The keys starting with ``prefix``, sorted, one per line."""
        with self._lock:
            return b"\n".join(sorted(k for k in self.data if k.startswith(prefix)))


def main(argv: list[str]) -> int:
    """Build the guest, run it against a fresh `KVStore`, print what happened."""
    elf = vmrpc.guest.build(GUEST_SOURCE)
    store = KVStore()
    with vmrpc.VM(elf, args=argv, modules=[store], timeout=30) as vm:
        try:
            code = vm.run()
        finally:
            print(vm.console, end="")
        print(f"--- exit code {code}, {vm.stats['rpcs']} RPCs; the store now holds:")
    for key, value in sorted(store.data.items()):
        print(f"  {key.decode()} = {value.decode()}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
