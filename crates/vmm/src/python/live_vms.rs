//! Every VM this process created, so that interpreter exit can stop the ones
//! still running (`stop_all_vms`, registered with `atexit`).

use std::sync::{Arc, Mutex, PoisonError, Weak};

use pyo3::prelude::*;

use crate::Vm;

/// Every VM this process created and may not have closed yet.
static LIVE_VMS: Mutex<Vec<Weak<Vm>>> = Mutex::new(Vec::new());

pub(super) fn track_live_vm(vm: &Arc<Vm>) {
    let mut live = LIVE_VMS.lock().unwrap_or_else(PoisonError::into_inner);
    live.retain(|w| w.strong_count() > 0);
    live.push(Arc::downgrade(vm));
}

/// Registered with `atexit`: stops every VM still running while Python can
/// still run threads. A VM left to interpreter finalization would deadlock:
/// stopping it joins the RPC engine thread, which must take the GIL once more
/// to leave, and Python parks threads that take the GIL during finalization.
#[pyfunction]
pub(super) fn stop_all_vms(py: Python<'_>) {
    let vms: Vec<Arc<Vm>> = LIVE_VMS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain(..)
        .filter_map(|w| w.upgrade())
        .collect();
    py.detach(move || {
        for vm in &vms {
            vm.kill();
        }
    });
}
