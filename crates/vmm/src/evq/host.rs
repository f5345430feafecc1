//! The event queues of one VM: their place in the event queue arena of the
//! shared region, and their doorbells.
//!
//! Arena: a bump allocator. The space of a deleted queue is never given to
//! another queue while the VM lives, because the guest may still hold pointers
//! into it (it reads `closed` there); once the arena is used up, creating a
//! queue fails with `ArenaFull`.
//!
//! Doorbells: every queue has its own eventfd, registered as an ioeventfd on
//! `VMRPC_MMIO_EVQ_DOORBELL` with datamatch = its queue id, so the guest's
//! write wakes exactly that queue without an exit to user space. Queue ids
//! count up from 1 and are never reused, so a stale id never rings another
//! queue's doorbell. A write KVM does not match (an unknown id, a deleted
//! queue, a write that is not 32 bits) exits to the bus device below.
//! The ioeventfd is registered when the queue is made, not lazily like the RPC
//! doorbell's: a queue's first doorbell then costs no exit and the counters
//! stay exact. The price, measured here: a VM whose queue is still registered
//! takes ~16 ms longer to tear down (unregistering on delete costs ~5 ms).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use guest_kmod_bindings::{EvqInfo, RingHdr, VMRPC_ENOQUEUE, VMRPC_MMIO_EVQ_DOORBELL};
use kvm_ioctls::{IoEventAddress, VmFd};
use vm_memory::{Bytes, GuestAddress};

use super::error::{CloseReason, EvqError};
use super::geometry::{Geometry, RING_ALIGN};
use super::link::VmLink;
use super::queue::EventQueue;
use crate::bus::{BusDevice, DeviceAction};

/// Longest queue name, as for module names.
pub const MAX_NAME: usize = 255;

struct Inner {
    /// Arena bytes handed out so far (never given back).
    used: u64,
    next_id: u32,
    by_name: HashMap<String, Arc<EventQueue>>,
    by_id: HashMap<u32, Arc<EventQueue>>,
}

/// The event queues of one VM.
pub struct EvqHost {
    vm_fd: Arc<VmFd>,
    link: Arc<VmLink>,
    shared_base: u64,
    /// The arena, as an offset from `shared_base`, and its size.
    arena: (u64, u64),
    inner: Mutex<Inner>,
}

