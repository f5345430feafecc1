//! vmrpc: a micro-VMM on KVM whose guests call Python host modules through VM RPC.
//!
//! The crate is a plain Rust library (`cargo test` needs no Python); with the
//! `python` feature it is also the `vmrpc._vmm` extension module.

pub mod arch;
pub mod arena;
pub mod baseline;
pub mod bootinfo;
pub mod bus;
pub mod cgroup;
pub mod config;
pub mod devices;
pub mod error;
pub mod evq;
pub mod exception;
pub mod image;
pub mod irq;
pub mod kick;
pub mod layout;
pub mod linux;
pub mod outcome;
pub mod ring;
pub mod rpc;
pub mod sockfast;
pub mod stats;
pub mod stop;
pub mod symbolize;
#[cfg(test)]
mod test_kvm;
pub mod vcpu;
pub mod vm;

#[cfg(feature = "python")]
mod python;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use config::VmConfig;
pub use error::VmError;
pub use vm::{Vm, VmState};
