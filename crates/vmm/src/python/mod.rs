//! The `vmrpc._vmm` extension module: the Python layer on top of the VMM.
//! Nothing below it imports it. One file per Python class (`vm`, `evq`,
//! `native_handler`, `socket_data_plane`, `files_data_plane`,
//! `code_rewriter`), `linux` (placing a Linux program), the exceptions and
//! error mapping in `errors`, and the private benchmark hooks in `testing`.

mod abi;
mod arena;
mod code_rewriter;
mod config_int;
mod errors;
mod evq;
mod files_data_plane;
mod host_exit;
mod host_module;
mod linux;
mod live_vms;
mod native_handler;
mod snapshot;
mod socket_data_plane;
mod testing;
mod timeout;
mod vm;

use pyo3::prelude::*;

#[pymodule]
fn _vmm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Rust `log` records go to Python's `logging` (loggers named after the target).
    let _ = pyo3_log::try_init();
    let py = m.py();
    m.add_class::<vm::PyVm>()?;
    m.add_class::<arena::PyLoopbackArena>()?;
    let stop_all = wrap_pyfunction!(live_vms::stop_all_vms, m)?;
    py.import("atexit")?
        .call_method1("register", (&stop_all,))?;
    m.add_class::<evq::PyEventQueue>()?;
    m.add_class::<native_handler::PyNativeHandler>()?;
    m.add_class::<socket_data_plane::PySocketDataPlane>()?;
    m.add_class::<files_data_plane::PyFilesDataPlane>()?;
    m.add_class::<code_rewriter::PyCodeRewriter>()?;
    linux::add(m)?;
    snapshot::add(m)?;
    testing::add(m)?;
    m.add_function(wrap_pyfunction!(abi::abi_table, m)?)?;
    errors::add(m)?;
    m.add("MAX_VCPUS", crate::config::MAX_VCPUS)?;
    m.add("MAX_PAYLOAD", guest_kmod_bindings::VMRPC_MAX_PAYLOAD)?;
    m.add("NATIVE_HANDLES", crate::sockfast::NATIVE_HANDLES)?;
    Ok(())
}
