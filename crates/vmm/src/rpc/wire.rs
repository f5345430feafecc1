//! Validation of what the guest writes into the shared region. Pure functions
//! over values already copied out of guest memory, so they can be property-tested.

use guest_kmod_bindings::{ReqDesc, VMRPC_CHAN_DATA_SIZE, VMRPC_EINVAL, VMRPC_MAX_PAYLOAD};

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

/// A request descriptor whose offsets and lengths were checked to lie inside the
/// channel's data area; only `validate_req` makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidReq(ReqDesc);

impl std::ops::Deref for ValidReq {
    type Target = ReqDesc;
    fn deref(&self) -> &ReqDesc {
        &self.0
    }
}

fn within_data(off: u32, len: u32) -> bool {
    len <= VMRPC_MAX_PAYLOAD && (off as u64 + len as u64) <= VMRPC_CHAN_DATA_SIZE as u64
}

/// Checks a request descriptor copied out of the ring; on failure, the tag to
/// answer and the error code.
pub fn validate_req(d: &ReqDesc) -> Result<ValidReq, (u64, i32)> {
    if !within_data(d.req_off, d.req_len) || !within_data(d.resp_off, d.resp_cap) {
        return Err((d.tag, VMRPC_EINVAL));
    }
    Ok(ValidReq(*d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
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

        #[test]
        fn valid_requests_stay_inside_the_data_area(d in any::<(u64, u32, u32, u32, u32, u32, u32)>()) {
            let desc = ReqDesc {
                tag: d.0, handle: d.1, function: d.2, req_off: d.3, req_len: d.4,
                resp_off: d.5, resp_cap: d.6,
            };
            match validate_req(&desc) {
                Ok(v) => {
                    prop_assert!(v.req_off as u64 + v.req_len as u64 <= VMRPC_CHAN_DATA_SIZE as u64);
                    prop_assert!(v.resp_off as u64 + v.resp_cap as u64 <= VMRPC_CHAN_DATA_SIZE as u64);
                    prop_assert!(v.req_len <= VMRPC_MAX_PAYLOAD && v.resp_cap <= VMRPC_MAX_PAYLOAD);
                }
                Err((tag, code)) => {
                    prop_assert_eq!(tag, d.0);
                    prop_assert_eq!(code, VMRPC_EINVAL);
                }
            }
        }
    }

    #[test]
    fn wrapping_counters() {
        assert_eq!(ring_available(2, u32::MAX, 8), Some(3));
        assert_eq!(ring_available(9, 0, 8), None);
        assert_eq!(ring_available(0, 1, 8), None);
        assert_eq!(ring_free(5, 5, 8), Some(8));
    }

    #[test]
    fn rejects_overflowing_offsets() {
        let d = ReqDesc {
            req_off: u32::MAX,
            req_len: 16,
            ..Default::default()
        };
        assert!(validate_req(&d).is_err());
        let d = ReqDesc {
            resp_off: VMRPC_MAX_PAYLOAD * 2 - 4,
            resp_cap: 8,
            ..Default::default()
        };
        assert!(validate_req(&d).is_err());
        let d = ReqDesc {
            req_len: VMRPC_MAX_PAYLOAD,
            resp_off: VMRPC_MAX_PAYLOAD,
            resp_cap: VMRPC_MAX_PAYLOAD,
            ..Default::default()
        };
        assert!(validate_req(&d).is_ok());
    }
}
