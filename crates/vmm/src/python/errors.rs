//! The exception hierarchy of `vmrpc._vmm`, and the one place where Rust
//! errors become Python exceptions (`to_pyerr`, `evq_to_pyerr`).

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::VmError;
use crate::evq::EvqError;
use crate::outcome::GuestFailure;

create_exception!(
    vmrpc._vmm,
    VmrpcError,
    PyException,
    "Base class of every vmrpc error."
);
create_exception!(
    vmrpc._vmm,
    ConfigError,
    VmrpcError,
    "Invalid VM configuration or misuse of a VM."
);
create_exception!(
    vmrpc._vmm,
    ImageError,
    VmrpcError,
    "The guest image is missing or unusable."
);
create_exception!(
    vmrpc._vmm,
    KvmError,
    VmrpcError,
    "A KVM operation failed (is /dev/kvm usable?)."
);
create_exception!(
    vmrpc._vmm,
    VmKilled,
    VmrpcError,
    "The VM was killed before the guest exited."
);
create_exception!(
    vmrpc._vmm,
    GuestError,
    VmrpcError,
    "The guest failed; `reason`, `vcpu`, `registers`, `console` and, for a CPU exception, \
     `exception`, `error_code`, `address`, `function` and `location` describe how."
);
create_exception!(
    vmrpc._vmm,
    GuestCrashed,
    GuestError,
    "The guest crashed (triple fault, KVM error, ...)."
);
create_exception!(
    vmrpc._vmm,
    HostFunctionTimeout,
    VmrpcError,
    "A host function ran past its time limit; the guest got VMRPC_ETIMEDOUT."
);
create_exception!(
    vmrpc._vmm,
    HostAbort,
    VmrpcError,
    "Carries a SystemExit or KeyboardInterrupt out of an async host function (args[0])."
);
create_exception!(
    vmrpc._vmm,
    GuestTimeout,
    GuestError,
    "The guest did not exit in time and was killed."
);

fn guest_error(py: Python<'_>, err: PyErr, f: &GuestFailure) -> PyErr {
    let value = err.value(py);
    let regs = PyDict::new(py);
    let attrs = (|| -> PyResult<()> {
        for (name, v) in &f.registers {
            regs.set_item(*name, *v)?;
        }
        value.setattr("registers", regs)?;
        value.setattr("console", &f.console_tail)?;
        value.setattr("vcpu", f.vcpu)?;
        let e = f.exception.as_ref();
        let loc = e.and_then(|e| e.location.as_ref());
        value.setattr("exception", e.map(|e| e.name()))?;
        value.setattr("error_code", e.and_then(|e| e.error_code))?;
        value.setattr("address", e.and_then(|e| e.address))?;
        value.setattr("function", loc.and_then(|l| l.function.clone()))?;
        value.setattr("location", loc.and_then(|l| l.file_line()))?;
        value.setattr("reason", &f.reason)
    })();
    match attrs {
        Ok(()) => err,
        Err(e) => e,
    }
}

/// The one place where Rust errors become Python exceptions.
pub(super) fn to_pyerr(py: Python<'_>, e: VmError) -> PyErr {
    let msg = e.to_string();
    match e {
        VmError::Config(_)
        | VmError::Cgroup(_)
        | VmError::AlreadyStarted
        | VmError::NotStarted
        | VmError::Snapshot(_)
        | VmError::Registry(_) => ConfigError::new_err(msg),
        VmError::Image(_) => ImageError::new_err(msg),
        VmError::Kvm { .. }
        | VmError::Memory(_)
        | VmError::Irq(_)
        | VmError::Rpc(_)
        | VmError::Bus(_)
        | VmError::Os(..) => KvmError::new_err(msg),
        VmError::Killed => VmKilled::new_err(msg),
        VmError::EventQueue(e) => evq_to_pyerr(e),
        VmError::GuestCrashed(f) => guest_error(py, GuestCrashed::new_err(msg), &f),
        VmError::GuestTimeout(f) => guest_error(py, GuestTimeout::new_err(msg), &f),
    }
}

create_exception!(
    vmrpc._vmm,
    EventQueueError,
    VmrpcError,
    "An event queue could not be created or used."
);
create_exception!(
    vmrpc._vmm,
    QueueClosed,
    EventQueueError,
    "The event queue was deleted, its VM closed, or its VM stopped while an operation waited."
);
create_exception!(
    vmrpc._vmm,
    QueueCorrupt,
    EventQueueError,
    "The guest wrote impossible values into the event queue's rings."
);

/// The Python exception for an event queue error.
pub(super) fn evq_to_pyerr(e: EvqError) -> PyErr {
    let msg = e.to_string();
    match e {
        EvqError::BadCapacity(_)
        | EvqError::BadEventSize(_)
        | EvqError::BadName(_)
        | EvqError::NulInName(_)
        | EvqError::TooBig { .. } => PyValueError::new_err(msg),
        EvqError::Exists(_) | EvqError::NotFound(_) => ConfigError::new_err(msg),
        EvqError::Closed { .. } | EvqError::VmStopped { .. } => QueueClosed::new_err(msg),
        EvqError::Corrupt { .. } => QueueCorrupt::new_err(msg),
        EvqError::ArenaFull { .. } | EvqError::Memory(_) => EventQueueError::new_err(msg),
        EvqError::Os(..) | EvqError::Kvm { .. } => KvmError::new_err(msg),
    }
}

/// Adds every exception class to the module.
pub(super) fn add(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("VmrpcError", py.get_type::<VmrpcError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("ImageError", py.get_type::<ImageError>())?;
    m.add("KvmError", py.get_type::<KvmError>())?;
    m.add("VmKilled", py.get_type::<VmKilled>())?;
    m.add("GuestError", py.get_type::<GuestError>())?;
    m.add("GuestCrashed", py.get_type::<GuestCrashed>())?;
    m.add("GuestTimeout", py.get_type::<GuestTimeout>())?;
    m.add("HostFunctionTimeout", py.get_type::<HostFunctionTimeout>())?;
    m.add("HostAbort", py.get_type::<HostAbort>())?;
    m.add("EventQueueError", py.get_type::<EventQueueError>())?;
    m.add("QueueClosed", py.get_type::<QueueClosed>())?;
    m.add("QueueCorrupt", py.get_type::<QueueCorrupt>())
}
