//! `vmrpc._vmm.linux_setup`: places a Linux program in a created VM.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::{ConfigError, ImageError};
use super::files_data_plane::PyFilesDataPlane;
use super::vm::PyVm;
use crate::linux::exec;
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
#[pyo3(signature = (vm, program, argv, envp, execfn, trace = false, rewrite = true, sysroot = None, files = None))]
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
    files: Option<PyRef<'_, PyFilesDataPlane>>,
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
    let files = files.map(|f| f.inner.clone());

    let placed = py
        .detach(|| {
            let placed = setup(&vm, &params)?;
            exec::register(&vm, params.sysroot, placed.info.flags, files)?;
            Ok(placed)
        })
        .map_err(to_pyerr)?;
    let d = PyDict::new(py);
    d.set_item("bias", placed.bias)?;
    d.set_item("interp_bias", placed.interp_bias)?;
    d.set_item("entry", placed.info.entry)?;
    d.set_item("sp", placed.info.sp)?;
    d.set_item("brk_start", placed.info.brk_start)?;
    d.set_item("mmap_lo", placed.info.mmap_lo)?;
    d.set_item("mmap_hi", placed.info.mmap_hi)?;
    d.set_item("syscall_sites", placed.syscall_sites)?;
    d.set_item("read_ns", placed.times.read_ns)?;
    d.set_item("load_ns", placed.times.load_ns)?;
    d.set_item("rest_ns", placed.times.rest_ns)?;
    d.set_item("images_cached", placed.images_cached)?;
    Ok(d)
}

pub(crate) fn add(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(linux_setup, m)?)
}
