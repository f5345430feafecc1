//! The host futex table of the Linux personality's threads (guest/linux/futex.c), on
//! the VM's bus like any device (bare guests never touch it).
//!
//! Each thread of a Linux program runs on its own vCPU (docs/linux.md,
//! "Threads"). A thread that must wait on a futex word asks this device
//! with one MMIO write of the guest address of a `struct lx_futex_req`
//! (guest/linux/futex_abi.h); the vCPU's own host thread then blocks here, on
//! a condition variable, so a waiting thread costs no CPU and the host kernel
//! schedules the others. The word is compared under the table lock, and a wake
//! takes the same lock, so no wake between the guest's check and the sleep is
//! lost. The guest only asks for a wake when its waiter count says someone may
//! be waiting, so an uncontended unlock never exits.
//!
//! Keys are guest-physical addresses (the personality maps memory 1:1, and one
//! program runs per VM, so private and shared futexes are the same thing).
//! Words in the loopback arena (`crate::arena`), which the VMs of a multi-program
//! Linux VM share, are kept in the arena's table instead, shared by those VMs, so a
//! wake in one program reaches a waiter in another.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

use crate::bus::{written_value, BusDevice, DeviceAction};
use crate::stats::Stats;
use crate::stop::StopToken;

/// The device's MMIO address (`LX_MMIO_FUTEX`): inside the runtime's MMIO
/// window, far from the runtime's own registers.
pub const MMIO_FUTEX: u64 = guest_kmod_bindings::VMRPC_MMIO_BASE + 0x10_0000;
/// Bytes of the device: requests that never block (wakes, requeues) are
/// written at offset 0, those that may (waits) at `MAY_BLOCK`, so the vCPU
/// loop knows, without reading the request, when to lend its vCPU.
pub const MMIO_FUTEX_LEN: u64 = 16;
const MAY_BLOCK: u64 = 8;

const OP_WAIT: u32 = 0;
const OP_WAKE: u32 = 1;
const OP_REQUEUE: u32 = 2;

const EFAULT: i64 = 14;
const EAGAIN: i64 = 11;
const EINVAL: i64 = 22;
const EINTR: i64 = 4;
const ETIMEDOUT: i64 = 110;

/// `struct lx_futex_req` in guest/linux/futex_abi.h.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct FutexReq {
    pub op: u32,
    pub val: u32,
    pub uaddr: u64,
    /// Relative timeout in ns; negative: none.
    pub timeout_ns: i64,
    pub bitset: u32,
    pub count: u32,
    /// Written back: >= 0 or -errno.
    pub result: i64,
    /// Requeue: where moved waiters wait from now on.
    pub uaddr2: u64,
    /// Requeue: at most this many moved.
    pub count2: u32,
    /// Requeue: 1 = only if the word at `uaddr` still holds `val`.
    pub cmp: u32,
}
const _: () = assert!(std::mem::size_of::<FutexReq>() == 56);
// SAFETY: plain integers, no padding (the size above is the sum of the fields).
unsafe impl ByteValued for FutexReq {}

/// Why a request is refused (reported to the guest as -errno).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FutexError {
    /// the request or the futex word lies outside guest memory
    #[error("address outside guest memory")]
    Fault,
    /// unknown op, misaligned word or empty bitset
    #[error("invalid futex request")]
    Invalid,
}

impl FutexError {
    fn errno(&self) -> i64 {
        match self {
            FutexError::Fault => EFAULT,
            FutexError::Invalid => EINVAL,
        }
    }
}

/// One blocked thread (public only as part of `Table`).
#[derive(Default)]
pub struct Waiter {
    bitset: u32,
    /// The word it waits on now (a requeue moves it); changed under the table lock.
    key: std::sync::atomic::AtomicU64,
    /// The word it first waited on (names its table).
    first_key: u64,
    woken: Mutex<bool>,
    cv: Condvar,
}

pub type Table = HashMap<u64, Vec<Arc<Waiter>>>;

