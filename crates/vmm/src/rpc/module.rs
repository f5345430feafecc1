//! Host modules: what guest code binds to and calls, and the native handlers
//! a module may bring. Python modules implement `HostModule` in
//! `python/host_module.rs`; native ones (like `Echo`) live here.

use super::channel::Completion;
use crate::sockfast::SocketDataPlane;

/// A host module's functions. `call` answers through `done`, now or later from
/// any thread (async host functions answer when they finish).
pub trait HostModule: Send + Sync {
    fn has_function(&self, function: u32) -> bool;
    fn call(&self, function: u32, request: &[u8], done: Completion);

    /// The socket data plane among the module's native handlers, whose
    /// sockets the vCPUs' socket I/O exit serves (`devices::sock_io`).
    fn socket_plane(&self) -> Option<&SocketDataPlane> {
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

    /// This handler as the socket data plane, if it is one.
    fn socket_plane(&self) -> Option<&SocketDataPlane> {
        None
    }
}
