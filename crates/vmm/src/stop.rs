//! The one way a VM says "stop": a flag for loops that poll, and an eventfd
//! for threads that block in poll(2) (the RPC engine, event queue waiters).
//!
//! Stopping sets the flag first, then makes the eventfd readable for good
//! (it is never read), so whoever sees the eventfd also sees the flag; then it
//! runs the hooks registered with `on_stop` (threads that block on a condition
//! variable, such as futex waits, are woken there). The vCPU threads, which sit
//! in KVM_RUN, are kicked by their owner (`kick`).

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Run once when the VM stops, on the stopping thread.
pub type StopHook = Box<dyn Fn() + Send + Sync>;

struct Inner {
    stopped: AtomicBool,
    fd: EventFd,
    hooks: Mutex<Vec<StopHook>>,
}

/// Shared by everything that must stop with one VM; clones are the same token.
#[derive(Clone)]
pub struct StopToken(Arc<Inner>);

impl StopToken {
    pub fn new() -> std::io::Result<Self> {
        Ok(StopToken(Arc::new(Inner {
            stopped: AtomicBool::new(false),
            fd: EventFd::new(EFD_NONBLOCK)?,
            hooks: Mutex::new(Vec::new()),
        })))
    }

    /// Stops for good; idempotent. The first call runs the hooks.
    pub fn stop(&self) {
        let first = !self.0.stopped.swap(true, Ordering::AcqRel);
        let _ = self.0.fd.write(1);
        if first {
            let hooks = std::mem::take(&mut *self.hooks());
            for hook in hooks {
                hook();
            }
        }
    }

    /// Calls `hook` once the token stops (at once if it already has). A hook
    /// runs after the flag is set, so whoever checks `is_stopped` under the
    /// same lock the hook takes cannot miss the stop.
    pub fn on_stop(&self, hook: StopHook) {
        let mut hooks = self.hooks();
        if self.is_stopped() {
            drop(hooks);
            hook();
        } else {
            hooks.push(hook);
        }
    }

    fn hooks(&self) -> std::sync::MutexGuard<'_, Vec<StopHook>> {
        self.0.hooks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::Acquire)
    }
}

impl AsRawFd for StopToken {
    /// Readable once stopped: poll(2) it next to the descriptors a thread waits on.
    fn as_raw_fd(&self) -> RawFd {
        self.0.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn stopping_sets_the_flag_and_leaves_the_fd_readable_in_every_clone() {
        let a = StopToken::new().unwrap();
        let b = a.clone();
        assert!(!b.is_stopped() && !readable(b.as_raw_fd()));
        a.stop();
        a.stop();
        assert!(b.is_stopped());
        assert!(
            readable(b.as_raw_fd()) && readable(b.as_raw_fd()),
            "stays readable"
        );
    }

    #[test]
    fn hooks_run_once_at_the_stop_or_at_once_after_it() {
        use std::sync::atomic::AtomicU32;
        let a = StopToken::new().unwrap();
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        a.on_stop(Box::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        a.stop();
        a.stop();
        assert_eq!(runs.load(Ordering::SeqCst), 1, "once");
        let r = runs.clone();
        a.on_stop(Box::new(move || {
            r.fetch_add(10, Ordering::SeqCst);
        }));
        assert_eq!(runs.load(Ordering::SeqCst), 11, "a late hook runs at once");
    }
}
