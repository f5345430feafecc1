//! Kicking a vCPU out of KVM_RUN from another thread.
//!
//! The stopper sets the VM's stop flag, then signals each vCPU thread. The
//! handler sets `immediate_exit` in that thread's `kvm_run`, so the signal is
//! never lost: if it lands inside KVM_RUN, the ioctl returns EINTR; if it lands
//! just before, KVM_RUN returns at once; either way the loop then sees the flag.

use std::cell::Cell;
use std::ptr;
use std::sync::Once;

use libc::{c_int, c_void, siginfo_t};

thread_local! {
    // Const-initialised and without a destructor, so reading it inside a signal
    // handler does no lazy initialisation (async-signal-safe in practice).
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(ptr::null_mut()) };
}

extern "C" fn on_kick(_: c_int, _: *mut siginfo_t, _: *mut c_void) {
    let flag = IMMEDIATE_EXIT.with(Cell::get);
    if !flag.is_null() {
        // SAFETY: the pointer is set by `ImmediateExit::arm` on this very thread
        // to the `immediate_exit` byte of the vCPU's kvm_run mapping, and cleared
        // before that mapping goes away.
        unsafe { ptr::write_volatile(flag, 1) };
    }
}

/// The real-time signal used for kicks (glibc's reserved ones are below SIGRTMIN()).
pub fn kick_signal() -> c_int {
    vmm_sys_util::signal::SIGRTMIN() + 1
}

/// Installs the process-wide handler once.
pub fn install_handler() -> Result<(), vmm_sys_util::errno::Error> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
    });
    result
}

/// While alive, kicks to this thread set `*flag`.
pub struct ImmediateExit;

impl ImmediateExit {
    pub fn arm(flag: *mut u8) -> ImmediateExit {
        IMMEDIATE_EXIT.with(|c| c.set(flag));
        ImmediateExit
    }
}

impl Drop for ImmediateExit {
    fn drop(&mut self) {
        IMMEDIATE_EXIT.with(|c| c.set(ptr::null_mut()));
    }
}

/// Sends the kick signal to a vCPU thread that has not been joined yet.
pub fn kick(thread: libc::pthread_t) {
    // SAFETY: callers only pass handles of threads that are not yet joined, so
    // the pthread_t is valid; delivering our handled signal has no other effect.
    unsafe { libc::pthread_kill(thread, kick_signal()) };
}
