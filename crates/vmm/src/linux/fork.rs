//! The `linux_fork` host module: keeps the memory a Linux program's parent
//! process needs while its forked child runs (docs/linux.md, "fork").
//!
//! Program memory is identity-mapped, one address space per VM, so a child
//! cannot run beside its parent: the personality runs the child first, in the
//! parent's memory. At fork it asks this module to copy the guest ranges the
//! parent will need back (its writable memory, its stack, and the personality's
//! per-process state) into host memory (SAVE); when the child exits it asks for
//! them to be written back (RESTORE). A child that forks again pushes one more
//! snapshot: the snapshots form a stack, bounded in depth and size.
//!
//! Why on the host: the personality's own heap is at most 16 MiB and holds the
//! socket buffers, while a parent's memory is tens of MiB; the host copies
//! guest-physical ranges directly (no page tables involved, so PROT_NONE pages
//! copy as well), one call each way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, MmapRegion, Permissions};

use crate::rpc::channel::Completion;
use crate::rpc::module::HostModule;

/// The module name the personality binds (`LX_FORK_MODULE`).
pub const FORK_NAME: &str = "linux_fork";
const FN_SAVE: u32 = 0;
const FN_RESTORE: u32 = 1;
/// `struct lx_range`: guest address, length.
const RANGE_SIZE: usize = 16;
/// Ranges one snapshot may name (the personality sends at most 1024).
pub const MAX_RANGES: usize = 2048;
/// Snapshots kept at once: forks nested this deep (the personality allows 4).
pub const MAX_DEPTH: usize = 8;
/// Bytes all snapshots together may hold.
pub const MAX_BYTES: u64 = 4 << 30;

/// Why a snapshot cannot be taken or given back (answered to the guest as -errno).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForkError {
    /// the request is not a whole number of ranges, or names too many
    #[error("malformed range list")]
    Malformed,
    /// a range wraps around or leaves guest memory
    #[error("range outside guest memory")]
    Fault,
    /// too many nested snapshots, or too many bytes held
    #[error("snapshot limit reached")]
    Full,
    /// RESTORE with no snapshot kept
    #[error("no snapshot to restore")]
    Empty,
}

impl ForkError {
    fn errno(&self) -> i64 {
        -i64::from(match self {
            ForkError::Malformed => libc::EINVAL,
            ForkError::Fault => libc::EFAULT,
            ForkError::Full => libc::ENOMEM,
            ForkError::Empty => libc::ECHILD,
        })
    }
}

/// One saved parent: its ranges and their bytes, back to back.
struct Snapshot {
    ranges: Vec<(u64, u64)>,
    bytes: SnapshotBytes,
}

/// A snapshot's bytes in an anonymous mapping of their own. A `Vec` of tens of MiB
/// freed on the RPC engine thread stays in that thread's malloc arena (its top
/// chunk, which `malloc_trim` leaves alone): an idle VM that had forked kept a
/// snapshot's worth of host memory (~16 MiB for CPython) that the kernel could not
/// take back. A fresh mapping per fork frees it, but faulting 16 MiB in again made
/// each fork 3x slower here (3.5 -> 10.7 ms for CPython). So the last one is kept
/// as a spare with its pages `MADV_FREE`d: the kernel takes them back when it needs
/// memory (they count as `LazyFree` until then), and the next fork writes them
/// again without a fault if they are still there.
struct SnapshotBytes {
    map: MmapRegion<()>,
    len: usize,
}

impl SnapshotBytes {
    fn new(len: usize) -> Result<Self, ForkError> {
        let map = MmapRegion::build(
            None,
            len.max(1),
            libc::PROT_READ | libc::PROT_WRITE,
            // Populated at once: the copy writes every page anyway, and one call
            // faults them in cheaper than a page fault each.
            libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_NORESERVE | libc::MAP_POPULATE,
        )
        .map_err(|_| ForkError::Full)?;
        Ok(SnapshotBytes { map, len })
    }

    /// The spare if it holds `len` bytes, else a new mapping.
    fn reuse(spare: Option<SnapshotBytes>, len: usize) -> Result<Self, ForkError> {
        match spare {
            Some(mut bytes) if bytes.map.size() >= len => {
                bytes.len = len;
                Ok(bytes)
            }
            _ => SnapshotBytes::new(len),
        }
    }

