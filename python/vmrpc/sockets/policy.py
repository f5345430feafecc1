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

Rules decide on the address the host kernel will actually use (`canonicalize`):
``::ffff:127.0.0.2`` is 127.0.0.2, ``0.0.0.0`` is 127.0.0.1, ``::`` is ``::1``. A
name rule (``dest="localhost"``) also matches a direct connect to an address the
name resolves to on the host (`Policy.resolve_names`).
"""

from __future__ import annotations

import errno as _errno
import fnmatch
import ipaddress
import logging
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal
from urllib.parse import unquote_to_bytes, urlsplit

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
    "canonicalize",
]

log = logging.getLogger("vmrpc.sockets")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The errno a guest's ``connect`` gets when a forced TLS handshake fails (bad
#: certificate, wrong host name, protocol error): ``EPROTO``. Never a plaintext fallback.
TLS_ERRNO = _errno.EPROTO

Direction = Literal["outbound", "inbound"]
Protocol = Literal["tcp", "udp"]

_V4_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
_V6_LOOPBACK = ipaddress.IPv6Address("::1")
_V6_UNSPECIFIED = ipaddress.IPv6Address("::")
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


@lru_cache(maxsize=1024)
def _parse(address: str) -> IPAddress:
    """`ipaddress.ip_address`, remembered: every connect's flow parses its address
    (addresses are immutable values; a guest's many addresses only evict)."""
    return ipaddress.ip_address(address)


def canonicalize(address: str | IPAddress, direction: Direction = "outbound") -> IPAddress:
    """The address the host kernel uses for ``address``; the policy decides on this.

    - IPv4-mapped IPv6 (``::ffff:a.b.c.d``) is IPv4: Linux sends it as IPv4.
    - IPv4-compatible IPv6 (``::a.b.c.d``, deprecated) is taken as IPv4 too, except
      ``::`` and ``::1``. Linux would try it as IPv6, where it has no route; deciding on
      the IPv4 form means a rule about a.b.c.d also covers this spelling.
    - Outbound, the unspecified address is the local host: Linux connects (and sends)
      to ``0.0.0.0`` as 127.0.0.1 and to ``::`` as ``::1``. Inbound (the guest's own
      bound address) it keeps its meaning, "every address".

    A scope id (``fe80::1%2``) is kept; raises ValueError on anything not an address.
    """
    ip = address if not isinstance(address, str) else _parse(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif int(ip) >> 32 == 0 and ip not in (_V6_UNSPECIFIED, _V6_LOOPBACK):
            ip = ipaddress.IPv4Address(int(ip))
    if direction == "outbound" and ip.is_unspecified:
        return _V4_LOOPBACK if ip.version == 4 else _V6_LOOPBACK
    return ip


def _canonical_network(net: IPNetwork, direction: Direction) -> IPNetwork:
    """A rule's network in the terms of `canonicalize` (so that both sides agree)."""
    if net.num_addresses == 1:
        ip = canonicalize(net.network_address, direction)
        return ipaddress.ip_network(ip)
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_V4_MAPPED):
        low = int(net.network_address) & 0xFFFFFFFF
        return ipaddress.IPv4Network((low, net.prefixlen - 96))
    return net


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
    """Outbound TCP only: connect through a SOCKS5 proxy, ``"socks5://host:port"``, or
    ``"socks5://user:password@host:port"`` to log in (RFC 1929; percent-escapes are
    decoded; 1-255 bytes each). The password never appears in ``repr``.

    With ``tls``, the host also runs TLS to the destination through the proxy's tunnel
    (the proxy sees only TLS records), exactly as the `TLS` action does without one.
    """

    url: str = field(repr=False)
    tls: TLS | None = None
    host: str = field(init=False)
    port: int = field(init=False)
    username: bytes | None = field(init=False, default=None)
    password: bytes | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("socks5", "socks5h") or not parts.hostname or not parts.port:
            raise ValueError(f"proxy URL must look like socks5://host:port, got {self.url!r}")
        if parts.username is not None or parts.password is not None:
            user = unquote_to_bytes(parts.username or "")
            password = unquote_to_bytes(parts.password or "")
            if not 1 <= len(user) <= 255 or not 1 <= len(password) <= 255:
                raise ValueError("SOCKS5 username and password must be 1-255 bytes each")
            object.__setattr__(self, "username", user)
            object.__setattr__(self, "password", password)
        if self.tls is not None and not isinstance(self.tls, TLS):
            raise TypeError(f"Proxy tls must be a TLS action, got {self.tls!r}")
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
    """What a rule is matched against.

    ``address`` is the destination as the guest spelled it; rules match
    ``canonical``, the address the kernel will use (`canonicalize`). ``names`` are
    the host names it is known by (resolved by the guest through the host, or by
    the policy's name rules).
    """

    direction: Direction
    protocol: Protocol
    address: str
    port: int
    names: frozenset[str] = frozenset()
    canonical: IPAddress = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "canonical", canonicalize(self.address, self.direction))

    def describe(self) -> str:
        names = f" ({', '.join(sorted(self.names))})" if self.names else ""
        host = f"[{self.address}]" if ":" in self.address else self.address
        same = _parse(self.address) == self.canonical
        kernel = "" if same else f" = {self.canonical}"
        return f"{self.direction} {self.protocol} {host}:{self.port}{kernel}{names}"


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
    _networks: Mapping[Direction, tuple[IPNetwork, ...]] = field(
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
        canonical = {
            way: tuple(_canonical_network(n, way) for n in networks)
            for way in ("outbound", "inbound")
        }
        object.__setattr__(self, "_networks", canonical)
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
        ip = flow.canonical
        if any(ip.version == net.version and ip in net for net in self._networks[flow.direction]):
            return True
        return any(fnmatch.fnmatchcase(n, p) for n in flow.names for p in self._patterns)

    @property
    def literal_names(self) -> tuple[str, ...]:
        """The host names of ``dest`` without wildcards: these the policy resolves."""
        return tuple(p for p in self._patterns if not any(c in p for c in "*?["))


Resolver = Callable[[str], Iterable[str]]


def _host_resolver(name: str) -> list[str]:
    """The addresses the host resolves ``name`` to (any family)."""
    infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class _NameAddresses:
    """The addresses of the policy's literal name rules, refreshed every ``ttl`` s.

    The first lookup resolves in the caller's thread (`SocketOutsourcing` does it at
    construction, before any guest runs). Later lookups never block: a stale answer
    is used while one background thread resolves again, so a name whose addresses
    change is matched with the old ones for up to ``ttl`` plus one resolution. A
    name that fails to resolve keeps its last good answer (none at first).
    """

    def __init__(self, names: Iterable[str], ttl: float, resolver: Resolver) -> None:
        self.names = tuple(dict.fromkeys(names))
        self.ttl = ttl
        self._resolver = resolver
        self._lock = threading.Lock()
        self._answers: dict[str, frozenset[IPAddress]] = {}
        self._stamp: float | None = None  # monotonic time of the last resolution
        self._refreshing = False

    def resolve(self) -> None:
        answers: dict[str, frozenset[IPAddress]] = {}
        for name in self.names:
            try:
                found = frozenset(canonicalize(a.split("%")[0]) for a in self._resolver(name))
            except (OSError, ValueError, UnicodeError) as error:
                log.info("policy name %r did not resolve: %s", name, error)
                found = self._answers.get(name, frozenset())
            answers[name] = found
        with self._lock:
            self._answers = answers
            self._stamp = time.monotonic()

    def _refresh_in_background(self) -> None:
        try:
            self.resolve()
        finally:
            with self._lock:
                self._refreshing = False

    def names_of(self, ip: IPAddress) -> frozenset[str]:
        """The rule names that resolve to ``ip`` (a canonical address)."""
        if not self.names:
            return frozenset()
        with self._lock:
            stamp = self._stamp
            stale = stamp is not None and time.monotonic() - stamp >= self.ttl
            start = stale and not self._refreshing
            if start:
                self._refreshing = True
        if stamp is None:
            self.resolve()
        elif start:
            threading.Thread(
                target=self._refresh_in_background, name="vmrpc-policy-names", daemon=True
            ).start()
        with self._lock:
            return frozenset(n for n, addrs in self._answers.items() if ip in addrs)


class Policy:
    """An ordered list of rules; the first match decides.

    Name rules (``dest="localhost"``, without wildcards) also match the addresses the
    name resolves to on the host, so a guest cannot step around ``Deny(dest=
    "localhost")`` by connecting to 127.0.0.1. Wildcard patterns (``"*.example.com"``)
    cannot be resolved: they match only names the guest resolved through the host;
    deny by address (CIDR) for a hard guarantee. ``name_ttl`` is how long a resolution
    is used; ``resolver`` replaces the host's ``getaddrinfo`` (tests).
    """

    def __init__(
        self,
        rules: Iterable[Rule] = (),
        *,
        name_ttl: float = 30.0,
        resolver: Resolver | None = None,
    ) -> None:
        self._watchers: list[weakref.WeakMethod[Callable[[], None]]] = []
        self._rules: tuple[Rule, ...] = tuple(rules)
        for rule in self.rules:
            if not isinstance(rule, Rule):
                raise TypeError(f"Policy takes Rule objects, got {rule!r}")
        if not name_ttl >= 0:
            raise ValueError(f"name_ttl must be >= 0, got {name_ttl!r}")
        names = (n for rule in self.rules for n in rule.literal_names)
        self._name_addresses = _NameAddresses(names, name_ttl, resolver or _host_resolver)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    @rules.setter
    def rules(self, rules: Iterable[Rule]) -> None:
        """New rules decide from the next call on (the native connect forgets what
        the old ones let through: `on_change`)."""
        new = tuple(rules)
        for rule in new:
            if not isinstance(rule, Rule):
                raise TypeError(f"Policy takes Rule objects, got {rule!r}")
        self._rules = new
        for watcher in list(self._watchers):
            callback = watcher()
            if callback is not None:
                callback()

    def on_change(self, callback: Callable[[], None]) -> None:
        """Calls the bound method ``callback`` whenever the rules change (held weakly)."""
        self._watchers = [w for w in self._watchers if w() is not None]
        self._watchers.append(weakref.WeakMethod(callback))

    def by_address_only(self) -> bool:
        """No rule matches by name: a flow's decision depends on its address, port,
        protocol and direction only (not on the names the guest resolved), and
        `decide` is this class's own: a subclass that decides otherwise (say, by
        time or by count) is asked about every flow."""
        if type(self).decide is not Policy.decide:
            return False
        return not any(rule._patterns for rule in self._rules)

    def resolve_names(self) -> None:
        """Resolve the name rules now (blocking); later refreshes run in the background."""
        self._name_addresses.resolve()

    def decide(self, flow: Flow) -> tuple[int | None, Action | None]:
        """The index of the deciding rule (``None``: default) and its action.

        The default is `Allow` for outbound flows and ``None`` (stay in the guest) for
        inbound ones.
        """
        flow = self.with_rule_names(flow)
        for index, rule in enumerate(self.rules):
            if rule.matches(flow):
                return index, rule.action
        return None, (Allow() if flow.direction == "outbound" else None)

    def with_rule_names(self, flow: Flow) -> Flow:
        """``flow`` with the names of the rules that resolve to its address added."""
        extra = self._name_addresses.names_of(flow.canonical) - flow.names
        if not extra:
            return flow
        return Flow(flow.direction, flow.protocol, flow.address, flow.port, flow.names | extra)

    def __repr__(self) -> str:
        return f"Policy({list(self.rules)!r})"
