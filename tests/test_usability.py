"""What a new user meets first: module forms, console streaming, CLI answers and hints."""

from __future__ import annotations

import asyncio
import grp
import os
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import cast

import pytest

from vmrpc import VM, HostModule, NativeModule, function
from vmrpc.kvmaccess import kvm_access_problem, permission_hint
from vmrpc.modspec import ModuleSpecError, resolve_module
from vmrpc.vm import VmState

from conftest import VmFactory, run_python

#: User and group nobody (a child drops to them to meet a refused /dev/kvm).
NOBODY = 65534
#: Some group id, for hints computed from a made-up device.
GROUP_ID = 4242

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


class ExitsBetweenReadAndStateCheck(VM):
    """A VM stand-in whose guest writes its last line and exits right after the first
    console read: the window a stream that read first and checked the state second
    would lose the tail in (a real guest hits it only by chance)."""

    def __init__(self) -> None:  # no KVM: only what the console stream looks at
        self.written, self.current, self.reads = "first\n", "running", 0

    @property
    def state(self) -> VmState:
        return cast(VmState, self.current)

    def console_from(self, pos: int) -> tuple[str, int]:
        text = self.written[pos:]
        self.reads += 1
        if self.reads == 1:
            self.written += "last\n"
            self.current = "exited"
        return text, pos + len(text)


def test_iter_console_keeps_a_tail_written_just_before_the_exit() -> None:
    vm = ExitsBetweenReadAndStateCheck()

    assert "".join(vm.iter_console(poll=0)) == "first\nlast\n"


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


def test_cli_output_into_a_closed_pipe_ends_quietly() -> None:
    """`vmrpc images --testing | head`: a reader that went away is not a crash."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before the first write: every write fails with EPIPE
    try:
        result = subprocess.run(
            [sys.executable, "-m", "vmrpc", "images", "--testing"],
            check=False,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)

    assert result.returncode == 128 + signal.SIGPIPE
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr


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


def _stat(mode: int, uid: int, gid: int) -> os.stat_result:
    return os.stat_result((stat.S_IFCHR | mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


def _some_group() -> grp.struct_group:
    """A named group that is neither root nor nobody's own."""
    return next(g for g in grp.getgrall() if g.gr_gid not in (0, NOBODY))


def test_kvm_hint_for_an_owner_only_device_without_a_kvm_group() -> None:
    # This machine's case: crw------- root:root and no kvm group. Joining group root
    # would not help (and would give far more than KVM): the hint must not say so.
    hint = permission_hint("/dev/kvm", _stat(0o600, 0, 0), "ann", {1000}, None)

    assert hint.startswith("/dev/kvm is crw------- root:root: only root may open it")
    assert "no 'kvm' group" in hint
    assert "sudo setfacl -m u:ann:rw /dev/kvm" in hint
    assert "usermod" not in hint


def test_kvm_hint_for_an_owner_only_device_with_a_kvm_group() -> None:
    hint = permission_hint("/dev/kvm", _stat(0o660, 0, 0), "ann", {1000}, "kvm")

    assert "crw-rw---- root:root: only root and group root may open it" in hint
    assert "sudo chgrp kvm /dev/kvm && sudo chmod 660 /dev/kvm" in hint
    assert "sudo usermod -aG kvm ann" in hint
    assert "-aG root" not in hint


def test_kvm_hint_for_a_group_device_says_which_group_to_join() -> None:
    group = _some_group()
    device = _stat(0o660, 0, group.gr_gid)

    hint = permission_hint("/dev/kvm", device, "ann", {1000}, "kvm")

    assert f"crw-rw---- root:{group.gr_name} and user 'ann' is not in group" in hint
    assert f"`sudo usermod -aG {group.gr_name} ann`" in hint


@pytest.mark.parametrize(("mode", "groups"), [(0o666, set()), (0o660, {GROUP_ID})])
def test_kvm_hint_when_the_mode_allows_but_open_was_refused(mode: int, groups: set[int]) -> None:
    hint = permission_hint("/dev/kvm", _stat(mode, 0, GROUP_ID), "ann", groups, "kvm")

    assert "allows user 'ann', yet opening it was refused" in hint
    assert "usermod" not in hint


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_kvm_problem_of_a_real_device_as_another_user() -> None:
    # A directory user nobody can enter (pytest's tmp_path is private to root).
    group = _some_group()
    with tempfile.TemporaryDirectory(prefix="vmrpc-kvm-") as where:
        Path(where).chmod(0o755)
        device = Path(where) / "kvm"
        device.write_bytes(b"")
        device.chmod(0o660)
        os.chown(device, 0, group.gr_gid)
        result = _as_nobody(f"print(kvm_access_problem({str(device)!r}))")

    assert result.returncode == 0, result.stderr
    assert f"-rw-rw---- root:{group.gr_name}" in result.stdout
    assert f"sudo usermod -aG {group.gr_name} nobody" in result.stdout


def _nobody_may_open_kvm() -> bool:
    result = _as_nobody("print(kvm_access_problem())")
    return result.returncode == 0 and result.stdout.strip() == "None"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
@pytest.mark.parametrize("command", [["run", "hello"], ["demo"], ["run", "--linux", "/bin/true"]])
def test_cli_without_kvm_access_gives_the_hint_and_exit_code_2(command: list[str]) -> None:
    if _nobody_may_open_kvm():
        pytest.skip("/dev/kvm here is open to every user: nothing to refuse")

    result = _as_nobody(f"from vmrpc.cli import main\nraise SystemExit(main({command!r}))")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "KvmError: opening /dev/kvm failed" in result.stderr
    assert "vmrpc: /dev/kvm is c" in result.stderr  # the device's mode, owner and the fix


def _as_nobody(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child that became user nobody (in no other group).

    Imports first: user nobody may not be able to read this interpreter's installation.
    """
    prelude = (
        "import os\n"
        "import vmrpc.cli, vmrpc.demo\n"
        "from vmrpc.kvmaccess import kvm_access_problem\n"
        f"os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
