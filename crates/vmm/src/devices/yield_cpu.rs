//! The yield register: a waiting vCPU gives its host CPU away for a while.
//!
//! Why: a guest waiting for something no interrupt will announce (a spinlock
//! another vCPU holds, a flag another vCPU sets) can only poll. On a shared
//! host every poll takes CPU from other VMs, and on an overcommitted host it
//! may take it from the very vCPU it waits for (hardware KVM has pause-loop
//! exiting for this; PVM here does not). The guest's back-off
//! (guest/rt/backoff.c) spins briefly, then writes here with growing times.

use std::sync::Arc;
use std::time::Duration;

use crate::bus::{BusDevice, DeviceAction};
use crate::stats::Stats;
use guest_kmod_bindings::VMRPC_YIELD_MAX_US;

pub struct YieldCpu {
    stats: Arc<Stats>,
}

impl YieldCpu {
    pub fn new(stats: Arc<Stats>) -> Self {
        YieldCpu { stats }
    }
}

/// How long a write of `data` (little-endian microseconds, any width) sleeps:
/// capped, so a stopping VM never waits on a vCPU for long.
pub fn sleep_for(data: &[u8]) -> Duration {
    let mut raw = [0u8; 4];
    let n = data.len().min(4);
    raw[..n].copy_from_slice(&data[..n]);
    let us = u32::from_le_bytes(raw).min(VMRPC_YIELD_MAX_US);
    Duration::from_micros(us.into())
}

impl BusDevice for YieldCpu {
    fn write(&self, _offset: u64, data: &[u8]) -> DeviceAction {
        self.stats.yields.inc();
        let pause = sleep_for(data);
        if pause.is_zero() {
            std::thread::yield_now();
        } else {
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: pause.as_nanos() as libc::c_long,
            };
            // One nanosleep, not std's sleep: a kick (signal) ends it early
            // with EINTR, so stopping the VM does not wait for it.
            // SAFETY: `ts` is a valid timespec; the remainder pointer may be null.
            unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
        }
        DeviceAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_is_capped_and_read_from_any_width() {
        assert_eq!(sleep_for(&50u32.to_le_bytes()), Duration::from_micros(50));
        assert_eq!(sleep_for(&[7]), Duration::from_micros(7));
        assert_eq!(
            sleep_for(&u32::MAX.to_le_bytes()),
            Duration::from_micros(VMRPC_YIELD_MAX_US.into())
        );
        assert_eq!(sleep_for(&[]), Duration::ZERO);
        let stats = Arc::new(Stats::default());
        let dev = YieldCpu::new(stats.clone());
        assert_eq!(dev.write(0, &0u32.to_le_bytes()), DeviceAction::Continue);
        assert_eq!(dev.write(0, &1u32.to_le_bytes()), DeviceAction::Continue);
        assert_eq!(stats.yields.get(), 2);
    }
}
