//! `vmrpc._vmm.CodeRewriter`: the `linux_code` host module (`linux/code.rs`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use guest_kmod_bindings::vmrpc_version;
use pyo3::prelude::*;

use super::errors::ConfigError;
use super::vm::PyVm;
use crate::linux::code::{CodeRewriter, CODE_NAME};

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
