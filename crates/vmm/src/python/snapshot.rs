//! `vmrpc._vmm.Snapshot`, `take_snapshot` and `restore_snapshot`: a Linux VM
//! stopped at its snapshot point, and new VMs started from it (`vm::snapshot`).

use std::sync::Arc;

use pyo3::prelude::*;

use super::errors::to_pyerr;
use super::vm::PyVm;
use crate::vm::Snapshot;

/// A VM's memory and vCPU at its snapshot point (opaque; see `take_snapshot`).
#[pyclass(name = "Snapshot", module = "vmrpc._vmm", frozen)]
pub struct PySnapshot {
    inner: Arc<Snapshot>,
}

#[pymethods]
impl PySnapshot {
    /// Bytes of host memory the snapshot holds (the guest's pages that were not zero).
    #[getter]
    fn stored_bytes(&self) -> u64 {
        self.inner.stored_bytes()
    }
}

/// The snapshot of `vm`, which has stopped at its snapshot point.
#[pyfunction]
fn take_snapshot(py: Python<'_>, vm: &PyVm) -> PyResult<PySnapshot> {
    let vm = vm.get()?;
    let inner = py
        .detach(|| vm.take_snapshot())
        .map_err(|e| to_pyerr(py, e))?;
    Ok(PySnapshot { inner })
}

/// Makes `vm` (created, not started) go on from `snapshot`'s snapshot point.
#[pyfunction]
fn restore_snapshot(py: Python<'_>, vm: &PyVm, snapshot: &PySnapshot) -> PyResult<()> {
    let vm = vm.get()?;
    let snap = snapshot.inner.clone();
    py.detach(|| vm.restore(&snap)).map_err(|e| to_pyerr(py, e))
}

/// Records which pages `vm`, started from `snapshot` and stopped, touched;
/// later VMs from `snapshot` fault them in before they run. Returns the count.
#[pyfunction]
fn record_working_set(py: Python<'_>, vm: &PyVm, snapshot: &PySnapshot) -> PyResult<usize> {
    let vm = vm.get()?;
    let snap = snapshot.inner.clone();
    py.detach(|| vm.record_working_set(&snap))
        .map_err(|e| to_pyerr(py, e))
}

pub(crate) fn add(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySnapshot>()?;
    m.add_function(wrap_pyfunction!(take_snapshot, m)?)?;
    m.add_function(wrap_pyfunction!(record_working_set, m)?)?;
    m.add_function(wrap_pyfunction!(restore_snapshot, m)?)
}
