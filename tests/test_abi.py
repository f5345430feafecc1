"""vmrpc.abi: Python's constants and struct layouts come from the ABI's single source
(crates/guest-kmod-bindings, exported by the extension), and a layout that disagrees
with it fails at import instead of misreading guest bytes. No KVM needed."""

from __future__ import annotations

import pytest

from vmrpc import abi
from vmrpc.hostmodule import encode_version
from vmrpc.sockets import proto


def _with_fields_swapped(name: str, a: str, b: str) -> abi.Structs:
    """The ABI's table with the offsets of two fields of ``name`` exchanged."""
    size, rows = abi.STRUCTS[name]
    offset = {row[0]: row[1] for row in rows}
    swapped = [
        (f, offset[b] if f == a else offset[a] if f == b else off, sz, ty, n)
        for f, off, sz, ty, n in rows
    ]
    return {**abi.STRUCTS, name: (size, swapped)}


def test_layout_matches_the_abi_table() -> None:
    wait = abi.layout("vmrpc_sock_wait_req", "handle", "flags", "timeout_ms", "arg")
    assert wait.format == proto.WAIT_REQ.format == "<IIiI"
    assert wait.unpack(wait.pack(1, 2, -3, 4)) == (1, 2, -3, 4)
    # A nested struct contributes its own layout's fields, and each size is the ABI's.
    assert proto.ADDR_RESP.format == "<iIHHII16s"
    for name, (size, _) in abi.STRUCTS.items():
        if name.startswith("vmrpc_sock_"):
            assert proto.SIZES[name] == size, name


def test_layout_catches_two_same_size_fields_swapped() -> None:
    # handle and flags are both u32 at 0 and 4: sizes alone cannot tell them apart.
    table = _with_fields_swapped("vmrpc_sock_wait_req", "handle", "flags")
    with pytest.raises(abi.AbiMismatch, match=r"vmrpc_sock_wait_req\.handle is at offset 4"):
        abi.layout("vmrpc_sock_wait_req", "handle", "flags", "timeout_ms", "arg", structs=table)
    # The same swap in a struct with a nested one, and in the guest-memory buffer request.
    table = _with_fields_swapped("vmrpc_sock_buf_req", "handle", "len")
    with pytest.raises(abi.AbiMismatch):
        abi.layout("vmrpc_sock_buf_req", "handle", "len", "gpa", structs=table)


def test_layout_catches_python_declaring_the_wrong_order_or_fields() -> None:
    with pytest.raises(abi.AbiMismatch, match="offset"):
        abi.layout("vmrpc_sock_wait_req", "flags", "handle", "timeout_ms", "arg")
    with pytest.raises(abi.AbiMismatch, match="4 fields declared, the ABI has 5"):
        abi.layout("vmrpc_sock_addr", "family", "port", "flowinfo", "scope_id")
    with pytest.raises(abi.AbiMismatch, match="not in the ABI"):
        abi.layout("vmrpc_sock_resp", "result", "extra")
    with pytest.raises(abi.AbiMismatch, match="not in the ABI"):
        abi.layout("vmrpc_no_such_struct")


def test_layout_catches_a_field_whose_size_changed() -> None:
    size, rows = abi.STRUCTS["vmrpc_sock_resp"]
    grown = {
        **abi.STRUCTS,
        "vmrpc_sock_resp": (size, [(rows[0][0], 0, 8, "u32", 1), rows[1]]),
    }
    with pytest.raises(abi.AbiMismatch, match="8 bytes in the ABI"):
        abi.layout("vmrpc_sock_resp", "result", "aux", structs=grown)


def test_constants_and_limits_come_from_the_abi() -> None:
    assert abi.constant("VMRPC_MAX_PAYLOAD") == proto.PAYLOAD
    assert proto.PAYLOAD - proto.RESP.size == proto.MAX_RECV
    assert proto.PAYLOAD - proto.ADDR_RESP.size == proto.MAX_RECVFROM
    assert proto.PAYLOAD - proto.SENDTO_REQ.size == proto.MAX_SENDTO
    assert proto.MODULE_NAME == abi.text("VMRPC_SOCK_MODULE_NAME") == "sockets"
    with pytest.raises(TypeError):
        abi.constant("VMRPC_SOCK_MODULE_NAME")
    with pytest.raises(KeyError):
        abi.constant("VMRPC_NO_SUCH_CONSTANT")


def test_one_version_encoding() -> None:
    assert abi.version_parts(abi.version(3, 7)) == (3, 7)
    assert abi.version_parts(abi.version(0xFFFF, 0xFFFF)) == (0xFFFF, 0xFFFF)
    assert abi.version(1, 2) > abi.version(1, 1) > abi.version(0, 0xFFFF)
    assert encode_version((3, 7)) == abi.version(3, 7)
    assert encode_version(5) == abi.version(5, 0)
    for bad in [(-1, 0), (0, 0x10000), (1.0, 0)]:
        with pytest.raises(ValueError, match="version parts"):
            abi.version(*bad)  # type: ignore[arg-type]
