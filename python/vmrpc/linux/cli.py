"""``python -m vmrpc run --linux PROGRAM [ARGS...]``: the command-line face of `LinuxVM`.

The program's stdout and stderr stream to the terminal's as it writes them, stdin is
read whole from a pipe or file (an interactive terminal gives it empty input), and
the command's exit status is the program's.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import BinaryIO

from vmrpc.errors import ConfigError, GuestError, GuestTimeout, ImageError, VmrpcError
from vmrpc.kvmaccess import explain_kvm_error
from vmrpc.linux.files import Mount, TraceRecord
from vmrpc.linux.programs import Program
from vmrpc.linux.vm import LinuxVM

__all__ = ["add_arguments", "run_linux"]

#: Guest memory when --memory is not given.
DEFAULT_MEMORY_MIB = 256


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The ``run`` options that only apply with ``--linux``."""
    run.add_argument(
        "--linux",
        action="store_true",
        help="IMAGE is an unmodified x86-64 Linux program, static or dynamically linked "
        "(see docs/linux.md)",
    )
    run.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="HOST:GUEST[:ro]",
        help="with --linux: make host directory HOST visible at GUEST (repeatable)",
    )
    run.add_argument(
        "--env", action="append", default=[], metavar="K=V", help="with --linux: set a variable"
    )
    run.add_argument(
        "--trace", action="store_true", help="with --linux: print each system call to stderr"
    )
    run.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="'PROG ARGS...'",
        help="with --linux: run another program in the same VM at the same time, with its "
        "own memory and fds, the same mounts, and loopback connections to the others "
        "served in guest memory (shell-split, repeatable; the exit status is the first "
        "program's)",
    )
    run.add_argument(
        "--sysroot",
        metavar="DIR",
        help="with --linux: take a dynamically linked program's interpreter and libraries "
        "from DIR (default: the host's /usr, /lib, /lib64, read-only)",
    )


def _writer(stream: BinaryIO) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        stream.write(data)
        stream.flush()

    return write


def run_linux(ns: argparse.Namespace, exit_crashed: int, exit_timeout: int, exit_usage: int) -> int:
    """Run ``ns.image`` as a Linux program; return the exit status for the shell."""
    try:
        mounts = [Mount.parse(m) for m in ns.mount]
        env = dict(kv.split("=", 1) for kv in ns.env)
        also = [
            dataclasses.replace(
                Program.parse(command),
                on_stdout=_writer(sys.stdout.buffer),
                on_stderr=_writer(sys.stderr.buffer),
            )
            for command in ns.also
        ]
    except ValueError as error:
        sys.stderr.write(f"vmrpc: {error}\n")
        return exit_usage
    stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()

    def trace(record: TraceRecord) -> None:
        sys.stderr.write(f"[trace] {record}\n")

    try:
        with LinuxVM(
            ns.image,
            ns.args,
            mounts=mounts,
            env=env,
            stdin=stdin,
            on_stdout=_writer(sys.stdout.buffer),
            on_stderr=_writer(sys.stderr.buffer),
            on_trace=trace if ns.trace else None,
            trace=ns.trace,
            timeout=ns.timeout,
            memory_mib=DEFAULT_MEMORY_MIB if ns.memory is None else ns.memory,
            sysroot=ns.sysroot,
            also=also,
        ) as vm:
            try:
                code = vm.run()
            except GuestError as error:
                sys.stderr.write(f"vmrpc: {error}\n")
                for key, value in sorted(error.registers.items()):
                    sys.stderr.write(f"  {key} = {value:#x}\n")
                return exit_timeout if isinstance(error, GuestTimeout) else exit_crashed
            if ns.stats:
                for key, value in sorted(vm.stats.items()):
                    sys.stderr.write(f"{key} {value}\n")
            return code
    except (ConfigError, ImageError, ValueError) as error:
        sys.stderr.write(f"vmrpc: {error}\n")
        return exit_usage
    except VmrpcError as error:
        sys.stderr.write(f"vmrpc: {type(error).__name__}: {error}\n")
        return exit_usage if explain_kvm_error(error, sys.stderr) else 1
