//! Moving events through a queue's slots: taking them off the g2h ring and
//! putting them on the h2g ring.
//!
//! The guest is untrusted. Per operation the host reads the guest's index
//! (g2h head, h2g tail) once and validates it against its own copy of the
//! index it owns (g2h tail, h2g head), reads each slot's `len` once and
//! validates it against `max_event_size`, and reaches guest memory only through
//! a slice of exactly one ring, so nothing outside the queue's rings is ever
//! touched. A ring that fails validation makes the operation fail with
//! `EvqError::Corrupt`; nothing panics.

use std::sync::atomic::Ordering;

use guest_kmod_bindings::{ring_off, EvSlot};
use vm_memory::{Bytes, VolatileMemory};

use super::error::EvqError;
use super::geometry::SLOT_HDR;
use super::notify::{GuestSlice, IrqSkip};
use super::queue::{mem_err, EventQueue};
use super::wait::lock;

impl EventQueue {
    // ---- guest -> host ---------------------------------------------------------------

    /// Takes up to `max` events off the g2h ring, handing each payload to `sink`
    /// (a view of guest memory valid for the call only; copy it out). Returns
    /// how many were taken; 0 if the ring is empty. `sink` runs with the
    /// consumer lock held: it must not call back into this queue.
    ///
    /// A slot with an impossible length stops the batch before it: the events
    /// before it are taken, and the next call reports the corruption.
    pub fn take(
        &self,
        max: usize,
        mut sink: impl FnMut(GuestSlice<'_>),
    ) -> Result<usize, EvqError> {
        self.check_open()?;
        let mut side = lock(&self.consumer);
        let ring = self.ring(self.g2h)?;
        let head: u32 = ring
            .load(ring_off::HEAD as usize, Ordering::Acquire)
            .map_err(mem_err)?;
        let avail = self.available(head, side.index)?;
        let want = avail.min(u32::try_from(max).unwrap_or(u32::MAX));
        let mut tail = side.index;
        let mut taken = 0u32;
        let mut bad = None;
        while taken < want {
            let off = self.geo.slot_offset(tail);
            let slot: EvSlot = ring.read_obj(off as usize).map_err(mem_err)?;
            let Some(len) = self.geo.valid_len(slot.len) else {
                bad = Some(self.corrupt(format!(
                    "guest-to-host event {tail} has length {}, more than max_event_size {}",
                    slot.len, self.geo.max_event_size
                )));
                break;
            };
            let payload = ring
                .get_slice((off + SLOT_HDR) as usize, len)
                .map_err(mem_err)?;
            sink(payload);
            tail = tail.wrapping_add(1);
            taken += 1;
        }
        if taken > 0 {
            side.index = tail;
            ring.store(tail, ring_off::TAIL as usize, Ordering::Release)
                .map_err(mem_err)?;
            self.link.stats.events_guest_to_host.add(taken.into());
            // The guest producer sleeps only on a full ring.
            let entries = self.geo.entries;
            let full = |head: u32| head.wrapping_sub(tail) == entries;
            self.wake(
                &ring,
                (ring_off::PRODUCER_WAITING, ring_off::PRODUCER_VCPU),
                Some(IrqSkip {
                    index_off: ring_off::HEAD,
                    irq_at: &mut side.irq_at,
                    may_sleep_at: &full,
                }),
            );
        }
        match bad {
            Some(e) if taken == 0 => Err(e),
            _ => Ok(taken as usize),
        }
    }

    /// Takes up to `max` events into `buf` (payloads back to back) and `lens`
    /// (one length per event), both cleared first. Returns the count.
    pub fn take_into(
        &self,
        max: usize,
        buf: &mut Vec<u8>,
        lens: &mut Vec<usize>,
    ) -> Result<usize, EvqError> {
        buf.clear();
        lens.clear();
        self.take(max, |payload| {
            let at = buf.len();
            buf.resize(at + payload.len(), 0);
            payload.copy_to(&mut buf[at..]);
            lens.push(payload.len());
        })
    }

    // ---- host -> guest ---------------------------------------------------------------

    /// Puts as many of `events` as fit, in order, and returns how many; 0 if
    /// the ring is full. Every length is checked before anything is written.
    pub fn put<B: AsRef<[u8]>>(&self, events: &[B]) -> Result<usize, EvqError> {
        if let Some(big) = events
            .iter()
            .find(|e| e.as_ref().len() > self.geo.max_event_size as usize)
        {
            return Err(EvqError::TooBig {
                name: self.name.clone(),
                len: big.as_ref().len(),
                max: self.geo.max_event_size,
            });
        }
        self.check_open()?;
        let mut side = lock(&self.producer);
        let ring = self.ring(self.h2g)?;
        let tail: u32 = ring
            .load(ring_off::TAIL as usize, Ordering::Acquire)
            .map_err(mem_err)?;
        let free = self.free(side.index, tail)?;
        let n = events.len().min(free as usize);
        let mut head = side.index;
        for event in &events[..n] {
            let data = event.as_ref();
            let off = self.geo.slot_offset(head) as usize;
            let slot = EvSlot {
                len: data.len() as u32,
                _pad: 0,
            };
            ring.write_obj(slot, off).map_err(mem_err)?;
            ring.write_slice(data, off + SLOT_HDR as usize)
                .map_err(mem_err)?;
            head = head.wrapping_add(1);
        }
        if n > 0 {
            side.index = head;
            // Release: the slots are visible before the head that publishes them.
            ring.store(head, ring_off::HEAD as usize, Ordering::Release)
                .map_err(mem_err)?;
            self.link.stats.events_host_to_guest.add(n as u64);
            #[cfg(test)]
            if let Some(hook) = &mut lock(&self.hooks).after_publish {
                hook();
            }
            // The guest consumer sleeps only on an empty ring.
            let empty = |tail: u32| tail == head;
            self.wake(
                &ring,
                (ring_off::CONSUMER_WAITING, ring_off::CONSUMER_VCPU),
                Some(IrqSkip {
                    index_off: ring_off::TAIL,
                    irq_at: &mut side.irq_at,
                    may_sleep_at: &empty,
                }),
            );
        }
        Ok(n)
    }
}
