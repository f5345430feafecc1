//! `vmrpc._vmm.SocketDataPlane`: the socket module's native handler.

use std::collections::HashMap;
use std::sync::Arc;

use pyo3::prelude::*;

use super::native_handler::PyNativeHandler;
use crate::sockfast::SocketDataPlane;

/// The native data plane of socket outsourcing (see `crate::sockfast`), as the
/// Python socket module sees it: it attaches connected sockets' descriptors.
#[pyclass(name = "SocketDataPlane", module = "vmrpc._vmm", extends = PyNativeHandler, frozen)]
pub struct PySocketDataPlane {
    inner: Arc<SocketDataPlane>,
}

#[pymethods]
impl PySocketDataPlane {
    /// `options`: the settable socket options, `(level, name, value size)`,
    /// that SETSOCKOPT of an attached socket may set here (Python's allow-list).
    #[new]
    #[pyo3(signature = (options = Vec::new()))]
    fn new(options: Vec<(i32, i32, u32)>) -> PyClassInitializer<Self> {
        let inner = Arc::new(SocketDataPlane::new(options));
        PyClassInitializer::from(PyNativeHandler {
            handler: inner.clone(),
        })
        .add_subclass(PySocketDataPlane { inner })
    }

    /// Serve the zero-copy calls of guest socket `handle`, through a duplicate of `fd`.
    fn attach(&self, handle: u32, fd: i32) -> PyResult<()> {
        self.inner.attach(handle, fd).map_err(PyErr::from)
    }

    /// Stop serving `handle` (call before closing the socket).
    fn detach(&self, handle: u32) {
        self.inner.detach(handle);
    }

    /// Detach every handle.
    fn clear(&self) {
        self.inner.clear();
    }

    /// How many of Python's operations wait on its event loop (no native
    /// close while any does).
    fn set_loop_calls(&self, n: u64) {
        self.inner.set_loop_calls(n);
    }

    /// Handles closed natively since the last call; their Python descriptors
    /// now point at a placeholder socket, for Python to close.
    fn take_closed(&self) -> Vec<u32> {
        self.inner.take_closed()
    }

    /// Sockets attached now (each holds a duplicate descriptor): cheaper than `stats`.
    #[getter]
    fn attached(&self) -> usize {
        self.inner.attached()
    }

    /// Calls answered natively and the bytes they moved.
    #[getter]
    fn stats(&self) -> HashMap<&'static str, u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let i = &self.inner;
        HashMap::from([
            ("sends", i.sends.load(Relaxed)),
            ("bytes_sent", i.bytes_sent.load(Relaxed)),
            ("recvs", i.recvs.load(Relaxed)),
            ("bytes_received", i.bytes_received.load(Relaxed)),
            ("setsockopts", i.setsockopts.load(Relaxed)),
            ("closes", i.closes.load(Relaxed)),
            ("closed_pending", i.closed_pending() as u64),
            ("polls", i.polls.load(Relaxed)),
            ("attached", i.attached() as u64),
        ])
    }
}
