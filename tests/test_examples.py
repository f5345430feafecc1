"""The examples/ folder: each guest/host pair builds, runs and does what it says."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import vmrpc.guest
from vmrpc.pytest_plugin import VmFactory

from conftest import run_python

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.kvm


def load(name: str) -> ModuleType:
    """Import examples/<name>/host.py as a module."""
    path = EXAMPLES / name / "host.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}_host", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("guest-cache")


def run(*args: str, cache: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_python(*args, cwd=cwd, env={**os.environ, "XDG_CACHE_HOME": str(cache)})


# -- kvstore: a Python key-value store the guest calls through VM RPC -----------------


def test_kvstore_guest_uses_the_host_store(vm_factory: VmFactory, cache: Path) -> None:
    host = load("kvstore")
    store = host.KVStore()
    elf = vmrpc.guest.build(host.GUEST_SOURCE, cache_dir=cache)

    vm = vm_factory(elf, args=["7"], modules=[store])
    assert vm.run() == 0, vm.console

    assert "kvstore guest done, 0 failure(s)" in vm.console
    assert "FAIL" not in vm.console
    assert store.data == {b"user:2": b"grace", b"config:mode": b"fast", b"views:home": b"7"}
    assert vm.stats["rpc_errors"] == 0


def test_kvstore_module_functions() -> None:
    store = load("kvstore").KVStore()

    store.put(b"a\0x\0y")  # the value may hold NULs
    assert store.get(b"a") == b"\x01x\0y"
    assert store.get(b"b") == b"\x00"
    assert store.keys(b"") == b"a"
    assert store.delete(b"a") == b"\x01"
    assert store.delete(b"a") == b"\x00"
    with pytest.raises(ValueError, match="key"):
        store.put(b"no-separator")


def test_kvstore_host_script_runs(cache: Path) -> None:
    result = run(str(EXAMPLES / "kvstore" / "host.py"), "3", cache=cache)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "views:home = 3" in result.stdout
    assert "kvstore guest done, 0 failure(s)" in result.stdout
    assert "  user:2 = grace" in result.stdout


def test_kvstore_through_the_command_line(tmp_path: Path, cache: Path) -> None:
    elf = tmp_path / "kvstore.elf"
    built = run(
        "-m",
        "vmrpc",
        "build-guest",
        str(EXAMPLES / "kvstore" / "guest.c"),
        "-o",
        str(elf),
        cache=cache,
    )
    assert built.returncode == 0, built.stderr

    module = f"{EXAMPLES / 'kvstore' / 'host.py'}:KVStore"
    result = run("-m", "vmrpc", "run", str(elf), "--module", module, "--stats", cache=cache)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "kvstore guest done, 0 failure(s)" in result.stdout
    assert "rpcs " in result.stderr


def test_run_module_by_dotted_name(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "mymods.py").write_text(
        "import vmrpc\n\n"
        "class Echo(vmrpc.HostModule):\n"
        "    name, version = 'echo', 1\n\n"
        "    @vmrpc.function(0)\n"
        "    def echo(self, request):\n"
        "        return request\n"
    )

    result = run(
        "-m", "vmrpc", "run", "rpc_echo", "echo", "20", "100", "--module", "mymods:Echo",
        cache=cache, cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "rpc_echo ok calls=20 size=100" in result.stdout


def test_run_native_module(cache: Path) -> None:
    result = run(
        "-m", "vmrpc", "run", "--timeout", "30", "--module", "native:echo", "rpc_echo", "echo", "5",
        cache=cache,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "rpc_echo ok calls=5" in result.stdout


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nocolon", "pkg.mod:Class"),
        ("no_such_module_xyz:Thing", "cannot import no_such_module_xyz"),
        ("vmrpc:NoSuchThing", "has no attribute 'NoSuchThing'"),
        ("vmrpc:VM", "not a vmrpc.HostModule"),
        ("missing/file.py:X", "no such file"),
    ],
)
def test_run_bad_module_is_a_usage_error(spec: str, message: str, cache: Path) -> None:
    result = run("-m", "vmrpc", "run", "hello", "--module", spec, cache=cache)

    assert result.returncode == 2
    assert message in result.stderr


# -- sensors: an event-driven guest ------------------------------------------------------


def test_sensors_guest_reports_alarms_and_summaries(vm_factory: VmFactory, cache: Path) -> None:
    host = load("sensors")
    count = 500
    elf = vmrpc.guest.build(host.GUEST_SOURCE, cache_dir=cache)
    vm = vm_factory(elf, args=[str(host.THRESHOLD)])

    report = host.monitor(vm, count)

    assert vm.wait() == 0, vm.console
    stream = list(host.readings(count))
    assert report.alarms == [(s, v) for s, v in stream if v > host.THRESHOLD]
    assert report.alarms  # the stream has spikes
    for sensor in {s for s, _ in stream}:
        values = [v for s, v in stream if s == sensor]
        expected = (
            f"n={len(values)} min={min(values)} max={max(values)} mean={sum(values) // len(values)}"
        )
        assert report.summaries[sensor] == expected
    assert f"sensors: {count} readings, {len(report.alarms)} alarms" in vm.console
    assert vm.stats["events_host_to_guest"] == count + 1
    assert vm.stats["events_guest_to_host"] == len(report.alarms) + len(report.summaries) + 1


def test_sensors_host_script_runs(cache: Path) -> None:
    result = run(str(EXAMPLES / "sensors" / "host.py"), "300", cache=cache)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "sensors: 300 readings" in result.stdout
    assert "alarm: sensor" in result.stdout
    assert "sensor 3: n=75" in result.stdout
