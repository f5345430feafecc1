"""The ``vmrpc`` command line (``python -m vmrpc``).

Subcommands: ``run`` boots a guest image and streams its console (with host modules
from ``--module``), ``demo`` shows what vmrpc does, ``images`` lists the built-in guest
images, ``build-guest`` compiles a C guest against the shipped SDK, ``bench`` runs the
benchmarks.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from vmrpc.errors import (
    ConfigError,
    GuestBuildError,
    GuestError,
    GuestTimeout,
    ImageError,
    VmrpcError,
)
from vmrpc.images import builtin_images, image_path, testing_images
from vmrpc.kvmaccess import explain_kvm_error
from vmrpc.linux.cli import add_arguments as add_linux_arguments
from vmrpc.linux.cli import run_linux
from vmrpc.modspec import ModuleSpecError, load_module
from vmrpc.vm import VM

__all__ = [
    "EXIT_CRASHED",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "ModuleSpecError",
    "build_parser",
    "load_module",
    "main",
]

log = logging.getLogger("vmrpc")

#: Exit status of ``vmrpc run`` when the guest did not exit in time (as timeout(1)).
EXIT_TIMEOUT = 124
#: Exit status of ``vmrpc run`` when the guest crashed.
EXIT_CRASHED = 125
#: Exit status for a bad configuration or image, or no access to /dev/kvm.
EXIT_USAGE = 2
#: Exit status for other vmrpc errors (a KVM call that failed).
EXIT_ERROR = 1
#: Exit status after Ctrl-C.
EXIT_INTERRUPTED = 130

_POLL_SECONDS = 0.02

# Register dump order: instruction and stack first, then the general registers, then
# the control registers. Keys the VMM reports beyond these follow in sorted order.
_REGISTER_ORDER = (
    *("rip", "rsp", "rflags"),
    *("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp"),
    *("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"),
    *("cr0", "cr2", "cr3", "cr4", "efer"),
)


def format_registers(registers: dict[str, int], per_line: int = 3) -> str:
    """Format a register dict as aligned ``name=0x...`` columns, in a fixed order."""
    known = [name for name in _REGISTER_ORDER if name in registers]
    rest = sorted(name for name in registers if name not in _REGISTER_ORDER)
    cells = [f"{name:>6}=0x{registers[name] & (2**64 - 1):016x}" for name in known + rest]
    lines = ["  ".join(cells[i : i + per_line]) for i in range(0, len(cells), per_line)]
    return "\n".join(lines)


def format_crash(error: GuestError) -> str | None:
    """Describe the CPU exception of a crash in two lines (what, then where), or None.

    ``exception #PF, address 0x0, error code 0x5`` then ``at main (app.c:12)``; the
    second line says so when the image has no debug information for the address.
    """
    if error.exception is None:
        return None
    what = f"exception {error.exception}"
    if error.address is not None:
        what += f", address {error.address:#x}"
    if error.error_code is not None:
        what += f", error code {error.error_code:#x}"
    rip = error.registers.get("rip")
    where = f"rip {rip:#x}" if rip is not None else "rip unknown"
    if error.function is not None or error.location is not None:
        where += f" in {error.function or '?'} ({error.location or 'no line information'})"
    else:
        where += " (no debug information for it in the image)"
    return f"{what}\n{where}"


def report_guest_error(error: GuestError, out: TextIO) -> None:
    """Print what a guest failure carries: reason, exception and place, vCPU, registers."""
    kind = "timed out" if isinstance(error, GuestTimeout) else "crashed"
    out.write(f"vmrpc: guest {kind} on vcpu {error.vcpu}: {error.reason}\n")
    crash = format_crash(error)
    if crash is not None:
        out.write(crash + "\n")
    if error.registers:
        out.write(format_registers(error.registers) + "\n")
    out.flush()


def _drain(vm: VM, pos: int, out: TextIO) -> int:
    text, pos = vm.console_from(pos)
    if text:
        out.write(text)
        out.flush()
    return pos


def stream_run(vm: VM, timeout: float | None, out: TextIO) -> int:
    """Start ``vm``, copy its console to ``out`` as it arrives, return the exit code.

    The native ``wait`` (which owns the timeout) runs in a helper thread while this
    thread polls the console every 20 ms. Guest errors propagate to the caller.
    """
    outcome: list[int | BaseException] = []

    def waiter() -> None:
        try:
            outcome.append(vm.wait(timeout))
        except BaseException as exc:  # handed to the main thread
            outcome.append(exc)

    vm.start()
    thread = threading.Thread(target=waiter, name="vmrpc-wait", daemon=True)
    thread.start()
    pos = 0
    try:
        while thread.is_alive():
            pos = _drain(vm, pos, out)
            thread.join(_POLL_SECONDS)
    except KeyboardInterrupt:
        vm.kill()
        thread.join()
        raise
    finally:
        _drain(vm, pos, out)
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _cmd_run(ns: argparse.Namespace) -> int:
    if ns.linux:
        return run_linux(ns, EXIT_CRASHED, EXIT_TIMEOUT, EXIT_USAGE)
    try:
        modules = [load_module(spec) for spec in ns.module]
    except ModuleSpecError as error:
        sys.stderr.write(f"vmrpc: {error}\n")
        return EXIT_USAGE
    try:
        with VM(
            ns.image,
            vcpus=ns.vcpus,
            memory_mib=64 if ns.memory is None else ns.memory,
            args=ns.args,
            modules=modules,
        ) as vm:
            try:
                code = stream_run(vm, ns.timeout, sys.stdout)
            except GuestError as error:
                report_guest_error(error, sys.stderr)
                code = EXIT_TIMEOUT if isinstance(error, GuestTimeout) else EXIT_CRASHED
            except KeyboardInterrupt:
                sys.stderr.write("vmrpc: interrupted, VM killed\n")
                code = EXIT_INTERRUPTED
            if ns.stats:
                for key, value in sorted(vm.stats.items()):
                    sys.stderr.write(f"{key} {value}\n")
    except VmrpcError as error:
        return _report_vm_error(error, ns.image)
    # A process exit status is one byte; keep it the guest's low byte.
    return code & 0xFF


def _report_vm_error(error: VmrpcError, image: str) -> int:
    """Say what went wrong creating or running a VM, with a hint; return the exit status."""
    if isinstance(error, ConfigError | ImageError):
        sys.stderr.write(f"vmrpc: {error}\n")
        if isinstance(error, ImageError) and Path(image).suffix in (".c", ".S", ".s"):
            sys.stderr.write(f"vmrpc: compile it first: vmrpc build-guest {image}\n")
        return EXIT_USAGE
    sys.stderr.write(f"vmrpc: {type(error).__name__}: {error}\n")
    return EXIT_USAGE if explain_kvm_error(error, sys.stderr) else EXIT_ERROR


def _cmd_images(ns: argparse.Namespace) -> int:
    names = testing_images() if ns.testing else builtin_images()
    if not names:
        what = "test images (they ship in a checkout, not in wheels)" if ns.testing else "images"
        sys.stderr.write(f"vmrpc: no built-in {what}\n")
        return EXIT_ERROR
    for name in names:
        line = f"{name:<16}{image_path(name)}" if ns.paths else name
        print(line)
    return 0


def _cmd_demo(ns: argparse.Namespace) -> int:
    from vmrpc import demo

    return demo.main()


def _cmd_build_guest(ns: argparse.Namespace) -> int:
    from vmrpc import guest

    suffix = "" if ns.linux else ".elf"  # a Linux program is named like one
    output: Path = ns.output or Path(Path(ns.sources[0]).stem + suffix)
    cflags = [flag for group in ns.cflags for flag in group.split()]
    try:
        if ns.linux:
            from vmrpc.linux import sdk

            path = sdk.build(ns.sources, output, cflags=cflags)
        else:
            path = guest.build(ns.sources, output, cflags=cflags, cache_dir=ns.cache_dir)
    except GuestBuildError as error:
        sys.stderr.write(f"vmrpc: {error}\n")
        return EXIT_ERROR
    print(path)
    return 0


def _cmd_bench(ns: argparse.Namespace) -> int:
    directory: Path = ns.dir
    # benches/_*.py are the scripts' shared helpers, not benchmarks.
    scripts = sorted(directory.glob("[!_]*.py")) if directory.is_dir() else []
    if ns.names:
        scripts = [s for s in scripts if s.stem in ns.names]
    if not scripts:
        sys.stderr.write(
            f"vmrpc: no benchmarks in {directory}/: they live in the benches/ directory of a "
            "vmrpc source checkout; run this there or pass --dir\n"
        )
        return EXIT_USAGE
    failed = 0
    for script in scripts:
        print(f"== {script.stem} ==", flush=True)
        if subprocess.run([sys.executable, str(script)], check=False).returncode != 0:
            failed += 1
            print(f"vmrpc: benchmark {script.stem} failed", file=sys.stderr)
    return EXIT_ERROR if failed else 0


def _version() -> str:
    from vmrpc import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``vmrpc`` command."""
    parser = argparse.ArgumentParser(
        prog="vmrpc",
        description="Boot small KVM virtual machines and talk to them.",
    )
    parser.add_argument("--version", action="version", version=f"vmrpc {_version()}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="boot a guest image and stream its console",
        description="Boot IMAGE (a built-in name or an ELF path) with ARGS and stream its "
        "console to stdout. Exits with the guest's exit code; 124 if the guest timed out, "
        "125 if it crashed (the reason and registers go to stderr), 2 for a bad "
        "configuration or image, or no access to /dev/kvm. Host modules given with "
        "--module are registered before the guest starts. Arguments after IMAGE that are "
        "not options of `run` are the guest's, even if they start with '-' (`--` ends "
        "vmrpc's options).",
    )
    run.add_argument("image", metavar="IMAGE", help="built-in image name or path of a guest ELF")
    run.add_argument("args", metavar="ARGS", nargs="*", help="arguments passed to the guest")
    run.add_argument(
        "--vcpus", type=int, default=1, metavar="N", help="virtual CPUs, 1-8 (default: %(default)s)"
    )
    run.add_argument(
        "--memory",
        type=int,
        default=None,
        metavar="MIB",
        help="guest memory in MiB (default: 64; 256 with --linux)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="kill the guest after S seconds (default: none, since servers and interactive "
        "guests run until they exit; Ctrl-C kills the VM)",
    )
    run.add_argument("--stats", action="store_true", help="print the VM's counters to stderr")
    run.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="SPEC",
        help="register a host module: pkg.mod:Class, path/file.py:Class or native:echo "
        "(repeatable)",
    )
    add_linux_arguments(run)
    run.set_defaults(func=_cmd_run)
    parser.set_defaults(run_parser=run)  # main() reads run's options to find guest arguments

    demo = sub.add_parser("demo", help="run the demo", description="Run the vmrpc demo.")
    demo.set_defaults(func=_cmd_demo)

    images = sub.add_parser(
        "images", help="list the built-in guest images", description="List built-in images."
    )
    images.add_argument("--paths", action="store_true", help="also print each image's path")
    images.add_argument(
        "--testing",
        action="store_true",
        help="list the project's test and benchmark guests instead of the examples",
    )
    images.set_defaults(func=_cmd_images)

    build_guest = sub.add_parser(
        "build-guest",
        help="compile and link a C guest against the shipped SDK",
        description="Compile SOURCE files (C or assembly) into a guest ELF image with the "
        "system C compiler ($CC, gcc or cc), the SDK's headers (#include <vmrpc.h>, and "
        "standard headers such as <stdio.h>, <string.h>, <stdlib.h> from the SDK's own C "
        "library, never the host's), runtime and linker script, and the flags of the built-in "
        "guests but -Werror: warnings are printed, not fatal. Results are cached. "
        "Exits 1 with the compiler's messages when the build fails.",
    )
    build_guest.add_argument("sources", nargs="+", metavar="SOURCE", help="C or .S files")
    build_guest.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        metavar="ELF",
        help="output image (default: the first source's name with .elf, here)",
    )
    build_guest.add_argument(
        "--cflags",
        action="append",
        default=[],
        metavar="FLAGS",
        help="extra compiler flags, e.g. --cflags='-DN=3 -Werror' (repeatable); "
        "warnings are printed but do not fail the build",
    )
    build_guest.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="build cache (default: $XDG_CACHE_HOME/vmrpc/guests)",
    )
    build_guest.add_argument(
        "--linux",
        action="store_true",
        help="build a static Linux program for `run --linux` instead (musl-gcc, else gcc, "
        "-static), linked with the Linux SDK: #include <vmrpc_linux.h> for bind_module, "
        "perform_rpc and event queues (docs/linux.md); default output: the first source's "
        "name without .c",
    )
    build_guest.set_defaults(func=_cmd_build_guest)

    bench = sub.add_parser(
        "bench",
        help="run the benchmarks",
        description="Run the benchmark scripts (benches/*.py), each in its own process.",
    )
    bench.add_argument("names", nargs="*", metavar="NAME", help="only these benchmarks")
    bench.add_argument(
        "--dir",
        type=Path,
        default=Path("benches"),
        help="benchmark directory (default: %(default)s, as in a source checkout)",
    )
    bench.set_defaults(func=_cmd_bench)
    return parser


