"""Socket outsourcing: guest sockets on the host stack, policy, dynamic specialization.

Guest apps (guest/apps: http_get, echo_server, tcp_echo_client, udp_echo,
loopback_pair, many_conns) talk to real peers on loopback: ``http.server``, echo
servers in threads, a TLS server with ``trustme`` certificates and a ``pproxy`` SOCKS5
proxy. Every errno is a Linux value; guests print ``errno=N`` when a step fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http.server
import os
import re
import select
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmrpc import _runtime, abi
from vmrpc.sockets import (
    TLS,
    TLS_ERRNO,
    Allow,
    Deny,
    Expose,
    Flow,
    Policy,
    ProtoError,
    Proxy,
    Rule,
    SocketOutsourcing,
    proto,
)

from conftest import VmFactory

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "guest" / "include"

# ---- helpers ------------------------------------------------------------------------


def guest_errno(console: str) -> int:
    match = re.search(r"errno=(\d+)", console)
    assert match, console
    return int(match[1])


def run_on_loop(coroutine: Any, timeout: float = 5.0) -> bytes:
    """Runs a waiting operation of the module the way the RPC engine does."""
    result = asyncio.run_coroutine_threadsafe(coroutine, _runtime.loop()).result(timeout)
    assert isinstance(result, bytes)
    return result


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class TcpServer:
    """A threaded TCP server on loopback; ``handler(conn)`` runs per connection."""

    def __init__(
        self,
        handler: Callable[[socket.socket], None],
        host: str = "127.0.0.1",
        wrap: ssl.SSLContext | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(512)
        self.port: int = self.sock.getsockname()[1]
        self.handler = handler
        self.wrap = wrap
        self.accepted = 0
        self.tls_versions: list[str | None] = []
        self.errors: list[BaseException] = []
        self.conns: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            if self.wrap is not None:
                conn = self.wrap.wrap_socket(conn, server_side=True)
                self.tls_versions.append(conn.version())  # type: ignore[attr-defined]
            self.handler(conn)
        except (OSError, ssl.SSLError) as error:
            self.errors.append(error)
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.close()
        self.thread.join(5)


class ByteWitness(TcpServer):
    """A raw TCP listener that records every byte each client sends.

    It reads the first chunk, shuts down its sending side (a TLS client or a SOCKS5
    client then fails its handshake and closes) and reads on until the client closes,
    so ``records`` holds everything that ever went out on each connection, in
    order. Nothing is answered: no handshake can succeed against it.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.records: list[bytes] = []
        super().__init__(self._record, host=host)

    def _record(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        data = conn.recv(65536)
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
        while chunk := conn.recv(65536):
            data += chunk
        self.records.append(data)

    def wait_records(self, timeout: float = 30.0) -> list[bytes]:
        """The records, once every accepted connection has been recorded."""
        deadline = time.monotonic() + timeout
        while len(self.records) + len(self.errors) < self.accepted:
            assert time.monotonic() < deadline, "connections not recorded"
            time.sleep(0.01)
        assert not self.errors, self.errors
        return list(self.records)


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


@pytest.fixture
def echo_server() -> Iterator[TcpServer]:
    server = TcpServer(echo)
    yield server
    server.close()


@pytest.fixture
def http_server() -> Iterator[tuple[int, list[str]]]:
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            paths.append(self.path)
            body = b"<html>hello from the host</html>\n" * 64
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], paths
    server.shutdown()
    server.server_close()
    thread.join(5)


def ipv6_unavailable() -> str | None:
    if not socket.has_ipv6:
        return "Python was built without IPv6"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError as error:
        return f"::1 is not usable here: {error}"
    return None


# ---- wire format and parser (no KVM) ---------------------------------------------------


def _c_int(text: str) -> int:
    text = text.strip().strip("()").rstrip("uUlL")
    if re.fullmatch(r"0[0-7]+", text):
        return int(text, 8)
    return int(text, 0)


