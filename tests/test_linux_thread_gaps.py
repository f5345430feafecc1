"""sched_yield as a switch point, FUTEX_WAKE_OP, and a socket I/O wait that gives
its vCPU up (docs/linux.md, Threads).

tests/linux_programs/thread_gaps.c, built static with glibc and musl, prints the same
lines natively and in the VM. No test measures time: the yield test counts the
host's preemptions, which a turn needs when the yield does not hand the vCPU over.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from linux_support import TIMEOUT, libc_programs
from test_linux_net import tcp_echo  # noqa: F401 (a fixture)

from vmrpc.linux import LinuxVM
from vmrpc.sockets import SocketOutsourcing

pytestmark = pytest.mark.kvm

program = libc_programs(Path(__file__).parent / "linux_programs" / "thread_gaps.c")


def native(program: Path, *args: str) -> bytes:
    done = subprocess.run([program, *args], capture_output=True, timeout=TIMEOUT, check=True)
    return done.stdout


def test_sched_yield_hands_the_vcpu_to_a_waiting_thread(program: Path) -> None:
    # One vCPU, two threads taking 60 turns each, spinning on sched_yield until it
    # is theirs. Before, the yield returned at once: every turn waited for the
    # waiting thread's 10 ms quantum and a preemption (~120 of them).
    turns = 60
    want = native(program, "yield", str(turns))
    with LinuxVM(program, ["yield", str(turns)], timeout=TIMEOUT, threads=1) as vm:
        assert vm.run() == 0
        assert vm.stdout == want
        assert vm.stats["context_switches"] >= 2 * turns - 1
        # A turn whose yield did not hand over would be one preemption; a loaded
        # host may still preempt a few times while both wait for a host CPU.
        assert vm.stats["preemptions"] < turns // 4, vm.stats["preemptions"]


def test_sched_yield_with_a_vcpu_for_every_thread_makes_no_exit(program: Path) -> None:
    with LinuxVM(program, ["yield", "20"], timeout=TIMEOUT, threads=2) as vm:
        assert vm.run() == 0
        assert vm.stdout == native(program, "yield", "20")
        assert vm.stats["preemptions"] == 0


def test_futex_wake_op_does_what_linux_does(program: Path) -> None:
    # Every operation and comparison, the shift form (past 31 masked as Linux
    # does), ENOSYS for a bad op (nothing written) and a bad comparison (written),
    # EINVAL misaligned, EFAULT read-only; then a waiter of each word woken.
    want = native(program, "wakeop")
    assert b"r=-1 errno=38 b=2" in want
    assert want.endswith(b"woke a waiter of b: 1\n")
    with LinuxVM(program, ["wakeop"], timeout=TIMEOUT) as vm:
        assert vm.run() == 0
        assert vm.stdout == want
        assert vm.stats["futex_wakes"] > 0


def test_a_thread_waiting_in_a_large_recv_gives_its_vcpu_up(
    program: Path,
    tcp_echo: int,  # noqa: F811 (the fixture imported above)
) -> None:
    # One vCPU: a thread blocks in a 64 KiB recv (the socket I/O exit, which
    # waits in the host); main must still run to send what the echo returns.
    # Before, the waiting exit kept the vCPU and the program hung (timed out).
    want = native(program, "bigrecv", str(tcp_echo))
    assert want == b"reader got 5: hello\njoined\n"
    with LinuxVM(
        program,
        ["bigrecv", str(tcp_echo)],
        timeout=TIMEOUT,
        threads=1,
        sockets=SocketOutsourcing(),
    ) as vm:
        assert vm.run() == 0
        assert vm.stdout == want
        assert vm.stats["sockio_waits"] > 0  # it did wait in the exit


def test_two_threads_reading_one_socket_on_one_vcpu(
    program: Path,
    tcp_echo: int,  # noqa: F811 (the fixture imported above)
) -> None:
    # Two readers of one connection and main sending through it, on one vCPU.
    # The exit that fills the read-ahead runs with the buffer marked busy, which
    # the other reader spins on inside the personality (never preempted there):
    # when every socket I/O exit lent its vCPU, that reader took it and spun
    # while the first waited for a vCPU, and the program hung (GuestTimeout).
    want = native(program, "tworeaders", str(tcp_echo))
    assert want == b"two readers got 4194304 bytes\n"
    with LinuxVM(
        program,
        ["tworeaders", str(tcp_echo)],
        timeout=TIMEOUT,
        threads=1,
        sockets=SocketOutsourcing(),
    ) as vm:
        assert vm.run() == 0
        assert vm.stdout == want
        assert vm.stats["sockio_calls"] > 0
