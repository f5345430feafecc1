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
from typing import cast

from vmrpc.sockets.dns import NameCache
from vmrpc.sockets.fdbudget import FdBudget
from vmrpc.sockets.policy import Flow, Policy, canonicalize
from vmrpc.sockets.proto import AF_INET, Addr, encode_addr
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
    """The VM's policy, its audit log and the names its guest resolved.

    Also what the native connect may serve (`allow_native`): destinations the policy
    let through plainly, forgotten whenever the policy or the names change.
    """

    def __init__(self, policy: Policy, max_sockets: int, fd_budget: FdBudget) -> None:
        super().__init__(max_sockets, fd_budget)
        self._plain_generation = 0  # bumped by every `forget_native`
        self._policy = policy
        policy.on_change(self.forget_native)
        # Name rules resolve here, before any guest runs; later refreshes never block.
        self.policy.resolve_names()
        self._audit: list[AuditRecord] = []
        self._names = NameCache(self.forget_native)

    @property
    def policy(self) -> Policy:
        return self._policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        with self._lock:
            self._policy = policy
        policy.on_change(self.forget_native)
        self.forget_native()

    @property
    def audit(self) -> list[AuditRecord]:
        """Every policy decision and outcome, oldest first, the native connect's too."""
        self._native_audit()
        return self._audit

    def forget_native(self) -> None:
        """No destination is connected natively until Python has decided it again."""
        with self._lock:
            self._plain_generation += 1
            self.native_data_plane.forget_plain()

    def _allow_native(self, addr: Addr, decision: Decision, generation: int) -> None:
        """Lets the native connect serve new stream sockets' connects to ``addr``
        as Python just did: plainly allowed (``decision``), IPv4, decided while
        the generation was ``generation`` (so no change came in between), and
        only under a policy whose every rule is by address, as the names of the
        destination could change its decision without a change of the policy."""
        if addr.family != AF_INET or not self.policy.by_address_only():
            return
        with self._lock:
            if generation != self._plain_generation:
                return
            self._plain.append((addr, decision))
            self.native_data_plane.allow_plain(encode_addr(addr), len(self._plain) - 1)

    def _native_audit(self) -> None:
        for when, decision in self.native_data_plane.take_audit():
            made: Decision = cast(Decision, self._plain[decision][1])
            self._append_record("connect", made[0], made[1], made[2], when=when)

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
        self._native_audit()  # the native connects' records come first, as they did
        self._append_record(event, flow, rule, action, err=err, detail=detail)

    def _append_record(
        self,
        event: str,
        flow: Flow,
        rule: int | None,
        action: object,
        *,
        err: int = 0,
        detail: str = "",
        when: float | None = None,
    ) -> None:
        name = "stay-in-guest" if action is None else type(action).__name__
        stamp = time.time() if when is None else when
        record = AuditRecord(stamp, event, flow.describe(), name, rule, err, detail)
        with self._lock:
            self._audit.append(record)
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
