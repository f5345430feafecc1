"""The vmrpc demo (``python -m vmrpc demo``, ``make demo``).

Boots the ``demo`` guest (guest/apps/demo.c). The guest binds two host modules and
calls them through VM RPC: ``kv``, a key-value store written below in Python (``put`` is
a plain function, ``get`` an ``async`` one), and ``echo``, the native Rust module. The
console shows the guest's side of each call; this process prints the host's side and
the VM's counters.
"""

from __future__ import annotations

import asyncio
import sys

from vmrpc.errors import VmrpcError
from vmrpc.hostmodule import HostModule, NativeModule, function
from vmrpc.kvmaccess import explain_kvm_error
from vmrpc.vm import VM

__all__ = ["KV", "main"]

_TIMEOUT_S = 30.0


class KV(HostModule):
    """A key-value store the guest calls: ``put("key=value")`` and ``get("key")``."""

    name, version = "kv", 1

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    @function(0)
    def put(self, request: bytes) -> bytes:
        key, sep, value = request.partition(b"=")
        if not sep:
            raise ValueError(f"put wants key=value, got {request!r}")
        self.data[key] = value
        print(f"  host: kv.put {key.decode()!r} = {value.decode()!r}")
        return b"ok"

    @function(1)
    async def get(self, key: bytes) -> bytes:
        await asyncio.sleep(0)  # an async host function: runs on vmrpc's asyncio loop
        value = self.data.get(key, b"")
        print(f"  host: kv.get {key.decode()!r} -> {value.decode()!r}")
        return value


def main() -> int:
    """Run the demo; return the guest's exit code (0 when every call worked)."""
    kv = KV()
    print("--- booting the demo guest; it binds 'kv' (Python) and 'echo' (Rust)")
    try:
        with VM("demo", modules=[kv, NativeModule("echo")], timeout=_TIMEOUT_S) as vm:
            code = vm.run()
            print("--- guest console:")
            print(vm.console, end="" if vm.console.endswith("\n") else "\n")
            stats = vm.stats
            shown = ("rpcs", "rpc_errors", "doorbells", "interrupts", "exits_total")
            print("--- exit code", code, "|", ", ".join(f"{k}={stats[k]}" for k in shown))
            return code
    except VmrpcError as error:
        print(f"demo failed: {type(error).__name__}: {error}", file=sys.stderr)
        # No access to /dev/kvm is the machine's configuration, as in `vmrpc run`: 2.
        return 2 if explain_kvm_error(error, sys.stderr) else 1
