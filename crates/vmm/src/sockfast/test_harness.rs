//! The data plane's unit tests' guest: one channel in plain memory that takes
//! the answers `SocketDataPlane::try_call` posts (`tests`, `connect::tests`).
use super::SocketDataPlane;
use crate::rpc::channel::{Channel, Completion};
use crate::rpc::module::NativeHandler;
use crate::stats::Stats;
use guest_kmod_bindings::{
    ring_off, RespDesc, RingHdr, VMRPC_CHAN_DATA_OFFSET, VMRPC_CHAN_RESP_RING_OFFSET,
    VMRPC_RPC_RING_ENTRIES,
};
use std::sync::Arc;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

const BASE: u64 = 0x1000;

pub struct Harness {
    pub mem: GuestMemoryMmap,
    chan: Arc<Channel>,
    answers: u32,
}

impl Harness {
    pub fn new() -> Self {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let irq = EventFd::new(0).unwrap();
        let stats = Arc::new(Stats::default());
        let chan = Arc::new(Channel::new(0, mem.clone(), BASE, Some(irq), stats));
        Harness {
            mem,
            chan,
            answers: 0,
        }
    }

    /// Offers a call to the data plane: true if it answered it (read the
    /// answer with `answer`); false if it left it to Python, whose answer
    /// (an error, here) is taken at once, so the ring stays in step.
    pub fn offer(&mut self, dp: &SocketDataPlane, function: u32, request: &[u8]) -> bool {
        assert!(self.chan.reserve());
        let done = Completion::new(self.chan.clone(), 7, 0, 64);
        match dp.try_call(function, request, done) {
            None => true,
            Some(back) => {
                back.err(1);
                self.take();
                false
            }
        }
    }

    /// The answer just posted, a `T` (its status says so).
    pub fn answer<T: ByteValued>(&mut self) -> T {
        let ring = BASE + VMRPC_CHAN_RESP_RING_OFFSET as u64;
        let index = (self.answers % VMRPC_RPC_RING_ENTRIES) as usize;
        let slot = ring + (size_of::<RingHdr>() + index * size_of::<RespDesc>()) as u64;
        let desc: RespDesc = self.mem.read_obj(GuestAddress(slot)).unwrap();
        assert_eq!(desc.status as usize, size_of::<T>());
        self.take();
        self.mem
            .read_obj(GuestAddress(BASE + VMRPC_CHAN_DATA_OFFSET as u64))
            .unwrap()
    }

    /// The guest consumes one answer, so the ring never fills.
    fn take(&mut self) {
        self.answers += 1;
        let ring = BASE + VMRPC_CHAN_RESP_RING_OFFSET as u64;
        self.mem
            .write_obj(self.answers, GuestAddress(ring + ring_off::TAIL))
            .unwrap();
    }
}
