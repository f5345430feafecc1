//! A channel: its request ring (guest produces), response ring (host
//! produces) and data area, and `Completion`, the one way to answer a request.
//! A bare guest has one per vCPU; a Linux program one per guest thread.
//!
//! A caller waits for its answer in one of two ways: halted in the runtime's
//! ring-0 gate, woken by the channel's interrupt (bare guests: the channel is
//! its vCPU's), or blocked in the host (`wait_for_answer`, reached through
//! `rpc::wait`), woken when `post` moves the head; its vCPU meanwhile runs
//! other guest threads.

use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use guest_kmod_bindings::{
    ring_off, RespDesc, RingHdr, VMRPC_CHAN_DATA_OFFSET, VMRPC_CHAN_REQ_RING_OFFSET,
    VMRPC_CHAN_RESP_RING_OFFSET, VMRPC_EHOSTFN, VMRPC_ERANGE, VMRPC_ESHUTDOWN,
    VMRPC_RPC_RING_ENTRIES,
};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use crate::ring::ring_free;
use crate::stats::Stats;

const RING_HDR: u64 = std::mem::size_of::<RingHdr>() as u64;
const RESP_DESC: u64 = std::mem::size_of::<RespDesc>() as u64;

struct RespState {
    /// The host's own copy of the response ring's head (never read back).
    head: u32,
    /// Requests taken off the request ring and not yet answered.
    in_flight: u32,
    /// Threads blocked in `wait_for_answer` (`post` notifies only if any).
    waiters: u32,
}

pub struct Channel {
    pub index: u32,
    mem: GuestMemoryMmap,
    pub req_ring: GuestAddress,
    resp_ring: GuestAddress,
    pub data: GuestAddress,
    /// The interrupt of the vCPU whose halt gate waits on this channel; None
    /// for a guest thread's channel (waited on in the host only).
    irq: Option<EventFd>,
    stats: Arc<Stats>,
    resp: Mutex<RespState>,
    /// Signalled (under `resp`) when the head moves or the VM stops.
    answered: Condvar,
}

impl Channel {
    /// `base` is the channel's guest address, inside the shared region.
    pub fn new(
        index: u32,
        mem: GuestMemoryMmap,
        base: u64,
        irq: Option<EventFd>,
        stats: Arc<Stats>,
    ) -> Self {
        Channel {
            index,
            mem,
            req_ring: GuestAddress(base + VMRPC_CHAN_REQ_RING_OFFSET as u64),
            resp_ring: GuestAddress(base + VMRPC_CHAN_RESP_RING_OFFSET as u64),
            data: GuestAddress(base + VMRPC_CHAN_DATA_OFFSET as u64),
            irq,
            stats,
            resp: Mutex::new(RespState {
                head: 0,
                in_flight: 0,
                waiters: 0,
            }),
            answered: Condvar::new(),
        }
    }

    /// The request ring's head (guest-written) and the host's response head,
    /// or None while a request is being answered (`vm::snapshot`).
    pub fn quiescent_heads(&self) -> Option<(u32, u32)> {
        let st = self.resp.lock().unwrap_or_else(PoisonError::into_inner);
        (st.in_flight == 0).then(|| (self.load(self.req_ring, ring_off::HEAD), st.head))
    }

    /// Takes the host's response head from a snapshot, before the VM runs.
    pub fn resume_response_head(&self, head: u32) {
        self.resp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .head = head;
    }

    pub fn irq(&self) -> Option<&EventFd> {
        self.irq.as_ref()
    }

