"""The network configuration a Linux program finds in ``/etc`` (docs/linux.md).

`LinuxVM` with ``sockets=`` mounts a read-only directory at ``/etc`` (unless the
caller mounts one there) holding what static glibc and musl read to resolve names:

- ``hosts``: localhost, plus the caller's ``hosts=`` entries;
- ``resolv.conf``: one nameserver, `RESOLVER` (port 53), the VM's resolver, which
  the Linux personality serves guest-locally and answers through the sockets host
  module's getaddrinfo, under its policy (``guest/linux/dns.c``);
- ``nsswitch.conf``: ``hosts: files dns``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path

__all__ = ["RESOLVER", "write_etc"]

#: The resolver's address in the guest (guest/linux/dns.c, LX_RESOLVER).
RESOLVER = "127.0.0.53"

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


def _hosts_line(name: str, address: str) -> str:
    ip = ipaddress.ip_address(address)  # ValueError for anything but an address
    if not name or len(name) > 253 or not set(name) <= _NAME_CHARS:
        raise ValueError(f"not a host name: {name!r}")
    return f"{ip}\t{name}\n"


def write_etc(directory: Path, hosts: Mapping[str, str] | None = None) -> None:
    """Write ``hosts``, ``resolv.conf`` and ``nsswitch.conf`` into ``directory``.

    ``hosts`` maps extra names to addresses; a name or address that is not one
    raises `ValueError` (nothing the caller gives can add lines of its own).
    """
    lines = ["127.0.0.1\tlocalhost\n", "::1\tlocalhost ip6-localhost ip6-loopback\n"]
    lines += [_hosts_line(name, address) for name, address in (hosts or {}).items()]
    (directory / "hosts").write_text("".join(lines))
    (directory / "resolv.conf").write_text(f"nameserver {RESOLVER}\noptions attempts:1\n")
    (directory / "nsswitch.conf").write_text("hosts: files dns\n")
