"""`vmrpc.linux.FilesModule` called directly with a hostile program's arguments (no VM):
each call answers a result word, -errno for arguments Linux would refuse, and never
raises. Found by the ``linux_files`` fuzz target (``make fuzz``)."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest

from vmrpc.linux import FilesModule, Mount

REQ = struct.Struct("<6q")  # six arguments, as vmrpc.linux.filebase reads them
RESULT = struct.Struct("<q")
AT_FDCWD = -100


@pytest.fixture
def module(tmp_path: Path) -> FilesModule:
    (tmp_path / "file").write_bytes(b"x")
    return FilesModule([Mount(tmp_path, "/")])


@pytest.mark.parametrize("mode", [1 << 40, -1, 8, 0x7FFF_FFFF])
def test_faccessat_with_a_bad_mode_is_einval(module: FilesModule, mode: int) -> None:
    # Before: os.access raised OverflowError (mode past a C int) or accepted junk bits.
    answer = module.faccessat(REQ.pack(AT_FDCWD, mode, 0, 0, 0, 0) + b"/file\0")
    assert RESULT.unpack_from(answer)[0] == -errno.EINVAL


@pytest.mark.parametrize("mode", [os.F_OK, os.R_OK, os.R_OK | os.W_OK])
def test_faccessat_with_a_valid_mode_answers(module: FilesModule, mode: int) -> None:
    answer = module.faccessat(REQ.pack(AT_FDCWD, mode, 0, 0, 0, 0) + b"/file\0")
    assert RESULT.unpack_from(answer)[0] == 0
