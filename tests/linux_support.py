"""Helpers shared by the Linux personality's tests (tests/test_linux*.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

BUSYBOX = Path("/bin/busybox")
PROBE_SOURCE = Path(__file__).parent / "linux_programs" / "probe.c"
#: Safety net for a hung guest; no test measures time.
TIMEOUT = 60.0
INSTALL_HINT = "install them with `sudo apt-get install busybox-static musl-tools` (make test does)"


def require_busybox() -> Path:
    """Debian's busybox-static; a missing one is a failure that says how to install it."""
    if not BUSYBOX.exists():
        pytest.fail(f"{BUSYBOX} is missing: {INSTALL_HINT}")
    return BUSYBOX


def build_probe(libc: str, out_dir: Path) -> Path:
    """tests/linux_programs/probe.c built static against ``libc`` ("glibc" or "musl")."""
    compiler = {"glibc": "gcc", "musl": "musl-gcc"}[libc]
    if shutil.which(compiler) is None:
        pytest.fail(f"{compiler} is missing: {INSTALL_HINT}")
    out = out_dir / f"probe-{libc}"
    subprocess.run(
        [compiler, "-O2", "-static", "-o", str(out), str(PROBE_SOURCE)],
        check=True,
        capture_output=True,
    )
    return out
