"""vmrpc's pytest plugin (vmrpc.pytest_plugin): fixtures, teardown, failure reports, xdist.

Most tests here run pytest inside pytest (the ``pytester`` fixture) on small test files
and check the outcome and the printed report.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vmrpc import HostModule, NativeModule, function, pytest_plugin
from vmrpc.pytest_plugin import FixtureVM, VmFactory

pytest_plugins = ["pytester"]

HELLO_C = """\
#include <vmrpc.h>

int main(int argc, char **argv)
{
	printf("built by the vm marker, argc=%d last=%s\\n", argc, argv[argc - 1]);
	return 3;
}
"""


class PyEcho(HostModule):
    name, version = "echo", 1

    @function(0)
    def echo(self, request: bytes) -> bytes:
        return request


def test_plugin_is_loaded_through_its_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.get_plugin("vmrpc") is pytest_plugin


def test_kvm_unusable_reason_names_the_device(tmp_path: Path) -> None:
    reason = pytest_plugin.kvm_unusable_reason(str(tmp_path / "kvm"))

    assert reason is not None
    assert str(tmp_path / "kvm") in reason


@pytest.mark.vm(image="smp", vcpus=2, memory_mib=32)
def test_vm_marker_configures_the_vm(vm: FixtureVM) -> None:
    assert vm.state == "created"
    assert (vm.vcpus, vm.memory_mib) == (2, 32)
    assert vm.run() == 0
    assert "vcpu 1 of 2" in vm.console


def test_vm_without_marker_is_hello(booted_vm: FixtureVM) -> None:
    assert booted_vm.wait() == 0
    assert "hello from vmrpc guest" in booted_vm.console


@pytest.mark.parametrize(
    "vm", [{"image": "hello", "args": ["one"]}, {"image": "hello", "args": ["two"]}], indirect=True
)
def test_vm_is_parametrizable_indirectly(vm: FixtureVM) -> None:
    assert vm.run() == 0
    assert f"arg[1]={vm.args[0]}" in vm.console


@pytest.mark.parametrize("module", [PyEcho, NativeModule("echo")], ids=["class", "native"])
def test_vm_marker_registers_modules(request: pytest.FixtureRequest, module: object) -> None:
    request.applymarker(
        pytest.mark.vm(image="rpc_echo", args=["echo", "5", "16"], modules=[module])
    )
    vm = request.getfixturevalue("booted_vm")

    assert vm.modules == [("echo", (1, 0))]
    assert vm.wait() == 0, vm.console
    assert "rpc_echo ok calls=5 size=16" in vm.console


def test_factory_gives_the_safety_timeout_unless_told(vm_factory: VmFactory) -> None:
    assert vm_factory("hello").timeout == pytest_plugin.DEFAULT_SAFETY_TIMEOUT_S
    assert vm_factory("hello", timeout=None).timeout is None
    assert len(vm_factory.vms) == 2


@pytest.mark.kvm  # its inner tests run VMs (they would skip, not pass)
def test_failing_and_timed_out_tests_still_close_their_vms(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        SEEN = []

        def test_fails(vm_factory, booted_vm):
            SEEN.append(booted_vm)
            spin = vm_factory("spin")
            SEEN.append(spin)
            spin.start()
            assert False, "failing on purpose"

        @pytest.mark.vm(image="spin", timeout=None)
        @pytest.mark.timeout(1)
        def test_times_out(booted_vm):
            SEEN.append(booted_vm)
            booted_vm.wait()  # no VM timeout: only pytest-timeout ends this

        def test_every_vm_was_closed():
            assert [vm.state for vm in SEEN] == ["closed"] * 3
        """
    )
    # In a child process: pytest-timeout's SIGALRM must not meet the outer run's.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(failed=2, passed=1)
    result.stdout.fnmatch_lines(["*Timeout*"])


