"""Coverage-guided fuzz target (atheris) for the sockets module's wire format.

Every request of the ``sockets`` host module arrives as guest bytes and is parsed by
`vmrpc.sockets.proto.parse`; the addresses it yields are what the policy decides on.
For each input (a function number, then the payload):

- `parse` returns a request or raises `ProtoError` with a positive errno, nothing else,
  and succeeds only for a function that exists;
- every address a request carries gets one decision from a policy whatever IPv6
  spelling of it the guest chose (IPv4-mapped ``::ffff:a.b.c.d``), and `canonicalize`
  is idempotent on it.

Run by ``make fuzz`` as ``python fuzz/python/sock_proto.py [libFuzzer flags] CORPUS``.
"""

from __future__ import annotations

import ipaddress
import sys

import atheris

with atheris.instrument_imports():
    from vmrpc.sockets import Deny, Policy, Rule, proto
    from vmrpc.sockets.policy import Flow, canonicalize

POLICY = Policy(
    [
        Rule(Deny(), dest="127.0.0.2"),
        Rule(Deny(), dest="10.0.0.0/8"),
        Rule(Deny(), dest="::1"),
        Rule(Deny(), dest="fe80::/10"),
    ]
)


def check_address(addr: proto.Addr) -> None:
    decided = POLICY.decide(Flow("outbound", "tcp", addr.host, addr.port))
    ip = ipaddress.ip_address(addr.host)
    canonical = canonicalize(ip)
    assert canonicalize(canonical) == canonical, (addr, canonical)
    spellings = [str(canonical)]
    if isinstance(canonical, ipaddress.IPv4Address):
        spellings.append(f"::ffff:{canonical}")
    for spelling in spellings:
        other = POLICY.decide(Flow("outbound", "tcp", spelling, addr.port))
        assert other == decided, (addr, spelling, decided, other)


def one_input(data: bytes) -> None:
    if not data:
        return
    function, payload = data[0] % (proto.FN_COUNT + 2), data[1:]
    try:
        request = proto.parse(function, payload)
    except proto.ProtoError as error:
        refused: proto.ProtoError | None = error
    else:
        refused = None
    if refused is not None:
        assert refused.errno > 0, refused
        return
    assert function < proto.FN_COUNT
    addr = getattr(request, "addr", None)
    if isinstance(addr, proto.Addr):
        check_address(addr)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
