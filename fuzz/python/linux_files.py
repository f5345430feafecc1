"""Coverage-guided fuzz target (atheris) for a Linux program's file system calls.

The Linux personality hands each file system call to `vmrpc.linux.FilesModule` as a
request of six 64-bit arguments and a tail (paths, data), all chosen by the program.
For each input (a function number, then the request) a fresh module over a fresh
scratch tree serves the call, and:

- the answer is a result word (and data), or the call raised `OSError` (the guest then
  gets ``EHOSTFN``); any other exception is a bug in reading the arguments;
- nothing outside the mount changed: the tree beside it is as it was, though the
  mount holds symlinks that point out of it (``..``, an absolute path, the sibling).

Run by ``make fuzz`` as ``python fuzz/python/linux_files.py [libFuzzer flags] CORPUS``.
"""

from __future__ import annotations

import atexit
import inspect
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from vmrpc.hostmodule import module_functions
    from vmrpc.linux import FilesModule, Mount

# In memory where possible: the tree is rebuilt for every input, and fsync is a call.
TOP = Path(
    tempfile.mkdtemp(
        prefix="vmrpc-fuzz-linux-files-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
)
ROOT, OUTSIDE = TOP / "root", TOP / "outside"
SECRET = b"outside the mount"
RESULT = struct.Struct("<q")
atexit.register(shutil.rmtree, TOP, ignore_errors=True)


def fresh_tree() -> None:
    shutil.rmtree(TOP)
    (ROOT / "dir").mkdir(parents=True)
    OUTSIDE.mkdir()
    (OUTSIDE / "secret").write_bytes(SECRET)
    (ROOT / "file").write_bytes(b"x" * 100)
    (ROOT / "dir" / "inner").write_bytes(b"inner")
    for name, target in [("up", ".."), ("abs", "/etc"), ("sib", "../outside/secret")]:
        (ROOT / name).symlink_to(target)


def outside_untouched() -> bool:
    return (
        sorted(os.listdir(TOP)) == ["outside", "root"]
        and os.listdir(OUTSIDE) == ["secret"]
        and (OUTSIDE / "secret").read_bytes() == SECRET
    )


def one_input(data: bytes) -> None:
    if not data:
        return
    fresh_tree()
    module = FilesModule([Mount(ROOT, "/")], cwd="/dir")
    # Sync functions only: the async ones (record locks) wait on vmrpc's event loop.
    functions = [
        fn
        for _, fn in sorted(module_functions(module).items())
        if not inspect.iscoroutinefunction(fn)
    ]
    fn = functions[data[0] % len(functions)]
    try:
        answer = fn(data[1:])
    except OSError:
        pass
    else:
        assert isinstance(answer, bytes), answer
        assert len(answer) >= RESULT.size, answer
    finally:
        module.close()
    assert outside_untouched(), f"{fn.__name__} changed files outside the mount"


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
