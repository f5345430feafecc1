"""The vmrpc demo (``python -m vmrpc demo``, ``make demo``).

For now it boots the built-in ``hello`` and ``smp`` guests and shows their console and
exit counters. It will grow into the VM RPC demo.
"""

from __future__ import annotations

import sys

from vmrpc.errors import VmrpcError
from vmrpc.vm import VM

__all__ = ["main"]

_TIMEOUT_S = 30.0


def _boot(title: str, image: str, *, vcpus: int = 1, args: tuple[str, ...] = ()) -> int:
    print(f"--- {title}: image={image} vcpus={vcpus} args={list(args)}")
    with VM(image, vcpus=vcpus, args=args, timeout=_TIMEOUT_S) as vm:
        code = vm.run()
        print(vm.console, end="" if vm.console.endswith("\n") else "\n")
        stats = vm.stats
        counters = ", ".join(f"{k}={stats[k]}" for k in sorted(stats) if k.startswith("exits_"))
        print(f"--- exit code {code}; {counters}")
        return code


def main() -> int:
    """Run the demo; return 0 when every guest exited with 0."""
    try:
        codes = [
            _boot("hello", "hello", args=("from", "the demo")),
            _boot("smp", "smp", vcpus=4),
        ]
    except VmrpcError as error:
        print(f"demo failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0 if all(code == 0 for code in codes) else 1