    /// Gives the pages back to the kernel lazily: the bytes are not needed any more.
    fn lazy_free(&self) {
        // SAFETY: the range is exactly this private anonymous mapping, owned by
        // `self`; MADV_FREE only lets the kernel drop its pages (a later read sees
        // zeroes or the old bytes, and `reuse` overwrites `len` bytes before any
        // read). A failure leaves the pages resident, which is only memory.
        unsafe {
            libc::madvise(self.map.as_ptr().cast(), self.map.size(), libc::MADV_FREE);
        }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is private and anonymous, at least `len` bytes long,
        // readable and writable, owned by `self` (unmapped only when it drops) and
        // never handed to the guest or to another thread while borrowed here.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes this the only borrow.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr(), self.len) }
    }
}

pub struct ForkMemory {
    stack: Mutex<Vec<Snapshot>>,
    /// The last restored snapshot's mapping, lazily freed, for the next save.
    spare: Mutex<Option<SnapshotBytes>>,
    /// Bytes all snapshots together may hold (`MAX_BYTES`).
    max_bytes: u64,
    /// Snapshots taken and bytes copied by them (stats).
    pub saves: AtomicU64,
    pub bytes: AtomicU64,
}

impl Default for ForkMemory {
    fn default() -> Self {
        Self::with_limit(MAX_BYTES)
    }
}

