//! What a VM's vCPU threads and its owner share: the buses, the counters, the
//! console, the stop token, and the run state (who is still running, how the
//! VM ended). The vCPU loop sees it through `vcpu::VcpuHost`.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::bus::Buses;
use crate::devices::console::SharedConsole;
use crate::kick;
use crate::outcome::{Outcome, Registers};
use crate::stats::Stats;
use crate::stop::StopToken;
use crate::vcpu::VcpuHost;

/// Bytes of console output attached to failure reports.
const CONSOLE_TAIL: usize = 2048;

#[derive(Default)]
pub(super) struct RunState {
    pub(super) started: bool,
    pub(super) outcome: Option<Outcome>,
    /// vCPU threads started and not yet finished.
    pub(super) live: u32,
    /// Registers of each vCPU when its thread finished.
    pub(super) last_regs: Vec<Registers>,
}

/// State shared by the vCPU threads and the owner.
pub struct VmShared {
    pub buses: Buses,
    pub stats: Arc<Stats>,
    pub console: SharedConsole,
    /// The VM's one stop signal: vCPU loops, the RPC engine and event queue
    /// waiters all watch it.
    pub(super) stop: StopToken,
    pub(super) run: Mutex<RunState>,
    pub(super) changed: Condvar,
    /// Threads to kick on stop; only threads not yet joined are listed.
    pub(super) threads: Mutex<Vec<libc::pthread_t>>,
    /// CPU time of the guest threads' carriers that ended (`cpu_clock`).
    pub(super) ended_cpu_ns: AtomicU64,
    /// The vCPU captured at the snapshot point (`snapshot`), until taken.
    pub(super) captured: Mutex<Option<super::snapshot::VcpuSnapshot>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl VmShared {
    pub(super) fn new(
        buses: Buses,
        stats: Arc<Stats>,
        console: SharedConsole,
        stop: StopToken,
        vcpus: u32,
    ) -> Self {
        VmShared {
            buses,
            stats,
            console,
            stop,
            run: Mutex::new(RunState {
                last_regs: vec![Vec::new(); vcpus as usize],
                ..Default::default()
            }),
            changed: Condvar::new(),
            threads: Mutex::new(Vec::new()),
            ended_cpu_ns: AtomicU64::new(0),
            captured: Mutex::new(None),
        }
    }

    pub fn stopping(&self) -> bool {
        self.stop.is_stopped()
    }

    /// Records the outcome unless one was recorded already, then stops the VM:
    /// the stop token (RPC engine, queue waiters), then a kick to every vCPU.
    pub fn finish(&self, mut outcome: Outcome) {
        {
            let mut run = lock(&self.run);
            if run.outcome.is_none() {
                if let Outcome::Crashed(f) | Outcome::TimedOut(f) = &mut outcome {
                    f.console_tail = self.console_tail();
                }
                run.outcome = Some(outcome);
            }
            self.changed.notify_all();
        }
        self.stop.stop();
        self.kick_all();
    }

    /// Signals every vCPU thread not yet joined (see `kick`).
    pub(super) fn kick_all(&self) {
        for &t in lock(&self.threads).iter() {
            kick::kick(t);
        }
    }

    pub fn vcpu_stopped(&self, index: u32, regs: Registers) {
        let mut run = lock(&self.run);
        run.last_regs[index as usize] = regs;
        run.live -= 1;
        self.changed.notify_all();
    }

    /// A guest thread's carrier (`pool`) ended, holding vCPU `index` with
    /// these registers, or no vCPU.
    pub(super) fn carrier_stopped(&self, last: Option<(u32, Registers)>) {
        let mut run = lock(&self.run);
        if let Some((index, regs)) = last {
            if let Some(slot) = run.last_regs.get_mut(index as usize) {
                *slot = regs;
            }
        }
        run.live -= 1;
        self.changed.notify_all();
    }

    fn console_tail(&self) -> String {
        String::from_utf8_lossy(&lock(&self.console).tail(CONSOLE_TAIL)).into_owned()
    }
}

impl VcpuHost for VmShared {
    fn buses(&self) -> &Buses {
        &self.buses
    }

    fn stats(&self) -> &Stats {
        &self.stats
    }

    fn stopping(&self) -> bool {
        VmShared::stopping(self)
    }

    fn finish(&self, outcome: Outcome) {
        VmShared::finish(self, outcome)
    }

    fn vcpu_stopped(&self, index: u32, regs: Registers) {
        VmShared::vcpu_stopped(self, index, regs)
    }
}
