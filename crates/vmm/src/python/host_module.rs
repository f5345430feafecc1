//! A Python host module as the RPC engine calls it: numbered Python
//! functions, plain or `async`, behind any native handlers the module brings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use guest_kmod_bindings::{VMRPC_EHOSTFN, VMRPC_ESHUTDOWN, VMRPC_ETIMEDOUT};
use pyo3::buffer::PyBuffer;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCFunction, PyDict, PyTuple};

use super::host_exit::{classify, Failure, HostExit};
use crate::rpc::channel::Completion;
use crate::rpc::module::{HostModule, NativeHandler};

/// A Python host module: numbered functions taking `bytes` and returning a
/// bytes-like object or None, plain or `async`.
pub(super) struct PyHostModule {
    pub(super) name: String,
    pub(super) functions: HashMap<u32, Py<PyAny>>,
    /// `vmrpc._runtime.submit(coroutine, on_done)`: runs coroutines on the
    /// package's asyncio loop, so a slow async function never holds the engine.
    pub(super) submit: Py<PyAny>,
    /// Native handlers that answer some calls first (see `NativeHandler`).
    pub(super) natives: Vec<Arc<dyn NativeHandler>>,
    /// Where SystemExit and KeyboardInterrupt go (see `host_exit`).
    pub(super) exit: Arc<HostExit>,
}

impl PyHostModule {
    /// Logs a host function's exception through Python `logging`, with traceback.
    fn report(py: Python<'_>, module: &str, function: u32, err: PyErr) {
        let logged = (|| -> PyResult<()> {
            let logger = py
                .import("logging")?
                .call_method1("getLogger", ("vmrpc.rpc",))?;
            let kwargs = PyDict::new(py);
            // into_value attaches the traceback; value() alone would log the message only.
            kwargs.set_item("exc_info", err.into_value(py))?;
            let msg = "host function %s.%d raised; the guest gets VMRPC_EHOSTFN";
            logger.call_method("error", (msg, module, function), Some(&kwargs))?;
            Ok(())
        })();
        if let Err(e) = logged {
            e.print(py);
        }
    }

    /// Answers a call whose host function raised (see `host_exit` for the rules).
    fn fail(
        py: Python<'_>,
        exit: &HostExit,
        (name, function): (&str, u32),
        err: PyErr,
        done: Completion,
    ) {
        match classify(py, err) {
            Failure::Raised(e) => {
                Self::report(py, name, function, e);
                done.err(VMRPC_EHOSTFN);
            }
            Failure::TimedOut(e) => {
                log::warn!(target: "vmrpc::rpc", "host function {name}.{function}: {e}; the guest gets VMRPC_ETIMEDOUT");
                done.err(VMRPC_ETIMEDOUT);
            }
            Failure::Exit(e) => {
                // Stop first: answered first, the guest could exit on its own
                // and the VM would look like it ended normally.
                exit.exit(e);
                done.err(VMRPC_ESHUTDOWN);
            }
        }
    }

    /// Answers the guest with what a host function returned.
    fn answer(
        py: Python<'_>,
        module: &str,
        function: u32,
        value: &Bound<'_, PyAny>,
        done: Completion,
    ) {
        if value.is_none() {
            return done.ok(&[]);
        }
        if let Ok(b) = value.cast::<PyBytes>() {
            return done.ok(b.as_bytes());
        }
        match PyBuffer::<u8>::get(value).and_then(|buf| buf.to_vec(py)) {
            Ok(bytes) => done.ok(&bytes),
            Err(_) => {
                let type_name = value
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                let err = pyo3::exceptions::PyTypeError::new_err(format!(
                    "host function must return bytes, bytearray, memoryview or None, not {type_name}"
                ));
                Self::report(py, module, function, err);
                done.err(VMRPC_EHOSTFN);
            }
        }
    }
}

impl HostModule for PyHostModule {
    fn has_function(&self, function: u32) -> bool {
        self.functions.contains_key(&function)
    }

    fn call(&self, function: u32, request: &[u8], done: Completion) {
        // Native handlers first (the socket module's zero-copy calls).
        let mut done = done;
        for native in &self.natives {
            match native.try_call(function, request, done) {
                None => return,
                Some(back) => done = back,
            }
        }
        Python::attach(|py| {
            let Some(func) = self.functions.get(&function) else {
                return done.err(guest_kmod_bindings::VMRPC_ENOFUNC);
            };
            let result = func.bind(py).call1((PyBytes::new(py, request),));
            self.finish(py, function, result, done);
        })
    }

    fn native_sockets(&self) -> Option<&dyn crate::rpc::module::NativeSockets> {
        self.natives.iter().find_map(|n| n.native_sockets())
    }
}

impl PyHostModule {
    /// Answers with what a host function returned: a value now, a coroutine
    /// when it finishes, an exception as VMRPC_EHOSTFN.
    fn finish(
        &self,
        py: Python<'_>,
        function: u32,
        result: PyResult<Bound<'_, PyAny>>,
        done: Completion,
    ) {
        let result = match result {
            Ok(r) => r,
            Err(e) => return Self::fail(py, &self.exit, (&self.name, function), e, done),
        };
        if !result.hasattr(intern!(py, "__await__")).unwrap_or(false) {
            return Self::answer(py, &self.name, function, &result, done);
        }
        // An async function: answer when its coroutine finishes. If the
        // callback never runs, dropping it drops `done`, which answers
        // VMRPC_EHOSTFN: the guest is never left waiting.
        let pending = Mutex::new(Some(done));
        let name = self.name.clone();
        let exit = self.exit.clone();
        let on_done =
            move |args: &Bound<'_, PyTuple>, _kw: Option<&Bound<'_, PyDict>>| -> PyResult<()> {
                let py = args.py();
                let Some(done) = pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                else {
                    return Ok(());
                };
                match args.get_item(0)?.call_method0(intern!(py, "result")) {
                    Ok(v) => Self::answer(py, &name, function, &v, done),
                    Err(e) => Self::fail(py, &exit, (&name, function), e, done),
                }
                Ok(())
            };
        let submitted = PyCFunction::new_closure(py, None, None, on_done)
            .and_then(|cb| self.submit.bind(py).call1((result, cb)));
        if let Err(e) = submitted {
            Self::report(py, &self.name, function, e);
        }
    }
}