/// The waiters on the loopback arena's words, shared by the VMs mapping it.
pub type SharedFutexTable = Arc<Mutex<Table>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The futex table of one VM.
pub struct FutexDevice {
    memory: GuestMemoryMmap,
    table: Arc<Mutex<Table>>,
    /// The loopback arena's table, when this VM maps the arena.
    arena: Option<SharedFutexTable>,
    /// The VM's stop token: every wait ends once the VM stops (its hook wakes
    /// every listed waiter, so a stop is seen at once, not at a poll).
    stop: StopToken,
    stats: Arc<Stats>,
}

impl FutexDevice {
    pub fn new(
        memory: GuestMemoryMmap,
        stop: StopToken,
        stats: Arc<Stats>,
        arena: Option<SharedFutexTable>,
    ) -> Self {
        let table = Arc::new(Mutex::new(Table::default()));
        let weak = Arc::downgrade(&table);
        stop.on_stop(Box::new(move || wake_all_for_stop(&weak)));
        if let Some(shared) = &arena {
            // Wakes the other VMs' arena waiters too: they find no wake and no stop
            // of their own, and wait on.
            let weak = Arc::downgrade(shared);
            stop.on_stop(Box::new(move || wake_all_for_stop(&weak)));
        }
        FutexDevice {
            memory,
            table,
            arena,
            stop,
            stats,
        }
    }

    fn stopping(&self) -> bool {
        self.stop.is_stopped()
    }

    /// The table that lists waiters of `uaddr`: the arena's for an arena word.
    fn table_of(&self, uaddr: u64) -> &Arc<Mutex<Table>> {
        match &self.arena {
            Some(shared) if crate::layout::in_arena(uaddr, 4) => shared,
            _ => &self.table,
        }
    }

    /// Blocks the calling (vCPU) thread until woken, timed out or the VM stops.
    /// Whether the futex word at `uaddr` holds `val`: Ok, or the -errno the
    /// guest gets (EFAULT outside memory, EAGAIN for another value). Callers
    /// hold the table lock, so no wake slips between this and what follows.
    fn word_is(&self, uaddr: u64, val: u32) -> Result<(), i64> {
        match self
            .memory
            .load::<u32>(GuestAddress(uaddr), Ordering::SeqCst)
        {
            Err(_) => Err(-FutexError::Fault.errno()),
            Ok(v) if v != val => Err(-EAGAIN),
            Ok(_) => Ok(()),
        }
    }