def test_wire_format_header_and_python_agree(tmp_path: Path) -> None:
    # socket_proto.h states the protocol and a few limits; socket_proto_gen.h, generated
    # from the ABI's Rust source, the rest. Python takes both from that source too.
    header = "".join(
        (INCLUDE / "vmrpc" / name).read_text() for name in ("socket_proto.h", "socket_proto_gen.h")
    )
    macros = re.findall(r"^#define (VMRPC_SOCK_\w+)\b", header, re.M)
    structs = re.findall(r"^struct (vmrpc_sock_\w+) \{", header, re.M)
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler to build the probe")
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <vmrpc/socket_proto.h>"]
    lines.append("int main(void) {")
    for name in macros:
        if name == "VMRPC_SOCK_MODULE_NAME":
            lines.append(f'printf("{name} %s\\n", {name});')
        else:
            lines.append(f'printf("{name} %lld\\n", (long long)({name}));')
    for name in structs:
        lines.append(f'printf("sizeof {name} %zu\\n", sizeof(struct {name}));')
    # Every field of every struct, at the offset the Python layouts were checked
    # against (vmrpc.abi.layout does that at import).
    offsets = {
        f"{name}.{field}": offset for name in structs for field, offset, *_ in abi.STRUCTS[name][1]
    }
    for key in offsets:
        name, field = key.split(".")
        lines.append(f'printf("offsetof {key} %zu\\n", offsetof(struct {name}, {field}));')
    lines.append("return 0; }")
    src = tmp_path / "probe.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "probe"
    subprocess.run([gcc, "-std=c11", f"-I{INCLUDE}", str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout

    seen = 0
    for line in out.splitlines():
        key, value = line.rsplit(" ", 1)
        if key.startswith("sizeof "):
            assert proto.SIZES[key.split()[1]] == int(value), key
        elif key.startswith("offsetof "):
            assert offsets[key.split()[1]] == int(value), key
        elif key == "VMRPC_SOCK_MODULE_NAME":
            assert value == proto.MODULE_NAME
        else:
            attr = key.removeprefix("VMRPC_SOCK_")
            assert hasattr(proto, attr), f"{key} has no Python mirror proto.{attr}"
            assert getattr(proto, attr) == int(value), key
        seen += 1
    assert seen == len(macros) + len(structs) + len(offsets)
    assert len(offsets) > len(structs)
    assert set(proto.SIZES) == set(structs)
    assert set(proto.FUNCTION_NAMES) == set(range(proto.FN_COUNT))
    assert proto.MAX_SEND + proto.WAIT_REQ.size == proto.PAYLOAD


_SOCKET_PREFIXES = ("AF_", "SOCK_", "SO_", "MSG_", "IPPROTO_", "SHUT_", "TCP_", "EAI_")


def test_guest_socket_constants_are_linux_values() -> None:
    # errno values moved to the SDK's <errno.h>; socket.h includes it.
    header = (INCLUDE / "vmrpc" / "socket.h").read_text()
    header += (INCLUDE / "libc" / "errno.h").read_text()
    defines = {
        name: _c_int(value)
        for name, value in re.findall(
            r"^#define (\w+) (\(?-?(?:0x)?[0-9a-fA-F]+\)?)$", header, re.M
        )
    }
    checked = 0
    for name, value in defines.items():
        if name.startswith("E") and not name.startswith("EAI_") and hasattr(errno, name):
            assert getattr(errno, name) == value, name
            checked += 1
        elif name.startswith("POLL") and hasattr(select, name):
            assert getattr(select, name) == value, name
            checked += 1
        elif name.startswith(_SOCKET_PREFIXES) and hasattr(socket, name):
            assert getattr(socket, name) == value, name
            checked += 1
    assert checked > 60
    assert defines["IPV6_V6ONLY"] == socket.IPV6_V6ONLY
    assert defines["AI_PASSIVE"] == socket.AI_PASSIVE
    assert defines["AI_NUMERICHOST"] == socket.AI_NUMERICHOST


@settings(max_examples=600, deadline=None)
@given(function=st.integers(min_value=0, max_value=40), payload=st.binary(max_size=200))
def test_parser_only_fails_with_its_own_error(function: int, payload: bytes) -> None:
    err = 1
    try:
        proto.parse(function, payload)
    except ProtoError as error:
        err = error.errno
    else:
        assert function < proto.FN_COUNT
    assert err > 0


@st.composite
def near_valid_requests(draw: st.DrawFn) -> tuple[int, bytes]:
    """Requests with a plausible fixed part (valid families, small handles) and a tail."""
    function = draw(st.integers(0, proto.FN_COUNT - 1))
    family = draw(st.sampled_from([proto.AF_INET, proto.AF_INET6, 0, 1, 0xFFFF]))
    ints = draw(st.lists(st.integers(0, 2**32 - 1), min_size=4, max_size=4))
    ints[0] = draw(st.integers(0, 4))
    raw = draw(st.binary(min_size=16, max_size=16))
    addr = proto.ADDR.pack(family, draw(st.integers(0, 0xFFFF)), 0, 0, raw)
    tail = draw(st.binary(max_size=64))
    head = struct.pack("<IIII", *ints)
    return function, draw(st.sampled_from([head + addr + tail, head + tail, head[:8] + addr]))


def _waits_without_end(function: int, payload: bytes, answer: object) -> bool:
    """Answers that legitimately never finish on their own: a POLL over no socket
    without a timeout sleeps (as poll(NULL, 0, -1) does), a GETADDRINFO would ask DNS."""
    if isinstance(answer, bytes):
        return False
    if function == proto.FN_GETADDRINFO:
        return True
    if function == proto.FN_POLL and len(payload) >= proto.POLL_REQ.size:
        ms, nfds = proto.POLL_REQ.unpack_from(payload)
        return nfds == 0 and ms != 0
    return False


# The fixed part of each function's request; an address, where there is one, ends it.
_REQUEST_STRUCTS = {
    proto.FN_SOCKET: proto.SOCKET_REQ,
    proto.FN_BIND: proto.LISTEN_REQ,
    proto.FN_LISTEN: proto.LISTEN_REQ,
    proto.FN_ACCEPT: proto.WAIT_REQ,
    proto.FN_CONNECT: proto.CONNECT_REQ,
    proto.FN_SHUTDOWN: proto.HANDLE_REQ,
    proto.FN_CLOSE: proto.HANDLE_REQ,
    proto.FN_SETSOCKOPT: proto.SOCKOPT_REQ,
    proto.FN_GETSOCKOPT: proto.SOCKOPT_REQ,
    proto.FN_GETSOCKNAME: proto.HANDLE_REQ,
    proto.FN_GETPEERNAME: proto.HANDLE_REQ,
    proto.FN_POLL: proto.POLL_REQ,
    proto.FN_GETADDRINFO: proto.GAI_REQ,
    proto.FN_SEND: proto.WAIT_REQ,
    proto.FN_RECV: proto.WAIT_REQ,
    proto.FN_SENDTO: proto.SENDTO_REQ,
    proto.FN_RECVFROM: proto.WAIT_REQ,
    proto.FN_SEND_BUF: proto.BUF_REQ,
    proto.FN_RECV_BUF: proto.BUF_REQ,
}
# Words near the validators' boundaries, so that both their Ok and Err branches run
# (uniform u32 values almost never pass a flags or length check).
_WORDS = st.one_of(
    st.integers(0, 4),
    st.sampled_from([0xFFFFFFFF, 0x7FFFFFFF, 10, 64, 65, 1024, 1025, 65536, 65537]),
    st.integers(0, 2**32 - 1),
)


@st.composite
def structured_requests(draw: st.DrawFn) -> tuple[int, bytes]:
    """Requests of exactly the right shape for their function, with boundary values:
    the fixed part, an address where one belongs, and a tail that agrees with the
    lengths it announces (POLL's array, SETSOCKOPT's value) or not."""
    function = draw(st.sampled_from(sorted(_REQUEST_STRUCTS)))
    fixed = _REQUEST_STRUCTS[function]
    has_addr = fixed.format.endswith(proto.ADDR.format[1:])
    words = (fixed.size - (proto.ADDR.size if has_addr else 0)) // 4
    values = [draw(_WORDS) for _ in range(words)]
    head = struct.pack(f"<{words}I", *values)
    if has_addr:
        family = draw(st.sampled_from([proto.AF_INET, proto.AF_INET6, 0, 7]))
        raw = draw(st.sampled_from([bytes(16), bytes([127, 0, 0, 1]) + bytes(12)]))
        head += proto.ADDR.pack(family, draw(st.integers(0, 0xFFFF)), 0, 0, raw)
    tail = draw(st.binary(max_size=32))
    if function == proto.FN_POLL and values[1] <= 4 and draw(st.booleans()):
        entries = [
            (draw(st.integers(0, 3)), draw(st.integers(-1, 0x7FFF)), 0) for _ in range(values[1])
        ]
        tail = b"".join(proto.POLLFD.pack(*e) for e in entries)
    if function == proto.FN_SETSOCKOPT and values[3] <= 64 and draw(st.booleans()):
        tail = draw(st.binary(min_size=values[3], max_size=values[3]))
    if function not in (proto.FN_SEND, proto.FN_SENDTO, proto.FN_POLL, proto.FN_SETSOCKOPT):
        tail = draw(st.sampled_from([b"", tail]))
    return function, head + tail


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=st.one_of(near_valid_requests(), structured_requests()))
def test_module_answers_garbage_with_errno(request: tuple[int, bytes]) -> None:
    """Every one of the 19 functions, on a table with one fresh socket (handle 1), gets
    near-valid garbage; the answer must be well formed and its errno a deliberate one
    (EIO is what an unexpected exception becomes)."""
    function, payload = request
    module = SocketOutsourcing(Policy([Rule(Deny())]))  # never creates a host socket
    module.rpc_socket(proto.SOCKET_REQ.pack(proto.AF_INET, proto.SOCK_STREAM, 0, 0))
    name = proto.FUNCTION_NAMES[function]
    answer = getattr(module, f"rpc_{name}")(payload)
    if _waits_without_end(function, payload, answer):
        answer.close()  # type: ignore[union-attr]
        return
    if not isinstance(answer, bytes):
        answer = run_on_loop(answer)
    size = proto.ADDR_RESP.size if function in proto.ADDR_ANSWER_FUNCTIONS else proto.RESP.size
    assert len(answer) >= size, name
    result, _ = proto.RESP.unpack_from(answer)
    if result < 0:
        assert -result in errno.errorcode, (name, result)
        assert -result != errno.EIO, (name, payload)
    assert module.stats["sockets_created"] == 0
    module.close()


def minimal_request(function: int, handle: int) -> bytes:
    """The smallest well-formed request of ``function`` on ``handle`` (IPv4)."""
    addr = proto.ADDR.pack(proto.AF_INET, 9, 0, 0, bytes([127, 0, 0, 1]) + bytes(12))
    wait = proto.WAIT_REQ.pack(handle, 0, 0, 16)
    special = {
        proto.FN_SOCKET: proto.SOCKET_REQ.pack(proto.AF_INET, proto.SOCK_STREAM, 0, 0),
        proto.FN_BIND: struct.pack("<IIII", proto.AF_INET, proto.SOCK_STREAM, 1, 0) + addr,
        proto.FN_POLL: proto.POLL_REQ.pack(0, 1) + proto.POLLFD.pack(handle, select.POLLIN, 0),
        proto.FN_GETADDRINFO: proto.GAI_REQ.pack(0, 0, 0, 9) + b"localhost",
        proto.FN_CONNECT: struct.pack("<IiII", handle, 0, 0, 0) + addr,
        proto.FN_SENDTO: struct.pack("<IIiI", handle, 0, 0, 0) + addr + b"x",
        proto.FN_SEND: proto.WAIT_REQ.pack(handle, 0, 0, 0) + b"x",
        proto.FN_SETSOCKOPT: proto.SOCKOPT_REQ.pack(
            handle, socket.SOL_SOCKET, socket.SO_KEEPALIVE, 4
        )
        + bytes(4),
        proto.FN_GETSOCKOPT: proto.SOCKOPT_REQ.pack(handle, socket.SOL_SOCKET, socket.SO_TYPE, 4),
        proto.FN_RECV: wait,
        proto.FN_RECVFROM: wait,
        proto.FN_ACCEPT: wait,
    }
    special[proto.FN_LISTEN] = special[proto.FN_BIND]
    if function in special:
        return special[function]
    fixed = _REQUEST_STRUCTS[function]  # a handle and zeros
    return fixed.pack(handle, *([0] * (len(fixed.format) - 2)))


@pytest.mark.parametrize("function", sorted(proto.FUNCTION_NAMES))
@pytest.mark.parametrize("state", ["no socket", "new stream", "new datagram", "closed"])
def test_each_function_in_each_early_state_answers_a_decoded_errno(
    function: int, state: str
) -> None:
    """Deterministic companion of the garbage test: every function, well formed, on a
    handle that does not exist, a fresh stream or datagram socket, a closed one."""
    module = SocketOutsourcing(Policy([Rule(Deny(errno.EACCES))]))
    kind = proto.SOCK_DGRAM if state == "new datagram" else proto.SOCK_STREAM
    module.rpc_socket(proto.SOCKET_REQ.pack(proto.AF_INET, kind, 0, 0))
    if state == "closed":
        module.rpc_close(proto.HANDLE_REQ.pack(1, 0))
    handle = 7 if state == "no socket" else 1
    name = proto.FUNCTION_NAMES[function]
    answer = getattr(module, f"rpc_{name}")(minimal_request(function, handle))
    if not isinstance(answer, bytes):
        answer = run_on_loop(answer)
    size = proto.ADDR_RESP.size if function in proto.ADDR_ANSWER_FUNCTIONS else proto.RESP.size
    assert len(answer) >= size, name
    result, _ = proto.RESP.unpack_from(answer)
    assert result >= 0 or (-result in errno.errorcode and -result != errno.EIO), (name, result)
    if state in ("no socket", "closed") and function in _HANDLE_FUNCTIONS:
        assert result == -errno.EBADF, (name, result)
    assert module.stats["sockets_created"] == 0
    module.close()


_HANDLE_FUNCTIONS = {
    proto.FN_ACCEPT,
    proto.FN_CONNECT,
    proto.FN_SHUTDOWN,
    proto.FN_CLOSE,
    proto.FN_SETSOCKOPT,
    proto.FN_GETSOCKOPT,
    proto.FN_GETSOCKNAME,
    proto.FN_GETPEERNAME,
    proto.FN_SEND,
    proto.FN_RECV,
    proto.FN_SENDTO,
    proto.FN_RECVFROM,
}


def test_every_socket_function_is_reachable_by_name() -> None:
    module = SocketOutsourcing()
    assert len(proto.FUNCTION_NAMES) == proto.FN_COUNT == 19
    for function, name in proto.FUNCTION_NAMES.items():
        assert callable(getattr(module, f"rpc_{name}")), (function, name)


def test_a_new_sockets_connect_carries_only_vetted_options() -> None:
    """CONNECT of a new socket (handle 0) sets the allow-listed options it carries
    before connecting, ignores others (as a replayed setsockopt was refused), and
    rejects malformed option lists; a refused connect leaves no socket behind."""
    loopback = bytes([127, 0, 0, 1]) + bytes(12)
    addr = proto.ADDR.pack(proto.AF_INET, 9, 0, 0, loopback)

    def connect(options: bytes, handle: int = 0, type_: int = proto.SOCK_STREAM) -> int:
        head = proto.CONNECT_REQ.pack(handle, 0, type_, 0, *proto.ADDR.unpack(addr))
        answer = module.rpc_connect(head + options)
        assert isinstance(answer, bytes)
        result: int = proto.RESP.unpack_from(answer)[0]
        return result

    def option(level: int, name: int, value: bytes, length: int | None = None) -> bytes:
        size = len(value) if length is None else length
        return proto.SOCKOPT_REQ.pack(0, level, name, size) + value

    module = SocketOutsourcing(Policy([Rule(Deny(errno.EACCES))]), max_sockets=1)
    keepalive = option(socket.SOL_SOCKET, socket.SO_KEEPALIVE, (1).to_bytes(4, "little"))
    unknown = option(socket.SOL_SOCKET, socket.SO_PRIORITY, (1).to_bytes(4, "little"))
    assert connect(keepalive + unknown) == -errno.EACCES  # well formed: the policy decides
    assert connect(keepalive[:-1]) == -errno.EINVAL  # value shorter than its length
    assert connect(keepalive * (proto.MAX_CONNECT_OPTS + 1)) == -errno.EINVAL
    assert connect(keepalive, handle=1) == -errno.EINVAL  # options are for a new socket
    assert connect(b"", type_=7) == -errno.ESOCKTNOSUPPORT
    assert connect(keepalive) == -errno.EACCES  # not EMFILE: the denied socket was dropped
    assert module.stats["sockets_created"] == 0
    assert module.stats["sockets_open"] == 0
    module.close()

    listener = socket.create_server(("127.0.0.1", 0))
    addr = proto.ADDR.pack(proto.AF_INET, listener.getsockname()[1], 0, 0, loopback)
    module = SocketOutsourcing()
    try:
        handle = connect(keepalive + unknown)
        assert handle == 0  # connected at once (loopback); the answer's aux names it
        get = proto.SOCKOPT_REQ.pack(1, socket.SOL_SOCKET, socket.SO_KEEPALIVE, 4)
        assert module.rpc_getsockopt(get)[proto.RESP.size :] == (1).to_bytes(4, "little")  # type: ignore[index]
        assert module.stats["sockets_created"] == 1
    finally:
        module.close()
        listener.close()


def test_async_answer_from_a_sync_function_is_supported() -> None:
    """The module relies on the RPC engine awaiting a coroutine a plain function returns."""
    module = SocketOutsourcing()
    answer = module.rpc_getaddrinfo(proto.GAI_REQ.pack(proto.AF_INET, 0, 0, 9) + b"localhost")
    assert not isinstance(answer, bytes)
    resolved = run_on_loop(answer)
    count, _ = proto.RESP.unpack_from(resolved)
    assert count >= 1
    family, *_ = proto.ADDR.unpack_from(resolved, proto.RESP.size)
    assert family == proto.AF_INET


# ---- policy (no KVM) -------------------------------------------------------------------


def test_policy_first_match_wins_and_defaults() -> None:
    policy = Policy(
        [
            Rule(Deny(errno.EACCES), dest="10.0.0.0/8"),
            Rule(TLS(cafile="/nonexistent"), dest="*.example.test", port=443),
            Rule(Allow(), protocol="udp", port=(5000, 5010)),
            Rule(Deny(), protocol="udp"),
            Rule(Expose(port=0), port=range(8000, 8100)),
        ]
    )
    out = "outbound"
    assert policy.decide(Flow(out, "tcp", "10.1.2.3", 80))[0] == 0
    names = frozenset({"www.example.test"})
    assert policy.decide(Flow(out, "tcp", "192.0.2.1", 443, names))[0] == 1
    assert policy.decide(Flow(out, "tcp", "192.0.2.1", 444, names)) == (None, Allow())
    assert policy.decide(Flow(out, "udp", "127.0.0.1", 5005))[0] == 2
    assert policy.decide(Flow(out, "udp", "127.0.0.1", 53))[0] == 3
    assert policy.decide(Flow("inbound", "tcp", "127.0.0.1", 8080))[0] == 4
    assert policy.decide(Flow("inbound", "tcp", "127.0.0.1", 9000)) == (None, None)
    # Expose rules never match outbound flows, TLS rules never inbound ones.
    assert policy.decide(Flow(out, "tcp", "127.0.0.1", 8080)) == (None, Allow())
    assert policy.decide(Flow(out, "tcp", "::1", 80)) == (None, Allow())


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="outbound"):
        Rule(TLS(), direction="inbound")
    with pytest.raises(ValueError, match="inbound"):
        Rule(Expose(), direction="outbound")
    with pytest.raises(ValueError, match="socks5"):
        Proxy("http://127.0.0.1:8080")
    with pytest.raises(ValueError, match="port"):
        Rule(Allow(), port=70000)
    with pytest.raises(TypeError):
        Rule("allow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="errno"):
        Deny(0)


# ---- guests against real peers (KVM) ---------------------------------------------------

pytest_kvm = pytest.mark.kvm


@pytest_kvm
def test_http_get_from_a_host_http_server(
    vm_factory: VmFactory, http_server: tuple[int, list[str]]
) -> None:
    port, paths = http_server
    module = SocketOutsourcing()
    vm = vm_factory("http_get", args=["localhost", str(port), "/index.html"], modules=[module])
    assert vm.run() == 0, vm.console
    assert "status: HTTP/1.1 200 OK" in vm.console
    assert "body_bytes=2112" in vm.console
    assert paths == ["/index.html"]
    stats = module.stats
    assert stats["rpc.getaddrinfo"] == 1  # "localhost" was resolved by the host
    assert stats["sockets_created"] == 1
    assert stats["sockets_open"] == 0  # the guest closed it
    [record] = [r for r in module.audit if r.event == "connect"]
    assert "(localhost)" in record.flow
    assert record.action == "Allow"
    assert record.rule is None


@pytest_kvm
def test_guest_echo_server_reached_through_expose(vm_factory: VmFactory) -> None:
    module = SocketOutsourcing(Policy([Rule(Expose(host="127.0.0.1", port=0), port=7007)]))
    vm = vm_factory("echo_server", args=["7007", "2"], modules=[module])
    vm.start()
    host, port = module.wait_exposed(7007)
    for i in range(2):
        with socket.create_connection((host, port), timeout=10) as client:
            message = f"hello guest {i} ".encode() * 1000
            client.sendall(message)
            client.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := client.recv(65536):
                got += chunk
            assert got == message
    assert vm.wait() == 0, vm.console
    assert "connection 1 echoed bytes=14000" in vm.console
    [record] = [r for r in module.audit if r.event == "listen"]
    assert record.action == "Expose"
    assert f"{host}:{port}" in record.detail


@pytest_kvm
def test_guest_listener_is_not_exposed_by_default(vm_factory: VmFactory) -> None:
    module = SocketOutsourcing()
    vm = vm_factory("echo_server", args=["7008", "1"], modules=[module])
    vm.start()
    deadline = time.monotonic() + 10
    while not module.audit and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [r.action for r in module.audit] == ["stay-in-guest"]
    assert module.exposed == {}
    assert module.stats["sockets_created"] == 0
    vm.kill()


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    other_ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    other_name_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.test").configure_cert(other_name_ctx)  # right CA, wrong name
    directory = tmp_path_factory.mktemp("tls")
    ca_file = directory / "ca.pem"
    other_file = directory / "other-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    other_ca.cert_pem.write_to_path(str(other_file))
    return {
        "server": server_ctx,
        "other_name_server": other_name_ctx,
        "ca": str(ca_file),
        "wrong_ca": str(other_file),
    }


@contextmanager
def tls_echo(tls_material: dict[str, Any]) -> Iterator[tuple[TcpServer, SocketOutsourcing]]:
    """A TLS echo server, and a sockets module whose policy forces TLS to it."""
    server = TcpServer(echo, wrap=tls_material["server"])
    try:
        rule = Rule(TLS(server_hostname="localhost", cafile=tls_material["ca"]), port=server.port)
        yield server, SocketOutsourcing(Policy([rule]))
    finally:
        server.close()


@pytest_kvm
def test_forced_tls_server_sees_tls_guest_speaks_plaintext(
    vm_factory: VmFactory, tls_material: dict[str, Any]
) -> None:
    with tls_echo(tls_material) as (server, module):
        vm = vm_factory(
            "tcp_echo_client", args=["127.0.0.1", str(server.port), "5000", "3"], modules=[module]
        )
        assert vm.run() == 0, vm.console
        assert "tcp_echo_client ok bytes=15000" in vm.console
        assert server.tls_versions
        assert server.tls_versions[0] in ("TLSv1.2", "TLSv1.3")
        assert [r.event for r in module.audit] == ["connect", "tls-established"]


@pytest_kvm
def test_forced_tls_with_wrong_ca_fails_with_errno_never_plaintext(
    vm_factory: VmFactory, tls_material: dict[str, Any]
) -> None:
    plaintext: list[bytes] = []

    def record(conn: socket.socket) -> None:
        plaintext.append(conn.recv(65536))

    server = TcpServer(record, wrap=tls_material["server"])
    try:
        rule = Rule(TLS(server_hostname="localhost", cafile=tls_material["wrong_ca"]))
        module = SocketOutsourcing(Policy([rule]))
        vm = vm_factory("tcp_echo_client", args=["127.0.0.1", str(server.port)], modules=[module])
        assert vm.run() == 2, vm.console
        assert "connect failed" in vm.console
        assert guest_errno(vm.console) == TLS_ERRNO == errno.EPROTO
        failed = [r for r in module.audit if r.event == "tls-failed"]
        assert failed
        assert failed[0].errno == TLS_ERRNO
        assert "certificate" in failed[0].detail.lower()
        deadline = time.monotonic() + 5
        while not server.errors and time.monotonic() < deadline:
            time.sleep(0.01)
        # The handler runs only after a server-side handshake, so this cannot see
        # plaintext; tests/test_socket_tls.py checks the bytes on the wire.
        assert plaintext == []
        assert server.errors  # the server saw a failed TLS handshake
        assert module.stats["sockets_open"] == 0
    finally:
        server.close()


@pytest_kvm
def test_deny_reaches_the_guest_as_its_errno(vm_factory: VmFactory, echo_server: TcpServer) -> None:
    module = SocketOutsourcing(
        Policy([Rule(Deny(errno.EACCES), dest="127.0.0.0/8", port=echo_server.port)])
    )
    vm = vm_factory("tcp_echo_client", args=["127.0.0.1", str(echo_server.port)], modules=[module])
    assert vm.run() == 2
    assert guest_errno(vm.console) == errno.EACCES
    assert echo_server.accepted == 0
    assert module.stats["sockets_created"] == 0  # denied before any host socket existed
    [record] = module.audit
    assert (record.action, record.rule, record.errno) == ("Deny", 0, errno.EACCES)


@pytest_kvm
def test_connect_to_a_closed_port_is_econnrefused(vm_factory: VmFactory) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        vm = vm_factory(
            "tcp_echo_client", args=["127.0.0.1", str(port)], modules=[SocketOutsourcing()]
        )
        assert vm.run() == 2
    assert "connect failed" in vm.console
    assert guest_errno(vm.console) == errno.ECONNREFUSED


@pytest_kvm
def test_peer_reset_is_econnreset(vm_factory: VmFactory) -> None:
    def reset(conn: socket.socket) -> None:
        conn.recv(1)
        time.sleep(0.1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    server = TcpServer(reset)
    try:
        vm = vm_factory(
            "tcp_echo_client",
            args=["127.0.0.1", str(server.port), "100"],
            modules=[SocketOutsourcing()],
        )
        assert vm.run() == 2
        assert "recv failed" in vm.console
        assert guest_errno(vm.console) == errno.ECONNRESET
    finally:
        server.close()


@pytest.fixture
def socks_proxy() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    yield from run_pproxy()


def run_pproxy(login: str = "") -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A real SOCKS5 server (pproxy) on 127.0.0.1; ``login`` ("user:password") makes it
    require RFC 1929 authentication."""
    pytest.importorskip("pproxy")
    login = f"#{login}" if login else ""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pproxy", "-l", f"socks5://127.0.0.1:{port}" + login],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("pproxy did not start")
            time.sleep(0.05)
    yield port, proc
    proc.kill()
    proc.wait(10)


@pytest_kvm
def test_socks5_route_through_a_real_proxy(
    vm_factory: VmFactory, echo_server: TcpServer, socks_proxy: tuple[int, subprocess.Popen[bytes]]
) -> None:
    proxy_port, proc = socks_proxy
    policy = Policy([Rule(Proxy(f"socks5://127.0.0.1:{proxy_port}"), port=echo_server.port)])
    module = SocketOutsourcing(policy)
    args = ["127.0.0.1", str(echo_server.port), "3000", "2"]
    vm = vm_factory("tcp_echo_client", args=args, modules=[module])
    assert vm.run() == 0, vm.console
    assert "tcp_echo_client ok bytes=6000" in vm.console
    assert echo_server.accepted == 1
    assert [r.action for r in module.audit] == ["Proxy"]
    # The route really is the proxy: without it the same connect fails.
    proc.kill()
    proc.wait(10)
    vm = vm_factory("tcp_echo_client", args=args, modules=[SocketOutsourcing(policy)])
    assert vm.run() == 2
    assert guest_errno(vm.console) == errno.ECONNREFUSED
    assert echo_server.accepted == 1


@pytest_kvm
@pytest.mark.parametrize("vcpus", [1, 2])
def test_in_guest_loopback_uses_no_host_socket(vm_factory: VmFactory, vcpus: int) -> None:
    module = SocketOutsourcing()
    vm = vm_factory("loopback_pair", args=[str(1 << 20)], vcpus=vcpus, modules=[module])
    assert vm.run() == 0, vm.console
    assert f"loopback_pair ok bytes={1 << 20} udp_bytes=26" in vm.console
    assert "local_connects=1 host_connects=0" in vm.console
    stats = module.stats
    assert stats["sockets_created"] == 0
    # Only the two control calls (listen, UDP bind) reached the host: none per byte.
    assert stats["rpcs"] == 2
    assert stats["rpc.listen"] == stats["rpc.bind"] == 1
    assert "host_rpcs=2" in vm.console


@pytest_kvm
def test_in_guest_loopback_without_any_host_module(vm_factory: VmFactory) -> None:
    vm = vm_factory("loopback_pair", args=["65536"], vcpus=2)
    assert vm.run() == 0, vm.console
    assert "loopback_pair ok bytes=65536" in vm.console


@pytest.fixture
def udp_echo_server() -> Iterator[tuple[int, list[int]]]:
    with udp_echo("127.0.0.1") as server:
        yield server


@contextmanager
def udp_echo(host: str) -> Iterator[tuple[int, list[int]]]:
    """A UDP echo server on ``host``: its port, and the sizes of what it echoed."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sizes: list[int] = []

    def serve() -> None:
        while True:
            try:
                data, peer = sock.recvfrom(65536)
            except OSError:
                return
            sizes.append(len(data))
            sock.sendto(data, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], sizes
    finally:
        sock.close()
        thread.join(5)


@pytest_kvm
def test_udp_round_trip(vm_factory: VmFactory, udp_echo_server: tuple[int, list[int]]) -> None:
    port, sizes = udp_echo_server
    module = SocketOutsourcing()
    vm = vm_factory("udp_echo", args=["127.0.0.1", str(port), "20", "1200"], modules=[module])
    assert vm.run() == 0, vm.console
    assert "udp_echo ok datagrams=20 bytes=24000" in vm.console
    assert sizes == [1200] * 20
    assert module.stats["sockets_created"] == 1
    assert [r.event for r in module.audit] == ["sendto"]  # one decision per destination


@pytest_kvm
def test_udp_deny(vm_factory: VmFactory, udp_echo_server: tuple[int, list[int]]) -> None:
    port, sizes = udp_echo_server
    module = SocketOutsourcing(Policy([Rule(Deny(errno.EPERM), protocol="udp")]))
    vm = vm_factory("udp_echo", args=["127.0.0.1", str(port)], modules=[module])
    assert vm.run() == 2
    assert guest_errno(vm.console) == errno.EPERM
    assert sizes == []


@pytest_kvm
def test_ipv6_round_trip(vm_factory: VmFactory) -> None:
    reason = ipv6_unavailable()
    if reason:
        pytest.skip(reason)
    server = TcpServer(echo, host="::1")
    try:
        module = SocketOutsourcing()
        vm = vm_factory(
            "tcp_echo_client", args=["::1", str(server.port), "20000"], modules=[module]
        )
        assert vm.run() == 0, vm.console
        assert "tcp_echo_client ok bytes=20000" in vm.console
        assert "[::1]" in module.audit[0].flow
    finally:
        server.close()
    vm = vm_factory("loopback_pair", args=["100000", "6"], vcpus=2, modules=[SocketOutsourcing()])
    assert vm.run() == 0, vm.console
    assert "host_connects=0" in vm.console


@pytest_kvm
def test_200_concurrent_guest_connections(vm_factory: VmFactory, echo_server: TcpServer) -> None:
    module = SocketOutsourcing()
    vm = vm_factory(
        "many_conns", args=["127.0.0.1", str(echo_server.port), "200", "300"], modules=[module]
    )
    assert vm.run(timeout=60) == 0, vm.console
    assert "many_conns ok conns=200 bytes=60000" in vm.console
    assert echo_server.accepted == 200
    stats = module.stats
    assert stats["sockets_created"] == 200
    assert stats["sockets_open"] == 0
    assert stats["rpc.poll"] >= 1


@pytest_kvm
def test_killed_guest_leaks_no_host_fds_and_does_not_stall_others(
    vm_factory: VmFactory, http_server: tuple[int, list[str]]
) -> None:
    silent_conns: list[socket.socket] = []
    _runtime.loop()  # the shared asyncio loop (and its file descriptors) exists once per process
    before = open_fds()

    def silent(conn: socket.socket) -> None:
        silent_conns.append(conn)
        while conn.recv(65536):
            pass

    server = TcpServer(silent)
    module = SocketOutsourcing()
    blocked = vm_factory("many_conns", args=["127.0.0.1", str(server.port), "40"], modules=[module])
    blocked.start()
    deadline = time.monotonic() + 20
    while server.accepted < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.accepted == 40, blocked.console
    # The guest's poll over its 40 sockets waits on the host (its answer is pending):
    # a real state to wait for, where a sleep would only make it likely.
    while module.stats.get("waits.poll", 0) == 0:
        assert time.monotonic() < deadline, blocked.console
        time.sleep(0.001)
    assert module.stats["sockets_open"] == 40

    # A blocked guest socket holds up neither other VMs nor the asyncio loop.
    port, _ = http_server
    other = vm_factory(
        "http_get", args=["127.0.0.1", str(port), "/"], modules=[SocketOutsourcing()]
    )
    assert other.run() == 0, other.console

    blocked.kill()
    blocked.close()
    other.close()
    assert module.stats["sockets_open"] == 0
    server.close()
    for conn in silent_conns:
        conn.close()
    deadline = time.monotonic() + 5
    while open_fds() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_fds() <= before


@pytest_kvm
def test_bulk_data_takes_the_native_zero_copy_path(
    vm_factory: VmFactory, echo_server: TcpServer
) -> None:
    """Plain TCP data moves between guest buffers and the host socket in Rust (SEND_BUF /
    RECV_BUF on the engine thread; 32 KiB and more through the socket I/O exit on the
    vCPU's thread), byte-exact, with Python handling only the control plane."""
    module = SocketOutsourcing()
    vm = vm_factory(
        "tcp_echo_client",
        args=["127.0.0.1", str(echo_server.port), "200000", "5"],
        modules=[module],
    )
    assert vm.run() == 0, vm.console
    assert "tcp_echo_client ok bytes=1000000" in vm.console
    stats = module.stats
    assert vm.stats["sockio_calls"] > 0  # the 200000-byte sends
    assert stats["native_recvs"] > 0
    assert stats["rpc.send"] == stats["native_sends"], "no send went through Python"
    assert stats["bytes_sent"] == 1_000_000
    assert stats["bytes_received"] == 1_000_000
    assert module.native_data_plane.stats["attached"] == 0  # detached on close


@pytest_kvm
def test_tls_sockets_never_take_the_native_path(
    vm_factory: VmFactory, tls_material: dict[str, Any]
) -> None:
    with tls_echo(tls_material) as (server, module):
        vm = vm_factory(
            "tcp_echo_client", args=["127.0.0.1", str(server.port), "70000", "2"], modules=[module]
        )
        assert vm.run() == 0, vm.console
        assert "tcp_echo_client ok bytes=140000" in vm.console
        # The data plane never served it (the guest's zero-copy attempt was told
        # "not for this socket"): every byte went through Python's TLS object.
        stats = module.stats
        assert (stats["native_sends"], stats["native_recvs"]) == (0, 0)
        assert stats["bytes_sent"] == stats["bytes_received"] == 140_000
