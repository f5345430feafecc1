"""Policy and audit glue: the flow a guest's call describes, and the record of
what the policy decided (`AuditRecord`, ``SocketOutsourcing.audit``).

Imports `table` (below it), `dns` (the names a flow carries) and `policy`; see
`dispatch` for the layers.
"""

from __future__ import annotations

import errno
import logging
import time
from dataclasses import dataclass

from vmrpc.sockets.dns import NameCache
from vmrpc.sockets.fdbudget import FdBudget
from vmrpc.sockets.policy import Flow, Policy, canonicalize
from vmrpc.sockets.proto import Addr
from vmrpc.sockets.table import SocketTable

log = logging.getLogger("vmrpc.sockets")

Decision = tuple[Flow, int | None, object]


@dataclass(frozen=True)
class AuditRecord:
    """One policy decision or its outcome (`SocketOutsourcing.audit`)."""

    time: float
    event: str  # connect, sendto, listen, bind, tls-failed, proxy-failed
    flow: str  # Flow.describe()
    action: str
    rule: int | None  # index of the deciding rule; None: the default
    errno: int = 0  # what the guest got (0: success)
    detail: str = ""


class PolicyAudit(SocketTable):
    """The VM's policy, its audit log and the names its guest resolved."""

    def __init__(self, policy: Policy, max_sockets: int, fd_budget: FdBudget) -> None:
        super().__init__(max_sockets, fd_budget)
        self.policy = policy
        # Name rules resolve here, before any guest runs; later refreshes never block.
        self.policy.resolve_names()
        self.audit: list[AuditRecord] = []
        self._names = NameCache()

    def _record(
        self,
        event: str,
        flow: Flow,
        rule: int | None,
        action: object,
        *,
        err: int = 0,
        detail: str = "",
    ) -> None:
        name = "stay-in-guest" if action is None else type(action).__name__
        record = AuditRecord(time.time(), event, flow.describe(), name, rule, err, detail)
        with self._lock:
            self.audit.append(record)
        level = logging.WARNING if err and event.endswith("failed") else logging.INFO
        if not log.isEnabledFor(level):  # every connect records: skip the message's parts
            return
        log.log(
            level,
            "%s %s -> %s (rule %s)%s%s",
            event,
            record.flow,
            name,
            "default" if rule is None else rule,
            f" errno={errno.errorcode.get(err, err)}" if err else "",
            f": {detail}" if detail else "",
        )

    def _flow(self, direction: str, protocol: str, addr: Addr) -> Flow:
        key = str(canonicalize(addr.host, direction))  # type: ignore[arg-type]
        names = frozenset(self._names.names(key))
        flow = Flow(direction, protocol, addr.host, addr.port, names)  # type: ignore[arg-type]
        return self.policy.with_rule_names(flow)