    /// Returns 0 (woken) or -errno.
    pub fn wait(&self, uaddr: u64, val: u32, timeout: Option<Duration>, bitset: u32) -> i64 {
        if bitset == 0 || uaddr & 3 != 0 {
            return -FutexError::Invalid.errno();
        }
        let waiter = Arc::new(Waiter {
            bitset,
            key: uaddr.into(),
            first_key: uaddr,
            ..Default::default()
        });
        {
            let mut table = lock(self.table_of(uaddr));
            // Compared under the table lock: a waker that changed the word
            // first is seen here; one that changes it later finds us listed.
            if let Err(errno) = self.word_is(uaddr, val) {
                return errno;
            }
            table.entry(uaddr).or_default().push(waiter.clone());
        }
        self.stats.futex_waits.inc();
        // A timeout too far to represent is no timeout (never a panic).
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut woken = lock(&waiter.woken);
        loop {
            if *woken {
                return 0;
            }
            // Checked under the waiter's lock, which the stop hook takes after
            // setting the flag: a stop after this check notifies us.
            if self.stopping() {
                drop(woken);
                return self.leave(&waiter, -EINTR);
            }
            woken = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if d <= now {
                        break;
                    }
                    waiter
                        .cv
                        .wait_timeout(woken, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => waiter
                    .cv
                    .wait(woken)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
        drop(woken);
        self.leave(&waiter, -ETIMEDOUT)
    }

    /// Takes a waiter that stopped waiting off the table; if a wake already
    /// took it, the wake counts (0) rather than `why`.
    fn leave(&self, waiter: &Arc<Waiter>, why: i64) -> i64 {
        // A requeue never moves a waiter between tables, so its first key names its table.
        let first = waiter.first_key;
        let mut table = lock(self.table_of(first));
        let uaddr = waiter.key.load(Ordering::Relaxed);
        if let Some(list) = table.get_mut(&uaddr) {
            if let Some(i) = list.iter().position(|w| Arc::ptr_eq(w, waiter)) {
                list.swap_remove(i);
                if list.is_empty() {
                    table.remove(&uaddr);
                }
                return why;
            }
        }
        0
    }

    /// Wakes up to `count` waiters of `uaddr` whose bitset meets `bitset`, in
    /// the order they came; returns how many.
    pub fn wake(&self, uaddr: u64, count: u32, bitset: u32) -> i64 {
        if bitset == 0 || uaddr & 3 != 0 {
            return -FutexError::Invalid.errno();
        }
        self.stats.futex_wakes.inc();
        let mut table = lock(self.table_of(uaddr));
        Self::wake_locked(&mut table, uaddr, count, bitset).into()
    }

    fn wake_locked(table: &mut Table, uaddr: u64, count: u32, bitset: u32) -> u32 {
        let Some(list) = table.get_mut(&uaddr) else {
            return 0;
        };
        let mut n = 0u32;
        let mut i = 0;
        while i < list.len() && n < count {
            if list[i].bitset & bitset == 0 {
                i += 1;
                continue;
            }
            let w = list.remove(i);
            *lock(&w.woken) = true;
            w.cv.notify_one();
            n += 1;
        }
        if list.is_empty() {
            table.remove(&uaddr);
        }
        n
    }

    /// FUTEX_(CMP_)REQUEUE: wakes up to `count` waiters of `uaddr` and moves up
    /// to `count2` of the others to `uaddr2`; returns both counts' sum
    /// (-EAGAIN when `expect` is given and the word no longer holds it).
    pub fn requeue(
        &self,
        uaddr: u64,
        count: u32,
        uaddr2: u64,
        count2: u32,
        expect: Option<u32>,
    ) -> i64 {
        if uaddr & 3 != 0 || uaddr2 & 3 != 0 {
            return -FutexError::Invalid.errno();
        }
        // Waiters stay in their table: a requeue between the arena and private
        // memory is refused (no program has a reason for one).
        if !Arc::ptr_eq(self.table_of(uaddr), self.table_of(uaddr2)) {
            return -FutexError::Invalid.errno();
        }
        self.stats.futex_wakes.inc();
        let mut table = lock(self.table_of(uaddr));
        if let Some(val) = expect {
            if let Err(errno) = self.word_is(uaddr, val) {
                return errno;
            }
        }
        let woken = Self::wake_locked(&mut table, uaddr, count, u32::MAX);
        let mut moved = Vec::new();
        if let Some(list) = table.get_mut(&uaddr) {
            let k = list.len().min(count2 as usize);
            moved = list.drain(..k).collect();
            if list.is_empty() {
                table.remove(&uaddr);
            }
        }
        let n = moved.len() as u32;
        for w in &moved {
            w.key.store(uaddr2, Ordering::Relaxed);
        }
        table.entry(uaddr2).or_default().extend(moved);
        (woken + n).into()
    }

    /// Serves the request at `gpa`: copied once, validated, answered in place.
    fn serve(&self, gpa: u64) -> Result<(), FutexError> {
        let req: FutexReq = self
            .memory
            .read_obj(GuestAddress(gpa))
            .map_err(|_| FutexError::Fault)?;
        let result = match req.op {
            OP_WAIT => {
                let timeout = u64::try_from(req.timeout_ns).ok().map(Duration::from_nanos);
                self.wait(req.uaddr, req.val, timeout, req.bitset)
            }
            OP_WAKE => self.wake(req.uaddr, req.count, req.bitset),
            OP_REQUEUE => self.requeue(
                req.uaddr,
                req.count,
                req.uaddr2,
                req.count2,
                (req.cmp != 0).then_some(req.val),
            ),
            _ => -FutexError::Invalid.errno(),
        };
        let at = GuestAddress(gpa + std::mem::offset_of!(FutexReq, result) as u64);
        self.memory
            .write_obj(result, at)
            .map_err(|_| FutexError::Fault)
    }
}

/// The stop hook: wakes every listed waiter (each sees the stop flag and
/// leaves with EINTR). Lock order as in a wake: table, then waiter.
fn wake_all_for_stop(table: &Weak<Mutex<Table>>) {
    let Some(table) = table.upgrade() else {
        return;
    };
    let table = lock(&table);
    for w in table.values().flatten() {
        let _held = lock(&w.woken);
        w.cv.notify_one();
    }
}

impl BusDevice for FutexDevice {
    fn write(&self, _offset: u64, data: &[u8]) -> DeviceAction {
        // A request the guest cannot be answered through (outside memory) is
        // dropped: the guest sees its result field unchanged.
        let _ = self.serve(written_value(data));
        DeviceAction::Continue
    }

    fn may_block(&self, offset: u64) -> bool {
        offset == MAY_BLOCK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Arc<FutexDevice> {
        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let stop = StopToken::new().unwrap();
        Arc::new(FutexDevice::new(
            memory,
            stop,
            Arc::new(Stats::default()),
            None,
        ))
    }

    /// A thread waiting on `uaddr` (value 0), returned once it is listed
    /// (real state, not a sleep).
    fn listed_waiter(
        d: &Arc<FutexDevice>,
        uaddr: u64,
        bitset: u32,
    ) -> std::thread::JoinHandle<i64> {
        let waiter = {
            let d = d.clone();
            std::thread::spawn(move || d.wait(uaddr, 0, None, bitset))
        };
        while lock(&d.table).get(&uaddr).is_none() {
            std::thread::yield_now();
        }
        waiter
    }

    #[test]
    fn arena_words_are_shared_between_vms_and_private_words_are_not() {
        use crate::layout::ARENA_BASE;
        let arena = crate::arena::LoopbackArena::new().unwrap();
        let vm = || {
            let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)])
                .unwrap()
                .insert_region(arena.region())
                .unwrap();
            let stats = Arc::new(Stats::default());
            let stop = StopToken::new().unwrap();
            Arc::new(FutexDevice::new(memory, stop, stats, Some(arena.futexes())))
        };
        let (a, b) = (vm(), vm());
        // A private word at the same address in both: b's wake is not a's.
        let private = {
            let a = a.clone();
            std::thread::spawn(move || a.wait(0x100, 0, Some(Duration::from_millis(50)), !0))
        };
        while lock(&a.table).get(&0x100).is_none() {
            std::thread::yield_now();
        }
        assert_eq!(b.wake(0x100, 1, !0), 0);
        assert_eq!(private.join().unwrap(), -ETIMEDOUT);
        // An arena word: b's wake ends a's wait, and the memory is one.
        b.memory
            .write_obj(7u32, GuestAddress(ARENA_BASE + 64))
            .unwrap();
        let shared = {
            let a = a.clone();
            std::thread::spawn(move || a.wait(ARENA_BASE + 64, 7, None, !0))
        };
        while lock(&arena.futexes()).get(&(ARENA_BASE + 64)).is_none() {
            std::thread::yield_now();
        }
        assert_eq!(b.wake(ARENA_BASE + 64, 1, !0), 1);
        assert_eq!(shared.join().unwrap(), 0);
        assert_eq!(b.requeue(ARENA_BASE, 1, 0x100, 1, None), -EINVAL);
    }

