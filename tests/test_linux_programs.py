"""The project's own static programs (glibc and musl) in the Linux personality.

Each case runs the same binary natively and in a VM where the output is
deterministic, and checks properties where it is not (time, randomness).
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from linux_support import TIMEOUT, build_probe, needs_pvm_lstar

from vmrpc import ConfigError, GuestCrashed, ImageError
from vmrpc.linux import LinuxVM, Mount

pytestmark = pytest.mark.kvm


@pytest.fixture(scope="module", params=["glibc", "musl"])
def probe(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_probe(request.param, tmp_path_factory.mktemp(request.param))


def in_vm(program: Path, *args: str, **kwargs: object) -> tuple[int, bytes, bytes]:
    with LinuxVM(program, args, timeout=TIMEOUT, **kwargs) as vm:  # type: ignore[arg-type]
        return vm.run(), vm.stdout, vm.stderr


def native(program: Path, *args: str) -> tuple[int, bytes, bytes]:
    r = subprocess.run([program, *args], capture_output=True, timeout=TIMEOUT, check=False)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("case", ["floats", "qsort", "strtod", "malloc", "errno", "mmap", "pipes"])
def test_same_output_as_native(probe: Path, case: str) -> None:
    got = in_vm(probe, case)
    assert got == native(probe, case)
    assert got[0] == 0
    assert got[1]


def test_bad_pointers_get_efault_and_pipes_work(probe: Path) -> None:
    # write(1, 16, 5), read(0, <personality>, 16), open(NULL): EFAULT (14) each.
    assert in_vm(probe, "efault")[1] == b"-1 14 -1 14 -1 14\n"
    # poll: only the write end ready, then the read end; dup2 to 10; EOF once
    # the write end is closed; O_CLOEXEC recorded.
    assert in_vm(probe, "pipes")[1] == b"1 1 10 4 ping 0 1\n"


def test_floating_point_is_exact(probe: Path) -> None:
    assert in_vm(probe, "floats")[1] == b"1.643935 6.022e+23 0.3\n"


def test_errno_values(probe: Path) -> None:
    # ENOENT for a missing path, EBADF for a bad fd, ENOENT for mkdir under a missing dir.
    assert in_vm(probe, "errno")[1] == b"-1 2 -1 9 -1 2\n"


@pytest.mark.parametrize(("status", "want"), [("0", 0), ("7", 7), ("300", 300 & 0xFF)])
def test_exit_status_is_the_vm_exit_code(probe: Path, status: str, want: int) -> None:
    assert in_vm(probe, "exit", status)[0] == want


def test_clocks(probe: Path) -> None:
    before = int(time.time())
    code, out, _ = in_vm(probe, "time")
    after = int(time.time())
    wall, res, slept = out.split()
    assert code == 0
    assert before <= int(wall) <= after  # realtime comes from the host's clock
    assert (res, slept) == (b"1", b"slept")  # monotonic advanced across nanosleep


def test_clocks_are_read_through_the_vdso_without_system_calls(probe: Path) -> None:
    # glibc and musl find the personality's vDSO through AT_SYSINFO_EHDR and read the
    # clocks in user space: clock_gettime and time never reach the personality, while
    # nanosleep (no vDSO function) still does. (musl asks clock_getres of the kernel.)
    before = int(time.time())
    with LinuxVM(probe, ["time"], timeout=TIMEOUT, trace=True) as vm:
        assert vm.run() == 0
        wall, res, slept = vm.stdout.split()
        names = {record.name for record in vm.trace}
    assert before <= int(wall) <= int(time.time())
    assert (res, slept) == (b"1", b"slept")
    assert "nanosleep" in names or "clock_nanosleep" in names
    assert not names & {"clock_gettime", "time", "gettimeofday"}


def test_a_dynamic_program_reads_the_clock_through_the_vdso() -> None:
    # Debian's /bin/date (glibc, dynamically linked): ld.so takes the vDSO too.
    before = int(time.time())
    with LinuxVM("/bin/date", ["+%s"], timeout=TIMEOUT, trace=True) as vm:
        assert vm.run() == 0, vm.stderr
        names = {record.name for record in vm.trace}
    assert before <= int(vm.stdout) <= int(time.time())
    assert "clock_gettime" not in names


def test_getrandom_differs_between_calls_and_vms(probe: Path) -> None:
    first = in_vm(probe, "random")[1].split()
    second = in_vm(probe, "random")[1].split()
    assert re.fullmatch(rb"[0-9a-f]{64}", first[0])
    assert first[1] == b"differ"
    assert first[0] != second[0]


def test_stdin_bytes_and_separate_stderr(probe: Path) -> None:
    assert in_vm(probe, "stdin", stdin=b"one\ntwo\n") == (0, b"one\ntwo\n", b"done\n")


def test_stdout_streams_to_a_callback(probe: Path) -> None:
    chunks: list[bytes] = []
    in_vm(probe, "stdin", stdin=b"x\n", on_stdout=chunks.append)
    assert b"".join(chunks) == b"x\n"


def test_files_in_a_read_write_mount(probe: Path, tmp_path: Path) -> None:
    code, out, _ = in_vm(probe, "files", "/w", mounts=[Mount(tmp_path, "/w")])
    assert (code, out) == (0, b"written by probe 42\n20\n")
    assert (tmp_path / "probe.out").read_text() == "written by probe 42\n"


def test_unsupported_call_is_enosys_and_counted_by_name(probe: Path) -> None:
    with LinuxVM(probe, ["enosys"], timeout=TIMEOUT) as vm:
        assert vm.run() == 0
        assert vm.stdout == b"-1 38\n"  # ENOSYS
        assert vm.stats["enosys_io_setup"] == 1


@pytest.mark.parametrize("rewrite", [True, pytest.param(False, marks=needs_pvm_lstar)])
def test_segfault_raises_guest_crashed_with_the_faulting_address(
    probe: Path, rewrite: bool
) -> None:
    vm = LinuxVM(probe, ["segv"], timeout=TIMEOUT, rewrite_syscalls=rewrite)
    with vm, pytest.raises(GuestCrashed) as info:
        vm.run()
    # The probe writes address 16: page 0 is never writable by the program.
    assert info.value.registers["cr2"] == 16
    assert info.value.registers["rip"] >= 0x400000


def test_not_elf_foreign_and_interpreterless_programs_are_refused(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(ImageError, match="not an ELF"):
        LinuxVM(script)
    arm = tmp_path / "arm"
    header = bytearray(64)
    header[:7] = b"\x7fELF\x02\x01\x01"
    header[16:20] = (2).to_bytes(2, "little") + (183).to_bytes(2, "little")  # EM_AARCH64
    arm.write_bytes(bytes(header))
    with pytest.raises(ImageError, match="not an x86-64"):
        LinuxVM(arm)
    # A dynamically linked program whose interpreter is not in the sysroot.
    with pytest.raises(ImageError, match=r"interpreter /lib64/ld-linux-x86-64\.so\.2"):
        LinuxVM("/bin/ls", sysroot=tmp_path)
    with pytest.raises(ImageError, match="cannot read"):
        LinuxVM(tmp_path / "missing")


def test_a_program_too_big_for_memory_is_a_config_error(probe: Path) -> None:
    with pytest.raises(ConfigError, match="memory"):
        LinuxVM(probe, memory_mib=16)


@needs_pvm_lstar
def test_syscall_sites_are_rewritten_and_the_lstar_path_still_serves_the_rest(
    probe: Path,
) -> None:
    with LinuxVM(probe, ["jit"], timeout=TIMEOUT) as vm:
        assert vm.layout["syscall_sites"] > 10
        # The run-time site was never rewritten: it reaches the personality via LSTAR.
        assert (vm.run(), vm.stdout) == (0, b"1\n")


@needs_pvm_lstar
@pytest.mark.parametrize("case", ["floats", "malloc", "errno"])
def test_without_rewriting_every_call_goes_through_lstar(probe: Path, case: str) -> None:
    with LinuxVM(probe, [case], timeout=TIMEOUT, rewrite_syscalls=False) as vm:
        assert vm.layout["syscall_sites"] == 0
        assert (vm.run(), vm.stdout) == native(probe, case)[:2]
