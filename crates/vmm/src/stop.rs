//! The one way a VM says "stop": a flag for loops that poll, and an eventfd
//! for threads that block in poll(2) (the RPC engine, event queue waiters).
//!
//! Stopping sets the flag first, then makes the eventfd readable for good
//! (it is never read), so whoever sees the eventfd also sees the flag. The
//! vCPU threads, which sit in KVM_RUN, are kicked by their owner (`kick`).

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

struct Inner {
    stopped: AtomicBool,
    fd: EventFd,
}

/// Shared by everything that must stop with one VM; clones are the same token.
#[derive(Clone)]
pub struct StopToken(Arc<Inner>);

impl StopToken {
    pub fn new() -> std::io::Result<Self> {
        Ok(StopToken(Arc::new(Inner {
            stopped: AtomicBool::new(false),
            fd: EventFd::new(EFD_NONBLOCK)?,
        })))
    }

    /// Stops for good; idempotent.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::Release);
        let _ = self.0.fd.write(1);
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
}
