"""pytest fixtures for testing with vmrpc VMs (loaded through the ``pytest11`` entry point).

Installing vmrpc makes these fixtures available to every pytest run; nothing needs to
be imported. They are layered::

    vm_factory   builds any number of VMs: vm_factory("hello", vcpus=2, modules=[...])
    vm           one VM, configured by the ``vm`` marker, created but not started
    booted_vm    the same VM, started

Every VM built through them is closed at teardown, also when the test fails or times
out. When a test fails, its report gets a section per VM with the VM's state, the tail
of its console, its counters and, if the guest crashed or timed out, the vCPU
registers. Tests that use these fixtures, or carry the ``kvm`` marker, are skipped with
the reason when ``/dev/kvm`` cannot be used. Nothing is shared between tests or
processes, so the fixtures work under ``pytest -n`` (pytest-xdist).

Example::

    import pytest
    from vmrpc import NativeModule

    @pytest.mark.vm(image="rpc_echo", args=["echo", "10", "64"], modules=[NativeModule("echo")])
    def test_echo(vm):
        assert vm.run() == 0
        assert "ok" in vm.console

    @pytest.mark.vm(sources=["guest.c"], vcpus=2)  # built with vmrpc.guest.build, cached
    def test_my_guest(booted_vm):
        assert booted_vm.wait() == 0

Settings (``pytest.ini`` / ``pyproject.toml``): ``vmrpc_timeout`` is the safety timeout
in seconds given to every VM that does not set its own (default 30), and
``vmrpc_console_tail`` the number of console lines a failure report shows (default 50).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from vmrpc.cli import format_crash, format_registers
from vmrpc.errors import GuestError, GuestTimeout
from vmrpc.kvmaccess import KVM_DEVICE, kvm_access_problem
from vmrpc.vm import VM

__all__ = [
    "DEFAULT_CONSOLE_TAIL",
    "DEFAULT_SAFETY_TIMEOUT_S",
    "KVM_DEVICE",
    "FixtureVM",
    "VmFactory",
    "booted_vm",
    "kvm_unusable_reason",
    "linux_vm",
    "vm",
    "vm_factory",
]

#: The KVM device the fixtures need.

#: A VM that runs longer than this is stopped: a safety net, never a measurement.
DEFAULT_SAFETY_TIMEOUT_S = 30.0

#: How many console lines a failure report shows per VM.
DEFAULT_CONSOLE_TAIL = 50

# Fixture names whose tests need KVM (the fixture closure contains one of them).
_KVM_FIXTURES = ("vm_factory", "vm", "booted_vm", "linux_vm")

_KVM_REASON = pytest.StashKey[str | None]()
_FACTORY = pytest.StashKey["VmFactory"]()

_MARKER_HELP = (
    "vm(image='hello', vcpus=1, memory_mib=64, args=(), modules=(), timeout=..., "
    "sources=None, **VM keywords): configure the `vm` and `booted_vm` fixtures"
)


def kvm_unusable_reason(device: str | None = None) -> str | None:
    """Return why ``device`` (default `KVM_DEVICE`) cannot be used, or ``None`` if it opens."""
    return kvm_access_problem(KVM_DEVICE if device is None else device)


class FixtureVM(VM):
    """A `VM` made by `VmFactory`: it remembers the last guest failure for the report.

    `wait` (and so `run`) records a `GuestError` in `last_error` before raising it, so
    the failure report can show the vCPU registers even when the test caught the error.
    """

    last_error: GuestError | None = None
    """The last `GuestError` that `wait` raised, or ``None``."""

    def wait(self, timeout: float | None = None) -> int:
        """Like `VM.wait`; a `GuestError` is also kept in `last_error`."""
        try:
            return super().wait(timeout)
        except GuestError as error:
            self.last_error = error
            raise


class VmFactory:
    """Builds VMs for one test and closes all of them at teardown.

    Call it like `VM`: ``vm_factory(image, vcpus=2, args=[...], modules=[...])``. Each
    VM gets the safety timeout (``vmrpc_timeout``) unless the call passes ``timeout``
    (``timeout=None`` means no limit).
    """

    def __init__(self, default_timeout: float | None = DEFAULT_SAFETY_TIMEOUT_S) -> None:
        self.default_timeout = default_timeout
        """The ``timeout`` given to VMs that do not set one."""
        self.vms: list[FixtureVM] = []
        """Every VM built so far, in order."""

    def __call__(self, image: str | os.PathLike[str], **kwargs: Any) -> FixtureVM:
        """Create a VM (not started); see `VM` for the arguments."""
        kwargs.setdefault("timeout", self.default_timeout)
        vm = FixtureVM(image, **kwargs)
        self.vms.append(vm)
        return vm

    def close_all(self) -> None:
        """Close every VM (each one even if another fails); re-raise the first error."""
        errors: list[BaseException] = []
        for vm in self.vms:
            try:
                vm.close()
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]

    def describe(self, console_tail: int = DEFAULT_CONSOLE_TAIL) -> list[tuple[str, str]]:
        """Report sections ``(title, text)`` for every VM: state, console, counters, registers."""
        sections: list[tuple[str, str]] = []
        for index, vm in enumerate(self.vms):
            label = f"vmrpc vm {index} ({_guest_name(vm)}, vcpus={vm.vcpus})"
            try:
                sections.extend(_describe_vm(vm, label, console_tail))
            except Exception as error:  # a dump must never hide the real failure
                sections.append((label, f"<could not describe the VM: {error!r}>"))
        return sections


def _guest_name(vm: FixtureVM) -> str:
    """The guest's source files when vmrpc.guest.build made it, else the image's name."""
    from vmrpc.guest import sources_of

    sources = sources_of(vm.image)
    return ", ".join(p.name for p in sources) if sources else vm.image.name


def _guest_error(vm: FixtureVM) -> GuestError | None:
    """The VM's last guest failure; for a crashed VM nobody waited on, ask it now."""
    if vm.last_error is None and vm.state == "crashed":
        try:
            vm.wait(0)
        except GuestError:
            pass  # recorded in last_error by FixtureVM.wait
        except Exception:
            return None
    return vm.last_error