@pytest.mark.kvm  # its inner tests run VMs (they would skip, not pass)
def test_failure_report_has_console_counters_and_registers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.vm(image="hello", args=["report-arg"])
        def test_console_and_counters(vm):
            assert vm.run() == 0
            assert False, "failing on purpose"

        @pytest.mark.vm(image="fault")
        def test_crash(vm):
            vm.run()

        @pytest.mark.vm(image="fault")
        def test_crash_nobody_waited_for(booted_vm):
            while booted_vm.state == "running":
                time.sleep(0.01)
            assert False, "failing on purpose"

        def test_passing(vm):
            vm.run()
        """
    )
    result = pytester.runpytest()

    result.assert_outcomes(failed=3, passed=1)
    out = result.stdout.str()
    for test in ("test_console_and_counters", "test_crash", "test_crash_nobody_waited_for"):
        assert f"_ {test} _" in out
    result.stdout.fnmatch_lines(
        [
            "*vmrpc vm 0 (hello.elf, vcpus=1) state*",
            "state=exited exit_code=0",
            "*vmrpc vm 0 (hello.elf, vcpus=1) console tail*",
            "arg[1]=report-arg",
            "*vmrpc vm 0 (hello.elf, vcpus=1) counters*",
            "exits_total *",
        ]
    )
    # Both crashed guests: reason, exception with its source line, console and every
    # register, cr2 holding the faulting address.
    assert out.count("guest crashed on vcpu 0: #PF (page fault) at address 0xdead0000000") == 2
    assert out.count("vmrpc vm 0 (fault.elf, vcpus=1) exception") == 2
    assert out.count("exception #PF, address 0xdead0000000, error code 0x6") == 2
    assert len(re.findall(r"rip 0x[0-9a-f]+ in main \(\S*fault\.c:16\)", out)) == 2
    assert out.count("vmrpc vm 0 (fault.elf, vcpus=1) registers") == 2
    assert out.count("cr2=0x00000dead0000000") == 2
    assert "touching unmapped memory" in out
    # A passing test gets no dump.
    assert "_ test_passing _" not in out


@pytest.mark.kvm  # its inner tests run VMs (they would skip, not pass)
def test_console_tail_is_cut_to_the_setting(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nvmrpc_console_tail = 2\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vm(image="hello", args=["a", "b", "c", "d"])
        def test_fails(vm):
            vm.run()
            assert False
        """
    )
    result = pytester.runpytest()

    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "earlier lines]" in out
    assert "arg[4]=d" in out
    assert "arg[1]=a" not in out


@pytest.mark.kvm  # its inner tests run VMs (they would skip, not pass)
def test_vm_marker_builds_sources(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(pytester.path / "cache"))
    pytester.makefile(".c", guest=HELLO_C)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vm(sources=["guest.c"], args=["x", "y"])
        def test_built(vm):
            assert vm.run() == 3
            assert "built by the vm marker, argc=3 last=y" in vm.console
        """
    )
    result = pytester.runpytest()

    result.assert_outcomes(passed=1)
    assert list((pytester.path / "cache" / "vmrpc" / "guests").glob("*.elf"))


@pytest.mark.kvm  # its inner tests run VMs (they would skip, not pass)
def test_runs_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(6))
        @pytest.mark.vm(image="smp", vcpus=2)
        def test_many(vm, vm_factory, n):
            other = vm_factory("hello", args=[str(n)])
            assert vm.run() == 0
            assert other.run() == 0
            assert f"arg[1]={n}" in other.console
            assert len(vm_factory.vms) == 2

        def test_fails_with_a_dump(vm):
            vm.run()
            assert False
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(["*2 workers*", "*vmrpc vm 0 (hello.elf, vcpus=1) console tail*"])


def test_tests_are_skipped_with_the_reason_without_kvm(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pytest_plugin, "KVM_DEVICE", str(pytester.path / "no-kvm"))
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(
        """
        import pytest

        def test_fixture(vm):
            pass

        @pytest.mark.kvm
        def test_marker():
            pass

        def test_no_kvm_needed():
            pass
        """
    )
    result = pytester.runpytest("-rs")

    result.assert_outcomes(skipped=2, passed=1)
    result.stdout.fnmatch_lines(["*needs KVM: *no-kvm does not exist*"])


def test_an_unusable_kvm_fails_the_run_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pytest_plugin, "KVM_DEVICE", str(pytester.path / "no-kvm"))
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(
        """
        def test_fixture(vm):
            pass

        def test_no_kvm_needed():
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*CI=true and KVM is unusable: *no-kvm does not exist*"])
    # Tests that need no KVM do not make the check fail a run.
    pytester.makepyfile("def test_no_kvm_needed():\n    pass\n")
    assert pytester.runpytest().ret == pytest.ExitCode.OK
