//! The `vmrpc._vmm` extension module: the `Vm` class and the exception
//! hierarchy. Every `VmError` becomes a Python exception in `to_pyerr`, and
//! only there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use guest_kmod_bindings::{vmrpc_version, VMRPC_EHOSTFN, VMRPC_ESHUTDOWN, VMRPC_ETIMEDOUT};
use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCFunction, PyDict, PyTuple};

mod abi;
mod config_int;
mod evq;
mod host_exit;
mod timeout;

use config_int::config_int;
use host_exit::{classify, Failure, HostExit};

use crate::rpc::channel::Completion;
use crate::rpc::module::{Echo, HostModule, ECHO_NAME};
use crate::sockfast::SocketDataPlane;

use crate::devices::console::SharedConsole;
use crate::vm::GuestFailure;
use crate::{Vm, VmConfig, VmError, VmState};

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
fn to_pyerr(py: Python<'_>, e: VmError) -> PyErr {
    let msg = e.to_string();
    match e {
        VmError::Config(_)
        | VmError::Cgroup(_)
        | VmError::AlreadyStarted
        | VmError::NotStarted
        | VmError::Registry(_) => ConfigError::new_err(msg),
        VmError::Image(_) => ImageError::new_err(msg),
        VmError::Kvm { .. } | VmError::Memory(_) | VmError::Bus(_) | VmError::Os(..) => {
            KvmError::new_err(msg)
        }
        VmError::Killed => VmKilled::new_err(msg),
        VmError::EventQueue(e) => evq::to_pyerr(e),
        VmError::GuestCrashed(f) => guest_error(py, GuestCrashed::new_err(msg), &f),
        VmError::GuestTimeout(f) => guest_error(py, GuestTimeout::new_err(msg), &f),
    }
}

/// A Python host module: numbered functions taking `bytes` and returning a
/// bytes-like object or None, plain or `async`.
struct PyHostModule {
    name: String,
    functions: HashMap<u32, Py<PyAny>>,
    /// `vmrpc._runtime.submit(coroutine, on_done)`: runs coroutines on the
    /// package's asyncio loop, so a slow async function never holds the engine.
    submit: Py<PyAny>,
    /// The native socket data plane, for the socket outsourcing module only.
    data_plane: Option<Py<PySocketDataPlane>>,
    /// Where SystemExit and KeyboardInterrupt go (see `host_exit`).
    exit: Arc<HostExit>,
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
        // The socket module's zero-copy calls are answered natively.
        let done = match &self.data_plane {
            Some(dp) => match dp.get().inner.try_call(function, request, done) {
                None => return,
                Some(done) => done,
            },
            None => done,
        };
        Python::attach(|py| {
            let Some(func) = self.functions.get(&function) else {
                return done.err(guest_kmod_bindings::VMRPC_ENOFUNC);
            };
            let result = func.bind(py).call1((PyBytes::new(py, request),));
            self.finish(py, function, result, done);
        })
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

/// The native data plane of socket outsourcing (see `crate::sockfast`), as the
/// Python socket module sees it: it attaches connected sockets' descriptors.
#[pyclass(name = "SocketDataPlane", module = "vmrpc._vmm", frozen)]
#[derive(Default)]
pub struct PySocketDataPlane {
    inner: SocketDataPlane,
}

#[pymethods]
impl PySocketDataPlane {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Serve the zero-copy calls of guest socket `handle`, through a duplicate of `fd`.
    fn attach(&self, handle: u32, fd: i32) -> PyResult<()> {
        self.inner.attach(handle, fd).map_err(PyErr::from)
    }

    /// Stop serving `handle` (call before closing the socket).
    fn detach(&self, handle: u32) {
        self.inner.detach(handle);
    }

    /// Detach every handle.
    fn clear(&self) {
        self.inner.clear();
    }

