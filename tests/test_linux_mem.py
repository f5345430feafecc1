"""Page protections (mprotect, mmap PROT_*) and file mappings in the Linux personality.

tests/linux_programs/prot.c, built static with glibc and musl. A fault is the
personality's SIGSEGV: the VM ends with `GuestCrashed` naming the #PF and the address,
which the program printed just before touching it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from linux_support import TIMEOUT, build_probe

from vmrpc import GuestCrashed
from vmrpc.linux import LinuxVM, Mount

pytestmark = pytest.mark.kvm

SOURCE = Path(__file__).parent / "linux_programs" / "prot.c"
#: #PF error code bits: present, write, user, instruction fetch.
PF_PRESENT, PF_WRITE, PF_USER, PF_FETCH = 1, 2, 4, 0x10


@pytest.fixture(scope="module", params=["glibc", "musl"])
def prot(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_probe(request.param, tmp_path_factory.mktemp(request.param), SOURCE)


def crash(program: Path, *args: str, **kwargs: object) -> tuple[GuestCrashed, str]:
    """Runs a case that must fault; the error and the program's stdout."""
    with LinuxVM(program, args, timeout=TIMEOUT, **kwargs) as vm:  # type: ignore[arg-type]
        with pytest.raises(GuestCrashed) as info:
            vm.run()
        return info.value, vm.stdout.decode()


def touched(stdout: str) -> int:
    """The address the program announced (``write <hex>`` / ``read <hex>``, last line)."""
    return int(stdout.splitlines()[-1].split()[1], 16)


def test_write_to_a_read_only_page_faults(prot: Path) -> None:
    error, out = crash(prot, "write-readonly")
    assert out.startswith("read 42\n")  # mprotect(PROT_READ) kept the page readable
    assert (error.exception, error.address) == ("#PF", touched(out))
    assert error.error_code == PF_PRESENT | PF_WRITE | PF_USER


def test_prot_none_guard_page_faults_and_its_neighbours_work(prot: Path) -> None:
    error, out = crash(prot, "guard")
    assert out.startswith("around 1 2\n")
    assert (error.exception, error.address) == ("#PF", touched(out))
    assert error.error_code == PF_USER  # not present: a read of no page


def test_unmapped_memory_faults(prot: Path) -> None:
    error, out = crash(prot, "after-munmap")
    assert (error.exception, error.address) == ("#PF", touched(out))


def test_the_programs_own_code_is_not_writable(prot: Path) -> None:
    error, out = crash(prot, "text")
    assert out.startswith("code 7\n")
    assert (error.exception, error.address) == ("#PF", touched(out))
    assert error.error_code == PF_PRESENT | PF_WRITE | PF_USER


def test_code_runs_only_with_prot_exec(prot: Path) -> None:
    error, out = crash(prot, "exec")
    assert out.startswith("ran 7\n")  # PROT_READ|PROT_EXEC: it ran
    assert (error.exception, error.address) == ("#PF", touched(out))
    assert error.error_code == PF_PRESENT | PF_USER | PF_FETCH  # NX page


@pytest.mark.parametrize("case", ["restore", "errors"])
def test_same_as_native(prot: Path, case: str) -> None:
    native = subprocess.run([prot, case], capture_output=True, timeout=TIMEOUT, check=False)
    with LinuxVM(prot, [case], timeout=TIMEOUT) as vm:
        assert (vm.run(), vm.stdout) == (native.returncode, native.stdout)
    assert native.returncode == 0


def test_file_mappings_private_copy_shared_read_only(prot: Path, tmp_path: Path) -> None:
    data = bytes(range(33, 127)) * 60  # 5640 bytes: two pages, the second partly past EOF
    (tmp_path / "f").write_bytes(data)
    error, out = crash(prot, "file", "/d/f", mounts=[Mount(tmp_path, "/d", readonly=True)])
    lines = out.splitlines()
    # The private copy changed, the file did not; bytes past EOF read as zero.
    assert lines[0] == f"private X {chr(data[0])} {data[1:6].decode()}|0"
    # MAP_SHARED|PROT_WRITE of a file: refused (ENODEV); read-only shared works, and
    # cannot be made writable later (EACCES).
    assert lines[1:4] == [
        "shared-rw No such device",
        f"shared-ro {data[:6].decode()}",
        "mprotect-w Permission denied",
    ]
    assert lines[4] == f"second page {data[4096:4100].decode()}"
    assert (error.exception, error.address) == ("#PF", touched(out))
    assert (tmp_path / "f").read_bytes() == data
