"""The package as users install it: `make wheel` (sdist, then a portable wheel built from
it), installed into a fresh venv outside the checkout, runs the demo and builds and runs
a user guest. One wheel build serves every test here (module-scoped fixture).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
#: A full wheel build of the project's crates on 2 cores, with margin.
BUILD_TIMEOUT_S = 900

# The first test here waits for the wheel build: the suite's 120 s limit is too short.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + 120)

USER_GUEST = """\
#include <vmrpc.h>

int main(int argc, char **argv)
{
	printf("installed sdk: %d args, first %s\\n", argc, argc > 1 ? argv[1] : "-");
	return 7;
}
"""


def _clean_env() -> dict[str, str]:
    """This process's environment without an outer make's flags or venv."""
    drop = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV", "PYTHONPATH"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _run(*cmd: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture(scope="module")
def dist() -> tuple[Path, Path]:
    """(sdist, wheel) freshly built by `make wheel`."""
    result = _run("make", "wheel", cwd=ROOT, timeout=BUILD_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sdist,) = DIST.glob("vmrpc-*.tar.gz")
    (wheel,) = DIST.glob("vmrpc-*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def installed(dist: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv, outside the checkout, with only the wheel installed."""
    venv = tmp_path_factory.mktemp("venv")
    assert _run(sys.executable, "-m", "venv", venv, cwd=venv).returncode == 0
    python = venv / "bin" / "python"
    result = _run(python, "-m", "pip", "install", "--no-index", "-q", dist[1], cwd=venv)
    assert result.returncode == 0, result.stderr
    return python


def test_sdist_holds_what_the_build_needs(dist: tuple[Path, Path]) -> None:
    with tarfile.open(dist[0]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    needed = {
        "LICENSE",
        "Makefile",
        "pyproject.toml",
        "crates/vmm/build.rs",
        "guest/Makefile",
        "guest/rt/entry.S",
        "guest/rt/guest.ld",
        "guest/include/vmrpc/abi.h",
        "guest/apps/hello.c",
        "guest/linux/entry.S",
    }
    assert needed <= names, needed - names
    # Nothing built: a build from this sdist makes its own guests and extension.
    assert not [n for n in names if n.startswith(("python/vmrpc/_guest", "guest/build"))]
    assert not [n for n in names if n.endswith(".so")]


def test_wheel_is_portable_stripped_and_ships_examples_only(
    dist: tuple[Path, Path], tmp_path: Path
) -> None:
    wheel = dist[1]
    # manylinux2014 = glibc 2.17, as pydantic-core ships.
    assert "manylinux_2_17_x86_64" in wheel.name
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (ext,) = [n for n in names if n.startswith("vmrpc/_vmm") and n.endswith(".so")]
        zf.extract(ext, tmp_path)
    assert "vmrpc/_guest/images/hello.elf" in names
    assert "vmrpc/_guest/lib/libvmrpc.a" in names
    assert "vmrpc/_guest/linux/linux.elf" in names
    assert "vmrpc/_guest/include/vmrpc/abi.h" in names
    assert not [n for n in names if n.startswith("vmrpc/_guest/testing/")]
    assert [n for n in names if n.endswith("licenses/LICENSE")]
    # Stripped: no DWARF and no symbol table sections left.
    sections = _run("readelf", "--section-headers", "--wide", tmp_path / ext, cwd=tmp_path)
    assert sections.returncode == 0, sections.stderr
    assert ".text" in sections.stdout
    assert ".debug_info" not in sections.stdout
    assert ".symtab" not in sections.stdout


@pytest.mark.kvm
def test_installed_wheel_runs_the_demo(installed: Path, tmp_path: Path) -> None:
    result = _run(installed, "-m", "vmrpc", "demo", cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo done" in result.stdout


@pytest.mark.kvm
def test_installed_wheel_builds_and_runs_a_user_guest(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "app.c").write_text(USER_GUEST)

    built = _run(installed, "-m", "vmrpc", "build-guest", "app.c", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    ran = _run(installed, "-m", "vmrpc", "run", "app.elf", "hi", cwd=tmp_path)

    assert ran.returncode == 7, ran.stdout + ran.stderr
    assert "installed sdk: 2 args, first hi" in ran.stdout


def test_installed_wheel_lists_examples_not_test_guests(installed: Path, tmp_path: Path) -> None:
    listed = _run(installed, "-m", "vmrpc", "images", cwd=tmp_path)
    testing = _run(installed, "-m", "vmrpc", "images", "--testing", cwd=tmp_path)

    assert listed.returncode == 0, listed.stderr
    assert {"hello", "demo"} <= set(listed.stdout.split())
    assert "hostile" not in listed.stdout
    assert testing.returncode != 0
    assert "not in wheels" in testing.stderr


@pytest.mark.kvm
@pytest.mark.skipif(not Path("/bin/busybox").is_file(), reason="needs busybox-static (make)")
def test_installed_wheel_runs_a_linux_program(installed: Path, tmp_path: Path) -> None:
    ran = _run(
        installed, "-m", "vmrpc", "run", "--linux", "/bin/busybox", "echo", "hi", cwd=tmp_path
    )

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout == "hi\n"


def test_long_description_reads_on_its_own() -> None:
    # README.md is the package's long description (PyPI's page): a link relative to the
    # repository leads nowhere there, and the tutorial runs "in any directory", so it
    # cannot use a checkout's .venv.
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)", readme)
    tutorial = readme.split("\n## Tutorial\n", 1)[1].split("\n## ", 1)[0]

    assert [link for link in links if not link.startswith(("https://", "#"))] == []
    assert ".venv/bin/python" not in tutorial


def test_every_maturin_build_is_a_stripped_release_build() -> None:
    # `maturin develop` without --release (the design's workflow), `pip install` and
    # `maturin build` all take the profile from here; a debug build makes a null RPC
    # about 4x slower.
    with (ROOT / "pyproject.toml").open("rb") as f:
        maturin = tomllib.load(f)["tool"]["maturin"]

    assert maturin["profile"] == "release"
    assert maturin["strip"] is True
