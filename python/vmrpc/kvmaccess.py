"""Why this process cannot use ``/dev/kvm``, said so that a person can fix it."""

from __future__ import annotations

import grp
import os
import pwd
import stat

__all__ = ["KVM_DEVICE", "kvm_access_problem"]

KVM_DEVICE = "/dev/kvm"


def _name(lookup: str, number: int) -> str:
    try:
        return pwd.getpwuid(number).pw_name if lookup == "user" else grp.getgrgid(number).gr_name
    except KeyError:
        return str(number)


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
        owner, group = _name("user", st.st_uid), _name("group", st.st_gid)
        mode = stat.filemode(st.st_mode)
        where = f"{device} is {mode} {owner}:{group}"
        if st.st_gid in os.getgroups():
            return f"{where}; this process is in group {group!r} but still may not open it"
        user = _name("user", os.getuid())
        return (
            f"{where} and user {user!r} is not in group {group!r}: run "
            f"`sudo usermod -aG {group} {user}`, then log in again"
        )
    except OSError as error:
        return f"{device} cannot be opened: {error.strerror or error}"
    os.close(fd)
    return None
