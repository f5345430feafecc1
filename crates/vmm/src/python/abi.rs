//! `_vmm.abi_table()`: the guest ABI's constants and struct layouts, from the
//! single Rust source (guest-kmod-bindings), for `vmrpc.abi` to build its
//! constants and `struct` formats from; Python restates none of them.

use guest_kmod_bindings::table::{Value, CONSTANTS, STRUCTS};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// One field: (name, offset, size, element type, count).
type FieldRow = (&'static str, usize, usize, &'static str, usize);

/// `(constants, structs)`: `{name: int | str}` and
/// `{struct name: (size, [(field, offset, size, element type, count), ...])}`,
/// fields in declaration order; an element type is `u8` .. `i64` or a struct name.
#[pyfunction]
pub(super) fn abi_table(py: Python<'_>) -> PyResult<(Bound<'_, PyDict>, Bound<'_, PyDict>)> {
    let constants = PyDict::new(py);
    for c in CONSTANTS {
        match c.value {
            Value::Int(v) => constants.set_item(c.name, v)?,
            Value::Str(s) => constants.set_item(c.name, s)?,
        }
    }
    let structs = PyDict::new(py);
    for s in STRUCTS {
        let fields: Vec<FieldRow> = s
            .fields
            .iter()
            .map(|f| (f.name, f.offset, f.size, f.ty, f.count))
            .collect();
        structs.set_item(s.name, (s.size, fields))?;
    }
    Ok((constants, structs))
}
