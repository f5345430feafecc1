"""Files no mount provides that programs and their C libraries expect.

- ``/dev/null``, ``/dev/zero``, ``/dev/full``, ``/dev/urandom`` and ``/dev/random``:
  opened by the host at those fixed host paths (the guest only names one of them;
  nothing else under the host's ``/dev`` is reachable). ``/dev/random`` is
  ``/dev/urandom``.
- ``/proc/self/exe``: a symbolic link to the program's guest path (``readlink``).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

__all__ = ["DEVICES", "Synthetic"]

#: Guest path -> the host device opened for it.
DEVICES = {
    "/dev/null": "/dev/null",
    "/dev/zero": "/dev/zero",
    "/dev/full": "/dev/full",
    "/dev/urandom": "/dev/urandom",
    "/dev/random": "/dev/urandom",
}


@dataclass
class Synthetic:
    """The synthesized entries of one program (``exe``: its guest path)."""

    exe: str | None = None
    links: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.exe is not None:
            self.links.setdefault("/proc/self/exe", self.exe)

    @staticmethod
    def device(guest: str) -> str | None:
        """The host device behind a (normalised, absolute) guest path, if any."""
        return DEVICES.get(posixpath.normpath(guest))

    def link(self, guest: str) -> str | None:
        """The target of a synthesized symbolic link, if ``guest`` is one."""
        return self.links.get(posixpath.normpath(guest))
