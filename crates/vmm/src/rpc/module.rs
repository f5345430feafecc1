//! Host modules: what guest code binds to and calls. Python modules implement
//! this trait in `python.rs`; native ones (like `Echo`) live here.

use super::channel::Completion;

/// A host module's functions. `call` answers through `done`, now or later from
/// any thread (async host functions answer when they finish).
pub trait HostModule: Send + Sync {
    fn has_function(&self, function: u32) -> bool;
    fn call(&self, function: u32, request: &[u8], done: Completion);
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
