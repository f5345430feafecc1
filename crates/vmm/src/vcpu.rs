//! The vCPU run loop and the one function that dispatches exits to the buses.
//!
//! The loop knows the VM only through `VcpuHost`: the buses its exits go to,
//! the counters, the stop token, and where it reports how it ended.

use std::sync::Arc;

use kvm_ioctls::{VcpuExit, VcpuFd};

use guest_kmod_bindings::CrashFrame;

use crate::bus::{Buses, DeviceAction, ThreadRequest};
use crate::exception::GuestException;
use crate::kick::ImmediateExit;
use crate::outcome::{GuestFailure, Outcome, Registers};
use crate::stats::Stats;

/// What a vCPU thread needs from the VM it runs in (`vm::VmShared`).
pub trait VcpuHost: Send + Sync {
    fn buses(&self) -> &Buses;
    fn stats(&self) -> &Stats;
    /// True once the VM stops: the loop leaves at its next exit (or kick).
    fn stopping(&self) -> bool;
    /// This vCPU ended the VM (guest exit or crash); the first outcome wins.
    fn finish(&self, outcome: Outcome);
    /// The vCPU thread is done; `regs` are its registers at the end.
    fn vcpu_stopped(&self, index: u32, regs: Registers);
}

/// Why a vCPU cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crash {
    /// KVM_EXIT_SHUTDOWN: on x86 a triple fault.
    TripleFault,
    /// The runtime's exception handler reported this frame (`None`: unreadable).
    Exception(Option<CrashFrame>),
    /// KVM_EXIT_INTERNAL_ERROR (e.g. an instruction PVM cannot emulate).
    InternalError,
    FailEntry(u64),
    SystemEvent(u32),
    Unexpected(String),
    RunFailed(String),
}

impl Crash {
    fn describe(&self, suberror: Option<u32>) -> String {
        match self {
            Crash::TripleFault => {
                "triple fault: the guest hit an exception it had no handler for".into()
            }
            Crash::Exception(Some(frame)) => GuestException::from_frame(frame).describe(),
            Crash::Exception(None) => "exception reported with an unreadable crash frame".into(),
            Crash::InternalError => format!(
                "KVM internal error (suberror {}); on PVM see `dmesg | grep kvm-pvm`",
                suberror.map_or("unknown".into(), |s| s.to_string())
            ),
            Crash::FailEntry(reason) => format!("VM entry failed, hardware reason {reason:#x}"),
            Crash::SystemEvent(t) => format!("guest requested a system event (type {t})"),
            Crash::Unexpected(what) => format!("unexpected exit: {what}"),
            Crash::RunFailed(e) => format!("KVM_RUN failed: {e}"),
        }
    }
}

/// What the run loop does after an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitAction {
    Continue,
    GuestExit(i32),
    Crash(Crash),
    /// A guest thread request (`devices::guest_threads`), for `vm::pool`.
    Thread(ThreadRequest),
}

impl From<DeviceAction> for ExitAction {
    fn from(a: DeviceAction) -> Self {
        match a {
            DeviceAction::Continue => ExitAction::Continue,
            DeviceAction::GuestExit(code) => ExitAction::GuestExit(code),
            DeviceAction::GuestCrash(frame) => ExitAction::Crash(Crash::Exception(frame)),
            DeviceAction::Thread(r) => ExitAction::Thread(r),
        }
    }
}

/// Routes one exit to the device that owns the address, counting it.
pub fn handle_exit(exit: VcpuExit, buses: &Buses, stats: &Stats) -> ExitAction {
    match exit {
        VcpuExit::IoOut(port, data) => {
            stats.exits_pio_out.inc();
            write_to(&buses.pio, port.into(), data, stats)
        }
        VcpuExit::IoIn(port, data) => {
            stats.exits_pio_in.inc();
            read_from(&buses.pio, port.into(), data, stats);
            ExitAction::Continue
        }
        VcpuExit::MmioWrite(addr, data) => {
            stats.exits_mmio.inc();
            write_to(&buses.mmio, addr, data, stats)
        }
        VcpuExit::MmioRead(addr, data) => {
            stats.exits_mmio.inc();
            read_from(&buses.mmio, addr, data, stats);
            ExitAction::Continue
        }
        other => {
            stats.exits_other.inc();
            ExitAction::Crash(match other {
                VcpuExit::Shutdown => Crash::TripleFault,
                VcpuExit::InternalError => Crash::InternalError,
                VcpuExit::FailEntry(reason, _cpu) => Crash::FailEntry(reason),
                VcpuExit::SystemEvent(t, _) => Crash::SystemEvent(t),
                e => Crash::Unexpected(format!("{e:?}")),
            })
        }
    }
}

