//! Validation of the request descriptors the guest writes into its ring. Pure
//! functions over values already copied out of guest memory, so they can be
//! property-tested (ring indices: `crate::ring`).

use guest_kmod_bindings::{ReqDesc, VMRPC_CHAN_DATA_SIZE, VMRPC_EINVAL, VMRPC_MAX_PAYLOAD};

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

    const DATA: u32 = VMRPC_CHAN_DATA_SIZE;
    const MAX: u32 = VMRPC_MAX_PAYLOAD;

    /// A u32 near one of the limits that matter, or anywhere: uniform u32s
    /// would almost never make a valid descriptor (odds about 2^-60).
    fn near_limits() -> impl Strategy<Value = u32> {
        prop_oneof![
            0u32..=MAX + 64,
            (MAX - 64)..=(MAX + 64),
            (DATA - 64)..=(DATA + 64),
            (u32::MAX - 64)..=u32::MAX,
            any::<u32>(),
        ]
    }

    /// The rule of abi.h, in 64-bit arithmetic: a region inside the data
    /// area and not larger than one payload.
    fn spec_ok(off: u32, len: u32) -> bool {
        len <= MAX && off as u64 + len as u64 <= DATA as u64
    }

    fn desc(req_off: u32, req_len: u32, resp_off: u32, resp_cap: u32) -> ReqDesc {
        ReqDesc {
            tag: 0x7a6,
            req_off,
            req_len,
            resp_off,
            resp_cap,
            ..Default::default()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn validate_req_follows_the_abi_rule(
            req_off in near_limits(), req_len in near_limits(),
            resp_off in near_limits(), resp_cap in near_limits(),
        ) {
            let d = desc(req_off, req_len, resp_off, resp_cap);
            let ok = spec_ok(req_off, req_len) && spec_ok(resp_off, resp_cap);
            match validate_req(&d) {
                Ok(v) => {
                    prop_assert!(ok);
                    prop_assert_eq!(*v, d);
                    // What the engine does with it: slice its 64 KiB buffer.
                    prop_assert!(v.req_len as usize <= MAX as usize);
                }
                Err((tag, code)) => {
                    prop_assert!(!ok);
                    prop_assert_eq!((tag, code), (0x7a6, VMRPC_EINVAL));
                }
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

    /// Every pair of boundary values, both directions: the Ok and Err
    /// branches each run many times (counted, so a generator change that
    /// loses one branch fails here).
    #[test]
    fn validate_req_on_the_boundary_grid() {
        let points: Vec<u32> = [0, 1, MAX - 1, MAX, MAX + 1, DATA - 1, DATA, DATA + 1]
            .into_iter()
            .chain([u32::MAX - 1, u32::MAX, u32::MAX - MAX + 1])
            .collect();
        let (mut ok, mut err) = (0, 0);
        for &off in &points {
            for &len in &points {
                for (r, s) in [((off, len), (0, 0)), ((0, 0), (off, len))] {
                    let d = desc(r.0, r.1, s.0, s.1);
                    let want = spec_ok(r.0, r.1) && spec_ok(s.0, s.1);
                    assert_eq!(validate_req(&d).is_ok(), want, "{d:?}");
                    if want {
                        ok += 1;
                    } else {
                        err += 1;
                    }
                }
            }
        }
        assert!(ok >= 20 && err >= 100, "ok={ok} err={err}");
        // The exact edges.
        assert!(validate_req(&desc(MAX, MAX, 0, MAX)).is_ok());
        assert!(
            validate_req(&desc(0, MAX + 1, 0, 0)).is_err(),
            "inside the area, over the cap"
        );
        assert!(
            validate_req(&desc(0, 0, 0, MAX + 1)).is_err(),
            "inside the area, over the cap"
        );
        assert!(validate_req(&desc(DATA, 0, DATA, 0)).is_ok());
        assert!(validate_req(&desc(DATA + 1, 0, 0, 0)).is_err());
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