impl ForkMemory {
    /// A module whose snapshots together hold at most `max_bytes`.
    pub fn with_limit(max_bytes: u64) -> Self {
        ForkMemory {
            stack: Mutex::new(Vec::new()),
            spare: Mutex::new(None),
            max_bytes,
            saves: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Copies the ranges the request names into a new snapshot on top of the stack.
    pub fn save(&self, mem: &GuestMemoryMmap, request: &[u8]) -> Result<(), ForkError> {
        if request.is_empty() || !request.len().is_multiple_of(RANGE_SIZE) {
            return Err(ForkError::Malformed);
        }
        if request.len() / RANGE_SIZE > MAX_RANGES {
            return Err(ForkError::Malformed);
        }
        let word = |i: usize| u64::from_le_bytes(request[i..i + 8].try_into().unwrap());
        let ranges: Vec<(u64, u64)> = (0..request.len() / RANGE_SIZE)
            .map(|i| (word(i * RANGE_SIZE), word(i * RANGE_SIZE + 8)))
            .collect();
        let mut stack = self.stack.lock().unwrap_or_else(PoisonError::into_inner);
        let held: u64 = stack.iter().map(|s| s.bytes.len as u64).sum();
        let mut total = 0u64;
        for &(addr, len) in &ranges {
            if addr.checked_add(len).is_none()
                || !mem.check_range(GuestAddress(addr), len as usize, Permissions::ReadWrite)
            {
                return Err(ForkError::Fault);
            }
            total = total.checked_add(len).ok_or(ForkError::Full)?;
        }
        if stack.len() >= MAX_DEPTH || held.saturating_add(total) > self.max_bytes {
            return Err(ForkError::Full);
        }
        let spare = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut bytes = SnapshotBytes::reuse(spare, total as usize)?;
        let mut at = 0usize;
        for &(addr, len) in &ranges {
            let piece = &mut bytes.as_mut_slice()[at..at + len as usize];
            mem.read_slice(piece, GuestAddress(addr))
                .map_err(|_| ForkError::Fault)?;
            at += len as usize;
        }
        self.saves.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(total, Ordering::Relaxed);
        stack.push(Snapshot { ranges, bytes });
        Ok(())
    }

    /// Writes the top snapshot back where it came from and drops it.
    pub fn restore(&self, mem: &GuestMemoryMmap) -> Result<(), ForkError> {
        let snap = self
            .stack
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .ok_or(ForkError::Empty)?;
        let mut at = 0usize;
        for &(addr, len) in &snap.ranges {
            // Checked when saved: the memory of a VM does not shrink.
            mem.write_slice(
                &snap.bytes.as_slice()[at..at + len as usize],
                GuestAddress(addr),
            )
            .map_err(|_| ForkError::Fault)?;
            at += len as usize;
        }
        snap.bytes.lazy_free();
        *self.spare.lock().unwrap_or_else(PoisonError::into_inner) = Some(snap.bytes);
        Ok(())
    }

    /// Snapshots held now.
    pub fn depth(&self) -> usize {
        self.stack
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl HostModule for ForkMemory {
    fn has_function(&self, function: u32) -> bool {
        function == FN_SAVE || function == FN_RESTORE
    }

    fn call(&self, function: u32, request: &[u8], done: Completion) {
        let result = match function {
            FN_SAVE => self.save(done.mem(), request),
            _ => self.restore(done.mem()),
        };
        let code = result.map_or_else(|e| e.errno(), |()| 0);
        done.ok(&code.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[(u64, u64)]) -> Vec<u8> {
        list.iter()
            .flat_map(|&(a, l)| a.to_le_bytes().into_iter().chain(l.to_le_bytes()))
            .collect()
    }

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    #[test]
    fn restore_gives_back_what_save_copied_nested() {
        let mem = memory();
        let m = ForkMemory::default();
        mem.write_slice(b"parent", GuestAddress(0x1000)).unwrap();
        mem.write_slice(b"stack!", GuestAddress(0x8000)).unwrap();
        m.save(&mem, &ranges(&[(0x1000, 6), (0x8000, 6)])).unwrap();
        mem.write_slice(b"child1", GuestAddress(0x1000)).unwrap();
        m.save(&mem, &ranges(&[(0x1000, 6)])).unwrap();
        mem.write_slice(b"grandc", GuestAddress(0x1000)).unwrap();
        mem.write_slice(b"xxxxxx", GuestAddress(0x8000)).unwrap();
        assert_eq!(m.depth(), 2);
        m.restore(&mem).unwrap();
        let mut got = [0u8; 6];
        mem.read_slice(&mut got, GuestAddress(0x1000)).unwrap();
        assert_eq!(&got, b"child1");
        m.restore(&mem).unwrap();
        mem.read_slice(&mut got, GuestAddress(0x1000)).unwrap();
        assert_eq!(&got, b"parent");
        mem.read_slice(&mut got, GuestAddress(0x8000)).unwrap();
        assert_eq!(&got, b"stack!");
        assert_eq!(m.restore(&mem), Err(ForkError::Empty));
    }

    #[test]
    fn the_spare_mapping_serves_smaller_and_larger_snapshots() {
        // After a restore the next save reuses the lazily freed mapping when it is big
        // enough and maps a new one when not; either way the bytes come back exact.
        let mem = memory();
        let m = ForkMemory::default();
        for (round, len) in [(1u8, 3 * 4096 + 7), (2, 100), (3, 64 * 1024)] {
            let original: Vec<u8> = (0..len).map(|i| (i as u8) ^ round).collect();
            mem.write_slice(&original, GuestAddress(0x10000)).unwrap();
            m.save(&mem, &ranges(&[(0x10000, len as u64)])).unwrap();
            mem.write_slice(&vec![0xee; len], GuestAddress(0x10000))
                .unwrap();
            m.restore(&mem).unwrap();
            let mut got = vec![0u8; len];
            mem.read_slice(&mut got, GuestAddress(0x10000)).unwrap();
            assert_eq!(got, original, "round {round}");
        }
    }

    #[test]
    fn hostile_range_lists_are_refused() {
        let mem = memory();
        let m = ForkMemory::default();
        assert_eq!(m.save(&mem, &[]), Err(ForkError::Malformed));
        assert_eq!(m.save(&mem, &[0u8; 17]), Err(ForkError::Malformed));
        let wrap = ranges(&[(u64::MAX - 4, 16)]);
        assert_eq!(m.save(&mem, &wrap), Err(ForkError::Fault));
        let outside = ranges(&[(0xff000, 0x2000)]);
        assert_eq!(m.save(&mem, &outside), Err(ForkError::Fault));
        let small = ForkMemory::with_limit(0x3000);
        small.save(&mem, &ranges(&[(0, 0x2000)])).unwrap();
        let past_limit = ranges(&[(0, 0x800), (0x1000, 0x801)]);
        assert_eq!(small.save(&mem, &past_limit), Err(ForkError::Full));
        assert_eq!(small.depth(), 1);
        let many = ranges(&vec![(0, 1); MAX_RANGES + 1]);
        assert_eq!(m.save(&mem, &many), Err(ForkError::Malformed));
        for _ in 0..MAX_DEPTH {
            m.save(&mem, &ranges(&[(0, 8)])).unwrap();
        }
        assert_eq!(m.save(&mem, &ranges(&[(0, 8)])), Err(ForkError::Full));
        assert_eq!(m.depth(), MAX_DEPTH, "refusals keep nothing");
    }
}