impl EvqHost {
    pub fn new(vm_fd: Arc<VmFd>, link: VmLink, shared_base: u64, arena: (u64, u64)) -> Self {
        EvqHost {
            vm_fd,
            link: Arc::new(link),
            shared_base,
            arena,
            inner: Mutex::new(Inner {
                used: 0,
                next_id: 1,
                by_name: HashMap::new(),
                by_id: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates a queue: checks the shape, places both rings in the arena,
    /// zeroes their headers and registers the doorbell.
    pub fn make(
        &self,
        name: &str,
        capacity: u64,
        max_event_size: u64,
    ) -> Result<Arc<EventQueue>, EvqError> {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(EvqError::BadName(name.len()));
        }
        if name.contains('\0') {
            return Err(EvqError::NulInName(name.to_owned()));
        }
        let geo = Geometry::new(capacity, max_event_size)?;
        let mut inner = self.lock();
        if inner.by_name.contains_key(name) {
            return Err(EvqError::Exists(name.to_owned()));
        }
        let (arena_off, arena_size) = self.arena;
        // The arena starts on a page, so RING_ALIGN offsets are aligned addresses.
        let start = inner.used.next_multiple_of(RING_ALIGN);
        let need = geo.queue_bytes();
        if start.saturating_add(need) > arena_size {
            return Err(EvqError::ArenaFull {
                name: name.to_owned(),
                need,
                left: arena_size.saturating_sub(start),
                size: arena_size,
            });
        }
        let g2h = GuestAddress(self.shared_base + arena_off + start);
        let h2g = GuestAddress(g2h.0 + geo.ring_stride());
        for at in [g2h, h2g] {
            self.link
                .mem
                .write_obj(RingHdr::default(), at)
                .map_err(|e| EvqError::Memory(e.to_string()))?;
        }
        let id = inner.next_id;
        let queue = Arc::new(EventQueue::new(
            name.to_owned(),
            id,
            geo,
            (g2h, h2g),
            self.shared_base,
            self.link.clone(),
        )?);
        queue
            .with_notify_fd(|fd| {
                self.vm_fd
                    .register_ioevent(fd, &IoEventAddress::Mmio(VMRPC_MMIO_EVQ_DOORBELL), id)
            })
            .ok_or_else(|| EvqError::Memory("a new queue has no eventfds".into()))?
            .map_err(|source| EvqError::Kvm {
                op: "KVM_IOEVENTFD (event queue doorbell)",
                source,
            })?;
        // Committed: from here on the space and the id are taken for good.
        inner.used = start + need;
        inner.next_id += 1;
        inner.by_name.insert(name.to_owned(), queue.clone());
        inner.by_id.insert(id, queue.clone());
        log::debug!(target: "vmrpc::evq", "queue {name:?} id {id}: {} x {} bytes per direction at {g2h:#x?}", geo.entries, geo.max_event_size);
        Ok(queue)
    }

    /// Deletes a queue: closes it (waking every waiter), unregisters its
    /// doorbell, and forgets its name. Its arena space stays unused.
    pub fn delete(&self, name: &str) -> Result<(), EvqError> {
        let queue = {
            let mut inner = self.lock();
            let q = inner
                .by_name
                .remove(name)
                .ok_or_else(|| EvqError::NotFound(name.to_owned()))?;
            inner.by_id.remove(&q.id());
            q
        };
        queue.close(CloseReason::Deleted);
        let unregistered = queue.with_notify_fd(|fd| {
            self.vm_fd.unregister_ioevent(
                fd,
                &IoEventAddress::Mmio(VMRPC_MMIO_EVQ_DOORBELL),
                queue.id(),
            )
        });
        if let Some(Err(e)) = unregistered {
            log::warn!(target: "vmrpc::evq", "queue {name:?}: unregistering its doorbell failed: {e}");
        }
        queue.release_fds();
        Ok(())
    }

    /// The live queue of that name.
    pub fn get(&self, name: &str) -> Option<Arc<EventQueue>> {
        self.lock().by_name.get(name).cloned()
    }

    /// Names of the live queues, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<_> = self.lock().by_name.keys().cloned().collect();
        v.sort();
        v
    }

    /// VMRPC_SYS_OPEN_EVQ: the queue's layout for the guest, by name.
    pub fn open(&self, name: &[u8]) -> Result<EvqInfo, i32> {
        let name = std::str::from_utf8(name).map_err(|_| VMRPC_ENOQUEUE)?;
        self.get(name).map(|q| q.info()).ok_or(VMRPC_ENOQUEUE)
    }

    /// Closes every queue (the VM goes away); their memory stays mapped for as
    /// long as anyone holds a queue.
    pub fn close_all(&self) {
        let queues: Vec<_> = {
            let mut inner = self.lock();
            inner.by_id.clear();
            inner.by_name.drain().map(|(_, q)| q).collect()
        };
        for q in queues {
            q.close(CloseReason::VmClosed);
            // The VM's fd goes next, and its ioeventfds with it: the queue's
            // own descriptors are of no more use (see `EventQueue::release_fds`).
            q.release_fds();
        }
        self.link.release_fds();
    }

    /// Bytes of the arena still free.
    pub fn arena_left(&self) -> u64 {
        self.arena.1.saturating_sub(self.lock().used)
    }

    /// The fallback device for the doorbell address.
    pub fn doorbell_device(self: &Arc<Self>) -> Arc<dyn BusDevice> {
        Arc::new(EvqDoorbell(Arc::downgrade(self)))
    }

    fn ring_doorbell(&self, id: u32) {
        let queue = self.lock().by_id.get(&id).cloned();
        if let Some(q) = queue {
            self.link.stats.evq_doorbells.inc();
            let _ = q.with_notify_fd(|fd| fd.write(1));
        }
    }
}

/// `VMRPC_MMIO_EVQ_DOORBELL` as a bus device: reached only when KVM did not
/// match the write to a queue's ioeventfd. A 32-bit write of a live queue's id
/// still rings it (at the cost of an exit); anything else is ignored.
struct EvqDoorbell(Weak<EvqHost>);

impl BusDevice for EvqDoorbell {
    fn write(&self, offset: u64, data: &[u8]) -> DeviceAction {
        if let (0, Ok(bytes), Some(host)) = (offset, <[u8; 4]>::try_from(data), self.0.upgrade()) {
            host.ring_doorbell(u32::from_le_bytes(bytes));
        }
        DeviceAction::Continue
    }
}
