//! Free-running ring indices, the arithmetic every ring in the shared region
//! uses (RPC request and response rings, event queue rings). Pure functions
//! over values already copied out of guest memory, so they can be
//! property-tested.

/// Entries ready in a ring, from the producer's `head` (read from the guest) and
/// the consumer's `tail` (kept by the host). `None` if the guest's head is not
/// within one ring's worth of entries: the ring is corrupt.
pub fn ring_available(head: u32, tail: u32, entries: u32) -> Option<u32> {
    let n = head.wrapping_sub(tail);
    (n <= entries).then_some(n)
}

/// Free slots for a producer whose `head` the host keeps, given the guest's
/// `tail`. `None` if the guest's tail is ahead of the head or too far behind.
pub fn ring_free(head: u32, tail: u32, entries: u32) -> Option<u32> {
    ring_available(head, tail, entries).map(|used| entries - used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn available_never_exceeds_ring(head: u32, tail: u32, shift in 0u32..8) {
            let entries = 1 << shift;
            if let Some(n) = ring_available(head, tail, entries) {
                prop_assert!(n <= entries);
                prop_assert_eq!(tail.wrapping_add(n), head);
            }
            if let Some(f) = ring_free(head, tail, entries) {
                prop_assert!(f <= entries);
            }
        }

        /// Heads within and just past one ring's worth of the tail, wrapping
        /// or not: both branches of ring_available run.
        #[test]
        fn available_exactly_when_within_one_ring(
            tail in prop_oneof![any::<u32>(), (u32::MAX - 70)..=u32::MAX, 0u32..70],
            ahead in 0u32..=guest_kmod_bindings::VMRPC_RPC_RING_ENTRIES + 64,
            behind in 1u32..=64,
            shift in 0u32..=3,
        ) {
            let entries = 1u32 << shift;
            let head = tail.wrapping_add(ahead);
            prop_assert_eq!(ring_available(head, tail, entries), (ahead <= entries).then_some(ahead));
            prop_assert_eq!(ring_free(head, tail, entries), (ahead <= entries).then(|| entries - ahead));
            // A head behind the tail is never "almost a full ring ahead".
            prop_assert_eq!(ring_available(tail.wrapping_sub(behind), tail, entries), None);
        }
    }

    #[test]
    fn wrapping_counters() {
        assert_eq!(ring_available(2, u32::MAX, 8), Some(3));
        assert_eq!(ring_available(9, 0, 8), None);
        assert_eq!(ring_available(0, 1, 8), None);
        assert_eq!(ring_free(5, 5, 8), Some(8));
    }
}
