"""Socket policy: ordered rules that decide what a guest's sockets may do on the host.

A `Policy` is a list of `Rule` objects; the first rule that matches a flow decides
it. A flow is an outbound ``connect``/``sendto`` (destination = the peer) or an
inbound ``listen``/``bind`` (destination = the guest's own bound address). Rules
match on direction, protocol, destination (an IP address, a CIDR network or a host
name pattern as the guest gave it to ``getaddrinfo``; ``fnmatch`` wildcards allowed)
and port (an int, a ``range`` or an inclusive ``(low, high)`` pair)::

    Policy([
        Rule(Deny(errno.EACCES), dest="10.0.0.0/8"),
        Rule(TLS(cafile="ca.pem"), dest="*.example.com", port=443),
        Rule(Proxy("socks5://127.0.0.1:1080"), protocol="tcp", port=range(8000, 9000)),
        Rule(Expose(host="127.0.0.1", port=0), port=8080),     # inbound
    ])

Without a matching rule, outbound flows are allowed and inbound ones stay inside
the guest (no host listener).
"""

from __future__ import annotations

import errno as _errno
import fnmatch
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

__all__ = [
    "TLS_ERRNO",
    "Action",
    "Allow",
    "Deny",
    "Expose",
    "Flow",
    "Policy",
    "Proxy",
    "Rule",
]

#: The errno a guest's ``connect`` gets when a forced TLS handshake fails (bad
#: certificate, wrong host name, protocol error): ``EPROTO``. Never a plaintext fallback.
TLS_ERRNO = _errno.EPROTO

Direction = Literal["outbound", "inbound"]
Protocol = Literal["tcp", "udp"]


@dataclass(frozen=True)
class Allow:
    """Let the flow through as the guest asked."""


@dataclass(frozen=True)
class Deny:
    """Refuse the flow; the guest's call fails with ``errno``."""

    errno: int = _errno.ECONNREFUSED

    def __post_init__(self) -> None:
        if not isinstance(self.errno, int) or not 0 < self.errno < 4096:
            raise ValueError(f"Deny errno must be a positive errno value, got {self.errno!r}")


@dataclass(frozen=True)
class TLS:
    """Outbound TCP only: the host wraps the connection in TLS and verifies the server.

    ``server_hostname`` is checked against the certificate; by default it is the name
    the guest resolved the address from (else the address itself). ``cafile`` names the
    trusted CA bundle (default: the system's). The guest speaks plaintext; a failed
    handshake fails the guest's ``connect`` with `TLS_ERRNO`.
    """

    server_hostname: str | None = None
    cafile: str | None = None


@dataclass(frozen=True)
class Proxy:
    """Outbound TCP only: connect through a SOCKS5 proxy, ``"socks5://host:port"``."""

    url: str
    host: str = field(init=False)
    port: int = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("socks5", "socks5h") or not parts.hostname or not parts.port:
            raise ValueError(f"proxy URL must look like socks5://host:port, got {self.url!r}")
        if parts.username or parts.password:
            raise ValueError("SOCKS5 authentication is not supported")
        object.__setattr__(self, "host", parts.hostname)
        object.__setattr__(self, "port", parts.port)


@dataclass(frozen=True)
class Expose:
    """Inbound only: mirror the guest's listener by a host socket at ``host:port``.

    ``port=0`` lets the host choose; `SocketOutsourcing.exposed` tells where it went.
    """

    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.host)
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError(f"port out of range: {self.port}")


Action = Allow | Deny | TLS | Proxy | Expose

_OUTBOUND_ONLY = (TLS, Proxy)


@dataclass(frozen=True)
class Flow:
    """What a rule is matched against."""

    direction: Direction
    protocol: Protocol
    address: str
    port: int
    names: frozenset[str] = frozenset()

    def describe(self) -> str:
        names = f" ({', '.join(sorted(self.names))})" if self.names else ""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.direction} {self.protocol} {host}:{self.port}{names}"


def _port_bounds(port: int | range | tuple[int, int] | None) -> tuple[int, int] | None:
    if port is None:
        return None
    if isinstance(port, bool):
        raise TypeError("port must be an int, a range or a (low, high) pair")
    if isinstance(port, int):
        low = high = port
    elif isinstance(port, range):
        if port.step != 1 or not port:
            raise ValueError("port range must be non-empty with step 1")
        low, high = port.start, port.stop - 1
    else:
        low, high = port
    if not 0 <= low <= high <= 0xFFFF:
        raise ValueError(f"bad port specification {port!r}")
    return (low, high)


@dataclass(frozen=True)
class Rule:
    """One policy rule; ``None`` matches anything.

    ``direction`` defaults to what the action implies (`Expose`: inbound, `TLS` and
    `Proxy`: outbound, others: both).
    """

    action: Action
    direction: Direction | None = None
    protocol: Protocol | None = None
    dest: str | Sequence[str] | None = None
    port: int | range | tuple[int, int] | None = None
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, compare=False
    )
    _patterns: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _ports: tuple[int, int] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.action, Allow | Deny | TLS | Proxy | Expose):
            raise TypeError(f"not a policy action: {self.action!r}")
        implied: Direction | None = None
        if isinstance(self.action, Expose):
            implied = "inbound"
        elif isinstance(self.action, _OUTBOUND_ONLY):
            implied = "outbound"
        if self.direction not in (None, "outbound", "inbound"):
            raise ValueError(f"direction must be 'outbound' or 'inbound', got {self.direction!r}")
        if implied and self.direction not in (None, implied):
            raise ValueError(f"{type(self.action).__name__} is for {implied} rules only")
        if self.direction is None and implied:
            object.__setattr__(self, "direction", implied)
        if self.protocol not in (None, "tcp", "udp"):
            raise ValueError(f"protocol must be 'tcp' or 'udp', got {self.protocol!r}")
        dests: Iterable[str] = (
            () if self.dest is None else [self.dest] if isinstance(self.dest, str) else self.dest
        )
        networks, patterns = [], []
        for d in dests:
            try:
                networks.append(ipaddress.ip_network(d, strict=False))
            except ValueError:
                patterns.append(d.lower().rstrip("."))
        object.__setattr__(self, "_networks", tuple(networks))
        object.__setattr__(self, "_patterns", tuple(patterns))
        object.__setattr__(self, "_ports", _port_bounds(self.port))

    def matches(self, flow: Flow) -> bool:
        if self.direction is not None and self.direction != flow.direction:
            return False
        if self.protocol is not None and self.protocol != flow.protocol:
            return False
        if self._ports is not None and not self._ports[0] <= flow.port <= self._ports[1]:
            return False
        if self.dest is None:
            return True
        ip = ipaddress.ip_address(flow.address)
        if any(ip.version == net.version and ip in net for net in self._networks):
            return True
        return any(fnmatch.fnmatchcase(n, p) for n in flow.names for p in self._patterns)


class Policy:
    """An ordered list of rules; the first match decides."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        for rule in self.rules:
            if not isinstance(rule, Rule):
                raise TypeError(f"Policy takes Rule objects, got {rule!r}")

    def decide(self, flow: Flow) -> tuple[int | None, Action | None]:
        """The index of the deciding rule (``None``: default) and its action.

        The default is `Allow` for outbound flows and ``None`` (stay in the guest) for
        inbound ones.
        """
        for index, rule in enumerate(self.rules):
            if rule.matches(flow):
                return index, rule.action
        return None, (Allow() if flow.direction == "outbound" else None)

    def __repr__(self) -> str:
        return f"Policy({list(self.rules)!r})"
