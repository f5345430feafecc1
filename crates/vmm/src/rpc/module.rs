//! Host modules: what guest code binds to and calls, and the native handlers
//! a module may bring. Python modules implement `HostModule` in
//! `python/host_module.rs`; native ones (like `Echo`) live here.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::channel::Completion;

/// A host module's functions. `call` answers through `done`, now or later from
/// any thread (async host functions answer when they finish).
pub trait HostModule: Send + Sync {
    fn has_function(&self, function: u32) -> bool;
    fn call(&self, function: u32, request: &[u8], done: Completion);

    /// The sockets of the module's native handlers, which the vCPUs' socket
    /// I/O exit serves (`devices::sock_io`).
    fn native_sockets(&self) -> Option<&dyn NativeSockets> {
        None
    }
}

/// The built-in `echo` module (version 1.0): function 0 returns the request,
/// function 1 returns nothing. For tests and for measuring the transport itself.
pub struct Echo;

pub const ECHO_NAME: &str = "echo";

impl HostModule for Echo {
    fn has_function(&self, function: u32) -> bool {
        function <= 1
    }

    fn call(&self, function: u32, request: &[u8], done: Completion) {
        match function {
            0 => done.ok(request),
            _ => done.ok(&[]),
        }
    }
}

/// Native (Rust) code that serves some calls of a host module on the engine
/// thread before the module's own functions do: a data plane beside a
/// control plane (the socket module's `SocketDataPlane`). The module still
/// declares every function it has; a handler only gets the first word.
pub trait NativeHandler: Send + Sync {
    /// Answers the call (returns `None`), or hands `done` back for the
    /// module's own function to answer.
    fn try_call(&self, function: u32, request: &[u8], done: Completion) -> Option<Completion>;

    /// The sockets this handler serves, if it serves sockets (the socket
    /// module's `SocketDataPlane`).
    fn native_sockets(&self) -> Option<&dyn NativeSockets> {
        None
    }
}

/// Host sockets by the guest's handle, for the socket I/O exit: the exit holds
/// its own reference to a descriptor while it waits, and reports the bytes it
/// moved to the table's counters.
pub trait NativeSockets: Send + Sync {
    fn socket(&self, handle: u32) -> Option<Arc<OwnedFd>>;
    fn count_bytes(&self, sent: bool, bytes: u64);
}
