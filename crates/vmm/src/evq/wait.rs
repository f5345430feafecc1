//! Host threads waiting on one queue: the ring flag that asks the guest for a
//! doorbell, and one eventfd shared by several waiters.
//!
//! Several host threads may wait on one queue (a taker and a putter
//! typically), but one eventfd read wakes one thread: so one waiter at a time
//! polls the descriptors (the "poller"), and every time it wakes it bumps
//! `generation` and wakes the others through a condition variable; each
//! re-checks its own condition.

use std::os::fd::RawFd;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::error::{EvqError, Wait};

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Waiters {
    /// A host thread is blocked in poll() on the queue's descriptors.
    polling: bool,
    /// Bumped every time the poller returns; the others re-check then.
    generation: u64,
    /// Host threads waiting for each `Wait`; the ring flag is set while > 0.
    readers: u32,
    writers: u32,
}

/// The waiters of one queue.
#[derive(Default)]
pub(super) struct WaitState {
    waiters: Mutex<Waiters>,
    woken: Condvar,
}

/// poll(2) on `fds` until one is readable or `until`; returns the revents.
pub(super) fn poll_readable(fds: &[RawFd], until: Option<Instant>) -> Vec<bool> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let timeout = until.map_or(-1, |u| {
        let left = u.saturating_duration_since(Instant::now());
        // Round up so a sub-millisecond wait does not become a busy loop.
        left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
    });
    // SAFETY: `pfds` is a valid, exclusively borrowed array of pollfd for the
    // duration of the call, and its length is passed with it.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
    pfds.iter()
        .map(|p| n > 0 && p.revents & libc::POLLIN != 0)
        .collect()
}

impl WaitState {
    /// Blocks until `poll` returns (the poller) or the poller that was
    /// already there returns, or `deadline`. `poll` blocks on the queue's
    /// descriptors; only one thread runs it at a time.
    pub(super) fn block(&self, deadline: Option<Instant>, poll: impl FnOnce()) {
        let mut w = lock(&self.waiters);
        if w.polling {
            let generation = w.generation;
            let cond = |w: &mut Waiters| w.polling && w.generation == generation;
            match deadline {
                None => drop(self.woken.wait_while(w, cond)),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    drop(self.woken.wait_timeout_while(w, left, cond));
                }
            }
            return;
        }
        w.polling = true;
        drop(w);
        poll();
        let mut w = lock(&self.waiters);
        w.polling = false;
        w.generation = w.generation.wrapping_add(1);
        self.woken.notify_all();
    }

    /// Wakes every waiter that is not the poller (the queue closed).
    pub(super) fn wake_all(&self) {
        let w = lock(&self.waiters);
        self.woken.notify_all();
        drop(w);
    }

    /// Counts one more host thread waiting for `what`; the first raises the
    /// ring flag with `set(1)`. The flag is lowered (`set(0)`) when the last
    /// guard for `what` drops.
    pub(super) fn raise<F>(&self, what: Wait, set: F) -> Result<WaitFlag<'_, F>, EvqError>
    where
        F: Fn(u32) -> Result<(), EvqError>,
    {
        let mut w = lock(&self.waiters);
        let count = w.count(what);
        *count += 1;
        if *count == 1 {
            if let Err(e) = set(1) {
                *count -= 1;
                return Err(e);
            }
        }
        Ok(WaitFlag {
            state: self,
            what,
            set,
        })
    }
}

impl Waiters {
    fn count(&mut self, what: Wait) -> &mut u32 {
        match what {
            Wait::Readable => &mut self.readers,
            Wait::Writable => &mut self.writers,
        }
    }
}

/// The ring flag that asks the guest for a doorbell, raised while at least one
/// host thread waits for that condition.
pub(super) struct WaitFlag<'a, F: Fn(u32) -> Result<(), EvqError>> {
    state: &'a WaitState,
    what: Wait,
    set: F,
}

impl<F: Fn(u32) -> Result<(), EvqError>> Drop for WaitFlag<'_, F> {
    fn drop(&mut self) {
        let mut w = lock(&self.state.waiters);
        let count = w.count(self.what);
        *count -= 1;
        if *count == 0 {
            let _ = (self.set)(0);
        }
    }
}
