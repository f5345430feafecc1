//! Waiting for an RPC answer in the host (`VMRPC_MMIO_RPC_WAIT`).
//!
//! A Linux program's thread that has spun briefly on its channel's response
//! ring writes the address of a `struct vmrpc_rpc_wait` here. The write may
//! block (`BusDevice::may_block`), so a vCPU loop of the pool gives the vCPU
//! to another guest thread first; this device then blocks the thread's
//! carrier in `Channel::wait_for_answer` until the engine posts an answer on
//! that channel or the VM stops, and the carrier takes a vCPU again. One
//! exit replaces the runtime's ring-0 halt gate, whose `ud2`, `sti; hlt` and
//! interrupt handler PVM emulates instruction by instruction, and the
//! injected interrupt that ended it.
//!
//! The request is guest input: copied once, its channel checked
//! (`thread_channel`), and only `result` written back. A request outside
//! guest memory cannot be answered and is dropped.

use std::sync::{Arc, Weak};

use guest_kmod_bindings::{vmrpc_rpc_wait, VMRPC_EINVAL};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::channel::Channel;
use crate::bus::{written_value, BusDevice, DeviceAction};
use crate::stats::Stats;
use crate::stop::StopToken;

/// The channel a guest thread named as its own: the one place that maps the
/// guest's channel number to a channel (None: no such channel). A VM with
/// several processes would add the caller's first channel here.
pub fn thread_channel(channels: &[Arc<Channel>], index: u32) -> Option<&Arc<Channel>> {
    channels.get(index as usize)
}

pub struct RpcWaitDevice {
    memory: GuestMemoryMmap,
    channels: Arc<[Arc<Channel>]>,
    stop: StopToken,
    stats: Arc<Stats>,
}

impl RpcWaitDevice {
    pub fn new(
        memory: GuestMemoryMmap,
        channels: Arc<[Arc<Channel>]>,
        stop: StopToken,
        stats: Arc<Stats>,
    ) -> Self {
        // A stop ends every wait at once: the hook wakes each channel's
        // waiters after the stop flag is set, and they check it under the
        // channel's lock.
        let weak: Weak<[Arc<Channel>]> = Arc::downgrade(&channels);
        stop.on_stop(Box::new(move || {
            if let Some(chans) = weak.upgrade() {
                chans.iter().for_each(|c| c.wake_all());
            }
        }));
        RpcWaitDevice {
            memory,
            channels,
            stop,
            stats,
        }
    }

    /// The result for one request: 0, VMRPC_EINVAL or VMRPC_ESHUTDOWN.
    pub fn wait(&self, req: &vmrpc_rpc_wait) -> i64 {
        let Some(chan) = thread_channel(&self.channels, req.channel) else {
            self.stats.rpc_malformed.inc();
            return VMRPC_EINVAL.into();
        };
        self.stats.rpc_host_waits.inc();
        match chan.wait_for_answer(req.seen_head, || self.stop.is_stopped()) {
            Ok(()) => 0,
            Err(code) => code.into(),
        }
    }

    /// Serves the request at `gpa`: copied once, answered in place.
    fn serve(&self, gpa: u64) -> Option<()> {
        let req: vmrpc_rpc_wait = self.memory.read_obj(GuestAddress(gpa)).ok()?;
        let result = self.wait(&req);
        let at = gpa.checked_add(std::mem::offset_of!(vmrpc_rpc_wait, result) as u64)?;
        self.memory.write_obj(result, GuestAddress(at)).ok()
    }
}

impl BusDevice for RpcWaitDevice {
    fn write(&self, _offset: u64, data: &[u8]) -> DeviceAction {
        let _ = self.serve(written_value(data));
        DeviceAction::Continue
    }

    fn may_block(&self, _offset: u64) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    //! Mutants these kill (applied by hand): `thread_channel` without its
    //! bound (a panic on a hostile index), `post` not notifying waiters (the
    //! answered wait hangs), and no stop hook (the stopped wait hangs).
    use super::*;
    use crate::rpc::channel::Completion;
    use guest_kmod_bindings::VMRPC_ESHUTDOWN;

    fn device(n: usize) -> (Arc<RpcWaitDevice>, Arc<[Arc<Channel>]>, GuestMemoryMmap) {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let stats = Arc::new(Stats::default());
        let chans: Arc<[Arc<Channel>]> = (0..n)
            .map(|i| {
                let base = 0x1000 + i as u64 * 0x2000;
                Arc::new(Channel::new(
                    i as u32,
                    mem.clone(),
                    base,
                    None,
                    stats.clone(),
                ))
            })
            .collect();
        let stop = StopToken::new().unwrap();
        let dev = RpcWaitDevice::new(mem.clone(), chans.clone(), stop, stats);
        (Arc::new(dev), chans, mem)
    }

    fn req(channel: u32, seen_head: u32) -> vmrpc_rpc_wait {
        vmrpc_rpc_wait {
            channel,
            seen_head,
            result: 77,
        }
    }

    /// A thread blocked in a wait on `channel`, returned once it sleeps.
    fn blocked(d: &Arc<RpcWaitDevice>, channel: u32) -> std::thread::JoinHandle<i64> {
        let before = d.stats.rpc_host_waits.get();
        let waiter = {
            let d = d.clone();
            std::thread::spawn(move || d.wait(&req(channel, 0)))
        };
        while d.stats.rpc_host_waits.get() == before {
            std::thread::yield_now();
        }
        waiter
    }

    #[test]
    fn a_posted_answer_ends_the_wait_on_its_channel() {
        let (d, chans, _mem) = device(2);
        let waiter = blocked(&d, 1);
        // Another channel's answer leaves it waiting (its head did not move).
        assert!(chans[0].reserve());
        Completion::new(chans[0].clone(), 1, 0, 0).ok(&[]);
        assert!(chans[1].reserve());
        Completion::new(chans[1].clone(), 1, 0, 0).ok(&[]);
        assert_eq!(waiter.join().unwrap(), 0);
        // An answer already there: no sleep at all.
        assert_eq!(d.wait(&req(1, 0)), 0);
    }

    #[test]
    fn a_stopping_vm_ends_the_wait() {
        let (d, _chans, _mem) = device(1);
        let waiter = blocked(&d, 0);
        d.stop.stop();
        assert_eq!(waiter.join().unwrap(), i64::from(VMRPC_ESHUTDOWN));
        assert_eq!(
            d.wait(&req(0, 0)),
            i64::from(VMRPC_ESHUTDOWN),
            "after the stop"
        );
    }

    #[test]
    fn hostile_requests_get_an_error_or_are_dropped() {
        let (d, _chans, mem) = device(2);
        for bad in [2, 64, u32::MAX] {
            mem.write_obj(req(bad, 0), GuestAddress(0x800)).unwrap();
            assert_eq!(d.write(0, &0x800u64.to_le_bytes()), DeviceAction::Continue);
            let back: vmrpc_rpc_wait = mem.read_obj(GuestAddress(0x800)).unwrap();
            assert_eq!(back.result, i64::from(VMRPC_EINVAL));
        }
        assert_eq!(d.stats.rpc_malformed.get(), 3);
        // Outside memory, or wrapping: dropped, never a panic.
        for gpa in [u64::MAX, u64::MAX - 8, 1 << 20] {
            d.write(0, &gpa.to_le_bytes());
        }
        assert!(d.may_block(0));
    }
}
