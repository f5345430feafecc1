"""The bootstrap of a CPython snapshot (`vmrpc.linux.PythonSnapshot`), run in the guest.

The host starts ``python3 -c "import vmrpc_snapshot; vmrpc_snapshot.serve()" [MODULE...]``
once per snapshot. `serve` imports the modules named (the ``preload``), then reaches
the snapshot point (`vmrpc_guest.snapshot_point`): the VM stops there and the host keeps
its memory and vCPU. Every VM started from the snapshot goes on from that point, in
its own memory: it takes its job (code and arguments) from the host module `JOB`,
reseeds ``random`` if it was imported, and runs the job as ``python -c`` would (as a
warm pool's child does, `vmrpc_pool`), then exits with the job's status.

`JOB` function 0 takes an offset (u64, little endian) and answers the payload's bytes
from there (at most one RPC payload; empty at the end): the code and the arguments,
file-system encoded, separated by NUL bytes.
"""

from __future__ import annotations

import importlib
import os
import struct
import sys

import vmrpc_guest
import vmrpc_pool

__all__ = ["JOB", "serve"]

JOB = "vmrpc_snapshot_job"
"""The host module a restored VM takes its job from."""


def serve() -> None:
    """Import ``sys.argv[1:]``, reach the snapshot point, then run the job given."""
    for name in sys.argv[1:]:
        importlib.import_module(name)
    main = vars(sys.modules["__main__"])
    fresh = {key: main[key] for key in vmrpc_pool._MAIN_KEYS if key in main}
    fresh["__annotations__"] = {}
    vmrpc_guest.snapshot_point()
    # From here on: a VM started from the snapshot.
    payload = _job()
    random = sys.modules.get("random")
    if random is not None:
        random.seed()  # from os.urandom, which the personality reseeded
    os._exit(vmrpc_pool._child(payload, fresh))


def _job() -> bytes:
    parts: list[bytes] = []
    with vmrpc_guest.Module(JOB) as job:
        while True:
            part = job.call(0, struct.pack("<Q", sum(map(len, parts))))
            if not part:
                return b"".join(parts)
            parts.append(part)
