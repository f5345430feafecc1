"""Socket outsourcing: a guest's sockets carried out by the host's network stack.

Register one `SocketOutsourcing` per VM::

    from vmrpc import VM
    from vmrpc.sockets import Expose, Policy, Rule, SocketOutsourcing, TLS

    sockets = SocketOutsourcing(Policy([
        Rule(TLS(cafile="ca.pem"), dest="example.test", port=443),
        Rule(Expose(host="127.0.0.1", port=0), port=8080),
    ]))
    with VM("http_get", args=["example.test", "443", "/"], modules=[sockets]) as vm:
        vm.run()
    print(sockets.audit, sockets.stats)

The guest side is ``guest/lib/sockets/`` (POSIX-style API in ``vmrpc/socket.h``);
the wire format is ``guest/include/vmrpc/socket_proto.h``, mirrored by `proto`.
"""

from vmrpc.sockets.module import AuditRecord, SocketOutsourcing
from vmrpc.sockets.policy import (
    TLS,
    TLS_ERRNO,
    Action,
    Allow,
    Deny,
    Expose,
    Flow,
    Policy,
    Proxy,
    Rule,
    canonicalize,
)
from vmrpc.sockets.proto import ProtoError

__all__ = [
    "TLS",
    "TLS_ERRNO",
    "Action",
    "Allow",
    "AuditRecord",
    "Deny",
    "Expose",
    "Flow",
    "Policy",
    "ProtoError",
    "Proxy",
    "Rule",
    "SocketOutsourcing",
    "canonicalize",
]
