"""What a guest's call returns when a host function misbehaves: returns None, raises
SystemExit or KeyboardInterrupt, runs past its time limit, or never returns.

Codes from guest/include/vmrpc/abi.h. The guest is rpc_echo: it calls function 0 of
the module named "echo" and prints ``rpc_echo: call 0: <error> (<code>)`` on failure.
"""

from __future__ import annotations

import asyncio
import textwrap
import threading
from collections.abc import Iterator

import pytest

from vmrpc import HostFunctionTimeout, HostModule, VmKilled, function
from vmrpc.pytest_plugin import VmFactory

from conftest import run_python

pytestmark = pytest.mark.kvm

ESHUTDOWN, ETIMEDOUT = -9, -15


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at teardown, so a host function blocked on it ends with the test."""
    event = threading.Event()
    yield event
    event.set()


def test_none_is_an_empty_successful_answer(vm_factory: VmFactory) -> None:
    class Nothing(HostModule):
        name, version = "echo", 1

        @function(0)
        def nothing(self, request: bytes) -> None:
            return None

    # Size 0: the guest checks that each call answered 0 bytes, successfully.
    vm = vm_factory("rpc_echo", args=["echo", "3", "0"], modules=[Nothing()])
    assert vm.run() == 0, vm.console
    assert vm.stats["rpc_errors"] == 0


@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_exit_exceptions_stop_the_vm_and_reach_the_waiting_caller(
    vm_factory: VmFactory, kind: type[BaseException], is_async: bool
) -> None:
    class Quitter(HostModule):
        name, version = "echo", 1

        @function(0)
        def quit(self, request: bytes) -> bytes:
            raise kind(7)

    class AsyncQuitter(HostModule):
        name, version = "echo", 1

        @function(0)
        async def quit(self, request: bytes) -> bytes:
            await asyncio.sleep(0)
            raise kind(7)

    module = AsyncQuitter() if is_async else Quitter()
    # The guest would make 1000 calls; the first one stops the VM.
    vm = vm_factory("rpc_echo", args=["echo", "1000", "8"], modules=[module])
    with pytest.raises(kind) as raised:
        vm.run()
    assert raised.value.args == (7,)
    assert vm.state == "killed"
    assert vm.stats["rpcs"] == 2, "the bind and the one call"
    # Raised once: the next wait reports the VM as killed.
    with pytest.raises(VmKilled):
        vm.wait()


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_time_limit_gives_the_guest_etimedout(
    vm_factory: VmFactory, release: threading.Event, is_async: bool
) -> None:
    class Stuck(HostModule):
        name, version = "echo", 1

        @function(0, time_limit=0.05)
        def stuck(self, request: bytes) -> bytes:
            release.wait()
            return request

    class AsyncStuck(HostModule):
        name, version = "echo", 1

        @function(0, time_limit=0.05)
        async def stuck(self, request: bytes) -> bytes:
            while not release.is_set():
                await asyncio.sleep(0.01)
            return request

    vm = vm_factory(
        "rpc_echo", args=["echo", "2", "8"], modules=[AsyncStuck() if is_async else Stuck()]
    )
    assert vm.run() == 1, vm.console
    assert f"rpc_echo: call 0: ETIMEDOUT (host function time limit) ({ETIMEDOUT})" in vm.console


def test_time_limited_function_answers_normally_in_time(vm_factory: VmFactory) -> None:
    class Quick(HostModule):
        name, version = "echo", 1

        @function(0, time_limit=60)
        def echo(self, request: bytes) -> bytes:
            return request

    vm = vm_factory("rpc_echo", args=["echo", "20", "64"], modules=[Quick()])
    assert vm.run() == 0, vm.console


def test_time_limit_does_not_hide_the_functions_own_timeout_error(vm_factory: VmFactory) -> None:
    class OwnTimeout(HostModule):
        name, version = "echo", 1

        @function(0, time_limit=60)
        def f(self, request: bytes) -> bytes:
            raise TimeoutError("the function's own")

    vm = vm_factory("rpc_echo", args=["echo", "1", "8"], modules=[OwnTimeout()])
    assert vm.run() == 1
    assert "(-3)" in vm.console, vm.console  # EHOSTFN, not ETIMEDOUT


@pytest.mark.parametrize("limit", [0, -1, float("nan"), float("inf"), True, "1"])
def test_bad_time_limits_are_refused(limit: object) -> None:
    with pytest.raises(ValueError, match="time_limit"):
        function(0, time_limit=limit)  # type: ignore[arg-type]


def test_host_function_timeout_is_exported() -> None:
    import vmrpc

    assert issubclass(HostFunctionTimeout, vmrpc.VmrpcError)


STUCK_CHILD = textwrap.dedent(
    """
    import sys, threading
    import vmrpc

    entered = threading.Event()

    class Stuck(vmrpc.HostModule):
        name, version = "echo", 1

        @vmrpc.function(0)
        def stuck(self, request):
            entered.set()
            threading.Event().wait()  # never returns

    vm = vmrpc.VM("rpc_echo", args=["echo", "1", "8"], modules=[Stuck()])
    vm.start()
    assert entered.wait(60), "the guest never called"
    if sys.argv[1] == "close":
        vm.close()
        print("closed", vm.state, flush=True)
    else:
        print("leaving without close", flush=True)
    """
)


@pytest.mark.parametrize("how", ["close", "exit"])
def test_a_host_function_that_never_returns_does_not_hold_close_or_exit(how: str) -> None:
    # In a child process: before the fix it hung in close() (or at exit, in the atexit
    # hook that stops every VM) and run_python's timeout failed the test.
    done = run_python("-c", STUCK_CHILD, how)
    assert done.returncode == 0, done.stderr
    expected = "closed closed" if how == "close" else "leaving without close"
    assert expected in done.stdout, done.stdout + done.stderr
    assert "leaving the RPC engine thread behind" in done.stderr or how == "exit", done.stderr
