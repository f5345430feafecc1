"""Helpers shared by the Linux personality's tests (tests/test_linux*.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import vmrpc

BUSYBOX = Path("/bin/busybox")
PROBE_SOURCE = Path(__file__).parent / "linux_programs" / "probe.c"
#: Safety net for a hung guest; no test measures time.
TIMEOUT = 60.0
INSTALL_HINT = (
    "install them with `sudo apt-get install busybox-static musl-tools sqlite3 curl iperf3` "
    "(make test does)"
)


def require_busybox() -> Path:
    """Debian's busybox-static; a missing one is a failure that says how to install it."""
    if not BUSYBOX.exists():
        pytest.fail(f"{BUSYBOX} is missing: {INSTALL_HINT}")
    return BUSYBOX


def build_probe(libc: str, out_dir: Path, source: Path = PROBE_SOURCE) -> Path:
    """A test program (tests/linux_programs/probe.c) built static against ``libc``."""
    compiler = {"glibc": "gcc", "musl": "musl-gcc"}[libc]
    if shutil.which(compiler) is None:
        pytest.fail(f"{compiler} is missing: {INSTALL_HINT}")
    out = out_dir / f"{source.stem}-{libc}"
    subprocess.run(
        [compiler, "-O2", "-static", "-o", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    return out


def libc_programs(source: Path) -> Any:
    """A module-scoped fixture: ``source`` built static with glibc, then with musl."""

    @pytest.fixture(scope="module", params=["glibc", "musl"])
    def program(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
        return build_probe(request.param, tmp_path_factory.mktemp(request.param), source)

    return program


#: The LSTAR safety net runs the handler in ring 3 only on PVM (this workplace's
#: KVM); on hardware KVM `syscall` enters ring 0 and needs the ring-0 stub that
#: docs/linux.md describes and part 1 does not build.
needs_pvm_lstar = pytest.mark.skipif(
    not Path("/sys/module/kvm_pvm").exists(),
    reason="exercises the MSR_LSTAR path, which stays in ring 3 only on PVM; hardware "
    "KVM needs the ring-0 LSTAR stub described in docs/linux.md (not built)",
)


class KV(vmrpc.HostModule):
    """A key-value host module the Linux programs' VM RPC tests call: 0 puts ``k=v``,
    1 gets ``k``, 2 raises (the guest sees VMRPC_EHOSTFN)."""

    name, version = "kv", 1

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    @vmrpc.function(0)
    def put(self, request: bytes) -> bytes:
        key, _, value = request.partition(b"=")
        self.data[key] = value
        return b"ok"

    @vmrpc.function(1)
    def get(self, key: bytes) -> bytes:
        return self.data.get(key, b"")

    @vmrpc.function(2)
    def fail(self, request: bytes) -> bytes:
        raise ValueError("host function failed on purpose")
