//! Event queues, host side. The protocol is specified in abi.h ("Event
//! queues"). Bottom to top: `error` (what fails), `geometry` (a queue's shape
//! and slot places), `link` (what all queues of a VM share), `notify`
//! (interrupting the guest), `wait` (host waiters), `queue` (one queue: its
//! rings, waiting, closing) with `slots` (taking and putting events), and
//! `host` (the queues of one VM, the arena and the doorbells).

pub mod error;
pub mod geometry;
pub mod host;
pub mod link;
mod notify;
pub mod queue;
mod slots;
mod wait;

#[cfg(test)]
mod tests;

pub use error::{CloseReason, EvqError, Wait};
pub use host::{EvqHost, MAX_NAME};
pub use link::VmLink;
pub use notify::GuestSlice;
pub use queue::EventQueue;
