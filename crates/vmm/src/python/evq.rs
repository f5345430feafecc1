//! `vmrpc._vmm.EventQueue`. See
//! `vmrpc.EventQueue` (python/vmrpc/events.py) for the documented API.
//!
//! GIL: taking and putting events copies a few bytes per event and runs with
//! the GIL held (no Python code runs while a queue lock is held: payloads are
//! copied into a Rust buffer first, Python objects made afterwards). Every
//! wait releases the GIL and wakes every `SIGNAL_CHECK` to let Python handle
//! signals (Ctrl-C).

use std::sync::Arc;
use std::time::Instant;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use super::errors::evq_to_pyerr as to_pyerr;
use super::timeout::{deadline, SIGNAL_CHECK};
use crate::evq::{EventQueue, Wait};

/// Capacity and sizes come from Python as plain ints: negative ones get the
/// same message as other out-of-range values.
pub(super) fn shape(capacity: i64, max_event_size: i64) -> PyResult<(u64, u64)> {
    let capacity = u64::try_from(capacity).map_err(|_| {
        PyValueError::new_err(format!(
            "capacity must be a power of two from 1 to 65536, got {capacity}"
        ))
    })?;
    let size = u64::try_from(max_event_size).map_err(|_| {
        PyValueError::new_err(format!(
            "max_event_size must be 1 to 65528 bytes, got {max_event_size}"
        ))
    })?;
    Ok((capacity, size))
}

/// An event's bytes, borrowed from a `bytes` object or copied out of any other
/// buffer (bytearray, memoryview, ...) once.
enum Data<'py> {
    Bytes(Bound<'py, PyBytes>),
    Owned(Vec<u8>),
}

impl<'py> Data<'py> {
    fn from_py(data: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(b) = data.cast::<PyBytes>() {
            return Ok(Data::Bytes(b.clone()));
        }
        let buf = PyBuffer::<u8>::get(data).map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "an event must be bytes-like (bytes, bytearray, memoryview), not {}",
                data.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        Ok(Data::Owned(buf.to_vec(data.py())?))
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Data::Bytes(b) => b.as_bytes(),
            Data::Owned(v) => v,
        }
    }
}

/// One event queue of a VM, host side.
#[pyclass(name = "EventQueue", module = "vmrpc._vmm", frozen)]
pub struct PyEventQueue {
    pub(super) q: Arc<EventQueue>,
}

impl PyEventQueue {
    pub(super) fn new(q: Arc<EventQueue>) -> Self {
        PyEventQueue { q }
    }

    /// Waits with the GIL released, in slices, until `what` holds (true) or
    /// `deadline` passes (false).
    fn wait(&self, py: Python<'_>, what: Wait, deadline: Option<Instant>) -> PyResult<bool> {
        loop {
            let slice = Instant::now() + SIGNAL_CHECK;
            let until = deadline.map_or(slice, |d| d.min(slice));
            let q = &self.q;
            if py.detach(|| q.wait(what, Some(until))).map_err(to_pyerr)? {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            py.check_signals()?;
        }
    }

    /// Takes up to `max` events as bytes objects (GIL held; no Python code
    /// runs while the queue is locked).
    fn take<'py>(&self, py: Python<'py>, max: usize) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let mut buf = Vec::new();
        let mut lens = Vec::new();
        self.q
            .take_into(max, &mut buf, &mut lens)
            .map_err(to_pyerr)?;
        let mut at = 0;
        Ok(lens
            .iter()
            .map(|&n| {
                let b = PyBytes::new(py, &buf[at..at + n]);
                at += n;
                b
            })
            .collect())
    }

    fn put_one(&self, data: &Data<'_>) -> PyResult<bool> {
        Ok(self.q.put(&[data.as_slice()]).map_err(to_pyerr)? == 1)
    }
}

fn timed_out(what: &str, q: &EventQueue) -> PyErr {
    PyTimeoutError::new_err(format!("event queue {:?}: timed out {what}", q.name()))
}

#[pymethods]
impl PyEventQueue {
    #[getter]
    fn name(&self) -> &str {
        self.q.name()
    }

    #[getter]
    fn capacity(&self) -> u32 {
        self.q.geometry().entries
    }

    #[getter]
    fn max_event_size(&self) -> u32 {
        self.q.geometry().max_event_size
    }

    #[getter]
    fn queue_id(&self) -> u32 {
        self.q.id()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.q.is_closed()
    }

    /// Puts one event if there is room; False if the queue is full.
    fn try_put(&self, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.put_one(&Data::from_py(data)?)
    }

    /// Puts one event, waiting while the queue is full.
    #[pyo3(signature = (data, timeout = None))]
    fn put_event(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let data = Data::from_py(data)?;
        let deadline = deadline(timeout)?;
        loop {
            if self.put_one(&data)? {
                return Ok(());
            }
            if !self.wait(py, Wait::Writable, deadline)? {
                return Err(timed_out("waiting for room", &self.q));
            }
        }
    }

    /// Takes one event if there is one; None if the queue is empty.
    fn try_get<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        Ok(self.take(py, 1)?.pop())
    }

    /// Takes one event, waiting while the queue is empty.
    #[pyo3(signature = (timeout = None))]
    fn get_event<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let deadline = deadline(timeout)?;
        loop {
            if let Some(ev) = self.take(py, 1)?.pop() {
                return Ok(ev);
            }
            if !self.wait(py, Wait::Readable, deadline)? {
                return Err(timed_out("waiting for an event", &self.q));
            }
        }
    }

    /// Waits for at least one event (unless timeout is 0), then takes up to
    /// `max_n` in one go.
    #[pyo3(signature = (max_n, timeout = None))]
    fn get_events<'py>(
        &self,
        py: Python<'py>,
        max_n: usize,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        if max_n == 0 {
            return Err(PyValueError::new_err("max_n must be at least 1"));
        }
        let deadline = deadline(timeout)?;
        loop {
            let events = self.take(py, max_n)?;
            if !events.is_empty() || timeout == Some(0.0) {
                return PyList::new(py, events);
            }
            if !self.wait(py, Wait::Readable, deadline)? {
                return Err(timed_out("waiting for an event", &self.q));
            }
        }
    }

    /// Waits until an event can be taken, without taking it: True, or False
    /// on timeout. For callers that must not lose an event when they are
    /// cancelled (asyncio).
    #[pyo3(signature = (timeout = None))]
    fn wait_readable(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.wait(py, Wait::Readable, deadline(timeout)?)
    }

    /// Diagnostics: the rings' header words as the guest sees them now
    /// (`g2h_head`, `h2g_consumer_waiting`, ...) and the host's own indices.
    fn ring_state(&self) -> std::collections::HashMap<String, u32> {
        self.q.ring_state().into_iter().collect()
    }

    fn __repr__(&self) -> String {
        let g = self.q.geometry();
        format!(
            "<vmrpc._vmm.EventQueue {:?} id={} capacity={} max_event_size={}{}>",
            self.q.name(),
            self.q.id(),
            g.entries,
            g.max_event_size,
            if self.q.is_closed() { " closed" } else { "" }
        )
    }
}