    /// Calls answered natively and the bytes they moved.
    #[getter]
    fn stats(&self) -> HashMap<&'static str, u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let i = &self.inner;
        HashMap::from([
            ("sends", i.sends.load(Relaxed)),
            ("bytes_sent", i.bytes_sent.load(Relaxed)),
            ("recvs", i.recvs.load(Relaxed)),
            ("bytes_received", i.bytes_received.load(Relaxed)),
            ("attached", i.attached() as u64),
        ])
    }
}

fn version_from(version: u32) -> String {
    let (major, minor) = guest_kmod_bindings::vmrpc_version_parts(version);
    format!("{major}.{minor}")
}

/// Every VM this process created and may not have closed yet.
static LIVE_VMS: Mutex<Vec<Weak<Vm>>> = Mutex::new(Vec::new());

fn track_live_vm(vm: &Arc<Vm>) {
    let mut live = LIVE_VMS.lock().unwrap_or_else(PoisonError::into_inner);
    live.retain(|w| w.strong_count() > 0);
    live.push(Arc::downgrade(vm));
}

/// Registered with `atexit`: stops every VM still running while Python can
/// still run threads. A VM left to interpreter finalization would deadlock:
/// stopping it joins the RPC engine thread, which must take the GIL once more
/// to leave, and Python parks threads that take the GIL during finalization.
#[pyfunction]
fn stop_all_vms(py: Python<'_>) {
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

/// How often a blocked `wait` wakes to let Python handle signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

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
            rpc_spin_us = None, cpu_limit = None,
        ),
        text_signature = "(image, *, vcpus=1, memory_mib=64, args=..., console_limit=..., rpc_spin_us=..., cpu_limit=None)"
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
        };
        let vm = Arc::new(py.detach(|| Vm::new(config)).map_err(|e| to_pyerr(py, e))?);
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
        py.detach(|| vm.start()).map_err(|e| to_pyerr(py, e))
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
    #[pyo3(signature = (name, version, functions, data_plane = None))]
    fn register_hm(
        &self,
        py: Python<'_>,
        name: &str,
        version: u32,
        functions: HashMap<u32, Py<PyAny>>,
        data_plane: Option<Py<PySocketDataPlane>>,
    ) -> PyResult<()> {
        let vm = self.get()?;
        let submit = py.import("vmrpc._runtime")?.getattr("submit")?.unbind();
        let module = PyHostModule {
            name: name.to_owned(),
            functions,
            submit,
            data_plane,
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

/// Benchmark baseline: `n` cycles of raw KVM (create a VM and one vCPU, run to
/// `hlt`, destroy), in nanoseconds each. GIL released.
#[pyfunction]
fn bench_raw_kvm_cycles(py: Python<'_>, n: usize) -> PyResult<Vec<u64>> {
    py.detach(|| {
        let kvm_fd = kvm_ioctls::Kvm::new().map_err(crate::error::kvm("opening /dev/kvm"))?;
        (0..n)
            .map(|_| crate::baseline::raw_kvm_cycle(&kvm_fd))
            .collect::<Result<Vec<_>, _>>()
    })
    .map_err(|e| to_pyerr(py, e))
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

#[pymodule]
fn _vmm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Rust `log` records go to Python's `logging` (loggers named after the target).
    let _ = pyo3_log::try_init();
    let py = m.py();
    m.add_class::<PyVm>()?;
    let stop_all = wrap_pyfunction!(stop_all_vms, m)?;
    py.import("atexit")?
        .call_method1("register", (&stop_all,))?;
    m.add_class::<PySocketDataPlane>()?;
    m.add_function(wrap_pyfunction!(bench_raw_kvm_cycles, m)?)?;
    m.add_function(wrap_pyfunction!(abi::abi_table, m)?)?;
    crate::linux::python::add(m)?;
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
    evq::add_exceptions(m)?;
    m.add("MAX_VCPUS", crate::config::MAX_VCPUS)?;
    m.add("MAX_PAYLOAD", guest_kmod_bindings::VMRPC_MAX_PAYLOAD)?;
    Ok(())
}
