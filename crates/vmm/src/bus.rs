//! An address-range bus: devices claim `[base, base + len)` ranges of PIO or MMIO
//! space, and exits are routed by address. The run loop knows no port numbers.

use std::sync::Arc;

/// What a device asks of the vCPU after a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceAction {
    Continue,
    /// The guest asked to end the VM with this exit code.
    GuestExit(i32),
    /// The guest runtime reported an exception (`None`: its frame was unreadable).
    GuestCrash(Option<guest_kmod_bindings::CrashFrame>),
    /// A Linux guest thread asks its vCPU loop to start or end a guest thread
    /// (`devices::guest_threads`); served where the vCPU is at hand.
    Thread(ThreadRequest),
}

/// A new guest thread: where it starts, and where its answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadStart {
    pub rip: u64,
    pub rsp: u64,
    pub rdi: u64,
    /// Its GS block (runtime and personality per-thread words), in guest RAM.
    pub gs_base: u64,
    /// Where the host writes the i64 result (0 or -errno).
    pub result_at: u64,
}

/// What the guest asked, checked against guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadRequest {
    Spawn(ThreadStart),
    /// The calling thread ends; 0 goes to this (aligned, in-RAM) word after.
    Exit {
        state_word: Option<u64>,
    },
    /// The calling thread, the program's only one, reached its snapshot point
    /// (`vm::snapshot`); `point` is its `struct lx_snapshot_point`, in RAM.
    Snapshot {
        point: u64,
    },
}

/// A device on the bus. `offset` is relative to the start of its range.
/// Devices are shared by all vCPU threads, hence `&self` and `Sync`.
pub trait BusDevice: Send + Sync {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let _ = offset;
        data.fill(0xff);
    }
    fn write(&self, offset: u64, data: &[u8]) -> DeviceAction;
    /// True if a write at `offset` may block its thread for long (a futex
    /// wait): a vCPU loop that can lends its vCPU to another guest thread
    /// meanwhile (`vm::pool`).
    fn may_block(&self, offset: u64) -> bool {
        let _ = offset;
        false
    }
}

/// A write's data as a little-endian integer, zero-extended: how a guest hands
/// a request register the address of its request (any width up to 8 bytes).
pub fn written_value(data: &[u8]) -> u64 {
    let mut raw = [0u8; 8];
    let n = data.len().min(8);
    raw[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(raw)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// two devices claim overlapping ranges
    #[error("range [{base:#x}, +{len:#x}) overlaps a device already on the bus")]
    Overlap { base: u64, len: u64 },
    /// empty or wrapping range
    #[error("invalid range [{base:#x}, +{len:#x})")]
    InvalidRange { base: u64, len: u64 },
}

struct Range {
    base: u64,
    len: u64,
    device: Arc<dyn BusDevice>,
}

/// One address space (PIO or MMIO), kept sorted by base.
#[derive(Default)]
pub struct Bus {
    ranges: Vec<Range>,
}

impl Bus {
    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        device: Arc<dyn BusDevice>,
    ) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::InvalidRange { base, len })?;
        if self
            .ranges
            .iter()
            .any(|r| base < r.base + r.len && r.base < end)
        {
            return Err(BusError::Overlap { base, len });
        }
        let at = self.ranges.partition_point(|r| r.base < base);
        self.ranges.insert(at, Range { base, len, device });
        Ok(())
    }

    /// The device whose range holds `addr`, and the offset into that range.
    pub fn find(&self, addr: u64) -> Option<(&dyn BusDevice, u64)> {
        let i = self
            .ranges
            .partition_point(|r| r.base <= addr)
            .checked_sub(1)?;
        let r = &self.ranges[i];
        (addr - r.base < r.len).then(|| (r.device.as_ref(), addr - r.base))
    }
}

/// The two address spaces of an x86 VM.
#[derive(Default)]
pub struct Buses {
    pub pio: Bus,
    pub mmio: Bus,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Recorder(AtomicU64);
    impl BusDevice for Recorder {
        fn write(&self, offset: u64, _data: &[u8]) -> DeviceAction {
            self.0.store(offset, Ordering::SeqCst);
            DeviceAction::Continue
        }
    }

    #[test]
    fn routes_by_range_and_rejects_overlap() {
        let mut bus = Bus::default();
        let a = Arc::new(Recorder::default());
        let b = Arc::new(Recorder::default());
        bus.insert(0x3f8, 8, a.clone()).unwrap();
        bus.insert(0x100, 4, b.clone()).unwrap();
        assert_eq!(
            bus.insert(0x3fc, 8, b.clone()),
            Err(BusError::Overlap {
                base: 0x3fc,
                len: 8
            })
        );
        assert_eq!(
            bus.insert(0x3f0, 9, b.clone()),
            Err(BusError::Overlap {
                base: 0x3f0,
                len: 9
            })
        );
        assert!(bus.insert(u64::MAX, 2, b.clone()).is_err());
        assert!(bus.insert(5, 0, b.clone()).is_err());
        let (dev, off) = bus.find(0x3fd).unwrap();
        dev.write(off, &[1]);
        assert_eq!(a.0.load(Ordering::SeqCst), 5);
        assert_eq!(bus.find(0x103).unwrap().1, 3);
        assert!(bus.find(0x104).is_none());
        assert!(bus.find(0x3f7).is_none());
        assert!(bus.find(0x400).is_none());
        assert!(bus.find(0).is_none());
    }
}
