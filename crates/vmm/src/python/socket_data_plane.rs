//! `vmrpc._vmm.SocketDataPlane`: the socket module's native handler.

use std::collections::HashMap;
use std::os::fd::IntoRawFd;
use std::sync::Arc;

use pyo3::prelude::*;

use super::native_handler::PyNativeHandler;
use crate::sockfast::{Gate, SocketDataPlane};

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

    /// The native connect's limits: Python's table size, the VM's host fd
    /// budget, and the fds of the soft RLIMIT_NOFILE to keep free (None: the default).
    #[pyo3(signature = (max_sockets, max_host_fds, reserve))]
    fn set_limits(&self, max_sockets: u64, max_host_fds: u64, reserve: Option<u64>) {
        self.inner
            .gate()
            .set_limits(max_sockets, max_host_fds, reserve);
    }

    /// Python's table entries and host sockets now (never below the truth).
    fn set_python_counts(&self, entries: u64, sockets: u64) {
        self.inner.gate().set_python_counts(entries, sockets);
    }

    /// A new stream socket's CONNECT to exactly these `struct vmrpc_sock_addr`
    /// bytes may be served natively, recorded as Python's decision `decision`.
    fn allow_plain(&self, addr: &[u8], decision: u32) -> bool {
        self.inner.gate().allow_plain(addr, decision)
    }

    /// No destination is served natively until allowed again.
    fn forget_plain(&self) {
        self.inner.gate().forget_plain();
    }

    /// Sockets connected natively since the last call, `(handle, fd, decision)`:
    /// the descriptors are the caller's from now on.
    fn take_born(&self) -> Vec<(u32, i32, u32)> {
        self.inner
            .take_born()
            .into_iter()
            .map(|(handle, fd, decision)| (handle, fd.into_raw_fd(), decision))
            .collect()
    }

    /// `(time.time(), decision)` of every connect served natively since the last call.
    fn take_audit(&self) -> Vec<(f64, u32)> {
        self.inner.gate().take_audit()
    }

    /// The connect still under way that the native path handed to the Python
    /// call running on this thread: `(fd, errno)`, the descriptor the caller's.
    #[staticmethod]
    fn take_started() -> Option<(i32, i32)> {
        Gate::take_started().map(|(fd, err)| (fd.into_raw_fd(), err))
    }

    /// Sockets connected natively that Python has not adopted yet.
    #[getter]
    fn born(&self) -> usize {
        self.inner.born()
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
            ("connects", i.connects.load(Relaxed)),
            ("connect_sockets", i.connect_sockets.load(Relaxed)),
            ("attached", i.attached() as u64),
            ("born", i.born() as u64),
        ])
    }
}
