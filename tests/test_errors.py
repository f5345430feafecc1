"""Configuration and image errors: raised by the constructor, before any KVM object."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmrpc import VM, ConfigError, ImageError, builtin_images, image_path
from vmrpc.pytest_plugin import VmFactory

ELF_MACHINE_OFFSET = 18
ELF_CLASS_OFFSET = 4
EM_AARCH64 = 183
ELFCLASS32 = 1


def test_missing_path_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-guest.elf"

    with pytest.raises(ImageError, match=r"no-such-guest\.elf"):
        VM(missing)


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="directory"):
        VM(tmp_path)


def test_non_elf_file_is_rejected(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.elf"
    garbage.write_bytes(b"this is not an ELF file\x00" * 64)

    with pytest.raises(ImageError):
        VM(garbage)


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    empty = tmp_path / "empty.elf"
    empty.write_bytes(b"")

    with pytest.raises(ImageError):
        VM(empty)


def _patched_hello(tmp_path: Path, offset: int, value: bytes) -> Path:
    image = bytearray(image_path("hello").read_bytes())
    image[offset : offset + len(value)] = value
    path = tmp_path / "patched.elf"
    path.write_bytes(image)
    return path


def test_elf_for_another_machine_is_rejected(tmp_path: Path) -> None:
    arm = _patched_hello(tmp_path, ELF_MACHINE_OFFSET, EM_AARCH64.to_bytes(2, "little"))

    with pytest.raises(ImageError, match="x86-64"):
        VM(arm)


def test_32_bit_elf_is_rejected(tmp_path: Path) -> None:
    elf32 = _patched_hello(tmp_path, ELF_CLASS_OFFSET, bytes([ELFCLASS32]))

    with pytest.raises(ImageError, match="64-bit"):
        VM(elf32)


def test_truncated_elf_is_rejected(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.elf"
    truncated.write_bytes(image_path("hello").read_bytes()[:100])

    with pytest.raises(ImageError):
        VM(truncated)


@pytest.mark.skipif(not Path("/bin/true").is_file(), reason="/bin/true is not on this system")
def test_host_pie_executable_is_rejected() -> None:
    # A Linux user-space program: x86-64 but position-independent and dynamically linked.
    with pytest.raises(ImageError, match="position-independent"):
        VM("/bin/true")


def test_unknown_builtin_name_lists_the_available_ones() -> None:
    with pytest.raises(ImageError, match="no built-in guest image named 'nonesuch'") as info:
        VM("nonesuch")

    for name in builtin_images():
        assert name in str(info.value)


@pytest.mark.parametrize("vcpus", [0, 9])
def test_vcpus_out_of_range(vcpus: int) -> None:
    with pytest.raises(ConfigError, match="vcpus"):
        VM("hello", vcpus=vcpus)


@pytest.mark.parametrize("memory_mib", [0, 2, 3, 65, 1 << 20])
def test_memory_out_of_range_or_odd(memory_mib: int) -> None:
    with pytest.raises(ConfigError, match="memory"):
        VM("hello", memory_mib=memory_mib)


def test_argument_with_nul_byte() -> None:
    with pytest.raises(ConfigError, match="NUL"):
        VM("hello", args=["ok", "bad\x00arg"])


def test_arguments_too_large() -> None:
    with pytest.raises(ConfigError, match="arguments"):
        VM("hello", args=["x" * 4096] * 64)


def test_single_string_as_args_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        VM("hello", args="a b")  # type: ignore[arg-type]


@pytest.mark.kvm
def test_start_twice(hello_vm: VM) -> None:
    hello_vm.start()

    with pytest.raises(ConfigError, match="already started"):
        hello_vm.start()


@pytest.mark.kvm
def test_start_after_close(vm_factory: VmFactory) -> None:
    vm = vm_factory("hello")
    vm.close()

    with pytest.raises(ConfigError, match="closed"):
        vm.start()
