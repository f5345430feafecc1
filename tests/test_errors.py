"""Configuration and image errors: raised by the constructor, before any KVM object."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmrpc import VM, ConfigError, ImageError, builtin_images

from conftest import VmFactory


def test_missing_path_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-guest.elf"

    with pytest.raises(ImageError, match=r"no-such-guest\.elf"):
        VM(missing)


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


def test_unknown_builtin_name_lists_the_available_ones() -> None:
    with pytest.raises(ImageError, match="no built-in guest image named 'nonesuch'") as info:
        VM("nonesuch")

    for name in builtin_images():
        assert name in str(info.value)


@pytest.mark.parametrize("vcpus", [0, 9, -1])
def test_vcpus_out_of_range(vcpus: int) -> None:
    with pytest.raises((ConfigError, OverflowError)):
        VM("hello", vcpus=vcpus)


@pytest.mark.parametrize("vcpus", [0, 9])
def test_vcpus_out_of_range_is_config_error(vcpus: int) -> None:
    with pytest.raises(ConfigError, match="vcpus"):
        VM("hello", vcpus=vcpus)


@pytest.mark.parametrize("memory_mib", [0, 1, 3, 1 << 20])
def test_memory_out_of_range(memory_mib: int) -> None:
    with pytest.raises(ConfigError, match="memory"):
        VM("hello", memory_mib=memory_mib)


def test_argument_with_nul_byte() -> None:
    with pytest.raises(ConfigError):
        VM("hello", args=["ok", "bad\x00arg"])


def test_arguments_too_large() -> None:
    with pytest.raises(ConfigError):
        VM("hello", args=["x" * 4096] * 64)


def test_single_string_as_args_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        VM("hello", args="a b")  # type: ignore[arg-type]


@pytest.mark.kvm
def test_start_twice(hello_vm: VM) -> None:
    hello_vm.start()

    with pytest.raises(ConfigError):
        hello_vm.start()


@pytest.mark.kvm
def test_start_after_close(vm_factory: VmFactory) -> None:
    vm = vm_factory("hello")
    vm.close()

    with pytest.raises(ConfigError):
        vm.start()