pub(crate) fn write_to(bus: &crate::bus::Bus, addr: u64, data: &[u8], stats: &Stats) -> ExitAction {
    match bus.find(addr) {
        Some((dev, offset)) => dev.write(offset, data).into(),
        None => {
            stats.unhandled_accesses.inc();
            log::debug!(
                "guest wrote {} bytes to unclaimed address {addr:#x}",
                data.len()
            );
            ExitAction::Continue
        }
    }
}

fn read_from(bus: &crate::bus::Bus, addr: u64, data: &mut [u8], stats: &Stats) {
    match bus.find(addr) {
        Some((dev, offset)) => dev.read(offset, data),
        None => {
            stats.unhandled_accesses.inc();
            data.fill(0xff);
        }
    }
}

/// The faulting code's registers from a crash frame, with the control registers
/// (but cr2, which the frame has) read from the vCPU.
fn frame_registers(frame: &CrashFrame, vcpu: &VcpuFd) -> Registers {
    let f = frame;
    let mut out = vec![
        ("rip", f.rip),
        ("rsp", f.rsp),
        ("rbp", f.rbp),
        ("rflags", f.rflags),
        ("rax", f.rax),
        ("rbx", f.rbx),
        ("rcx", f.rcx),
        ("rdx", f.rdx),
        ("rsi", f.rsi),
        ("rdi", f.rdi),
        ("r8", f.r8),
        ("r9", f.r9),
        ("r10", f.r10),
        ("r11", f.r11),
        ("r12", f.r12),
        ("r13", f.r13),
        ("r14", f.r14),
        ("r15", f.r15),
        ("cs", f.cs),
        ("ss", f.ss),
        ("cr2", f.cr2),
    ];
    if let Ok(s) = vcpu.get_sregs() {
        out.extend([
            ("cr0", s.cr0),
            ("cr3", s.cr3),
            ("cr4", s.cr4),
            ("efer", s.efer),
        ]);
    }
    out
}

/// Reads the vCPU's registers (empty if KVM refuses, e.g. after an internal error).
pub fn registers(vcpu: &VcpuFd) -> Registers {
    let mut out = Vec::new();
    if let Ok(r) = vcpu.get_regs() {
        out.extend([
            ("rip", r.rip),
            ("rsp", r.rsp),
            ("rbp", r.rbp),
            ("rflags", r.rflags),
            ("rax", r.rax),
            ("rbx", r.rbx),
            ("rcx", r.rcx),
            ("rdx", r.rdx),
            ("rsi", r.rsi),
            ("rdi", r.rdi),
            ("r8", r.r8),
            ("r9", r.r9),
            ("r10", r.r10),
            ("r11", r.r11),
            ("r12", r.r12),
            ("r13", r.r13),
            ("r14", r.r14),
            ("r15", r.r15),
        ]);
    }
    if let Ok(s) = vcpu.get_sregs() {
        out.extend([
            ("cr0", s.cr0),
            ("cr2", s.cr2),
            ("cr3", s.cr3),
            ("cr4", s.cr4),
            ("efer", s.efer),
        ]);
    }
    out
}

fn internal_suberror(vcpu: &mut VcpuFd) -> u32 {
    let run = vcpu.get_kvm_run();
    // SAFETY: called right after KVM_RUN returned KVM_EXIT_INTERNAL_ERROR, for
    // which the kernel fills the `internal` member of the exit union.
    unsafe { run.__bindgen_anon_1.internal.suberror }
}

/// What a vCPU that cannot go on reports: the reason and the culprit's registers.
pub(crate) fn failure_report(crash: Crash, vcpu: &mut VcpuFd, index: u32) -> GuestFailure {
    let sub = (crash == Crash::InternalError).then(|| internal_suberror(vcpu));
    let (regs, exception) = match &crash {
        // The vCPU is in the handler now; the frame has the culprit's state.
        Crash::Exception(Some(frame)) => (
            frame_registers(frame, vcpu),
            Some(GuestException::from_frame(frame)),
        ),
        _ => (registers(vcpu), None),
    };
    GuestFailure {
        vcpu: index,
        reason: crash.describe(sub),
        registers: regs,
        console_tail: String::new(),
        exception,
    }
}

