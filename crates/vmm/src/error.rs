//! The VMM's error type. Each variant maps to one Python exception class in
//! `python/errors.rs`; the doc comment on each says when it happens.

use crate::config::ConfigError;
use crate::image::ImageError;
use crate::outcome::GuestFailure;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The VM's CPU limit could not be put in place (cgroups unusable).
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    /// The guest image is missing or unusable.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A KVM ioctl failed.
    #[error("{op} failed: {source}")]
    Kvm {
        op: &'static str,
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be set up.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The interrupt set-up (irqchip, MSI routes, irqfds) failed.
    #[error(transparent)]
    Irq(#[from] crate::irq::IrqError),
    /// VM RPC (shared region, doorbell, engine thread) could not be set up.
    #[error(transparent)]
    Rpc(#[from] crate::rpc::RpcError),
    /// Two devices were placed on the same addresses (a VMM bug).
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
    /// An OS resource (thread, eventfd) could not be created.
    #[error("{0}: {1}")]
    Os(&'static str, std::io::Error),
    /// Registering or unregistering a host module failed.
    #[error(transparent)]
    Registry(#[from] crate::rpc::registry::RegistryError),
    /// Creating, deleting or using an event queue failed.
    #[error(transparent)]
    EventQueue(#[from] crate::evq::EvqError),
    /// A snapshot cannot be taken of this VM, or this VM cannot start from one.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// `start` on a VM that was already started or killed.
    #[error("the VM was already started")]
    AlreadyStarted,
    /// `wait` on a VM that was never started.
    #[error("the VM was not started")]
    NotStarted,
    /// The VM was stopped by `kill()` before the guest exited.
    #[error("the VM was killed")]
    Killed,
    /// The guest crashed.
    #[error("guest crashed on vCPU {}: {}", .0.vcpu, .0.reason)]
    GuestCrashed(Box<GuestFailure>),
    /// The guest did not exit in time and was killed.
    #[error("guest timed out: {}", .0.reason)]
    GuestTimeout(Box<GuestFailure>),
}

/// Shorthand for wrapping a KVM ioctl error with the operation's name.
pub fn kvm(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { op, source }
}
