//! `vmrpc._vmm.LoopbackArena`: the memory a multi-program Linux VM's programs share
//! (`crate::arena`), handed to each of their `Vm`s at creation.

use std::sync::Arc;

use pyo3::prelude::*;

use super::errors::to_pyerr;
use crate::arena::LoopbackArena;

/// One loopback arena; pass it as `Vm(..., arena=...)` to every VM that shares it.
#[pyclass(name = "LoopbackArena", module = "vmrpc._vmm", frozen)]
pub struct PyLoopbackArena {
    pub(super) inner: Arc<LoopbackArena>,
}

#[pymethods]
impl PyLoopbackArena {
    #[new]
    fn new(py: Python<'_>) -> PyResult<Self> {
        let inner = LoopbackArena::new().map_err(|e| to_pyerr(py, e))?;
        Ok(PyLoopbackArena { inner })
    }

    /// The guest address where every VM sees it.
    #[getter]
    fn base(&self) -> u64 {
        crate::layout::ARENA_BASE
    }

    /// Its size in bytes.
    #[getter]
    fn size(&self) -> u64 {
        crate::layout::ARENA_SIZE
    }
}
