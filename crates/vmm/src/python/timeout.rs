//! Timeouts given from Python, in seconds, as Rust durations and deadlines.
//!
//! One rule for every call that takes a timeout: `None`, infinity and any
//! value too large for a `Duration` or an `Instant` (1e300 s outlives the
//! machine) mean "no timeout"; NaN and negative values are a `ValueError`.
//! `Duration::from_secs_f64` and `Instant + Duration` panic on the large
//! ones, and a panic must never reach Python, so nothing else converts.

use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::PyResult;

/// The timeout as a duration; `None` means wait forever.
pub(crate) fn duration(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => Err(PyValueError::new_err(format!(
            "timeout must be >= 0 (or None / inf for no timeout), got {t}"
        ))),
        // Infinity and values past Duration::MAX: no timeout.
        Some(t) => Ok(Duration::try_from_secs_f64(t).ok()),
    }
}

/// The timeout as a deadline from now; `None` means wait forever.
pub(crate) fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    Ok(duration(timeout)?.and_then(|d| Instant::now().checked_add(d)))
}

/// How often a blocked wait wakes to let Python handle signals (Ctrl-C).
pub(crate) const SIGNAL_CHECK: Duration = Duration::from_millis(100);
