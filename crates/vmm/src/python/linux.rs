//! `vmrpc._vmm.linux_setup`: places a Linux program in a created VM.

use std::collections::HashMap;
use std::os::fd::IntoRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use guest_kmod_bindings::vmrpc_version;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::{ConfigError, ImageError};
use super::vm::PyVm;
use crate::linux::code::{CodeRewriter, CODE_NAME};
use crate::linux::dataplane::{FilesDataPlane, FILES_DATA_NAME};
use crate::linux::setup::{setup, LinuxParams};
use crate::linux::LinuxError;

fn to_pyerr(e: LinuxError) -> PyErr {
    match e {
        LinuxError::Layout(_) | LinuxError::Args(_) | LinuxError::Vm(_) => {
            ConfigError::new_err(e.to_string())
        }
        _ => ImageError::new_err(e.to_string()),
    }
}

/// Loads `program` into `vm` (created, not started) and points its vCPUs'
/// system-call entry at the Linux personality; returns the chosen layout.
#[pyfunction]
#[allow(clippy::too_many_arguments)] // mirrors the Python keyword arguments
#[pyo3(signature = (vm, program, argv, envp, execfn, trace = false, rewrite = true, sysroot = None))]
fn linux_setup<'py>(
    py: Python<'py>,
    vm: &PyVm,
    program: std::path::PathBuf,
    argv: Vec<String>,
    envp: Vec<String>,
    execfn: String,
    trace: bool,
    rewrite: bool,
    sysroot: Option<std::path::PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let vm = vm.get()?;
    let params = LinuxParams {
        program: &program,
        argv: &argv,
        envp: &envp,
        execfn: &execfn,
        trace,
        sysroot: sysroot.as_deref(),
        rewrite,
    };

    let placed = py.detach(|| setup(&vm, &params)).map_err(to_pyerr)?;
    let d = PyDict::new(py);
    d.set_item("bias", placed.bias)?;
    d.set_item("interp_bias", placed.interp_bias)?;
    d.set_item("entry", placed.info.entry)?;
    d.set_item("sp", placed.info.sp)?;
    d.set_item("brk_start", placed.info.brk_start)?;
    d.set_item("mmap_lo", placed.info.mmap_lo)?;
    d.set_item("mmap_hi", placed.info.mmap_hi)?;
    d.set_item("syscall_sites", placed.syscall_sites)?;
    Ok(d)
}

/// The files data plane (`dataplane.rs`) as seen from `vmrpc.linux.FilesModule`.
#[pyclass(name = "FilesDataPlane", module = "vmrpc._vmm", frozen)]
pub struct PyFilesDataPlane {
    inner: Arc<FilesDataPlane>,
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
        ])
    }
}

/// The `linux_code` module (`code.rs`): rewrites code mapped at run time.
#[pyclass(name = "CodeRewriter", module = "vmrpc._vmm", frozen)]
pub struct PyCodeRewriter {
    inner: Arc<CodeRewriter>,
}

#[pymethods]
impl PyCodeRewriter {
    #[new]
    fn new() -> Self {
        PyCodeRewriter {
            inner: Arc::new(CodeRewriter::default()),
        }
    }

    /// Registers it on `vm` as the `linux_code` host module.
    fn register(&self, vm: &PyVm) -> PyResult<()> {
        vm.get()?
            .register_module(CODE_NAME, vmrpc_version(1, 0), self.inner.clone())
            .map_err(|e| ConfigError::new_err(e.to_string()))
    }

    /// Mappings rewritten and `syscall` sites rewritten in them.
    fn stats(&self) -> HashMap<&'static str, u64> {
        HashMap::from([
            (
                "code_mappings_rewritten",
                self.inner.calls.load(Ordering::Relaxed),
            ),
            (
                "code_syscall_sites",
                self.inner.sites.load(Ordering::Relaxed),
            ),
        ])
    }
}

pub(crate) fn add(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFilesDataPlane>()?;
    m.add_class::<PyCodeRewriter>()?;
    m.add_function(wrap_pyfunction!(linux_setup, m)?)
}
