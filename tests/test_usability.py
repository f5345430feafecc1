"""What a new user meets first: module forms, console streaming, CLI answers and hints."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from vmrpc import VM, HostModule, NativeModule, function
from vmrpc.kvmaccess import kvm_access_problem
from vmrpc.modspec import ModuleSpecError, resolve_module

from conftest import VmFactory, run_python

ECHO_MODULE = """\
import vmrpc


class FileEcho(vmrpc.HostModule):
    name, version = "echo", 1

    @vmrpc.function(0)
    def echo(self, request: bytes) -> bytes:
        return request
"""


class ClassEcho(HostModule):
    name, version = "echo", 1

    @function(0)
    def echo(self, request: bytes) -> bytes:
        return request


@pytest.fixture
def module_file(tmp_path: Path) -> Path:
    path = tmp_path / "echo_mod.py"
    path.write_text(ECHO_MODULE)
    return path


def test_every_module_form_resolves(module_file: Path) -> None:
    instance = ClassEcho()

    assert resolve_module(instance) is instance
    assert isinstance(resolve_module(ClassEcho), ClassEcho)
    assert type(resolve_module(f"{module_file}:FileEcho")).__name__ == "FileEcho"
    native = resolve_module("native:echo")
    assert isinstance(native, NativeModule)
    assert native.name == "echo"


@pytest.mark.parametrize("bad", ["echo", ":Echo", "nonesuch_pkg_xyz:Echo", "os:path"])
def test_bad_module_strings_are_refused(bad: str) -> None:
    with pytest.raises(ModuleSpecError):
        resolve_module(bad)


def test_other_objects_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="HostModule"):
        resolve_module(42)  # type: ignore[arg-type]


@pytest.mark.kvm
@pytest.mark.parametrize("form", ["class", "string", "native"])
def test_vm_takes_every_module_form(vm_factory: VmFactory, module_file: Path, form: str) -> None:
    module = {"class": ClassEcho, "string": f"{module_file}:FileEcho", "native": "native:echo"}
    vm = vm_factory("rpc_echo", args=["echo", "5", "16"], modules=[module[form]])

    assert vm.run() == 0, vm.console
    assert "rpc_echo ok calls=5 size=16" in vm.console


@pytest.mark.kvm
@pytest.mark.vm(image="rpc_echo", args=["echo", "3", "8"], modules=["native:echo"])
def test_marker_takes_module_strings(vm: VM) -> None:
    assert vm.run() == 0, vm.console


@pytest.mark.kvm
def test_iter_console_yields_everything_including_the_tail(vm_factory: VmFactory) -> None:
    words = [f"word{i}" for i in range(50)]
    vm = vm_factory("hello", args=words)
    vm.start()

    streamed = "".join(vm.iter_console())

    assert vm.wait() == 0
    assert streamed == vm.console
    assert words[-1] in streamed


@pytest.mark.kvm
def test_aiter_console_yields_everything_without_blocking_the_loop(
    vm_factory: VmFactory,
) -> None:
    # A guest that never exits: the console stream can only end once the ticker, another
    # task on the same loop, has run enough to kill the VM. A stream that blocked the
    # loop would never see that happen (the test would hang until its timeout).
    vm = vm_factory("spin")

    async def main() -> tuple[str, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while "spinning" not in vm.console or ticks < 100:
                ticks += 1
                await asyncio.sleep(0.001)
            vm.kill()

        task = asyncio.create_task(ticker())
        vm.start()
        chunks = [text async for text in vm.aiter_console()]
        await task
        return "".join(chunks), ticks

    streamed, ticks = asyncio.run(main())

    assert streamed == vm.console == "spinning\n"
    assert ticks >= 100


def test_cli_version() -> None:
    from vmrpc import __version__

    result = run_python("-m", "vmrpc", "--version")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"vmrpc {__version__}"


def test_cli_bench_outside_a_checkout_says_where_benchmarks_live(tmp_path: Path) -> None:
    result = run_python("-m", "vmrpc", "bench", cwd=tmp_path)

    assert result.returncode == 2
    assert "benches/" in result.stderr
    assert "checkout" in result.stderr


def test_cli_run_of_a_c_file_hints_at_build_guest(tmp_path: Path) -> None:
    (tmp_path / "app.c").write_text("int main(void) { return 0; }\n")

    result = run_python("-m", "vmrpc", "run", "app.c", cwd=tmp_path)

    assert result.returncode == 2
    assert "vmrpc build-guest app.c" in result.stderr


def test_cli_run_help_shows_defaults() -> None:
    result = run_python("-m", "vmrpc", "run", "--help")

    assert "(default: 1)" in result.stdout
    assert "(default: 64;" in result.stdout


def test_kvm_problem_for_a_missing_device(tmp_path: Path) -> None:
    problem = kvm_access_problem(str(tmp_path / "kvm"))

    assert problem is not None
    assert "does not exist" in problem


def test_kvm_problem_none_when_the_device_opens(tmp_path: Path) -> None:
    device = tmp_path / "device"
    device.write_bytes(b"")

    assert kvm_access_problem(str(device)) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_kvm_problem_names_owner_group_and_the_fix() -> None:
    # A directory user nobody can enter (pytest's tmp_path is private to root).
    with tempfile.TemporaryDirectory(prefix="vmrpc-kvm-") as where:
        Path(where).chmod(0o755)
        device = Path(where) / "kvm"
        device.write_bytes(b"")
        device.chmod(0o660)
        result = _open_as_nobody(device)

    assert result.returncode == 0, result.stderr
    assert "-rw-rw----" in result.stdout
    assert "root:root" in result.stdout
    assert "sudo usermod -aG root" in result.stdout


def _open_as_nobody(device: Path) -> subprocess.CompletedProcess[str]:
    # A child that became user nobody (not in root's group) tries to open it.
    # Imports first: user nobody cannot read this interpreter's installation.
    code = (
        "import os\n"
        "from vmrpc.kvmaccess import kvm_access_problem\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        f"print(kvm_access_problem({str(device)!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
