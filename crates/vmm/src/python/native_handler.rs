//! `vmrpc._vmm.NativeHandler`: the base class of the native (Rust) handlers a
//! Python host module may bring for some of its calls
//! (`Vm.register_hm(..., native_handlers=[...])`, see `rpc::module::NativeHandler`).

use std::sync::Arc;

use pyo3::prelude::*;

use crate::rpc::module::NativeHandler;

/// Holds the handler; each native handler class (`SocketDataPlane`) extends it.
#[pyclass(name = "NativeHandler", module = "vmrpc._vmm", subclass, frozen)]
pub struct PyNativeHandler {
    pub(super) handler: Arc<dyn NativeHandler>,
}