def _describe_vm(vm: FixtureVM, label: str, console_tail: int) -> list[tuple[str, str]]:
    state = vm.state
    exit_code = vm.exit_code
    head = f"state={state}" + ("" if exit_code is None else f" exit_code={exit_code}")
    error = _guest_error(vm)
    if error is not None:
        kind = "timed out" if isinstance(error, GuestTimeout) else "crashed"
        head += f"\nguest {kind} on vcpu {error.vcpu}: {error.reason}"
    lines = vm.console.splitlines()
    tail = lines[-console_tail:] if console_tail > 0 else []
    cut = len(lines) - len(tail)
    console = (f"[... {cut} earlier lines]\n" if cut else "") + "\n".join(tail)
    counters = "\n".join(f"{key} {value}" for key, value in sorted(vm.stats.items()))
    sections = [
        (f"{label} state", head),
        (f"{label} console tail", console or "<empty>"),
        (f"{label} counters", counters or "<none>"),
    ]
    crash = format_crash(error) if error is not None else None
    if crash is not None:
        sections.append((f"{label} exception", crash))
    if error is not None and error.registers:
        sections.append((f"{label} registers", format_registers(error.registers)))
    return sections


# -- hooks -----------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``vmrpc_timeout`` and ``vmrpc_console_tail`` settings."""
    parser.addini(
        "vmrpc_timeout",
        "safety timeout (seconds) of VMs built by the vmrpc fixtures",
        default=str(DEFAULT_SAFETY_TIMEOUT_S),
    )
    parser.addini(
        "vmrpc_console_tail",
        "console lines per VM in the report of a failed test",
        default=str(DEFAULT_CONSOLE_TAIL),
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers and find out once whether KVM is usable."""
    config.addinivalue_line(
        "markers", "kvm: needs a usable /dev/kvm (skipped with the reason when it is missing)"
    )
    config.addinivalue_line("markers", _MARKER_HELP)
    config.addinivalue_line(
        "markers",
        "linux(program, args=(), **LinuxVM keywords): configure the `linux_vm` fixture",
    )
    config.stash[_KVM_REASON] = kvm_unusable_reason()


def pytest_report_header(config: pytest.Config) -> str:
    """Say whether KVM is usable."""
    reason = config.stash.get(_KVM_REASON, None)
    return f"vmrpc kvm: {'usable' if reason is None else reason}"


def _in_ci() -> bool:
    """``CI=true`` (GitHub Actions, GitLab and most CI services set it)."""
    return os.environ.get("CI", "").strip().lower() == "true"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests that need KVM, with the reason, when it cannot be used.

    Under ``CI=true`` an unusable KVM fails the run instead: a CI machine without KVM
    would otherwise skip most of the suite and still pass.
    """
    reason = config.stash.get(_KVM_REASON, None)
    if reason is None:
        return
    if _in_ci() and any(_needs_kvm(item) for item in items):
        raise pytest.UsageError(f"CI=true and KVM is unusable: {reason}")
    skip = pytest.mark.skip(reason=f"needs KVM: {reason}")
    for item in items:
        if _needs_kvm(item):
            item.add_marker(skip)


def _needs_kvm(item: pytest.Item) -> bool:
    names = getattr(item, "fixturenames", ())
    return "kvm" in item.keywords or any(name in names for name in _KVM_FIXTURES)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Add each VM's state, console tail, counters and registers to a failed test's report."""
    report = yield
    factory = item.stash.get(_FACTORY, None)
    if report.failed and report.when in ("setup", "call") and factory is not None:
        tail = _int_ini(item.config, "vmrpc_console_tail", DEFAULT_CONSOLE_TAIL)
        report.sections.extend(factory.describe(tail))
    return report


def _int_ini(config: pytest.Config, name: str, default: int) -> int:
    try:
        return int(str(config.getini(name)))
    except ValueError:
        return default


def _timeout_ini(config: pytest.Config) -> float | None:
    value = str(config.getini("vmrpc_timeout")).strip().lower()
    if value in ("", "none", "0"):
        return None
    return float(value)


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture
def vm_factory(request: pytest.FixtureRequest) -> Iterator[VmFactory]:
    """Build VMs: ``vm_factory("hello", vcpus=2, args=[...])``; all are closed at teardown."""
    reason = request.config.stash.get(_KVM_REASON, None)
    if reason is not None:
        if _in_ci():
            pytest.fail(f"CI=true and KVM is unusable: {reason}")
        pytest.skip(f"needs KVM: {reason}")
    factory = VmFactory(default_timeout=_timeout_ini(request.config))
    request.node.stash[_FACTORY] = factory
    try:
        yield factory
    finally:
        factory.close_all()


def _resolve_sources(request: pytest.FixtureRequest, sources: Any) -> Path:
    from vmrpc import guest

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    base = Path(str(request.node.path)).parent
    return guest.build([base / Path(source) for source in sources])


def vm_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The keyword arguments of the ``vm`` fixture: the ``vm`` marker, then ``request.param``.

    The closest ``vm`` marker (function, then class, then module) wins over the others;
    an indirect parametrization of ``vm`` (a dict) wins over the marker.
    """
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("vm"))):
        if marker.args:
            options["image"] = marker.args[0]
        options.update(marker.kwargs)
    param = getattr(request, "param", None)
    if isinstance(param, dict):
        options.update(param)
    elif isinstance(param, (str, os.PathLike)):
        options["image"] = param
    return options


