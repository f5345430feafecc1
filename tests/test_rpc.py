"""VM RPC end to end: guests in C calling host modules in Python and Rust.

Guest apps live in guest/apps (rpc_*.c, demo.c, hostile.c); each prints what it saw and
these tests check it. Error codes come from guest/include/vmrpc/abi.h.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time

import pytest

import vmrpc
from vmrpc import ConfigError, HostModule, NativeModule, function
from vmrpc.demo import KV
from vmrpc.pytest_plugin import VmFactory

pytestmark = pytest.mark.kvm

# VMRPC_E* from abi.h
ENOMODULE, ENOFUNC, EHOSTFN, ETOOBIG, EGONE, EBADHANDLE, EINVAL, ERANGE = (
    -1,
    -2,
    -3,
    -4,
    -5,
    -6,
    -7,
    -8,
)


class PyEcho(HostModule):
    """The echo module written in Python (the native one is NativeModule("echo"))."""

    name, version = "echo", 1

    @function(0)
    def echo(self, request: bytes) -> bytes:
        return request

    @function(1)
    def null(self, request: bytes) -> None:
        return None


class Raiser(HostModule):
    name, version = "raiser", 1

    @function(0)
    def boom(self, request: bytes) -> bytes:
        raise RuntimeError("raised on purpose by the test")


def cases(console: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"case (\w+) rc=(-?\d+)", console)}


def test_demo_guest_calls_python_and_rust_modules(vm_factory: VmFactory) -> None:
    kv = KV()
    vm = vm_factory("demo", modules=[kv, NativeModule("echo")])
    assert vm.run() == 0, vm.console
    assert "kv.get(color) -> blue" in vm.console
    assert "echo(hello over vm rpc) -> hello over vm rpc" in vm.console
    assert kv.data[b"color"] == b"blue"
    assert vm.stats["rpcs"] >= 7


@pytest.mark.parametrize("module", [PyEcho(), NativeModule("echo")], ids=["python", "rust"])
@pytest.mark.parametrize("size", [0, 1, 4096, 65536])
def test_echo_payloads_round_trip(vm_factory: VmFactory, module: object, size: int) -> None:
    vm = vm_factory("rpc_echo", args=["echo", "50", str(size)], modules=[module])
    assert vm.run() == 0, vm.console
    assert f"rpc_echo ok calls=50 size={size}" in vm.console


def test_every_error_code_reaches_the_guest(
    vm_factory: VmFactory, caplog: pytest.LogCaptureFixture
) -> None:
    vm = vm_factory("rpc_errors", modules=[NativeModule("echo"), Raiser()])
    with caplog.at_level(logging.ERROR, logger="vmrpc.rpc"):
        assert vm.run() == 0, vm.console
    rc = cases(vm.console)
    assert rc["bind_nosuch"] == ENOMODULE
    assert rc["bind_bad_major"] == ENOMODULE
    assert rc["bad_function"] == ENOFUNC
    assert rc["too_big"] == ETOOBIG
    assert rc["resp_too_small"] == ERANGE
    assert rc["forged_handle"] == EBADHANDLE
    assert rc["unbind"] == 0
    assert rc["after_unbind"] == EBADHANDLE
    assert rc["sys_bad_function"] == ENOFUNC
    assert rc["raiser_call"] == EHOSTFN
    # The traceback of the raising host function went to logging, and the VM went on.
    raised = [r for r in caplog.records if r.exc_info and "raised on purpose" in str(r.exc_info[1])]
    assert raised, caplog.text
    # ... with the traceback down to the raising line, not only the message.
    assert "Traceback (most recent call last)" in caplog.text
    assert 'raise RuntimeError("raised on purpose by the test")' in caplog.text


class WrongType(HostModule):
    name, version = "echo", 1

    @function(0)
    def wrong(self, request: bytes) -> object:
        return "a str, not bytes"


class Oversized(HostModule):
    name, version = "echo", 1

    @function(0)
    def too_much(self, request: bytes) -> bytes:
        return b"x" * (vmrpc.MAX_PAYLOAD + 1)


@pytest.mark.parametrize(
    ("module", "code", "logged"),
    [(WrongType(), EHOSTFN, "must return bytes"), (Oversized(), ERANGE, "VMRPC_ERANGE")],
    ids=["wrong-type", "oversized"],
)
def test_bad_answers_become_error_codes(
    vm_factory: VmFactory,
    caplog: pytest.LogCaptureFixture,
    module: HostModule,
    code: int,
    logged: str,
) -> None:
    vm = vm_factory("rpc_echo", args=["echo", "1", "8"], modules=[module])
    with caplog.at_level(logging.WARNING, logger="vmrpc"):
        assert vm.run() == 1  # the guest reports its failed call and exits 1
    assert "rpc_echo: call 0: " in vm.console
    assert f"({code})" in vm.console, vm.console
    assert logged in caplog.text


def test_four_vcpus_get_their_own_answers_from_python(vm_factory: VmFactory) -> None:
    vm = vm_factory("rpc_smp", vcpus=4, args=["200"], modules=[PyEcho()])
    assert vm.run() == 0, vm.console
    for cpu in range(4):
        assert f"cpu {cpu} ok" in vm.console


def test_async_function_does_not_stall_other_calls(vm_factory: VmFactory) -> None:
    loop_release = threading.Event()
    slow_started = threading.Event()

    class Slow(HostModule):
        name, version = "slow", 1

        @function(0)
        async def wait(self, request: bytes) -> bytes:
            slow_started.set()
            while not loop_release.is_set():
                await asyncio.sleep(0.001)
            return b"slow done"

    class Fast(HostModule):
        name, version = "fast", 1

        @function(0)
        def poll(self, request: bytes) -> bytes:
            return b"1" if slow_started.is_set() else b"0"

        @function(1)
        def release(self, request: bytes) -> bytes:
            loop_release.set()
            return b""

    vm = vm_factory("rpc_async", vcpus=2, args=["100"], modules=[Slow(), Fast()])
    assert vm.run() == 0, vm.console
    # vCPU 0 finished 100 calls while vCPU 1's slow call was still pending on the host.
    assert "fast calls done while slow pending=1" in vm.console
    assert "slow rc=9" in vm.console


def test_unregister_while_a_call_is_in_flight(vm_factory: VmFactory) -> None:
    started = threading.Event()
    release = threading.Event()

    class M(HostModule):
        name, version = "m", 1

        @function(0)
        async def hold(self, request: bytes) -> bytes:
            started.set()
            while not release.is_set():
                await asyncio.sleep(0.001)
            return b"finished"

    vm = vm_factory("rpc_unregister", modules=[M()])
    vm.start()
    assert started.wait(timeout=30)
    vm.unregister_hm("m", 1)
    assert vm.modules == []
    release.set()
    assert vm.wait() == 0, vm.console
    # The call in flight finished; later calls and binds see the module gone.
    assert f"first=8 second={EGONE} rebind={EGONE}" in vm.console


def test_registration_errors(vm_factory: VmFactory) -> None:
    vm = vm_factory("hello")
    vm.register_hm(PyEcho())
    with pytest.raises(ConfigError, match="already registered"):
        vm.register_hm(PyEcho())
    with pytest.raises(ConfigError, match="not registered"):
        vm.unregister_hm("nosuch", 1)
    with pytest.raises(ConfigError, match="no native module"):
        vm.register_hm(NativeModule("nosuch"))

    class Empty(HostModule):
        name = "empty"

    with pytest.raises(ValueError, match=r"no @vmrpc\.function"):
        vm.register_hm(Empty())

    class BadVersion(PyEcho):
        version = (1, 70000)

    with pytest.raises(ValueError, match="version"):
        vm.register_hm(BadVersion())
    with pytest.raises(TypeError):
        vm.register_hm(object())  # type: ignore[arg-type]
    assert vm.modules == [("echo", (1, 0))]


def test_version_rule_picks_a_compatible_minor(vm_factory: VmFactory) -> None:
    class EchoMinor(PyEcho):
        version = (1, 3)

    vm = vm_factory("rpc_echo", args=["echo", "3", "8"], modules=[EchoMinor()])
    assert vm.run() == 0, vm.console  # the guest asks for 1.0; 1.3 serves it


def test_hostile_guest_does_not_hurt_the_host_or_another_vm(vm_factory: VmFactory) -> None:
    hostile = vm_factory("hostile", vcpus=2, args=["20000", "7"], modules=[NativeModule("echo")])
    honest = vm_factory("rpc_echo", args=["echo", "2000", "64"], modules=[PyEcho()])
    hostile.start()
    assert honest.run() == 0, honest.console
    assert hostile.wait() == 0, hostile.console
    assert "hostile done" in hostile.console
    assert hostile.stats["rpc_malformed"] > 0
    # The process and the RPC machinery are still fine.
    again = vm_factory("rpc_echo", args=["echo", "100", "64"], modules=[NativeModule("echo")])
    assert again.run() == 0, again.console


ELIMIT = -14


def test_bad_descriptors_on_a_valid_ring_each_get_einval(vm_factory: VmFactory) -> None:
    # hostile_desc keeps its ring well-formed, so every request reaches validate_req
    # (hostile.c mostly trips the ring resynchronisation instead). Removing the 64 KiB
    # payload cap of within_data fails req_over_cap (the engine would index past its
    # buffer) and resp_over_cap.
    vm = vm_factory("hostile_desc", modules=[NativeModule("echo")])
    assert vm.run() == 0, vm.console
    assert "hostile_desc done" in vm.console
    found = {
        m[1]: (int(m[2]), m[3]) for m in re.finditer(r"case (\w+) rc=(-?\d+) tag=(\w+)", vm.console)
    }
    max_payload = vmrpc.MAX_PAYLOAD
    bad = [
        "req_past_data",
        "req_over_cap",
        "req_wraps",
        "resp_past_data",
        "resp_over_cap",
        "resp_wraps",
    ]
    assert found == {
        "edge_valid": (max_payload, "ok"),
        "empty_valid": (0, "ok"),
        **dict.fromkeys(bad, (EINVAL, "ok")),
    }
    # The 4097th handle is a resource error; one handle was bound by hand before.
    assert f"binds ok={4096 - 1} then rc={ELIMIT}" in vm.console
    stats = vm.stats
    assert stats["rpc_malformed"] == len(bad), "each bad descriptor, and no ring resync"
    assert stats["rpc_errors"] == len(bad) + 1, "the bad descriptors and the refused bind"


@pytest.mark.parametrize("module", [PyEcho(), NativeModule("echo")], ids=["python", "rust"])
def test_fast_path_needs_no_exits_per_rpc(vm_factory: VmFactory, module: object) -> None:
    # With the engine spinning (it never sleeps in 10 s of idleness, so the guest never
    # rings the doorbell), calls complete through shared memory only. Two runs that
    # differ only in their number of calls print the same console lines and boot the
    # same way: every exit they make is one of those, so the 4,950 extra RPCs must cost
    # exactly zero extra exits. (A guest halting for its answer costs no exit to user
    # space: KVM handles hlt and the interrupt in the kernel.)
    def exits(calls: int) -> tuple[int, int]:
        vm = vm_factory(
            "rpc_echo", args=["echo", str(calls), "16"], modules=[module], rpc_spin_us=10**7
        )
        assert vm.run() == 0, vm.console
        stats = vm.stats
        return stats["exits_total"], stats["rpcs"]

    few, rpcs_few = exits(50)
    many, rpcs_many = exits(5000)
    assert rpcs_many - rpcs_few == 4950
    assert many == few, f"{many - few} exits for 4950 more RPCs"


def test_module_registered_while_the_vm_runs(vm_factory: VmFactory) -> None:
    class Late(HostModule):
        name, version = "late", 1

        @function(0)
        def greet(self, request: bytes) -> bytes:
            return request.upper()

    vm = vm_factory("rpc_late_bind")
    vm.start()
    while "waiting for late" not in vm.console:  # the guest's bind has failed once
        assert vm.state == "running", vm.console
        time.sleep(0.001)
    vm.register_hm(Late())
    assert vm.wait() == 0, vm.console
    assert "late says: HI" in vm.console


def test_doorbell_exits_until_its_ioeventfd_is_registered(vm_factory: VmFactory) -> None:
    # The doorbell is an MMIO register for its first 64 rings (each one exits to the
    # VMM), then an ioeventfd (no exit to user space): a short-lived VM never registers
    # one, so its teardown does not wait for the I/O bus's grace period (docs/design.md).
    # With the engine sleeping as soon as it is idle, every call rings; two runs that
    # differ only in their number of calls differ in exits by the rings that exited.
    def run(calls: int) -> tuple[int, int]:
        vm = vm_factory(
            "rpc_echo", args=["echo", str(calls), "16"], modules=[PyEcho()], rpc_spin_us=0
        )
        assert vm.run() == 0, vm.console
        stats = vm.stats
        return stats["exits_total"], stats["doorbells"]

    base_exits, base_rings = run(0)  # the bind's ring
    exits, rings = run(1000)
    assert rings > 64, f"only {rings} rings: the engine did not sleep between calls"
    ring_exits = exits - base_exits + base_rings
    assert ring_exits == 64, f"{ring_exits} of {rings} rings exited"
