"""File descriptors of socket outsourcing: one VM must not starve the others.

Every VM lives in this one process, under one ``RLIMIT_NOFILE``. Host sockets are
the only fds a guest can make the host open at will (each connected plain TCP
socket costs 2: the socket and the native data plane's duplicate). Two limits keep
a guest from taking them all (issue 13.5):

- a per-VM budget (``SocketOutsourcing(max_host_fds=...)``): past it the guest's
  call fails with ``EMFILE``, as a process past its own limit would;
- a process-wide reserve: no guest socket is opened if fewer than ``reserve`` fds
  of the soft limit would be left for everything else (creating VMs, event queues,
  the application). The guest gets ``ENFILE``, the "system" being this process.

The reserve is checked against the process's real usage (``/proc/self/fd``), since
the VMM's own fds (KVM, vCPUs, eventfds) are not visible from Python. Counting is
one ``stat`` of ``/proc/self/fd`` (Linux 6.2 and later give the count as its size),
else a listing (about 0.8 µs per open fd), once per new host socket, never on the
data path.
"""

from __future__ import annotations

import errno
import os
import resource

from vmrpc.sockets.proto import ProtoError

__all__ = ["FdBudget", "default_reserve", "open_fds"]

#: The reserve never goes below this: enough to create a few small VMs (measured
#: in docs/sockets.md: about 3 + 3 x vCPUs fds per VM, 2 per event queue).
MIN_RESERVE = 64


def soft_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 30


def default_reserve(limit: int | None = None) -> int:
    """``max(64, soft limit / 8)``: fds kept free for VM creation and the rest
    (``limit``: the soft limit, if the caller has it already)."""
    return max(MIN_RESERVE, (soft_limit() if limit is None else limit) // 8)


def open_fds() -> int:
    """How many fds this process has open now."""
    # Linux 6.2 and later report the count as the directory's size: one stat,
    # whatever the number of fds. Older kernels say 0.
    count = os.stat("/proc/self/fd").st_size
    if count > 0:
        return count
    # listdir opens one fd of its own while it reads; it is closed again after.
    return len(os.listdir("/proc/self/fd")) - 1


class FdBudget:
    """Decides whether one VM's sockets module may open ``need`` more fds."""

    def __init__(self, max_host_fds: int, reserve: int | None = None) -> None:
        if max_host_fds < 1:
            raise ValueError(f"max_host_fds must be >= 1, got {max_host_fds}")
        if reserve is not None and reserve < 0:
            raise ValueError(f"fd reserve must be >= 0, got {reserve}")
        self.max_host_fds = max_host_fds
        self.reserve = reserve

    def check(self, held: int, need: int = 1, in_use: int | None = None) -> int:
        """Raises `ProtoError` (EMFILE: this VM's budget; ENFILE: the process's
        reserve) unless ``need`` more fds fit, this VM holding ``held`` now.
        Returns the process's count of open fds it went by.

        ``need`` fds that are already open (an accepted socket) are passed as 0.
        ``in_use``: that count, made by the caller an instant ago (a connect's
        duplicate right after its socket; one count per connect, not two).
        """
        if held + max(need, 1) > self.max_host_fds:
            raise ProtoError(f"VM holds {held} host fds (budget {self.max_host_fds})", errno.EMFILE)
        limit = soft_limit()
        reserve = default_reserve(limit) if self.reserve is None else self.reserve
        if in_use is None:
            try:
                in_use = open_fds()
            except OSError as error:  # no fd left even to count them
                raise ProtoError(f"cannot count open fds: {error}", errno.ENFILE) from error
        if in_use + need > limit - reserve:
            raise ProtoError(
                f"process has {in_use} fds open; {reserve} of {limit} stay reserved",
                errno.ENFILE,
            )
        return in_use

    def allows(self, held: int, need: int = 1, in_use: int | None = None) -> bool:
        """`check` as a yes/no (for fds that are an optimisation only)."""
        try:
            self.check(held, need, in_use)
        except ProtoError:
            return False
        return True
