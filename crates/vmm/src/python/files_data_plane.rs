//! `vmrpc._vmm.FilesDataPlane`: the Linux personality's files data plane
//! (`linux/dataplane.rs`). It is a whole host module of its own (no Python
//! functions behind it), registered by `register`, not a native handler.

use std::collections::HashMap;
use std::os::fd::IntoRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use guest_kmod_bindings::vmrpc_version;
use pyo3::prelude::*;

use super::errors::ConfigError;
use super::vm::PyVm;
use crate::linux::dataplane::{FilesDataPlane, FILES_DATA_NAME};

/// The files data plane (`dataplane.rs`) as seen from `vmrpc.linux.FilesModule`.
#[pyclass(name = "FilesDataPlane", module = "vmrpc._vmm", frozen)]
pub struct PyFilesDataPlane {
    pub(crate) inner: Arc<FilesDataPlane>,
}

#[pymethods]
impl PyFilesDataPlane {
    #[new]
    fn new() -> Self {
        PyFilesDataPlane {
            inner: Arc::new(FilesDataPlane::default()),
        }
    }

    /// Registers the plane on `vm` as the `files_data` host module.
    fn register(&self, vm: &PyVm) -> PyResult<()> {
        vm.get()?
            .register_module(FILES_DATA_NAME, vmrpc_version(1, 0), self.inner.clone())
            .map_err(|e| ConfigError::new_err(e.to_string()))
    }

    /// Serves guest handle `handle` (a regular file) through a duplicate of `fd`.
    fn attach(&self, handle: i64, fd: i32) -> PyResult<()> {
        Ok(self.inner.attach(handle, fd)?)
    }

    /// Stops serving `handle`.
    fn detach(&self, handle: i64) {
        self.inner.detach(handle)
    }

    /// Serves read-only path operations below these mounts from now on:
    /// `(guest path, O_PATH fd of the host root)`, longest guest path first.
    fn set_mounts(&self, mounts: Vec<(Vec<u8>, i32)>) -> PyResult<()> {
        Ok(self.inner.paths().set_mounts(&mounts)?)
    }

    /// The program's working directory (a guest path), for relative paths.
    fn set_cwd(&self, cwd: Vec<u8>) {
        self.inner.paths().set_cwd(&cwd)
    }

    /// A new guest handle (shared by Python's opens and native ones).
    fn new_handle(&self) -> i64 {
        self.inner.new_handle()
    }

    /// Takes over native handle `handle`: `(fd, guest path, mount index)` with a
    /// new descriptor the caller owns, or None if it is not native.
    fn adopt(&self, handle: i64) -> PyResult<Option<(i32, Vec<u8>, usize)>> {
        Ok(self
            .inner
            .adopt(handle)?
            .map(|(fd, n)| (fd.into_raw_fd(), n.guest_path, n.mount)))
    }

    /// Handles Python adopted that the program has closed since the last call.
    fn take_orphans(&self) -> Vec<i64> {
        self.inner.take_orphans()
    }

    /// Calls and bytes moved natively.
    fn stats(&self) -> HashMap<&'static str, u64> {
        let p = &self.inner;
        HashMap::from([
            ("files_native_reads", p.reads.load(Ordering::Relaxed)),
            (
                "files_native_bytes_read",
                p.bytes_read.load(Ordering::Relaxed),
            ),
            ("files_native_writes", p.writes.load(Ordering::Relaxed)),
            (
                "files_native_bytes_written",
                p.bytes_written.load(Ordering::Relaxed),
            ),
            ("files_native_opens", p.opens.load(Ordering::Relaxed)),
            ("files_native_stats", p.stats.load(Ordering::Relaxed)),
            ("files_native_fstats", p.fstats.load(Ordering::Relaxed)),
            ("files_native_closes", p.closes.load(Ordering::Relaxed)),
            ("files_native_open", p.open_count() as u64),
        ])
    }
}