    #[test]
    fn a_changed_word_is_eagain_and_a_timeout_expires() {
        let d = device();
        d.memory.write_obj(5u32, GuestAddress(0x100)).unwrap();
        assert_eq!(d.wait(0x100, 4, None, !0), -EAGAIN);
        assert_eq!(
            d.wait(0x100, 5, Some(Duration::from_millis(1)), !0),
            -ETIMEDOUT
        );
        assert_eq!(d.wake(0x100, 1, !0), 0);
        assert_eq!(d.wait(0x102, 5, None, !0), -EINVAL);
        assert_eq!(d.wait(0x100_0000, 5, None, !0), -EFAULT);
        assert_eq!(d.wait(0x100, 5, None, 0), -EINVAL);
        d.memory.write_obj(6u32, GuestAddress(0x100)).unwrap();
        let far = Some(Duration::from_secs(u64::MAX));
        assert_eq!(
            d.wait(0x100, 5, far, !0),
            -EAGAIN,
            "checked before any sleep"
        );
    }

    #[test]
    fn a_wake_ends_a_wait_and_bitsets_select_waiters() {
        let d = device();
        let waiter = listed_waiter(&d, 0x200, 0b10);
        assert_eq!(d.wake(0x200, 1, 0b01), 0, "bitsets do not meet");
        assert_eq!(d.wake(0x200, 1, 0b11), 1);
        assert_eq!(waiter.join().unwrap(), 0);
        assert!(lock(&d.table).is_empty());
    }