def _guest_args_last(argv: list[str], run: argparse.ArgumentParser) -> list[str]:
    """``run``'s command line reordered as ``run OPTIONS... IMAGE -- GUEST_ARGS...``.

    After IMAGE, a token that is none of ``run``'s own options (nor such an option's
    value) belongs to the guest, in order, even when it starts with '-': ``vmrpc run
    --linux /usr/bin/python3 -c 'print(1)' --mount d:/d`` gives python3 ``-c 'print(1)'``.
    ``--`` still ends vmrpc's options, and ``-h`` after IMAGE is the guest's. (argparse
    alone cannot tell a guest's ``-c`` from an unknown option of ours.)
    """
    command = next((i for i, tok in enumerate(argv) if not tok.startswith("-")), None)
    if command is None or argv[command] != "run":
        return argv
    ours, image, guest = argv[: command + 1], list[str](), list[str]()
    i = command + 1
    while i < len(argv):
        tok = argv[i]
        action = run._option_string_actions.get(tok.split("=", 1)[0])
        if tok == "--":
            guest += argv[i + 1 :]
            break
        if image and isinstance(action, argparse._HelpAction):
            action = None
        if action is not None:
            ours.append(tok)
            if "=" not in tok and action.nargs != 0:  # the option's value follows
                ours += argv[i + 1 : i + 2]
                i += 1
        elif image:
            guest.append(tok)
        elif tok.startswith("-"):
            ours.append(tok)  # an unknown option before IMAGE: argparse reports it
        else:
            image.append(tok)
        i += 1
    return [*ours, *image, "--", *guest]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vmrpc`` command with ``argv`` (default: ``sys.argv[1:]``); return the status."""
    parser = build_parser()
    run: argparse.ArgumentParser = parser.get_default("run_parser")
    ns = parser.parse_args(_guest_args_last(list(sys.argv[1:] if argv is None else argv), run))
    level = {0: logging.WARNING, 1: logging.INFO}.get(ns.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        status: int = ns.func(ns)
    except BrokenPipeError:
        # The reader went away (`vmrpc images | head`): no traceback, and no second one when
        # the interpreter flushes stdout at exit. 128 + SIGPIPE, as a shell reports it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return status
