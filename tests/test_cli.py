"""The ``python -m vmrpc`` command line, run as a subprocess."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from conftest import CHILD_TIMEOUT_S, run_python

# Only safety nets for a hung guest or child; no test measures time.
GUEST_TIMEOUT = "30"


def vmrpc(*args: str) -> subprocess.CompletedProcess[str]:
    return run_python("-m", "vmrpc", *args)


@pytest.mark.parametrize("command", [[], ["run"], ["demo"], ["images"], ["bench"]])
def test_help(command: list[str]) -> None:
    result = vmrpc(*command, "--help")

    assert result.returncode == 0, result.stderr
    assert "usage: vmrpc" in result.stdout


def test_no_command_is_a_usage_error() -> None:
    result = vmrpc()

    assert result.returncode == 2
    assert "usage: vmrpc" in result.stderr


def test_images_lists_the_builtin_guests() -> None:
    result = vmrpc("images")

    assert result.returncode == 0, result.stderr
    assert {"hello", "smp", "fault", "spin"} <= set(result.stdout.split())


def test_run_unknown_image_is_a_usage_error() -> None:
    result = vmrpc("run", "nonesuch")

    assert result.returncode == 2
    assert "nonesuch" in result.stderr


@pytest.mark.kvm
def test_run_hello_streams_console_and_exits_zero() -> None:
    result = vmrpc("run", "--timeout", GUEST_TIMEOUT, "hello", "x")

    assert result.returncode == 0, result.stderr
    assert "hello from vmrpc guest" in result.stdout
    assert "arg[1]=x" in result.stdout


@pytest.mark.kvm
def test_run_with_stats_prints_counters() -> None:
    result = vmrpc("run", "--timeout", GUEST_TIMEOUT, "--stats", "--vcpus", "2", "smp")

    assert result.returncode == 0, result.stderr
    assert "vcpu 1 of 2" in result.stdout
    assert "exits_total" in result.stderr


@pytest.mark.kvm
def test_run_spin_with_timeout_exits_124() -> None:
    result = vmrpc("run", "spin", "--timeout", "0.5")

    assert result.returncode == 124
    assert "timed out" in result.stderr
    assert "rip=0x" in result.stderr


@pytest.mark.kvm
def test_run_fault_exits_125_and_prints_cr2() -> None:
    result = vmrpc("run", "--timeout", GUEST_TIMEOUT, "fault")

    assert result.returncode == 125
    assert "touching unmapped memory" in result.stdout
    # The exception, its address and source line, then every register.
    assert "exception #PF, address 0xdead0000000, error code 0x6" in result.stderr
    assert re.search(r"rip 0x[0-9a-f]+ in main \(\S*fault\.c:16\)", result.stderr)
    assert "cr2=0x00000dead0000000" in result.stderr


def _interrupt_after_first_line(command: list[str]) -> tuple[int, str]:
    """Start ``command``, wait for its first stdout line, send SIGINT, return (status, stderr)."""
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            child.stdout.readline()
            child.send_signal(signal.SIGINT)
            _, stderr = child.communicate(timeout=CHILD_TIMEOUT_S)
        finally:
            child.kill()
    return child.returncode, stderr


@pytest.mark.kvm
def test_ctrl_c_stops_run() -> None:
    status, stderr = _interrupt_after_first_line(
        [sys.executable, "-m", "vmrpc", "run", "--timeout", GUEST_TIMEOUT, "spin"]
    )

    assert status == 130
    assert "interrupted" in stderr


@pytest.mark.kvm
def test_ctrl_c_interrupts_wait() -> None:
    script = (
        "import vmrpc\n"
        "with vmrpc.VM('spin') as vm:\n"
        "    vm.start()\n"
        "    try:\n"  # the signal may come as soon as 'started' is out
        "        print('started', flush=True)\n"
        "        vm.wait()\n"
        "    except KeyboardInterrupt:\n"
        "        raise SystemExit(42)\n"
    )
    status, stderr = _interrupt_after_first_line([sys.executable, "-c", script])

    assert status == 42, stderr
