"""User-written guests: vmrpc.guest.build, ``vmrpc build-guest`` and the shipped SDK."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

import vmrpc.guest
from vmrpc import GuestBuildError, NativeModule, VmrpcError
from vmrpc.pytest_plugin import VmFactory

from conftest import run_python

# Everything from the one header: console, strings, heap, RPC, exit code from main.
APP_C = """\
#include <vmrpc.h>
#include "app.h"

int main(int argc, char **argv)
{
	char resp[64];
	char *copy = malloc(32);
	int echo = bind_module("echo", VMRPC_VERSION(1, 0));
	long n;

	if (echo < 0 || !copy)
		return 10;
	strcpy(copy, argc > 1 ? argv[1] : "none");
	n = perform_rpc(echo, 0, copy, strlen(copy), resp, sizeof(resp) - 1);
	if (n < 0)
		return 11;
	resp[n] = '\\0';
	printf("%s: echoed %s\\n", GREETING, resp);
	return ANSWER;
}
"""

APP_H = '#define GREETING "user guest"\n'

HELPER_C = """\
int twice(int x)
{
	return 2 * x;
}
"""

MAIN_C = """\
#include <vmrpc.h>

int twice(int x);

int main(void)
{
	printf("twice(21)=%d\\n", twice(21));
	return twice(2);
}
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "app.h").write_text(APP_H)
    source = tmp_path / "app.c"
    source.write_text(APP_C)
    return source


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def counting_cc(tmp_path: Path) -> tuple[str, Path]:
    """A compiler wrapper that logs each run to a file, then runs gcc."""
    log = tmp_path / "cc.log"
    script = tmp_path / "counting-cc"
    script.write_text(f'#!/bin/sh\necho run >> "{log}"\nexec gcc "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script), log


def runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def vmrpc_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_python("-m", "vmrpc", *args, cwd=cwd)


def test_build_and_run_a_user_guest(vm_factory: VmFactory, app: Path, cache: Path) -> None:
    elf = vmrpc.guest.build(app, cflags=["-DANSWER=42"], cache_dir=cache)

    vm = vm_factory(elf, args=["ping"], modules=[NativeModule("echo")])
    assert vm.run() == 42, vm.console
    assert "user guest: echoed ping" in vm.console


def test_several_sources_are_linked(vm_factory: VmFactory, tmp_path: Path, cache: Path) -> None:
    (tmp_path / "helper.c").write_text(HELPER_C)
    (tmp_path / "main.c").write_text(MAIN_C)
    out = tmp_path / "out" / "two.elf"

    elf = vmrpc.guest.build([tmp_path / "main.c", tmp_path / "helper.c"], out, cache_dir=cache)

    assert elf == out
    vm = vm_factory(elf)
    assert vm.run() == 4
    assert "twice(21)=42" in vm.console


def test_build_guest_command(vm_factory: VmFactory, app: Path, cache: Path) -> None:
    result = vmrpc_cli(
        "build-guest", "app.c", "--cflags=-DANSWER=7", "--cache-dir", str(cache), cwd=app.parent
    )

    assert result.returncode == 0, result.stderr
    elf = app.parent / "app.elf"  # default output: the first source's name, here
    assert result.stdout.strip() == "app.elf"
    vm = vm_factory(elf, args=["cli"], modules=[NativeModule("echo")])
    assert vm.run() == 7, vm.console


def test_syntax_error_gives_the_compilers_message(tmp_path: Path, cache: Path) -> None:
    source = tmp_path / "broken.c"
    source.write_text("#include <vmrpc.h>\n\nint main(void)\n{\n\treturn 0\n}\n")

    with pytest.raises(GuestBuildError) as info:
        vmrpc.guest.build(source, cache_dir=cache)

    message = str(info.value)
    assert "broken.c:5" in message
    assert re.search("error: expected .;. before", message)  # quotes depend on the locale
    assert info.value.stderr in message
    assert info.value.command is not None
    assert isinstance(info.value, VmrpcError)


def test_syntax_error_from_the_command_line(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "broken.c").write_text("int main(void) { return undefined_name; }\n")

    result = vmrpc_cli("build-guest", "broken.c", "--cache-dir", str(cache), cwd=tmp_path)

    assert result.returncode == 1
    assert "undefined_name" in result.stderr
    assert "error:" in result.stderr
    assert not (tmp_path / "broken.elf").exists()


def test_missing_compiler(monkeypatch: pytest.MonkeyPatch, app: Path, cache: Path) -> None:
    monkeypatch.setenv("CC", "/nonexistent")

    with pytest.raises(GuestBuildError, match=r"no C compiler: CC='/nonexistent'"):
        vmrpc.guest.build(app, cache_dir=cache)


def test_no_compiler_on_path(monkeypatch: pytest.MonkeyPatch, app: Path, cache: Path) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(app.parent))

    with pytest.raises(GuestBuildError, match="no C compiler found"):
        vmrpc.guest.build(app, cache_dir=cache)


def test_missing_source(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(GuestBuildError, match="not found"):
        vmrpc.guest.build(tmp_path / "nope.c", cache_dir=cache)


def test_second_build_is_a_cache_hit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, app: Path, cache: Path
) -> None:
    cc, log = counting_cc(tmp_path)
    monkeypatch.setenv("CC", cc)
    flags = ["-DANSWER=1"]

    first = vmrpc.guest.build(app, cflags=flags, cache_dir=cache)
    built = runs(log)
    mtime = first.stat().st_mtime_ns
    second = vmrpc.guest.build(app, cflags=flags, cache_dir=cache)

    assert built == 2  # compile + link
    assert second == first
    assert runs(log) == built  # the compiler did not run again
    assert second.stat().st_mtime_ns == mtime

    # Other flags, a changed source or a changed local header each rebuild.
    vmrpc.guest.build(app, cflags=["-DANSWER=2"], cache_dir=cache)
    assert runs(log) == 4
    (app.parent / "app.h").write_text('#define GREETING "changed"\n')
    third = vmrpc.guest.build(app, cflags=flags, cache_dir=cache)
    assert runs(log) == 6
    assert third == first  # same key (the source did not change), rebuilt in place
    app.write_text(APP_C.replace("malloc(32)", "malloc(64)"))
    assert vmrpc.guest.build(app, cflags=flags, cache_dir=cache) != first
    assert runs(log) == 8


def test_default_cache_honours_xdg_cache_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert vmrpc.guest.default_cache_dir() == tmp_path / "xdg" / "vmrpc" / "guests"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert vmrpc.guest.default_cache_dir() == tmp_path / "home" / ".cache" / "vmrpc" / "guests"


def test_sdk_flags_are_those_of_the_guest_makefile() -> None:
    flags = vmrpc.guest.sdk_cflags()

    for flag in ("-ffreestanding", "-mgeneral-regs-only", "-mno-red-zone", "-nostdlib"):
        assert flag in flags
    makefile = Path(__file__).resolve().parents[1] / "guest" / "Makefile"
    if makefile.is_file():  # running from a checkout: the shipped copy is current
        printed = subprocess.run(
            ["make", "-s", "-C", str(makefile.parent), "print-cflags"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "MAKEFLAGS": ""},
        ).stdout.split()
        assert flags == printed


def test_build_guest_help() -> None:
    result = vmrpc_cli("build-guest", "--help")

    assert result.returncode == 0
    assert "usage: vmrpc build-guest" in result.stdout
    assert "--cflags" in result.stdout