    /// Blocks until the response ring's head (the host's own copy, so a guest
    /// that rewrites its ring cannot keep a waiter asleep or wake it) differs
    /// from `seen`, or `stopping()` holds: Ok, or Err(VMRPC_ESHUTDOWN).
    /// Checked under the lock `post` takes to move the head, and `wake_all`
    /// takes after the stop flag is set, so no answer or stop is missed.
    pub fn wait_for_answer(&self, seen: u32, stopping: impl Fn() -> bool) -> Result<(), i32> {
        let mut st = self.resp.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if st.head != seen {
                return Ok(());
            }
            if stopping() {
                return Err(VMRPC_ESHUTDOWN);
            }
            st.waiters += 1;
            st = self
                .answered
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
            st.waiters -= 1;
        }
    }

    /// Wakes every thread in `wait_for_answer` (the VM stops: each sees it).
    pub fn wake_all(&self) {
        let _st = self.resp.lock().unwrap_or_else(PoisonError::into_inner);
        self.answered.notify_all();
    }

    pub fn mem(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    fn load(&self, ring: GuestAddress, field: u64) -> u32 {
        // The address is inside the shared region by construction; a failure
        // would be a VMM bug, and 0 is a harmless value for every field.
        self.mem
            .load(ring.unchecked_add(field), Ordering::Acquire)
            .unwrap_or(0)
    }

    /// Reserves room in the response ring for one more answer, so a request is
    /// only taken off the request ring when its answer cannot be lost.
    pub fn reserve(&self) -> bool {
        let mut st = self.resp.lock().unwrap_or_else(PoisonError::into_inner);
        let tail = self.load(self.resp_ring, ring_off::TAIL);
        match ring_free(st.head, tail, VMRPC_RPC_RING_ENTRIES) {
            Some(free) if free > st.in_flight => {
                st.in_flight += 1;
                true
            }
            _ => false,
        }
    }

    /// Publishes an answer in the response ring and interrupts the vCPU only if
    /// it said it is going to sleep (flag read after a full barrier: Dekker).
    fn post(&self, tag: u64, status: i32) {
        {
            let mut st = self.resp.lock().unwrap_or_else(PoisonError::into_inner);
            st.in_flight -= 1;
            let tail = self.load(self.resp_ring, ring_off::TAIL);
            if ring_free(st.head, tail, VMRPC_RPC_RING_ENTRIES).unwrap_or(0) == 0 {
                // Only a guest that rewrote its tail gets here; its answer is dropped.
                self.stats.rpc_malformed.inc();
                log::warn!(target: "vmrpc::rpc", "vCPU {}: response ring corrupt, answer dropped", self.index);
                return;
            }
            let slot = (st.head % VMRPC_RPC_RING_ENTRIES) as u64;
            let at = self.resp_ring.unchecked_add(RING_HDR + slot * RESP_DESC);
            let desc = RespDesc {
                tag,
                status,
                _pad: 0,
            };
            if self.mem.write_obj(desc, at).is_err() {
                return;
            }
            st.head = st.head.wrapping_add(1);
            let _ = self.mem.store(
                st.head,
                self.resp_ring.unchecked_add(ring_off::HEAD),
                Ordering::Release,
            );
            // A thread blocked in the host for this answer (under the lock:
            // it checked the head before it slept).
            if st.waiters > 0 {
                self.stats.rpc_host_wakes.inc();
                self.answered.notify_all();
            }
        }
        self.stats.rpcs.inc();
        if status < 0 {
            self.stats.rpc_errors.inc();
        }
        fence(Ordering::SeqCst);
        let Some(irq) = &self.irq else {
            return;
        };
        if self.load(self.resp_ring, ring_off::CONSUMER_WAITING) != 0 {
            self.stats.interrupts.inc();
            if let Err(e) = irq.write(1) {
                log::error!(target: "vmrpc::rpc", "vCPU {}: irqfd write failed: {e}", self.index);
            }
        }
    }
}

/// The pending answer to one request. Consuming it with `ok` or `err` answers
/// the guest; dropping it unanswered answers `VMRPC_EHOSTFN`, so no caller is
/// ever left blocked.
pub struct Completion {
    chan: Arc<Channel>,
    tag: u64,
    resp_off: u32,
    resp_cap: u32,
    answered: bool,
}

impl Completion {
    /// The caller must already hold a reservation from `Channel::reserve`.
    pub fn new(chan: Arc<Channel>, tag: u64, resp_off: u32, resp_cap: u32) -> Self {
        Completion {
            chan,
            tag,
            resp_off,
            resp_cap,
            answered: false,
        }
    }

    /// The guest's response buffer size.
    pub fn capacity(&self) -> usize {
        self.resp_cap as usize
    }

    /// Answers with `data`, or `VMRPC_ERANGE` if it does not fit the guest's buffer.
    pub fn ok(mut self, data: &[u8]) {
        self.answered = true;
        if data.len() > self.resp_cap as usize {
            log::warn!(
                target: "vmrpc::rpc",
                "host function returned {} bytes; the guest's buffer holds {} (VMRPC_ERANGE)",
                data.len(),
                self.resp_cap
            );
            self.chan.post(self.tag, VMRPC_ERANGE);
            return;
        }
        let at = self.chan.data.unchecked_add(self.resp_off as u64);
        let status = match self.chan.mem.write_slice(data, at) {
            Ok(()) => data.len() as i32,
            Err(_) => VMRPC_EHOSTFN,
        };
        self.chan.post(self.tag, status);
    }

