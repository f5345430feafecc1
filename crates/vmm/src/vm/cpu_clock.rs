//! The CPU time of a VM's vCPU threads, for the guest (the Linux personality's
//! getrusage, guest/linux/rusage.c).
//!
//! A 64-bit MMIO read at `MMIO_CPU_CLOCK + THREAD` answers the CPU time of the
//! reading vCPU's host thread (the exit is handled on that thread, so it reads
//! its own `CLOCK_THREAD_CPUTIME_ID`); at `+ ALL`, the sum over every vCPU
//! thread of the VM (each one's `pthread_getcpuclockid` clock), plus what the
//! carriers of guest threads that ended had used (`retire_current_thread`). Nanoseconds,
//! as the host kernel accounts them: the guest's instructions and the VMM's
//! work in that thread together. Any other offset reads 0.

use std::sync::atomic::Ordering;
use std::sync::{OnceLock, Weak};

use super::shared::{lock, VmShared};
use crate::bus::{BusDevice, DeviceAction};

/// The register block (`LX_MMIO_CPU_CLOCK`, guest/linux/vcpu_abi.h).
pub const MMIO_CPU_CLOCK: u64 = guest_kmod_bindings::VMRPC_MMIO_BASE + 0x10_2000;
/// Bytes of the block: two 64-bit registers.
pub const MMIO_CPU_CLOCK_LEN: u64 = 16;
/// The reading vCPU's thread.
const THREAD: u64 = 0;
/// Every vCPU thread of the VM.
const ALL: u64 = 8;

/// Nanoseconds of CPU time on `clock`, or `None` if the kernel refuses (a
/// thread that has already ended).
fn cpu_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// CPU time of host thread `thread` (a vCPU thread not yet joined).
fn thread_cpu_ns(thread: libc::pthread_t) -> Option<u64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `thread` is listed in `VmShared::threads`, which holds only
    // threads not yet joined, so the id is valid; `clock` is writable.
    if unsafe { libc::pthread_getcpuclockid(thread, &mut clock) } != 0 {
        return None;
    }
    cpu_ns(clock)
}

/// The calling thread (a guest thread's carrier that is ending) leaves the
/// sum: its CPU time so far moves to the VM's total of ended threads, in one
/// step under the thread list's lock, so `ALL` counts it once, and it is
/// kicked no more (it enters no guest code again).
pub(super) fn retire_current_thread(shared: &VmShared) {
    let mut threads = lock(&shared.threads);
    let spent = cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or(0);
    shared.ended_cpu_ns.fetch_add(spent, Ordering::Relaxed);
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    // SAFETY: both ids are of threads not yet joined (this one runs).
    threads.retain(|&t| unsafe { libc::pthread_equal(t, me) } == 0);
}

#[derive(Default)]
pub struct CpuClockDevice {
    shared: OnceLock<Weak<VmShared>>,
}

impl CpuClockDevice {
    pub(super) fn bind(&self, shared: &std::sync::Arc<VmShared>) {
        let _ = self.shared.set(std::sync::Arc::downgrade(shared));
    }

    fn value(&self, offset: u64) -> u64 {
        match offset {
            THREAD => cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or(0),
            ALL => {
                let Some(shared) = self.shared.get().and_then(Weak::upgrade) else {
                    return 0;
                };
                // The list lock is held while reading: no thread is joined meanwhile.
                let threads = lock(&shared.threads);
                threads.iter().filter_map(|&t| thread_cpu_ns(t)).fold(
                    shared.ended_cpu_ns.load(Ordering::Relaxed),
                    u64::saturating_add,
                )
            }
            _ => 0,
        }
    }
}

impl BusDevice for CpuClockDevice {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let bytes = self.value(offset).to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(i).copied().unwrap_or(0);
        }
    }

    fn write(&self, _offset: u64, _data: &[u8]) -> DeviceAction {
        DeviceAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(d: &CpuClockDevice, offset: u64) -> u64 {
        let mut data = [0u8; 8];
        d.read(offset, &mut data);
        u64::from_le_bytes(data)
    }

    #[test]
    fn this_threads_clock_moves_and_other_registers_read_zero() {
        let d = CpuClockDevice::default();
        let first = read(&d, THREAD);
        // Burn some CPU on this thread: its clock must advance.
        let mut x = 0u64;
        while read(&d, THREAD) == first {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(read(&d, THREAD) > first);
        assert_eq!(read(&d, ALL), 0, "no VM bound: no vCPU threads");
        assert_eq!(read(&d, 4), 0);
        assert_eq!(read(&d, 1 << 40), 0);
    }

    #[test]
    fn the_guest_header_names_the_same_registers() {
        let header = include_str!("../../../../guest/linux/vcpu_abi.h");
        let offset = MMIO_CPU_CLOCK - guest_kmod_bindings::VMRPC_MMIO_BASE;
        assert!(header.contains(&format!("LX_MMIO_CPU_CLOCK (0xd0000000ull + {offset:#x}u)")));
        assert!(header.contains(&format!("LX_CPU_CLOCK_THREAD {THREAD}u")));
        assert!(header.contains(&format!("LX_CPU_CLOCK_ALL {ALL}u")));
    }
}
