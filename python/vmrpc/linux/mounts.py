"""Mounts: host directories the guest sees at guest paths, and the records the audit
hook gets (`FileAccess`). Types only; `vmrpc.linux.filebase` resolves paths with
them. Imports nothing of the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Denied", "FileAccess", "Mount", "MountRoot", "split_path"]


@dataclass(frozen=True)
class Mount:
    """Host directory ``host`` seen by the guest at ``guest`` (absolute), maybe read-only."""

    host: Path
    guest: str
    readonly: bool = False

    @staticmethod
    def parse(spec: str) -> Mount:
        """``HOST:GUEST`` or ``HOST:GUEST:ro`` (``rw`` is the default)."""
        parts = spec.split(":")
        if len(parts) == 3 and parts[2] in ("ro", "rw"):
            return Mount(Path(parts[0]), parts[1], parts[2] == "ro")
        if len(parts) == 2:
            return Mount(Path(parts[0]), parts[1])
        raise ValueError(f"mount must be HOST:GUEST[:ro], got {spec!r}")


@dataclass(frozen=True)
class FileAccess:
    """What the audit hook sees: the operation, the guest path, flags, the mount."""

    op: str
    path: str
    flags: int
    mount: Mount | None


@dataclass
class MountRoot:
    mount: Mount
    parts: tuple[str, ...]
    fd: int


class Denied(Exception):
    pass


def split_path(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p and p != ".")
