"""What a Linux program's start-up no longer pays for (docs/linux.md, "Start-up").

- vCPUs made on demand (crates/vmm/src/vm/pool.rs): a `LinuxVM` starts vCPU 0 only;
  the host makes another when a guest thread waits for one and the VM allows more.
  Counted by ``stats["vcpus_created"]``.
- Program images kept per process (crates/vmm/src/linux/image_cache.rs): the second
  VM of the same file maps the image the first one built (``layout["images_cached"]``),
  and a changed file is loaded afresh.

Nothing here measures time.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from linux_support import TIMEOUT, build_probe
from test_linux_threads import build_threads, in_vm, native

from vmrpc import VM
from vmrpc.linux import LinuxVM

pytestmark = pytest.mark.kvm

BUSYBOX = Path("/bin/busybox")


def test_a_program_that_never_clones_creates_one_vcpu() -> None:
    with LinuxVM(BUSYBOX, ["true"], threads=4) as vm:
        assert vm.run() == 0
        assert vm.stats["vcpus_created"] == 1


@pytest.mark.parametrize("libc", ["glibc", "musl"])
def test_threads_get_vcpus_as_they_are_cloned(libc: str, tmp_path: Path) -> None:
    program = build_threads(libc, tmp_path)
    want = native(program, "limit", "3")
    assert want.returncode == 0, want.stderr
    # A vCPU is made when a thread waits for one and none is free: the first clone
    # always makes vCPU 1 (vCPU 0 keeps main's registers); never more than the
    # threads alive (three waiters and main) though threads=6 allows six. How many
    # of the three waiters overlap depends on timing (one that ended leaves a vCPU
    # the next one takes), hence the range.
    code, out, vm = in_vm(program, "limit", "3", threads=6)
    assert (code, out) == (0, want.stdout)
    assert 2 <= vm.stats["vcpus_created"] <= 4
    # More threads than the VM allows at once share its vCPUs: never more are made.
    code, out, vm = in_vm(program, "limit", "4", threads=3)
    assert (code, out.splitlines()[0]) == (0, b"started 4 of 4 (ok)")
    assert 2 <= vm.stats["vcpus_created"] <= 3


def test_bare_guests_still_get_every_vcpu_at_start() -> None:
    with VM("smp", vcpus=3) as vm:
        assert vm.run(timeout=30) == 0
        assert vm.stats["vcpus_created"] == 3


def test_the_second_vm_of_a_program_maps_the_images_the_first_built() -> None:
    python = "/usr/bin/python3"
    code = "import json; print(json.dumps(sum(range(1000))))"
    runs = []
    for _ in range(2):
        with LinuxVM(python, ["-c", code], timeout=TIMEOUT) as vm:
            runs.append((vm.run(), vm.stdout, vm.layout["images_cached"]))
    # The program and its ld.so: built once (by this VM or an earlier test), then mapped.
    assert runs[1] == (0, b"499500\n", 2)
    assert runs[0][:2] == runs[1][:2]


def test_a_changed_program_file_is_loaded_afresh(tmp_path: Path) -> None:
    source = Path(__file__).parent / "linux_programs" / "rusage.c"
    exe = tmp_path / "prog"
    shutil.copy(build_probe("musl", tmp_path, source), exe)
    for cached in (False, True):
        with LinuxVM(exe, [], timeout=TIMEOUT) as vm:
            assert (vm.run(), vm.layout["images_cached"]) == (0, int(cached))
    # Another program (glibc's build of the same source) at the same path: loaded afresh.
    shutil.copy(build_probe("glibc", tmp_path, source), exe)
    with LinuxVM(exe, [], timeout=TIMEOUT) as vm:
        assert (vm.run(), vm.layout["images_cached"]) == (0, 0)
        assert b"FAIL" not in vm.stdout
