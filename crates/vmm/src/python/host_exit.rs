//! How a host function's failure reaches the guest and the Python caller.
//!
//! Decisions (documented in `vmrpc.hostmodule`):
//! - an `Exception` is logged and the guest gets `VMRPC_EHOSTFN`; the VM runs on;
//! - `HostFunctionTimeout` (a function's `time_limit` passed) gives the guest
//!   `VMRPC_ETIMEDOUT`;
//! - `SystemExit` and `KeyboardInterrupt` (and any other `BaseException` that
//!   is not an `Exception`) are not swallowed: the guest's call gets
//!   `VMRPC_ESHUTDOWN`, the VM is stopped, and the exception is raised again
//!   by the next `Vm.wait` (or `run`). The asyncio runner carries them as
//!   `HostAbort(original)`, because a bare `SystemExit` would stop its loop.

use std::sync::{Mutex, PoisonError, Weak};

use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use super::errors::{HostAbort, HostFunctionTimeout};
use crate::vm::{Outcome, VmShared};

/// How to answer a call whose host function raised.
pub(crate) enum Failure {
    /// An ordinary exception: logged, VMRPC_EHOSTFN.
    Raised(PyErr),
    /// The function's time limit passed: VMRPC_ETIMEDOUT.
    TimedOut(PyErr),
    /// SystemExit, KeyboardInterrupt...: stop the VM, re-raise in `wait`.
    Exit(PyErr),
}

pub(crate) fn classify(py: Python<'_>, err: PyErr) -> Failure {
    if err.is_instance_of::<HostFunctionTimeout>(py) {
        return Failure::TimedOut(err);
    }
    if err.is_instance_of::<HostAbort>(py) {
        let inner = err
            .value(py)
            .getattr("args")
            .and_then(|args| args.get_item(0))
            .map(PyErr::from_value);
        return Failure::Exit(inner.unwrap_or(err));
    }
    if err.is_instance_of::<PyException>(py) {
        Failure::Raised(err)
    } else {
        Failure::Exit(err)
    }
}

/// A VM's slot for the first exit-type exception a host function raised.
pub(crate) struct HostExit {
    raised: Mutex<Option<PyErr>>,
    vm: Weak<VmShared>,
}

impl HostExit {
    pub(crate) fn new(vm: Weak<VmShared>) -> Self {
        HostExit {
            raised: Mutex::new(None),
            vm,
        }
    }

    /// Keeps `err` for `take` (the first one wins) and stops the VM without
    /// waiting for anything: this runs on the RPC engine's own thread.
    pub(crate) fn exit(&self, err: PyErr) {
        log::error!(target: "vmrpc::rpc", "a host function raised {err}; stopping the VM");
        self.raised
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(err);
        if let Some(vm) = self.vm.upgrade() {
            vm.finish(Outcome::Killed);
        }
    }

    /// The exception to raise in the waiting caller, once.
    pub(crate) fn take(&self) -> Option<PyErr> {
        self.raised
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}
