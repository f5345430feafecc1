//! How a VM ends, as the vCPU threads and the owner report it.

use crate::exception::GuestException;

/// Named register values, for error reports.
pub type Registers = Vec<(&'static str, u64)>;

/// How a crashed or timed-out guest looked when it stopped.
#[derive(Debug, Clone)]
pub struct GuestFailure {
    pub vcpu: u32,
    pub reason: String,
    pub registers: Registers,
    pub console_tail: String,
    /// The exception the guest runtime reported, if the crash was one.
    pub exception: Option<GuestException>,
}

/// What ended the VM. The first one reported wins.
#[derive(Debug, Clone)]
pub enum Outcome {
    Exited(i32),
    Crashed(GuestFailure),
    Killed,
    TimedOut(GuestFailure),
}