    #[test]
    fn a_requeued_waiter_is_woken_on_the_new_word() {
        let d = device();
        let waiter = listed_waiter(&d, 0x500, !0);
        assert_eq!(d.requeue(0x500, 0, 0x600, 1, Some(1)), -EAGAIN);
        assert_eq!(d.requeue(0x500, 0, 0x600, 1, Some(0)), 1);
        assert_eq!(d.wake(0x500, 1, !0), 0);
        assert_eq!(d.wake(0x600, 1, !0), 1);
        assert_eq!(waiter.join().unwrap(), 0);
    }

    #[test]
    fn a_stopping_vm_ends_the_wait() {
        let d = device();
        let waiter = listed_waiter(&d, 0x300, !0);
        d.stop.stop();
        assert_eq!(waiter.join().unwrap(), -EINTR);
    }

    #[test]
    fn a_stop_wakes_waits_with_a_far_timeout_and_ends_later_ones_at_once() {
        // No polling: only the stop hook can end this wait (an hour away).
        let d = device();
        let hour = Some(Duration::from_secs(3600));
        let waiter = {
            let d = d.clone();
            std::thread::spawn(move || d.wait(0x700, 0, hour, !0))
        };
        while lock(&d.table).get(&0x700).is_none() {
            std::thread::yield_now();
        }
        d.stop.stop();
        assert_eq!(waiter.join().unwrap(), -EINTR);
        assert_eq!(d.wait(0x700, 0, None, !0), -EINTR, "after the stop");
        assert!(lock(&d.table).is_empty());
    }

    #[test]
    fn requests_are_answered_in_guest_memory() {
        let d = device();
        let req = FutexReq {
            op: OP_WAKE,
            uaddr: 0x400,
            bitset: !0,
            count: 1,
            result: 77,
            ..Default::default()
        };
        d.memory.write_obj(req, GuestAddress(0x800)).unwrap();
        assert_eq!(d.write(0, &0x800u64.to_le_bytes()), DeviceAction::Continue);
        let back: FutexReq = d.memory.read_obj(GuestAddress(0x800)).unwrap();
        assert_eq!(back.result, 0);
        d.memory
            .write_obj(FutexReq { op: 9, ..req }, GuestAddress(0x800))
            .unwrap();
        d.write(0, &0x800u64.to_le_bytes());
        let back: FutexReq = d.memory.read_obj(GuestAddress(0x800)).unwrap();
        assert_eq!(back.result, -EINVAL);
        // A request outside memory is dropped, not a panic.
        d.write(0, &u64::MAX.to_le_bytes());
    }
}
