"""Crash reports: the exception, its address and error code, and the faulting line.

The guest runtime's exception handlers (guest/rt/irq.S) hand the faulting registers,
cr2 and the vector to the VMM, which names the exception and symbolizes rip from the
image's DWARF. tests/guests/crash.c marks each faulting statement with ``CRASH:<mode>``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import vmrpc.guest
from vmrpc import GuestCrashed
from vmrpc.pytest_plugin import VmFactory

from conftest import run_python

pytest_plugins = ["pytester"]

CRASH_C = Path(__file__).with_name("guests") / "crash.c"


def crash_line(mode: str) -> int:
    """The line of crash.c whose statement faults in ``mode``."""
    lines = CRASH_C.read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if f"CRASH:{mode}" in text)


@pytest.fixture(scope="module")
def crash_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vmrpc.guest.build(CRASH_C, cache_dir=tmp_path_factory.mktemp("cache"))


def crash(vm_factory: VmFactory, elf: Path, mode: str) -> GuestCrashed:
    vm = vm_factory(elf, args=[mode])
    with pytest.raises(GuestCrashed) as info:
        vm.run()
    assert f"crashing: {mode}" in info.value.console
    return info.value


def test_null_read_is_a_page_fault_at_address_0_with_its_line(
    vm_factory: VmFactory, crash_elf: Path
) -> None:
    error = crash(vm_factory, crash_elf, "null")

    assert error.exception == "#PF"
    assert error.address == 0
    assert error.registers["cr2"] == 0
    assert error.error_code == 0x5  # present (supervisor-only page 0), user, read
    assert error.function == "read_null"
    assert error.location == f"{CRASH_C}:{crash_line('null')}"
    assert f"in read_null at {CRASH_C}:{crash_line('null')}" in error.reason
    assert "#PF (page fault) at address 0x0 (user read of a protected page)" in error.reason


def test_null_member_write_names_the_member_address(vm_factory: VmFactory, crash_elf: Path) -> None:
    error = crash(vm_factory, crash_elf, "member")

    assert (error.exception, error.address, error.error_code) == ("#PF", 8, 0x7)
    assert error.location == f"{CRASH_C}:{crash_line('member')}"


def test_ud2_is_invalid_opcode(vm_factory: VmFactory, crash_elf: Path) -> None:
    error = crash(vm_factory, crash_elf, "ud2")

    assert error.exception == "#UD"
    assert error.address is None
    assert error.error_code is None
    assert error.function == "main"
    assert error.location == f"{CRASH_C}:{crash_line('ud2')}"


def test_division_by_zero_is_divide_error(vm_factory: VmFactory, crash_elf: Path) -> None:
    error = crash(vm_factory, crash_elf, "div0")

    assert error.exception == "#DE"
    assert error.function == "divide"
    assert error.location == f"{CRASH_C}:{crash_line('div0')}"


def test_registers_are_those_of_the_faulting_code(vm_factory: VmFactory, crash_elf: Path) -> None:
    error = crash(vm_factory, crash_elf, "ud2")

    # Ring 3 selectors (RPL 3) and a rip inside the image: the culprit's frame, not the
    # ring-0 handler's registers at the time of the report.
    assert error.registers["cs"] & 3 == 3
    assert error.registers["ss"] & 3 == 3
    assert 0x100000 <= error.registers["rip"] < 0x200000


def test_image_without_dwarf_reports_the_function_but_no_line(
    vm_factory: VmFactory, tmp_path: Path
) -> None:
    elf = vmrpc.guest.build(CRASH_C, cflags=["-g0"], cache_dir=tmp_path / "cache")

    error = crash(vm_factory, elf, "null")

    assert (error.exception, error.address) == ("#PF", 0)
    assert error.location is None
    assert error.function == "read_null"  # from the symbol table


def test_stripped_image_reports_the_exception_without_a_location(
    vm_factory: VmFactory, crash_elf: Path, tmp_path: Path
) -> None:
    strip = shutil.which("strip")
    if strip is None:
        pytest.skip("binutils' strip is not installed")
    stripped = tmp_path / "stripped.elf"
    subprocess.run([strip, "--strip-all", "-o", str(stripped), str(crash_elf)], check=True)

    error = crash(vm_factory, stripped, "ud2")

    assert error.exception == "#UD"
    assert error.function is None
    assert error.location is None
    assert "#UD (invalid opcode), rip 0x" in error.reason


@pytest.mark.kvm
def test_cli_prints_exception_and_source_line(crash_elf: Path) -> None:
    result = run_python("-m", "vmrpc", "run", "--timeout", "30", str(crash_elf), "null")

    assert result.returncode == 125
    assert "exception #PF, address 0x0, error code 0x5" in result.stderr
    assert f"in read_null ({CRASH_C}:{crash_line('null')})" in result.stderr
    assert "cr2=0x0000000000000000" in result.stderr


@pytest.mark.kvm
def test_pytest_report_shows_exception_and_line(pytester: pytest.Pytester, crash_elf: Path) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.vm(image={str(crash_elf)!r}, args=["div0"])
        def test_crash(vm):
            vm.run()
        """
    )

    result = pytester.runpytest()

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*vmrpc vm 0 (*, vcpus=1) exception*",
            "exception #DE",
            f"rip 0x* in divide ({CRASH_C}:{crash_line('div0')})",
        ]
    )
