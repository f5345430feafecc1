//! Per-VM counters, readable from Python as `Vm.stats`. Tests and benchmarks
//! read them to show what happened (e.g. "no exit per RPC"), instead of guessing.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        #[derive(Default, Debug)]
        pub struct Stats {
            $($(#[$doc])* pub $name: Counter,)*
        }

        impl Stats {
            /// Every counter by name, in declaration order.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.get()),)*]
            }
        }
    };
}

counters! {
    /// Guest port writes that exited to the VMM's user space.
    exits_pio_out,
    /// Guest port reads that exited to the VMM's user space.
    exits_pio_in,
    /// MMIO reads and writes that exited to the VMM's user space.
    exits_mmio,
    /// KVM_RUN returns caused by a kick (stop request) rather than the guest.
    exits_kick,
    /// Any other exit (crashes, unexpected reasons).
    exits_other,
    /// Port or MMIO accesses that no device claims (ignored; reads see 0xff).
    unhandled_accesses,
    /// Times a waiting vCPU gave the host CPU away (`VMRPC_MMIO_YIELD`).
    yields,
    /// Doorbell writes the RPC engine consumed (through the ioeventfd).
    doorbells,
    /// Interrupts injected into the guest (irqfd writes).
    interrupts,
    /// RPCs completed, successful or not.
    rpcs,
    /// RPCs answered with an error code.
    rpc_errors,
    /// Requests rejected as malformed (hostile or buggy guest).
    rpc_malformed,
    /// Times the RPC engine went to sleep on its eventfd.
    engine_sleeps,
    /// Waits for an answer in the host (`rpc::wait`): the thread's vCPU was
    /// free for other threads meanwhile.
    rpc_host_waits,
    /// Answers that woke a thread blocked in such a wait.
    rpc_host_wakes,
    /// Events the host took off guest-to-host event queue rings.
    events_guest_to_host,
    /// Events the host put on host-to-guest event queue rings.
    events_host_to_guest,
    /// Event queue doorbell writes that woke a host waiter (ioeventfd or exit).
    evq_doorbells,
    /// Linux threads that blocked in the host futex table (`devices::futex`).
    futex_waits,
    /// Futex wakes that reached the host (a waiter may have been listed).
    futex_wakes,
    /// vCPUs created (KVM_CREATE_VCPU): all at once, or on demand (`vm::launch`).
    vcpus_created,
    /// A guest thread's registers loaded into a vCPU another thread had (`vm::pool`).
    context_switches,
    /// Running guest threads that gave their vCPU up to a waiting one (`vm::pool`).
    preemptions,
    /// Socket I/O exits (`devices::sock_io`): large receives and sends on the vCPU thread.
    sockio_calls,
    /// Times one of them waited in poll(2) for its socket.
    sockio_waits,
    /// Bytes they moved.
    sockio_bytes,
}

#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Stats {
    /// All exits to the VMM's user space, of any kind.
    pub fn exits_total(&self) -> u64 {
        self.exits_pio_out.get()
            + self.exits_pio_in.get()
            + self.exits_mmio.get()
            + self.exits_other.get()
    }
}
