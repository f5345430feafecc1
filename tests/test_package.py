"""The public Python API: names, exception hierarchy, images and the guest SDK."""

from __future__ import annotations

from pathlib import Path

import pytest

import vmrpc
from vmrpc import (
    ConfigError,
    GuestCrashed,
    GuestError,
    GuestTimeout,
    ImageError,
    KvmError,
    VmKilled,
    VmrpcError,
)
from vmrpc.cli import format_registers
from vmrpc.images import image_path, images_dir

BUILTIN = {"hello", "smp", "fault", "spin"}


def test_public_names_are_exported_and_documented() -> None:
    for name in vmrpc.__all__:
        obj = getattr(vmrpc, name)
        if name != "__version__":
            assert obj.__doc__, f"vmrpc.{name} has no docstring"
    assert vmrpc.__version__


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (ConfigError, VmrpcError),
        (ImageError, VmrpcError),
        (KvmError, VmrpcError),
        (VmKilled, VmrpcError),
        (GuestError, VmrpcError),
        (GuestCrashed, GuestError),
        (GuestTimeout, GuestError),
        (VmrpcError, Exception),
    ],
)
def test_exception_hierarchy(cls: type[BaseException], base: type[BaseException]) -> None:
    assert issubclass(cls, base)


def test_exceptions_are_the_native_classes() -> None:
    from vmrpc import _vmm

    assert vmrpc.GuestCrashed is _vmm.GuestCrashed
    assert vmrpc.errors.ImageError is _vmm.ImageError


def test_builtin_images_are_shipped() -> None:
    names = vmrpc.builtin_images()

    assert names == sorted(names)
    assert set(names) >= BUILTIN
    for name in names:
        path = image_path(name)
        assert path.parent == images_dir()
        assert path.read_bytes()[:4] == b"\x7fELF"


def test_image_path_passes_paths_through(tmp_path: Path) -> None:
    assert image_path(tmp_path / "x.elf") == tmp_path / "x.elf"
    assert image_path("dir/hello") == Path("dir/hello")
    assert image_path("hello.elf") == Path("hello.elf")


def test_guest_sdk_is_shipped() -> None:
    include = vmrpc.sdk_include_dir()
    lib = vmrpc.sdk_lib_dir()

    assert (include / "vmrpc" / "abi.h").is_file()
    for name in ("libvmrpc.a", "crt0.o", "guest.ld"):
        assert (lib / name).is_file(), name


def test_format_registers_orders_and_pads() -> None:
    text = format_registers({"cr2": 0xDEAD00000000, "rip": 0x100000, "zz": 1, "rsp": 0})

    assert text.splitlines()[0].split() == [
        "rip=0x0000000000100000",
        "rsp=0x0000000000000000",
        "cr2=0x0000dead00000000",
    ]
    assert "zz=0x0000000000000001" in text
