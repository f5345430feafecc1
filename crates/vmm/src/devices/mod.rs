//! Devices on the VM's buses.

pub mod console;
pub mod crash_report;
pub mod debug_exit;
pub mod futex;
pub mod guest_threads;
pub mod sock_io;
pub mod yield_cpu;