@pytest.fixture
def vm(request: pytest.FixtureRequest, vm_factory: VmFactory) -> FixtureVM:
    """One VM configured by ``@pytest.mark.vm(...)``, created but not started.

    Marker keywords: ``image`` (built-in name or ELF path, default ``"hello"``),
    ``sources`` (C files relative to the test file, built with `vmrpc.guest.build`
    instead of ``image``), ``vcpus``, ``memory_mib``, ``args``, ``modules``
    (any form `VM` takes: instances, classes, ``"pkg.mod:Class"``) and ``timeout``; any other
    keyword goes to `VM`.
    """
    options = vm_options(request)
    sources = options.pop("sources", None)
    image = options.pop("image", "hello")
    if sources is not None:
        image = _resolve_sources(request, sources)
    return vm_factory(image, **options)


@pytest.fixture
def booted_vm(vm: FixtureVM) -> FixtureVM:
    """The `vm` fixture's VM, started."""
    vm.start()
    return vm


@pytest.fixture
def linux_vm(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A `vmrpc.LinuxVM` configured by ``@pytest.mark.linux(program, args, ...)``,
    created but not started; closed at teardown::

        @pytest.mark.linux("/bin/busybox", ["echo", "hi"])
        def test_echo(linux_vm):
            assert linux_vm.run() == 0 and linux_vm.stdout == b"hi\n"
    """
    from vmrpc.linux import LinuxVM

    reason = request.config.stash.get(_KVM_REASON, None)
    if reason is not None:
        pytest.skip(f"needs KVM: {reason}")
    marker = request.node.get_closest_marker("linux")
    if marker is None or not marker.args:
        raise pytest.UsageError("linux_vm needs @pytest.mark.linux(program, args, ...)")
    options = {"timeout": _timeout_ini(request.config), **marker.kwargs}
    vm = LinuxVM(*marker.args, **options)
    try:
        yield vm
    finally:
        vm.close()
