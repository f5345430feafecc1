"""Guest images and the guest SDK shipped inside the package.

`make dev` builds the guest (``make -C guest``) and copies the result into
``vmrpc/_guest``:

- ``images/<name>.elf``: the built-in guest programs (``hello``, ``smp``, ...)
- ``linux/linux.elf``: the Linux system-call personality that `vmrpc.LinuxVM` boots
- ``testing/<name>.elf``: the project's test and benchmark guests (``hostile``,
  ``rpcbench``, ...); present in a checkout, left out of wheels
- ``include/``: the guest headers (``vmrpc/abi.h`` is the guest-host ABI)
- ``lib/``: ``libvmrpc.a``, ``crt0.o`` and the linker script ``guest.ld``,
  to link your own guests against the runtime.
"""

from __future__ import annotations

import os
from pathlib import Path

from vmrpc.errors import ImageError

__all__ = [
    "builtin_images",
    "image_path",
    "images_dir",
    "linux_personality_image",
    "sdk_include_dir",
    "sdk_lib_dir",
    "testing_images",
]

_GUEST_DIR = Path(__file__).resolve().parent / "_guest"
_IMAGE_SUFFIX = ".elf"


def images_dir() -> Path:
    """Return the directory holding the built-in guest images (it may not exist yet)."""
    return _GUEST_DIR / "images"


def testing_images_dir() -> Path:
    """Return the directory of the test and benchmark guests (absent from wheels)."""
    return _GUEST_DIR / "testing"


def linux_personality_image() -> Path:
    """Return the path of the Linux personality image (``linux.elf``) that LinuxVM boots.

    Raises:
        ImageError: the package has no personality image (a checkout before ``make dev``).
    """
    path = _GUEST_DIR / "linux" / "linux.elf"
    if not path.is_file():
        raise ImageError(f"the Linux personality image is missing ({path}); run `make dev`")
    return path


def sdk_include_dir() -> Path:
    """Return the directory of the guest headers (add it with ``-I`` when compiling a guest)."""
    return _GUEST_DIR / "include"


def sdk_lib_dir() -> Path:
    """Return the directory holding ``libvmrpc.a``, ``crt0.o`` and ``guest.ld``."""
    return _GUEST_DIR / "lib"


def _names_in(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.name.removesuffix(_IMAGE_SUFFIX) for p in directory.glob("*" + _IMAGE_SUFFIX))


def builtin_images() -> list[str]:
    """Return the names of the built-in example guest images, sorted."""
    return _names_in(images_dir())


def testing_images() -> list[str]:
    """Return the names of the test and benchmark guests, sorted (empty in a wheel install)."""
    return _names_in(testing_images_dir())


def _looks_like_name(image: str) -> bool:
    return os.sep not in image and "/" not in image and not image.endswith(_IMAGE_SUFFIX)


def image_path(image: str | os.PathLike[str]) -> Path:
    """Resolve a built-in image name or a path to the path of a guest ELF file.

    A plain string without a directory separator and without the ``.elf`` suffix is
    the name of a built-in image (``"hello"``). Everything else, and any
    ``os.PathLike``, is a path; it is returned as given (the native loader checks that
    it exists and is a usable ELF, and raises `ImageError` naming it otherwise).

    Raises:
        ImageError: ``image`` looks like a built-in name but no such image exists; the
            message lists the available names.
    """
    if isinstance(image, str) and _looks_like_name(image):
        for directory in (images_dir(), testing_images_dir()):
            candidate = directory / (image + _IMAGE_SUFFIX)
            if candidate.is_file():
                return candidate
        if Path(image).is_file():
            # A file of that name in the current directory is a path, not a name.
            return Path(image)
        names = builtin_images()
        available = ", ".join(names) if names else "none (run `make dev` to build them)"
        raise ImageError(f"no built-in guest image named {image!r}; available: {available}")
    return Path(image)
