//! Host modules: what guest code binds to and calls. Python modules implement
//! this trait in `python.rs`; native ones (like `Echo`) live here.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::channel::Completion;

/// Bytes of a request copied out of guest memory for `call_in_place`.
pub const IN_PLACE_HEAD: usize = 64;

/// A request still in guest memory at `[addr, addr + len)`. Its first bytes are
/// copied into `head` (at most `IN_PLACE_HEAD`): a module parses only `head`,
/// and may move the bytes after what it parsed straight between guest memory and
/// the host (a data plane's payload, which it never interprets).
pub struct InPlace<'a> {
    pub head: &'a [u8],
    pub mem: &'a GuestMemoryMmap,
    pub addr: GuestAddress,
    pub len: usize,
}

/// A host module's functions. `call` answers through `done`, now or later from
/// any thread (async host functions answer when they finish).
pub trait HostModule: Send + Sync {
    fn has_function(&self, function: u32) -> bool;
    fn call(&self, function: u32, request: &[u8], done: Completion);

    /// Offered first, before the request is copied out of guest memory: answer
    /// (return None) or hand `done` back for `call` with the copied request.
    fn call_in_place(
        &self,
        _function: u32,
        _request: &InPlace<'_>,
        done: Completion,
    ) -> Option<Completion> {
        Some(done)
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
