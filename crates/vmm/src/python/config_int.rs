//! Integer settings of `Vm(...)` taken from Python objects.
//!
//! PyO3 would convert `vcpus=-1` with an `OverflowError` and take
//! `memory_mib=True` as 1. A setting out of range is a configuration error
//! like any other, and a bool is not a number of vCPUs, so both become
//! `ConfigError`; a value of another type stays a `TypeError`.

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::PyBool;

use super::errors::ConfigError;

/// `value` as a `T`, `default` if not given; `expected` describes the valid
/// range for the message.
pub(crate) fn config_int<T: TryFrom<i64>>(
    name: &str,
    value: Option<&Bound<'_, PyAny>>,
    default: T,
    expected: &str,
) -> PyResult<T> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(default);
    };
    let out_of_range = || ConfigError::new_err(format!("{name} must be {expected}, got {value}"));
    if value.is_instance_of::<PyBool>() {
        return Err(ConfigError::new_err(format!(
            "{name} must be an int, not bool ({value})"
        )));
    }
    let wide: i64 = value.extract().map_err(|e: PyErr| {
        if e.is_instance_of::<PyOverflowError>(value.py()) {
            out_of_range()
        } else {
            e
        }
    })?;
    T::try_from(wide).map_err(|_| out_of_range())
}