/// The body of a vCPU thread: run until the VM stops or this vCPU fails.
pub fn run<H: VcpuHost + ?Sized>(mut vcpu: VcpuFd, index: u32, shared: Arc<H>) {
    let flag = &mut vcpu.get_kvm_run().immediate_exit as *mut u8;
    let armed = ImmediateExit::arm(flag);
    let mut failure = None;
    while !shared.stopping() {
        let action = match vcpu.run() {
            Ok(exit) => handle_exit(exit, shared.buses(), shared.stats()),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                vcpu.set_kvm_immediate_exit(0);
                shared.stats().exits_kick.inc();
                ExitAction::Continue
            }
            Err(e) => ExitAction::Crash(Crash::RunFailed(e.to_string())),
        };
        match action {
            ExitAction::Continue => {}
            ExitAction::GuestExit(code) => {
                shared.finish(Outcome::Exited(code));
                break;
            }
            ExitAction::Thread(r) => {
                // Only a VM that schedules guest threads (`vm::pool`) serves these.
                let crash = Crash::Unexpected(format!("guest thread request {r:?}"));
                failure = Some(failure_report(crash, &mut vcpu, index));
                break;
            }
            ExitAction::Crash(crash) => {
                failure = Some(failure_report(crash, &mut vcpu, index));
                break;
            }
        }
    }
    drop(armed);
    if let Some(f) = failure {
        shared.finish(Outcome::Crashed(f));
    }
    shared.vcpu_stopped(index, registers(&vcpu));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::BusDevice;
    use crate::devices::debug_exit::DebugExit;

    struct Constant(u8);
    impl BusDevice for Constant {
        fn read(&self, _offset: u64, data: &mut [u8]) {
            data.fill(self.0);
        }
        fn write(&self, _offset: u64, _data: &[u8]) -> DeviceAction {
            DeviceAction::Continue
        }
    }

    fn buses() -> Buses {
        let mut b = Buses::default();
        b.pio.insert(0x504, 4, Arc::new(DebugExit)).unwrap();
        b.pio.insert(0x60, 1, Arc::new(Constant(0x42))).unwrap();
        b.mmio
            .insert(0xd000_0000, 0x1000, Arc::new(Constant(0x17)))
            .unwrap();
        b
    }

    #[test]
    fn port_writes_reach_devices_and_count() {
        let (b, s) = (buses(), Stats::default());
        let code = 9u32.to_le_bytes();
        assert_eq!(
            handle_exit(VcpuExit::IoOut(0x504, &code), &b, &s),
            ExitAction::GuestExit(9)
        );
        assert_eq!(
            handle_exit(VcpuExit::IoOut(0x999, &[1]), &b, &s),
            ExitAction::Continue
        );
        assert_eq!(s.exits_pio_out.get(), 2);
        assert_eq!(s.unhandled_accesses.get(), 1);
    }

    #[test]
    fn reads_fill_from_device_or_all_ones() {
        let (b, s) = (buses(), Stats::default());
        let mut data = [0u8; 2];
        assert_eq!(
            handle_exit(VcpuExit::IoIn(0x60, &mut data[..1]), &b, &s),
            ExitAction::Continue
        );
        assert_eq!(data[0], 0x42);
        handle_exit(VcpuExit::IoIn(0x61, &mut data), &b, &s);
        assert_eq!(data, [0xff, 0xff]);
        let mut m = [0u8; 4];
        handle_exit(VcpuExit::MmioRead(0xd000_0010, &mut m), &b, &s);
        assert_eq!(m, [0x17; 4]);
        assert_eq!(s.exits_mmio.get(), 1);
        assert_eq!(s.exits_pio_in.get(), 2);
    }

    #[test]
    fn fatal_exits_become_crashes() {
        let (b, s) = (buses(), Stats::default());
        assert_eq!(
            handle_exit(VcpuExit::Shutdown, &b, &s),
            ExitAction::Crash(Crash::TripleFault)
        );
        assert_eq!(
            handle_exit(VcpuExit::InternalError, &b, &s),
            ExitAction::Crash(Crash::InternalError)
        );
        assert!(matches!(
            handle_exit(VcpuExit::Hlt, &b, &s),
            ExitAction::Crash(Crash::Unexpected(_))
        ));
        assert_eq!(s.exits_other.get(), 3);
        assert!(Crash::InternalError
            .describe(Some(1))
            .contains("suberror 1"));
    }
}
