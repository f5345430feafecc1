"""The guest ABI for Python: constants, struct layouts and the version encoding,
all taken from the ABI's single source, the Rust crate ``guest-kmod-bindings``
(the extension exports its table: `vmrpc._vmm.abi_table`). Python restates no
number of the ABI.

`layout` builds a little-endian `struct.Struct` for an ABI structure from the
field names the Python code unpacks, in the order it unpacks them, and checks
them against the table: every field, in offset order, each at its offset with its
size and type. Code that unpacks positionally thus fails at import, never
misreads, when the ABI reorders, resizes or retypes a field.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Final, TypeAlias

from vmrpc import _vmm

__all__ = ["AbiMismatch", "constant", "layout", "text", "version", "version_parts"]

#: (field, offset, size, element type, count), as `_vmm.abi_table` gives them.
FieldRow: TypeAlias = tuple[str, int, int, str, int]
Structs: TypeAlias = Mapping[str, tuple[int, Sequence[FieldRow]]]

_TABLE: Final = _vmm.abi_table()
#: Every constant of the ABI by its C name: an int, or a str (the module name).
CONSTANTS: Final[Mapping[str, int | str]] = _TABLE[0]
#: Every structure by its C name: ``(size, [(field, offset, size, element type, count)])``.
STRUCTS: Final[Structs] = _TABLE[1]

# struct format characters of the scalar element types.
_SCALARS: Final = {
    "u8": "B",
    "u16": "H",
    "i16": "h",
    "u32": "I",
    "i32": "i",
    "u64": "Q",
    "i64": "q",
}

# The formats `layout` built, by struct name: a struct nested in another is
# unpacked in the field order its own layout declared.
_BUILT: dict[str, str] = {}


class AbiMismatch(Exception):
    """Python's view of an ABI structure disagrees with the ABI's source."""


def constant(name: str) -> int:
    """The integer constant ``name`` (its C name, e.g. ``VMRPC_MAX_PAYLOAD``)."""
    value = CONSTANTS[name]
    if not isinstance(value, int):
        raise TypeError(f"{name} is not an integer constant")
    return value


def text(name: str) -> str:
    """The string constant ``name``."""
    value = CONSTANTS[name]
    if not isinstance(value, str):
        raise TypeError(f"{name} is not a string constant")
    return value


def layout(name: str, *fields: str, structs: Structs | None = None) -> struct.Struct:
    """``struct <name>`` as a `struct.Struct` whose values are ``fields`` in order.

    ``fields`` must be all the struct's fields (padding included), in offset order;
    a field that is itself a struct contributes the values of that struct's own
    `layout`, built before. Raises `AbiMismatch` otherwise. ``structs`` replaces
    the ABI's table (for tests).
    """
    table = STRUCTS if structs is None else structs
    if name not in table:
        raise AbiMismatch(f"struct {name} is not in the ABI")
    size, rows = table[name]
    by_name = {row[0]: row for row in rows}
    fmt, at = "", 0
    for field in fields:
        if field not in by_name:
            raise AbiMismatch(f"{name}.{field} is not in the ABI")
        _, offset, field_size, elem, count = by_name[field]
        if offset != at:
            raise AbiMismatch(
                f"{name}.{field} is at offset {offset}, expected {at}: the fields are not "
                "declared in the ABI's order"
            )
        part = _field_format(name, field, elem, count)
        if struct.calcsize("<" + part) != field_size:
            raise AbiMismatch(f"{name}.{field}: {field_size} bytes in the ABI, format {part!r}")
        fmt += part
        at += field_size
    if at != size or len(fields) != len(rows):
        raise AbiMismatch(f"{name}: {len(fields)} fields declared, the ABI has {len(rows)}")
    if structs is None:
        _BUILT[name] = fmt
    return struct.Struct("<" + fmt)


def _field_format(owner: str, field: str, elem: str, count: int) -> str:
    if elem in _SCALARS:
        if count == 1:
            return _SCALARS[elem]
        return f"{count}s" if elem == "u8" else f"{count}{_SCALARS[elem]}"
    if count != 1 or elem not in _BUILT:
        raise AbiMismatch(f"{owner}.{field}: struct {elem} needs its own layout first")
    return _BUILT[elem]


def version(major: int, minor: int = 0) -> int:
    """A module version as the ABI encodes it (``VMRPC_VERSION(major, minor)``)."""
    for part in (major, minor):
        if not isinstance(part, int) or not 0 <= part <= _VERSION_PART_MAX:
            raise ValueError(f"version parts must be ints in 0..65535, got {(major, minor)!r}")
    return (major << _VERSION_SHIFT) | minor


def version_parts(encoded: int) -> tuple[int, int]:
    """``(major, minor)`` of an encoded version: the inverse of `version`."""
    return encoded >> _VERSION_SHIFT, encoded & _VERSION_PART_MAX


# The encoding of versions, (major << 16) | minor: the C macro VMRPC_VERSION and
# the Rust vmrpc_version, the one place Python states it.
_VERSION_SHIFT: Final = 16
_VERSION_PART_MAX: Final = (1 << _VERSION_SHIFT) - 1
