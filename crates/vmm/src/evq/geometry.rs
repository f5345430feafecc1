//! Event queue geometry and the checks on what the guest writes into a queue.
//! Pure functions over values already copied out of guest memory, so they can
//! be property-tested without a VM.

use guest_kmod_bindings::{
    vmrpc_evq_slot_size, EvSlot, RingHdr, VMRPC_EVQ_MAX_ENTRIES, VMRPC_EVQ_MAX_EVENT_SIZE,
};

use super::error::EvqError;

/// Bytes of a ring header (`struct vmrpc_ring`); the slots follow it.
pub const RING_HDR: u64 = std::mem::size_of::<RingHdr>() as u64;
/// Bytes of a slot header (`struct vmrpc_ev_slot`); the payload follows it.
pub const SLOT_HDR: u64 = std::mem::size_of::<EvSlot>() as u64;
/// Rings start on a cache line, so the producer and consumer lines of a ring
/// header never share a line with anything else.
pub const RING_ALIGN: u64 = 64;

/// The fixed shape of one queue, chosen by the host at creation and never read
/// back from guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Slots per direction, a power of two.
    pub entries: u32,
    pub max_event_size: u32,
    /// `align8(SLOT_HDR + max_event_size)`.
    pub slot_size: u32,
}

impl Geometry {
    /// Checks the host's requested capacity and event size.
    pub fn new(capacity: u64, max_event_size: u64) -> Result<Self, EvqError> {
        if capacity == 0 || capacity > VMRPC_EVQ_MAX_ENTRIES as u64 || !capacity.is_power_of_two() {
            return Err(EvqError::BadCapacity(capacity));
        }
        if max_event_size == 0 || max_event_size > VMRPC_EVQ_MAX_EVENT_SIZE as u64 {
            return Err(EvqError::BadEventSize(max_event_size));
        }
        let max_event_size = max_event_size as u32;
        Ok(Geometry {
            entries: capacity as u32,
            max_event_size,
            slot_size: vmrpc_evq_slot_size(max_event_size),
        })
    }

    /// Bytes of one ring: header and slots.
    pub fn ring_bytes(&self) -> u64 {
        RING_HDR + self.entries as u64 * self.slot_size as u64
    }

    /// Bytes one ring takes in the arena (rounded up to `RING_ALIGN`).
    pub fn ring_stride(&self) -> u64 {
        self.ring_bytes().next_multiple_of(RING_ALIGN)
    }

    /// Arena bytes of a whole queue: the g2h ring, then the h2g ring.
    pub fn queue_bytes(&self) -> u64 {
        2 * self.ring_stride()
    }

    /// Offset, from the ring's start, of the slot that free-running index
    /// `index` uses. Always inside the ring: `slot_offset + SLOT_HDR +
    /// max_event_size <= ring_bytes`.
    pub fn slot_offset(&self, index: u32) -> u64 {
        RING_HDR + (index & (self.entries - 1)) as u64 * self.slot_size as u64
    }

    /// A slot header's length, if a well-behaved producer could have written it.
    pub fn valid_len(&self, len: u32) -> Option<usize> {
        (len <= self.max_event_size).then_some(len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_bad_shapes() {
        for c in [0, 3, 6, 65537, 1 << 17, u64::MAX] {
            assert_eq!(Geometry::new(c, 8), Err(EvqError::BadCapacity(c)));
        }
        for s in [0, 65529, 1 << 20] {
            assert_eq!(Geometry::new(8, s), Err(EvqError::BadEventSize(s)));
        }
        let g = Geometry::new(65536, 65528).unwrap();
        assert_eq!(g.slot_size, 65536);
        let g = Geometry::new(1, 1).unwrap();
        assert_eq!(
            (g.slot_size, g.ring_bytes(), g.queue_bytes()),
            (16, 144, 384)
        );
        let g = Geometry::new(1024, 64).unwrap();
        assert_eq!(g.slot_size, 72);
    }

    /// The exact edges, which the property below draws only now and then
    /// (mutant killed: `<` for `<=`, refusing a full-size event).
    #[test]
    fn valid_len_edges() {
        for size in [1, 8, 64, 65528] {
            let g = Geometry::new(8, size).unwrap();
            let size = size as u32;
            assert_eq!(g.valid_len(0), Some(0));
            assert_eq!(g.valid_len(size - 1), Some(size as usize - 1));
            assert_eq!(g.valid_len(size), Some(size as usize));
            assert_eq!(g.valid_len(size + 1), None);
            assert_eq!(g.valid_len(u32::MAX), None);
        }
    }

    proptest! {
        #[test]
        fn every_slot_lies_inside_its_ring(shift in 0u32..=16, size in 1u64..=65528, index: u32) {
            let g = Geometry::new(1 << shift, size).unwrap();
            prop_assert_eq!(g.slot_size % 8, 0);
            prop_assert!(g.slot_size as u64 >= SLOT_HDR + size);
            let off = g.slot_offset(index);
            prop_assert!(off >= RING_HDR);
            prop_assert!(off + SLOT_HDR + g.max_event_size as u64 <= g.ring_bytes());
            prop_assert!(g.ring_stride().is_multiple_of(RING_ALIGN) && g.ring_stride() >= g.ring_bytes());
        }

        /// Lengths around the limit (and anywhere): exactly those up to
        /// max_event_size are valid, the limit itself included.
        #[test]
        fn hostile_lengths_are_bounded(
            size in 1u64..=65528,
            delta in -64i64..=64,
            wild: u32,
            near in any::<bool>(),
        ) {
            let g = Geometry::new(8, size).unwrap();
            let len = if near { (size as i64 + delta).clamp(0, u32::MAX as i64) as u32 } else { wild };
            match g.valid_len(len) {
                Some(n) => prop_assert!(n as u64 <= size && n as u32 == len),
                None => prop_assert!(len as u64 > size),
            }
        }
    }
}
