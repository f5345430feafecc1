"""Why this process cannot use ``/dev/kvm``, said so that a person can fix it."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Collection
from typing import TextIO

from vmrpc.errors import KvmError

__all__ = ["KVM_DEVICE", "explain_kvm_error", "kvm_access_problem", "permission_hint"]

KVM_DEVICE = "/dev/kvm"

#: The group distributions give ``/dev/kvm`` to (udev's rule); not every machine has it.
KVM_GROUP = "kvm"


def _name(lookup: str, number: int) -> str:
    try:
        return pwd.getpwuid(number).pw_name if lookup == "user" else grp.getgrgid(number).gr_name
    except KeyError:
        return str(number)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def kvm_access_problem(device: str = KVM_DEVICE) -> str | None:
    """Return what stops this process from opening ``device``, with a fix; None if it opens."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return (
            f"{device} does not exist: this machine offers no KVM. Enable virtualization "
            "(VT-x/AMD-V) in the firmware and load kvm_intel or kvm_amd; inside a VM, the "
            "host must allow nested virtualization."
        )
    except PermissionError:
        try:
            st = os.stat(device)
        except OSError as error:
            return f"{device} cannot be opened nor examined: {error.strerror or error}"
        groups = {*os.getgroups(), os.getgid(), os.getegid()}
        kvm_group = KVM_GROUP if _group_exists(KVM_GROUP) else None
        return permission_hint(device, st, _name("user", os.geteuid()), groups, kvm_group)
    except OSError as error:
        return f"{device} cannot be opened: {error.strerror or error}"
    os.close(fd)
    return None


def permission_hint(
    device: str, st: os.stat_result, user: str, groups: Collection[int], kvm_group: str | None
) -> str:
    """The fix for a refused open of ``device`` (``st``) by ``user`` in ``groups``.

    It follows the device's mode: joining its group helps only when the group may read
    and write it, and is never advised for group root (that would give far more than
    KVM). ``kvm_group`` is the machine's ``kvm`` group, if it has one.
    """
    owner, group = _name("user", st.st_uid), _name("group", st.st_gid)
    where = f"{device} is {stat.filemode(st.st_mode)} {owner}:{group}"
    if st.st_mode & 0o006 == 0o006 or (st.st_mode & 0o060 == 0o060 and st.st_gid in groups):
        return (
            f"{where}, which allows user {user!r}, yet opening it was refused: a container "
            "or a security module (SELinux, AppArmor, seccomp) denies it"
        )
    if st.st_mode & 0o060 == 0o060 and st.st_gid != 0:
        return (
            f"{where} and user {user!r} is not in group {group!r}: run "
            f"`sudo usermod -aG {group} {user}`, then log in again"
        )
    only = owner if st.st_mode & 0o060 != 0o060 else f"{owner} and group {group}"
    if kvm_group is not None:
        return (
            f"{where}: only {only} may open it. Give it to group {kvm_group!r}: "
            f"`sudo chgrp {kvm_group} {device} && sudo chmod 660 {device}` (a udev rule "
            f'KERNEL=="kvm", GROUP="{kvm_group}", MODE="0660" keeps that across reboots), '
            f"then `sudo usermod -aG {kvm_group} {user}` and log in again; or run as {owner}"
        )
    return (
        f"{where}: only {only} may open it, and this machine has no {KVM_GROUP!r} group. "
        f"Run as {owner}, or let user {user!r} open it: `sudo setfacl -m u:{user}:rw {device}`"
    )


def explain_kvm_error(error: BaseException, stream: TextIO) -> bool:
    """If ``error`` is a `KvmError` and ``/dev/kvm`` cannot be opened, write why and return True.

    Commands exit with their configuration-error status then (2), not with a status a
    guest could also return.
    """
    problem = kvm_access_problem() if isinstance(error, KvmError) else None
    if problem is None:
        return False
    stream.write(f"vmrpc: {problem}\n")
    return True
