"""Name resolution for the guest (``getaddrinfo``) and the cache of the names each
address was resolved from.

The cache is what lets a policy rule written for a name (``dest="*.example.com"``)
match the guest's later connect to an address, and what TLS checks the server's
certificate against. Imports `proto` and `policy` only; see `dispatch` for the
layers.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from vmrpc.sockets import proto
from vmrpc.sockets.policy import canonicalize
from vmrpc.sockets.proto import Addr

_GAI_S = 10.0
_GAI_FAMILIES = {
    0: socket.AF_UNSPEC,
    proto.AF_INET: socket.AF_INET,
    proto.AF_INET6: socket.AF_INET6,
}


class NameCache:
    """Canonical address (as a string) -> the names it was resolved from, most
    recent last."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._names: dict[str, list[str]] = {}
        # Called after every change: the names are part of a connect's audit text.
        self._on_change = on_change

    def names(self, address: str) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._names.get(address, ()))

    def remember(self, name: str, addrs: list[Addr]) -> None:
        with self._lock:
            for addr in addrs:
                names = self._names.setdefault(str(canonicalize(addr.host)), [])
                if name in names:
                    names.remove(name)
                names.append(name)
        if self._on_change is not None:
            self._on_change()


def resolve(req: proto.GaiReq, cache: NameCache) -> Coroutine[Any, Any, bytes]:
    """Resolves ``req.name`` on the host (a coroutine, for the loop); the answer
    carries up to `proto.MAX_ADDRS` distinct addresses, or an ``EAI_*`` code."""
    return _resolve(req.name, _GAI_FAMILIES[req.family], cache)


async def _resolve(name: str, family: int, cache: NameCache) -> bytes:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(name, None, family=family, type=socket.SOCK_STREAM), _GAI_S
        )
    except socket.gaierror as error:
        code = error.errno if error.errno is not None and error.errno < 0 else 0
        code = code or proto.EAI_FAIL
        return proto.resp(code)
    except TimeoutError:
        return proto.resp(proto.EAI_AGAIN)
    addrs: list[Addr] = []
    for fam, _, _, _, sockaddr in infos:
        addr = proto.addr_from_sockaddr(fam, sockaddr)
        addr = Addr(addr.family, addr.host, 0, 0, addr.scope_id)
        if addr not in addrs:
            addrs.append(addr)
    addrs = addrs[: proto.MAX_ADDRS]
    if not addrs:
        return proto.resp(proto.EAI_NONAME)
    cache.remember(name, addrs)
    body = b"".join(proto.encode_addr(a) for a in addrs)
    return proto.resp(len(addrs), len(addrs)) + body
