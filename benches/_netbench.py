"""The C network benchmark (benches/net/netbench.c): build it, serve, run, parse.

One static musl binary is the native server, the native client and the client in a
`LinuxVM`. Shared by benches/sockets.py and tests/test_netbench.py, so that the test
runs the very code the benchmark uses.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vmrpc.linux import LinuxVM
from vmrpc.sockets import SocketOutsourcing

SOURCE = Path(__file__).resolve().parent / "net" / "netbench.c"
LINE = re.compile(r"^NETBENCH (\S+=\S+(?: \S+=\S+)*)$", re.MULTILINE)


class NetbenchError(RuntimeError):
    """The program failed, or printed no result line."""


def build(out_dir: Path) -> Path:
    """``netbench`` built static with musl-gcc (Debian's musl-tools) into ``out_dir``."""
    if shutil.which("musl-gcc") is None:
        raise NetbenchError("musl-gcc is missing: sudo apt-get install musl-tools")
    exe = out_dir / "netbench"
    subprocess.run(
        ["musl-gcc", "-O2", "-static", "-Wall", "-o", str(exe), str(SOURCE)],
        check=True,
        capture_output=True,
    )
    return exe


def parse(output: str) -> dict[str, str]:
    """The fields of the program's one ``NETBENCH key=value ...`` line."""
    lines = LINE.findall(output)
    if len(lines) != 1:
        raise NetbenchError(f"expected one NETBENCH line, got: {output!r}")
    fields = dict(pair.split("=", 1) for pair in lines[0].split())
    if "error" in fields:
        raise NetbenchError(f"netbench failed: {output!r}")
    return fields


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server to take)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int) -> bool:
    """Whether a TCP socket listens on ``port``, read from /proc without connecting
    (a connection would count as a one-shot server's client, iperf3's ``-s -1``)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


@contextmanager
def server(exe: Path) -> Iterator[int]:
    """The native server on 127.0.0.1 for the duration; yields its port."""
    proc = subprocess.Popen([str(exe), "serve", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        yield int(parse(first)["port"])
    finally:
        proc.kill()
        proc.wait()


def native(exe: Path, *args: str, timeout: float = 600) -> dict[str, str]:
    """Run the client natively; its result fields."""
    r = subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if r.returncode != 0:
        raise NetbenchError(f"native netbench {args} exited {r.returncode}: {r.stdout}")
    return parse(r.stdout)


def in_vm(exe: Path, *args: str, timeout: float = 600) -> tuple[dict[str, str], dict[str, int]]:
    """Run the client in a `LinuxVM` with socket outsourcing (the default policy lets
    it reach 127.0.0.1); its result fields, and counters: the sockets module's, and
    the VM's prefixed ``vm.`` (``vm.interrupts``: waits for the host that outlasted
    the guest's spin and halted the vCPU)."""
    sockets = SocketOutsourcing()
    with LinuxVM(exe, list(args), sockets=sockets, timeout=timeout) as vm:
        code = vm.run()
        out = vm.stdout.decode()
        if code != 0:
            raise NetbenchError(f"netbench {args} in the VM exited {code}: {out}")
        stats = dict(sockets.stats)
        stats.update({f"vm.{k}": v for k, v in vm.stats.items()})
        return parse(out), stats
