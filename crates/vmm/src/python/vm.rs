//! `vmrpc._vmm.Vm`, the VM as Python sees it. See `vmrpc.VM` for the
//! documented API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use guest_kmod_bindings::vmrpc_version;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::config_int::config_int;
use super::errors::{to_pyerr, ConfigError};
use super::evq;
use super::host_exit::HostExit;
use super::host_module::PyHostModule;
use super::live_vms::track_live_vm;
use super::native_handler::PyNativeHandler;
use super::timeout::{self, SIGNAL_CHECK};
use crate::devices::console::SharedConsole;
use crate::rpc::module::{Echo, ECHO_NAME};
use crate::{Vm, VmConfig, VmError, VmState};

/// The RPC engine thread's body inside Python. The thread keeps one Python
/// thread state for its whole life (attach once, then release the GIL while
/// it runs): otherwise every call into a Python host module would create and
/// destroy a thread state, which measured here as most of a Python RPC's cost.
fn engine_thread(body: Box<dyn FnOnce() + Send>) {
    Python::attach(|py| py.detach(body));
}

fn version_from(version: u32) -> String {
    let (major, minor) = guest_kmod_bindings::vmrpc_version_parts(version);
    format!("{major}.{minor}")
}

/// `cpu_limit` as a float; a bool is refused rather than read as 0 or 1 CPU.
fn cpu_limit_value(value: &Bound<'_, PyAny>) -> PyResult<f64> {
    if value.is_instance_of::<pyo3::types::PyBool>() {
        return Err(ConfigError::new_err(
            "cpu_limit must be a number of host CPUs, not a bool",
        ));
    }
    value.extract()
}

/// A virtual machine running one guest image. See `vmrpc.VM` for the documented API.
#[pyclass(name = "Vm", module = "vmrpc._vmm", frozen)]
pub struct PyVm {
    vm: Mutex<Option<Arc<Vm>>>,
    console: SharedConsole,
    /// Counters as they were when the VM was closed.
    final_stats: Mutex<Vec<(&'static str, u64)>>,
    vcpus: u32,
    memory_mib: u64,
    /// SystemExit / KeyboardInterrupt from a host function, for `wait`.
    host_exit: Arc<HostExit>,
}

impl PyVm {
    pub(crate) fn get(&self) -> PyResult<Arc<Vm>> {
        self.vm
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| ConfigError::new_err("the VM is closed"))
    }
}