    /// Guest memory, for writing an answer in place (see `response_area`).
    pub fn mem(&self) -> &GuestMemoryMmap {
        &self.chan.mem
    }

    /// Answers with the `len` bytes already written at `response_area`.
    pub fn ok_in_place(mut self, len: usize) {
        self.answered = true;
        let status = if len <= self.resp_cap as usize {
            len as i32
        } else {
            VMRPC_ERANGE
        };
        self.chan.post(self.tag, status);
    }

    /// Answers with an error code (`VMRPC_E*`).
    pub fn err(mut self, code: i32) {
        self.answered = true;
        self.chan.post(self.tag, code);
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.answered {
            log::warn!(target: "vmrpc::rpc", "a host module dropped a call without answering it");
            self.chan.post(self.tag, VMRPC_EHOSTFN);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Mutants these kill (applied by hand, seen to survive the other unit
    //! tests before): `reserve` allowing one more request in flight than
    //! the response ring holds (an answer is then dropped), and `post`
    //! interrupting always or never instead of when `consumer_waiting` is set;
    //! `post` without its check of the guest's tail (it then writes over
    //! answers the guest has not read and moves its head past them).
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    fn channel() -> (Arc<Channel>, GuestMemoryMmap) {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let chan = Channel::new(
            0,
            mem.clone(),
            0x1000,
            Some(irq),
            Arc::new(Stats::default()),
        );
        (Arc::new(chan), mem)
    }

    #[test]
    fn a_full_response_ring_takes_no_more_requests_and_drops_no_answer() {
        let (chan, _mem) = channel();
        // The guest consumes nothing: exactly one ring of requests is taken.
        let taken = (0..2 * VMRPC_RPC_RING_ENTRIES)
            .take_while(|_| chan.reserve())
            .count();
        assert_eq!(taken, VMRPC_RPC_RING_ENTRIES as usize);
        for tag in 0..taken as u64 {
            Completion::new(chan.clone(), tag, 0, 0).ok(&[]);
        }
        assert_eq!(chan.stats.rpcs.get(), taken as u64);
        assert_eq!(chan.stats.rpc_malformed.get(), 0, "no answer dropped");
        assert!(!chan.reserve(), "still full until the guest consumes");
    }

    /// A guest that rewrites its response tail after a request was taken
    /// (the ring then looks full, or the tail is ahead of the host's head):
    /// the answer is dropped and counted, nothing is written.
    #[test]
    fn a_rewritten_response_tail_drops_the_answer() {
        let (chan, mem) = channel();
        let head = chan.resp_ring.unchecked_add(ring_off::HEAD);
        let tail = chan.resp_ring.unchecked_add(ring_off::TAIL);
        let slot0 = chan.resp_ring.unchecked_add(RING_HDR);
        for (bad_tail, dropped) in [(0u32.wrapping_sub(VMRPC_RPC_RING_ENTRIES), 1), (5, 2)] {
            assert!(chan.reserve());
            mem.store(bad_tail, tail, Ordering::SeqCst).unwrap();
            Completion::new(chan.clone(), 7, 0, 0).ok(&[]);
            assert_eq!(chan.stats.rpc_malformed.get(), dropped);
            assert_eq!(mem.load::<u32>(head, Ordering::SeqCst).unwrap(), 0);
            let desc: RespDesc = mem.read_obj(slot0).unwrap();
            assert_eq!(desc.tag, 0, "no answer written over the guest's");
            mem.store(0u32, tail, Ordering::SeqCst).unwrap();
        }
        assert_eq!(chan.stats.rpcs.get(), 0);
    }

    #[test]
    fn the_guest_is_interrupted_exactly_when_it_waits() {
        let (chan, mem) = channel();
        let waiting = chan.resp_ring.unchecked_add(ring_off::CONSUMER_WAITING);
        assert!(chan.reserve());
        Completion::new(chan.clone(), 1, 0, 0).ok(&[]);
        let irq = chan.irq().unwrap();
        assert!(irq.read().is_err(), "not waiting: no interrupt");
        mem.store(1u32, waiting, Ordering::SeqCst).unwrap();
        assert!(chan.reserve());
        Completion::new(chan.clone(), 2, 0, 0).err(VMRPC_EHOSTFN);
        assert_eq!(irq.read().unwrap(), 1, "waiting: one interrupt");
        assert_eq!(chan.stats.interrupts.get(), 1);
        assert_eq!(chan.stats.rpc_errors.get(), 1);
    }
}
