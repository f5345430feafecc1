use std::sync::{Arc, Mutex};

use kvm_ioctls::{VcpuFd, VmFd};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::{carrier, lock, CarrierHost, Context, GuestThread, Pool};
use crate::bus::Buses;
use crate::devices::console::ConsoleBuffer;
use crate::error::VmError;
use crate::stop::StopToken;
use crate::vm::shared::VmShared;

/// A VM with no guest code: enough for a carrier that finds it stopping.
struct Host {
    shared: VmShared,
    pool: Arc<Pool>,
    vm: VmFd,
}

impl CarrierHost for Host {
    fn shared(&self) -> &VmShared {
        &self.shared
    }

    fn pool(&self) -> Option<&Pool> {
        Some(&self.pool)
    }

    fn create_vcpu(&self, index: u32) -> Result<VcpuFd, VmError> {
        self.vm
            .create_vcpu(u64::from(index))
            .map_err(crate::error::kvm("KVM_CREATE_VCPU"))
    }

    fn spawn_guest_thread(self: &Arc<Self>, _ctx: Context) -> i64 {
        -super::EAGAIN
    }
}

#[test]
fn a_carrier_that_ends_holding_its_vcpu_is_no_holder_any_more() {
    let Some(kvm) = crate::test_kvm::kvm_or_skip() else {
        return;
    };
    let vm = kvm.create_vm().unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    let stop = StopToken::new().unwrap();
    let console = Arc::new(Mutex::new(ConsoleBuffer::new(64)));
    let shared = VmShared::new(Buses::default(), Arc::default(), console, stop.clone(), 1);
    lock(&shared.run).live = 1;
    let pool = Pool::new(memory, 1, &stop);
    // The VM is stopping: the carrier adopts vCPU 0, sees the stop and ends
    // with the vCPU in hand (as after an exit or a crash).
    stop.stop();
    let host = Arc::new(Host {
        shared,
        pool: pool.clone(),
        vm,
    });
    carrier(host.clone(), GuestThread::new(None), Some(vcpu));
    assert_eq!(
        lock(&host.shared.run).live,
        0,
        "the carrier reported its end"
    );
    let st = lock(&pool.state);
    assert!(
        st.holders.is_empty(),
        "an ended carrier is still a holder: a waiter could kick its joined thread"
    );
    assert!(st.queue.is_empty());
}
