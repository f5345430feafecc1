//! Benchmark and test hooks, private to the package (`vmrpc._testing` wraps
//! them): the fastest possible native event consumer and producer, and the
//! raw-KVM baseline of the boot benchmark. Not part of the API.

use std::time::Instant;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::errors::{evq_to_pyerr as to_pyerr, to_pyerr as vm_to_pyerr};
use super::evq::PyEventQueue;
use super::timeout::{deadline, SIGNAL_CHECK};
use crate::evq::{EvqError, Wait};

/// Benchmark and test aid: takes `count` events in Rust (copying each
/// payload into a scratch buffer, as a native consumer would), without
/// making Python objects; returns (events, payload bytes). Returns early
/// with fewer events if `timeout` passes.
#[pyfunction]
#[pyo3(signature = (q, count, timeout = None))]
fn _drain_native(
    q: &PyEventQueue,
    py: Python<'_>,
    count: u64,
    timeout: Option<f64>,
) -> PyResult<(u64, u64)> {
    let deadline = deadline(timeout)?;
    let (mut events, mut bytes) = (0u64, 0u64);
    let mut scratch = vec![0u8; q.q.geometry().max_event_size as usize];
    while events < count {
        let slice = Instant::now() + SIGNAL_CHECK;
        let until = deadline.map_or(slice, |d| d.min(slice));
        let q = &q.q;
        py.detach(|| -> Result<(), EvqError> {
            while events < count {
                let max = (count - events).min(4096) as usize;
                let n = q.take(max, |payload| {
                    bytes += payload.copy_to(&mut scratch[..]) as u64;
                })?;
                events += n as u64;
                if n == 0 && !q.wait(Wait::Readable, Some(until))? {
                    break;
                }
                // A consumer that keeps the ring almost empty pulls the
                // producer's cache lines over for every event or two;
                // yielding once after a small batch lets events pile up
                // (measured: 12 -> 19 M events/s).
                if n > 0 && n < 64 {
                    std::thread::yield_now();
                }
            }
            Ok(())
        })
        .map_err(to_pyerr)?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        py.check_signals()?;
    }
    Ok((events, bytes))
}

/// Benchmark and test aid: puts `count` events of `size` bytes (>= 8) from
/// Rust, numbered from `first_seq` as the guest's evq_produce does
/// (sequence number in the first 8 bytes, then its byte pattern); returns
/// how many were put, fewer if `timeout` passes.
#[pyfunction]
#[pyo3(signature = (q, count, size, timeout = None, first_seq = 0))]
fn _feed_native(
    q: &PyEventQueue,
    py: Python<'_>,
    count: u64,
    size: usize,
    timeout: Option<f64>,
    first_seq: u64,
) -> PyResult<u64> {
    let max = q.q.geometry().max_event_size as usize;
    if !(8..=max).contains(&size) {
        return Err(PyValueError::new_err(format!(
            "size must be 8 to {max} bytes (the queue's max_event_size), got {size}"
        )));
    }
    let deadline = deadline(timeout)?;
    let batch = (q.q.geometry().entries as usize).min(256);
    let mut events: Vec<Vec<u8>> = vec![vec![0; size]; batch];
    let mut put = 0u64;
    while put < count {
        let slice = Instant::now() + SIGNAL_CHECK;
        let until = deadline.map_or(slice, |d| d.min(slice));
        let q = &q.q;
        py.detach(|| -> Result<(), EvqError> {
            while put < count {
                let n = ((count - put) as usize).min(batch);
                for (k, ev) in events[..n].iter_mut().enumerate() {
                    fill_pattern(ev, first_seq.wrapping_add(put + k as u64));
                }
                let mut done = 0;
                while done < n {
                    let m = q.put(&events[done..n])?;
                    done += m;
                    put += m as u64;
                    if m == 0 && !q.wait(Wait::Writable, Some(until))? {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })
        .map_err(to_pyerr)?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        py.check_signals()?;
    }
    Ok(put)
}

/// The guest apps' payload (guest/apps/evq_pattern.h): the sequence number,
/// little-endian, then byte i = seq * 31 + i (mod 256).
fn fill_pattern(ev: &mut [u8], seq: u64) {
    ev[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in ev.iter_mut().enumerate().skip(8) {
        *b = (seq.wrapping_mul(31).wrapping_add(i as u64)) as u8;
    }
}

/// Benchmark baseline: `n` cycles of raw KVM (create a VM and one vCPU, run to
/// `hlt`, destroy), in nanoseconds each. GIL released.
#[pyfunction]
fn _raw_kvm_cycles(py: Python<'_>, n: usize) -> PyResult<Vec<u64>> {
    py.detach(|| {
        let kvm_fd = kvm_ioctls::Kvm::new().map_err(crate::error::kvm("opening /dev/kvm"))?;
        (0..n)
            .map(|_| crate::baseline::raw_kvm_cycle(&kvm_fd))
            .collect::<Result<Vec<_>, _>>()
    })
    .map_err(|e| vm_to_pyerr(py, e))
}

pub(super) fn add(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_drain_native, m)?)?;
    m.add_function(wrap_pyfunction!(_feed_native, m)?)?;
    m.add_function(wrap_pyfunction!(_raw_kvm_cycles, m)?)
}
