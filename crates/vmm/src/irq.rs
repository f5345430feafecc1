//! Interrupts into the guest: the interrupt controller the VM gets (an
//! in-kernel local APIC per vCPU, nothing else), and one MSI route plus irqfd
//! per vCPU, so the host interrupts vCPU `i` by writing the `i`th eventfd.

use kvm_bindings::{
    kvm_enable_cap, kvm_irq_routing_entry, KvmIrqRouting, KVM_CAP_SPLIT_IRQCHIP,
    KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use guest_kmod_bindings::VMRPC_IRQ_VECTOR;

/// First GSI used for the per-vCPU MSI routes (above the IOAPIC pins that a
/// split irqchip reserves).
pub const FIRST_GSI: u32 = 24;
const MSI_ADDRESS_BASE: u32 = 0xfee0_0000;

#[derive(Debug, thiserror::Error)]
pub enum IrqError {
    /// an eventfd for an irqfd could not be created
    #[error("creating an irqfd: {0}")]
    Eventfd(std::io::Error),
    /// more vCPUs than KVM's routing table holds
    #[error("too many MSI routes ({0})")]
    TooManyRoutes(usize),
    /// a KVM ioctl on the interrupt set-up failed
    #[error("{op} failed: {source}")]
    Kvm {
        op: &'static str,
        source: kvm_ioctls::Error,
    },
}

fn kvm(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> IrqError {
    move |source| IrqError::Kvm { op, source }
}

/// An in-kernel local APIC per vCPU and nothing else: the VMM needs the LAPIC
/// for MSIs (irqfd) and in-kernel `hlt`, but no PIC or IOAPIC. Measured on this
/// workplace's host, a full KVM_CREATE_IRQCHIP adds 7-19 ms to every VM's life
/// (at memslot registration or at destruction); the split irqchip adds nothing.
pub fn enable_split_irqchip(vm_fd: &VmFd) -> Result<(), IrqError> {
    let mut cap = kvm_enable_cap {
        cap: KVM_CAP_SPLIT_IRQCHIP,
        ..Default::default()
    };
    // Routes reserved for a user-space IOAPIC; MSI routes use GSIs from here on.
    cap.args[0] = FIRST_GSI as u64;
    vm_fd
        .enable_cap(&cap)
        .map_err(kvm("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)"))
}

/// One irqfd per vCPU, index i for vCPU i, each raising `VMRPC_IRQ_VECTOR` on
/// its vCPU only: the MSI routes are set, then the irqfds registered.
pub fn per_vcpu_irqfds(vm_fd: &VmFd, vcpus: u32) -> Result<Vec<EventFd>, IrqError> {
    let routes: Vec<_> = (0..vcpus)
        .map(|index| {
            let mut route = kvm_irq_routing_entry {
                gsi: FIRST_GSI + index,
                type_: KVM_IRQ_ROUTING_MSI,
                ..Default::default()
            };
            // Physical destination mode, fixed delivery, edge: the vCPU's x2APIC id is its index.
            route.u.msi.address_lo = MSI_ADDRESS_BASE | (index << 12);
            route.u.msi.data = VMRPC_IRQ_VECTOR;
            route
        })
        .collect();
    let irqs = (0..vcpus)
        .map(|_| EventFd::new(EFD_NONBLOCK).map_err(IrqError::Eventfd))
        .collect::<Result<Vec<_>, _>>()?;
    let table =
        KvmIrqRouting::from_entries(&routes).map_err(|_| IrqError::TooManyRoutes(routes.len()))?;
    vm_fd
        .set_gsi_routing(&table)
        .map_err(kvm("KVM_SET_GSI_ROUTING"))?;
    for (index, irq) in irqs.iter().enumerate() {
        vm_fd
            .register_irqfd(irq, FIRST_GSI + index as u32)
            .map_err(kvm("KVM_IRQFD"))?;
    }
    Ok(irqs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::VmError;

    /// An interrupt set-up failure is an IRQ error naming the ioctl, not a
    /// guest-memory one (MSI-route failures used to be `VmError::Memory`).
    #[test]
    fn routes_without_the_irqchip_fail_as_an_irq_error() {
        let Some(kvm) = crate::test_kvm::kvm_or_skip() else {
            return;
        };
        let vm_fd = kvm.create_vm().unwrap();
        // No in-kernel LAPIC yet: KVM refuses MSI routes.
        let err = VmError::from(per_vcpu_irqfds(&vm_fd, 2).unwrap_err());
        assert!(
            matches!(
                err,
                VmError::Irq(IrqError::Kvm {
                    op: "KVM_SET_GSI_ROUTING",
                    ..
                })
            ),
            "{err:?}"
        );
        enable_split_irqchip(&vm_fd).unwrap();
        assert_eq!(per_vcpu_irqfds(&vm_fd, 2).unwrap().len(), 2);
    }
}