#[pymethods]
impl PyVm {
    #[new]
    #[pyo3(
        signature = (
            image, *, vcpus = None, memory_mib = None, args = Vec::new(), console_limit = None,
            rpc_spin_us = None, cpu_limit = None, vcpus_on_demand = false, arena = None,
        ),
        text_signature = "(image, *, vcpus=1, memory_mib=64, args=..., console_limit=..., rpc_spin_us=..., cpu_limit=None, vcpus_on_demand=False, arena=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        image: std::path::PathBuf,
        vcpus: Option<&Bound<'_, PyAny>>,
        memory_mib: Option<&Bound<'_, PyAny>>,
        args: Vec<String>,
        console_limit: Option<&Bound<'_, PyAny>>,
        rpc_spin_us: Option<&Bound<'_, PyAny>>,
        cpu_limit: Option<Bound<'_, PyAny>>,
        vcpus_on_demand: bool,
        arena: Option<PyRef<'_, super::arena::PyLoopbackArena>>,
    ) -> PyResult<Self> {
        // Integers are checked here rather than by PyO3 (see `config_int`).
        let max_mib = crate::layout::MAX_MEM_SIZE >> 20;
        let vcpus: u32 = config_int("vcpus", vcpus, 1, "between 1 and MAX_VCPUS")?;
        let memory_mib: u64 = config_int(
            "memory_mib",
            memory_mib,
            64,
            &format!("an even number of MiB up to {max_mib}"),
        )?;
        let console_limit: usize =
            config_int("console_limit", console_limit, 1 << 20, "a byte count >= 0")?;
        let rpc_spin_us: u64 = config_int(
            "rpc_spin_us",
            rpc_spin_us,
            crate::config::DEFAULT_RPC_SPIN_US,
            "microseconds >= 0",
        )?;
        let config = VmConfig {
            image,
            vcpus,
            memory_mib,
            args,
            console_limit,
            rpc_spin_us,
            cpu_limit: cpu_limit.as_ref().map(cpu_limit_value).transpose()?,
            vcpus_on_demand,
        };
        let arena = arena.map(|a| a.inner.clone());
        let vm = Arc::new(
            py.detach(|| Vm::with_arena(config, arena))
                .map_err(|e| to_pyerr(py, e))?,
        );
        track_live_vm(&vm);
        Ok(PyVm {
            host_exit: Arc::new(HostExit::new(Arc::downgrade(vm.shared()))),
            console: vm.shared().console.clone(),
            vm: Mutex::new(Some(vm)),
            final_stats: Mutex::new(Vec::new()),
            vcpus,
            memory_mib,
        })
    }

    /// The cgroup directory holding the vCPU threads (`cpu_limit`), or None.
    #[getter]
    fn cgroup(&self) -> Option<String> {
        let vm = self.get().ok()?;
        vm.cgroup_path().map(|p| p.display().to_string())
    }

    /// Starts every vCPU.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let vm = self.get()?;
        py.detach(|| vm.start_with(engine_thread))
            .map_err(|e| to_pyerr(py, e))
    }

    /// Waits for the guest's exit code; raises GuestCrashed, GuestTimeout or VmKilled.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<i32> {
        let vm = self.get()?;
        let timeout = timeout::duration(timeout)?;
        if vm.state() == VmState::Created {
            return Err(to_pyerr(py, VmError::NotStarted));
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let slice = deadline.map_or(SIGNAL_CHECK, |d| {
                d.saturating_duration_since(Instant::now())
                    .min(SIGNAL_CHECK)
            });
            if py.detach(|| vm.wait_stopped(slice)) {
                break;
            }
            py.check_signals()?;
            if let (Some(d), Some(t)) = (deadline, timeout) {
                if Instant::now() >= d {
                    py.detach(|| vm.time_out(t));
                    break;
                }
            }
        }
        if let Some(raised) = self.host_exit.take() {
            return Err(raised);
        }
        vm.result().map_err(|e| to_pyerr(py, e))
    }

    /// Stops every vCPU; idempotent.
    fn kill(&self, py: Python<'_>) -> PyResult<()> {
        if let Ok(vm) = self.get() {
            py.detach(|| vm.kill());
        }
        Ok(())
    }

    /// Kills the VM and releases its KVM objects and memory; idempotent.
    fn close(&self, py: Python<'_>) {
        let vm = self
            .vm
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(vm) = vm {
            *self
                .final_stats
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = vm.stats();
            py.detach(move || drop(vm));
        }
    }

    /// Registers a Python host module: `functions` maps function numbers to
    /// callables taking `bytes`. `version` is `(major << 16) | minor`.
    /// `native_handlers` answer some calls first (see `NativeHandler`).
    #[pyo3(signature = (name, version, functions, native_handlers = Vec::new()))]
    fn register_hm(
        &self,
        py: Python<'_>,
        name: &str,
        version: u32,
        functions: HashMap<u32, Py<PyAny>>,
        native_handlers: Vec<Py<PyNativeHandler>>,
    ) -> PyResult<()> {
        let vm = self.get()?;
        let submit = py.import("vmrpc._runtime")?.getattr("submit")?.unbind();
        let module = PyHostModule {
            name: name.to_owned(),
            functions,
            submit,
            natives: native_handlers
                .iter()
                .map(|h| h.get().handler.clone())
                .collect(),
            exit: self.host_exit.clone(),
        };
        vm.register_module(name, version, Arc::new(module))
            .map_err(|e| to_pyerr(py, e))?;
        log::debug!(target: "vmrpc::rpc", "registered host module {name} {}", version_from(version));
        Ok(())
    }

    /// Registers a built-in native (Rust) module by name: "echo" (version 1.0).
    fn register_native(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        let vm = self.get()?;
        match name {
            ECHO_NAME => vm
                .register_module(ECHO_NAME, vmrpc_version(1, 0), Arc::new(Echo))
                .map_err(|e| to_pyerr(py, e)),
            other => Err(ConfigError::new_err(format!(
                "no native module named {other:?}; available: [\"{ECHO_NAME}\"]"
            ))),
        }
    }

    /// Unregisters a host module; calls in flight finish, later ones get VMRPC_EGONE.
    fn unregister_hm(&self, py: Python<'_>, name: &str, version: u32) -> PyResult<()> {
        let vm = self.get()?;
        vm.unregister_module(name, version)
            .map_err(|e| to_pyerr(py, e))
    }

    /// Creates an event queue the guest opens by name: `capacity` events (a
    /// power of two) of up to `max_event_size` bytes in each direction.
    #[pyo3(signature = (name, capacity = 1024, max_event_size = 256))]
    fn make_ev_queue(
        &self,
        py: Python<'_>,
        name: &str,
        capacity: i64,
        max_event_size: i64,
    ) -> PyResult<evq::PyEventQueue> {
        let vm = self.get()?;
        let (capacity, max_event_size) = evq::shape(capacity, max_event_size)?;
        let q = py
            .detach(|| vm.make_ev_queue(name, capacity, max_event_size))
            .map_err(|e| to_pyerr(py, e))?;
        Ok(evq::PyEventQueue::new(q))
    }

    /// Deletes an event queue; operations on it fail from now on, on both sides.
    fn del_ev_queue(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        let vm = self.get()?;
        py.detach(|| vm.del_ev_queue(name))
            .map_err(|e| to_pyerr(py, e))
    }

    /// Names of the live event queues, sorted.
    #[getter]
    fn ev_queues(&self) -> PyResult<Vec<String>> {
        Ok(self.get()?.ev_queues())
    }

    /// (name, version) of every registered host module.
    #[getter]
    fn modules(&self) -> PyResult<Vec<(String, u32)>> {
        Ok(self.get()?.modules())
    }

    /// Console output so far (the last `console_limit` bytes).
    #[getter]
    fn console(&self) -> String {
        let (bytes, _) = self
            .console
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .since(0);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Console output written since byte offset `pos`, and the offset to pass next.
    fn console_from(&self, pos: u64) -> (String, u64) {
        let (bytes, next) = self
            .console
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .since(pos);
        (String::from_utf8_lossy(&bytes).into_owned(), next)
    }

    /// Per-VM counters by name.
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let snapshot = match self.get() {
            Ok(vm) => vm.stats(),
            Err(_) => self
                .final_stats
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        };
        let d = PyDict::new(py);
        for (k, v) in snapshot {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// "created", "running", "exited", "crashed", "killed" or "closed".
    #[getter]
    fn state(&self) -> &'static str {
        match self.get().map(|vm| vm.state()) {
            Err(_) => "closed",
            Ok(VmState::Created) => "created",
            Ok(VmState::Running) => "running",
            Ok(VmState::Exited) => "exited",
            Ok(VmState::Crashed) => "crashed",
            Ok(VmState::Killed) => "killed",
        }
    }

    /// The guest's exit code once it exited, else None.
    #[getter]
    fn exit_code(&self) -> Option<i32> {
        self.get().ok().and_then(|vm| vm.exit_code())
    }

    #[getter]
    fn vcpus(&self) -> u32 {
        self.vcpus
    }

    #[getter]
    fn memory_mib(&self) -> u64 {
        self.memory_mib
    }

    fn __repr__(&self) -> String {
        format!(
            "<vmrpc._vmm.Vm vcpus={} memory_mib={} state={}>",
            self.vcpus,
            self.memory_mib,
            self.state()
        )
    }
}

impl Drop for PyVm {
    fn drop(&mut self) {
        // A VM dropped without close() stops here, and stopping waits for the RPC
        // engine, which may itself be waiting for the GIL to call a Python
        // module: release the GIL while it stops.
        let vm = self
            .vm
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(vm) = vm {
            Python::attach(|py| py.detach(move || drop(vm)));
        }
    }
}
