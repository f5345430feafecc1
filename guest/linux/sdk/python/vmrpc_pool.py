"""The bootstrap of a warm CPython pool (`vmrpc.linux.PythonPool`), run in the guest.

The host starts ``python3 -c "import vmrpc_pool; vmrpc_pool.serve()" [MODULE...]`` once
per VM. `serve` imports the modules named (the pool's ``preload``), says it is ready,
then loops: it takes the next job (code and arguments) from the host through the event
queue `QUEUE`, forks, and waits for the child. Fork in the VM is "child first": the
child runs in this process's memory while it is suspended, and its memory and state
come back when the child exits (docs/linux.md, "fork"), so every run starts from the
same warm interpreter and leaves nothing behind in it.

The child runs the code as ``python -c`` would: ``sys.argv`` is ``["-c", *args]``, the
code runs in a fresh ``__main__`` namespace, `SystemExit` gives the exit status, an
uncaught exception goes to ``sys.excepthook`` and gives 1; then it finalizes as the
interpreter does (threads joined, atexit handlers, stdout and stderr flushed, its
``__main__`` cleared so files it left open are closed) and ``os._exit``s. stdin, stdout
and stderr are the host's (the ``files`` module), which starts them afresh for each job.

The protocol (one event queue, both ways; `vmrpc.linux.pool` is the other side):
ready ``b"R"``; a job is a header ``b"J"`` + the payload's length (u64, little endian),
then the payload in events of at most the queue's event size: the code and the
arguments, file-system encoded, separated by NUL bytes; the answer is ``b"D"`` + the
status (i32: the exit code, or 128 + the signal that ended the child), or ``b"F"`` + a
message when the fork itself failed. This module writes nothing to stdout or stderr
itself: whatever a run's streams carry is the run's.
"""

from __future__ import annotations

import atexit
import importlib
import os
import struct
import sys
from typing import Any

import vmrpc_guest

__all__ = ["HEADER", "QUEUE", "STATUS", "serve"]

QUEUE = "vmrpc_pool"
"""The event queue the host makes for the pool."""
HEADER = struct.Struct("<cQ")
"""A job's header event: b"J", the payload's length."""
STATUS = struct.Struct("<ci")
"""The answer: b"D", the child's status."""

#: What python -c leaves in ``__main__`` before the code runs (no ``__file__``).
_MAIN_KEYS = ("__name__", "__doc__", "__package__", "__loader__", "__spec__", "__builtins__")
#: Py_Exit's status when flushing stdout or stderr at exit failed.
_FLUSH_FAILED = 120


def serve() -> None:
    """Import ``sys.argv[1:]``, then serve jobs until the VM is stopped."""
    for name in sys.argv[1:]:
        importlib.import_module(name)
    main = vars(sys.modules["__main__"])
    fresh = {key: main[key] for key in _MAIN_KEYS if key in main}
    fresh["__annotations__"] = {}
    queue = vmrpc_guest.EventQueue(QUEUE)
    queue.put(b"R")
    while True:
        payload = _receive(queue)
        try:
            pid = os.fork()
        except OSError as error:
            queue.put(b"F" + str(error).encode())
            continue
        if pid == 0:
            os._exit(_child(payload, fresh))
        _, wstatus = os.waitpid(pid, 0)
        queue.put(STATUS.pack(b"D", _status(wstatus)))


def _receive(queue: vmrpc_guest.EventQueue) -> bytes:
    kind, size = HEADER.unpack(_get(queue))
    if kind != b"J":
        raise ValueError(f"the pool's host sent {kind!r}, not a job")
    parts: list[bytes] = []
    got = 0
    while got < size:
        parts.append(_get(queue))
        got += len(parts[-1])
    return b"".join(parts)


def _get(queue: vmrpc_guest.EventQueue) -> bytes:
    event = queue.get()
    assert event is not None  # a blocking get returns an event or raises
    return event


def _status(wstatus: int) -> int:
    # As LinuxVM reports a program's end: the exit code, or 128 + the signal.
    if os.WIFSIGNALED(wstatus):
        return 128 + os.WTERMSIG(wstatus)
    return os.WEXITSTATUS(wstatus)


def _child(payload: bytes, fresh: dict[str, Any]) -> int:
    code, *args = [os.fsdecode(field) for field in payload.split(b"\0")]
    sys.argv = ["-c", *args]
    sys.orig_argv = [sys.orig_argv[0], "-c", code, *args]
    atexit._clear()  # the bootstrap's handlers are not the run's
    namespace = vars(sys.modules["__main__"])
    namespace.clear()
    namespace.update(fresh)
    status = _execute(code, namespace)
    return _finalize(status, namespace)


def _execute(code: str, namespace: dict[str, Any]) -> int:
    """Run ``code`` as PyRun_SimpleString does for ``-c``; return the exit status."""
    try:
        exec(compile(code, "<string>", "exec"), namespace)
    except SystemExit as error:
        return _exit_status(error)
    except BaseException as error:
        # This frame is not the program's: the traceback starts below it.
        tb = error.__traceback__.tb_next if error.__traceback__ is not None else None
        error.__traceback__ = tb  # what the default hook prints, whatever it is given
        try:
            sys.excepthook(type(error), error, tb)
        except BaseException:
            sys.__excepthook__(type(error), error, tb)
        return 1
    return 0


def _exit_status(error: SystemExit) -> int:
    # As CPython's handle_system_exit: None is 0, an int is itself (a C long, else -1),
    # anything else is printed to stderr and is 1.
    code = error.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if -(2**63) <= code < 2**63 else 0xFF
    stream = sys.stderr
    if stream is not None:
        stream.write(f"{code}\n")
    return 1


def _finalize(status: int, namespace: dict[str, Any]) -> int:
    """What Py_FinalizeEx does that a run can see, in its order."""
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()  # joins non-daemon threads
    atexit._run_exitfuncs()
    status = _flush(status)
    namespace.clear()  # a file object left in a global is closed, its buffer written
    return _flush(status)


def _flush(status: int) -> int:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except Exception:
            status = _FLUSH_FAILED
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except Exception:
            pass  # replaced by the run, and broken by it: nothing more to say
    return status
