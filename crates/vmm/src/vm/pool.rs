//! Guest threads scheduled over a Linux VM's vCPUs, M:N (docs/linux.md, "Threads").
//!
//! Every guest thread has a host thread of its own, its *carrier*, which runs
//! the thread on whichever vCPU of the VM's pool it holds. A carrier gives its
//! vCPU back:
//! - before a write that may block (a futex wait, a wait for an RPC answer, a
//!   socket I/O exit: `BusDevice::may_block`): it blocks in the device without
//!   a vCPU and takes one again when the wait ends;
//! - when preempted: a carrier that waited a quantum for a vCPU kicks the
//!   holder that has run longest, which gives its vCPU up at that exit if its
//!   thread runs program code (ring 3, and not inside the personality: the
//!   thread's word at `GS_IN_PERSONALITY`), then queues behind the others;
//! - when its thread ends.
//!
//! Waiting carriers are served first come, first served; only the first one
//! keeps a timer, so a VM whose threads all have a vCPU has no timer at all.
//! Guest timer interrupts and a ring-0 scheduler would cost far more here: PVM
//! emulates ring-0 code instruction by instruction.
//!
//! A vCPU given up keeps its thread's registers (its *resident* context), so
//! the same thread taking it again costs no ioctl: one thread per vCPU stays
//! as cheap as before. Another thread taking it saves the resident context
//! first (KVM_RUN with immediate_exit completes a pending MMIO write, then
//! GET_REGS/SREGS/XSAVE) and loads its own (SET_*, keeping the vCPU's own TSS
//! and APIC base, and writing the vCPU index into the thread's GS block, where
//! `rt_cpu_id()` reads it). The pool creates vCPUs, up to the VM's count, when
//! threads wait for one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs, kvm_xsave};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::shared::{lock, VmShared};
use crate::bus::{ThreadRequest, ThreadStart};
use crate::error::{kvm, VmError};
use crate::kick::{self, ImmediateExit};
use crate::outcome::{GuestFailure, Outcome, Registers};
use crate::stop::StopToken;
use crate::vcpu::{self, Crash, ExitAction};

/// What a carrier needs of its VM (`launch::Launcher`).
pub(super) trait CarrierHost: Send + Sync + 'static {
    fn shared(&self) -> &VmShared;
    fn pool(&self) -> Option<&Pool>;
    /// Makes vCPU `index`, ready for a context to be loaded.
    fn create_vcpu(&self, index: u32) -> Result<VcpuFd, VmError>;
    /// Starts a guest thread from `ctx` on a carrier of its own: 0 or -errno.
    fn spawn_guest_thread(self: &Arc<Self>, ctx: Context) -> i64;
}

/// How long the first waiting thread waits before it preempts a running one.
const QUANTUM: Duration = Duration::from_millis(10);
/// The word of a thread's GS block that is non-zero while the thread runs
/// inside the personality (`LX_GS_IN_PERSONALITY`, guest/linux/linux_abi.h):
/// it may hold the personality lock or use per-vCPU state there (the TLB
/// generation), so it is not preempted.
const GS_IN_PERSONALITY: u64 = 0x30;
/// RFLAGS of a new thread's first instruction: interrupts off, as in ring 3 always.
const START_RFLAGS: u64 = 0x2;
const EAGAIN: i64 = 11;

/// A thread's registers while it is resident in no vCPU.
pub(super) struct Context {
    regs: kvm_regs,
    sregs: kvm_sregs,
    xsave: Box<kvm_xsave>,
}

/// One guest thread, as its carrier and the pool see it.
pub(super) struct GuestThread {
    saved: Mutex<Option<Context>>,
    /// Set by a waiting carrier before it kicks this thread's carrier.
    preempt: AtomicBool,
    /// Waits on the pool's lock for this thread's turn.
    turn: Condvar,
}

impl GuestThread {
    pub(super) fn new(saved: Option<Context>) -> Arc<Self> {
        Arc::new(GuestThread {
            saved: Mutex::new(saved),
            preempt: AtomicBool::new(false),
            turn: Condvar::new(),
        })
    }
}

/// A vCPU a carrier holds.
pub(super) struct Held {
    pub(super) fd: VcpuFd,
    pub(super) index: u32,
}

struct Free {
    held: Held,
    resident: Option<Arc<GuestThread>>,
}

struct Holder {
    thread: Arc<GuestThread>,
    index: u32,
    since: Instant,
    pthread: libc::pthread_t,
}

#[derive(Default)]
struct State {
    free: Vec<Free>,
    /// Carriers waiting for a vCPU, first come first served.
    queue: VecDeque<Arc<GuestThread>>,
    holders: Vec<Holder>,
    /// Each vCPU's own TSS segment and APIC base (kept when a context loads).
    own: Vec<(kvm_segment, u64)>,
    stopping: bool,
}

/// The vCPUs of one VM and the threads waiting for them.
pub(super) struct Pool {
    state: Mutex<State>,
    memory: GuestMemoryMmap,
    max: u32,
}

fn same(a: &Arc<GuestThread>, b: &Arc<GuestThread>) -> bool {
    Arc::ptr_eq(a, b)
}

impl Pool {
    pub(super) fn new(memory: GuestMemoryMmap, max: u32, stop: &StopToken) -> Arc<Self> {
        let pool = Arc::new(Pool {
            state: Mutex::new(State::default()),
            memory,
            max,
        });
        let weak: Weak<Pool> = Arc::downgrade(&pool);
        stop.on_stop(Box::new(move || {
            if let Some(p) = weak.upgrade() {
                p.stop();
            }
        }));
        pool
    }

    /// Every waiting carrier leaves (the VM stops).
    fn stop(&self) {
        let mut st = lock(&self.state);
        st.stopping = true;
        for t in &st.queue {
            t.turn.notify_one();
        }
    }

    /// Takes a vCPU made elsewhere (vCPU 0, which boots the program) as held
    /// by `thread`; `index` must be the next one.
    pub(super) fn adopt(
        &self,
        fd: &VcpuFd,
        thread: &Arc<GuestThread>,
        index: u32,
    ) -> Result<(), VmError> {
        let sregs = fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
        let mut st = lock(&self.state);
        debug_assert_eq!(st.own.len(), index as usize);
        st.own.push((sregs.tr, sregs.apic_base));
        st.holders.push(Holder {
            thread: thread.clone(),
            index,
            since: Instant::now(),
            // SAFETY: pthread_self has no preconditions.
            pthread: unsafe { libc::pthread_self() },
        });
        Ok(())
    }

    /// A free vCPU for `me`: the one it is resident in, one nobody is
    /// resident in, a new one, or (evicting its resident) any.
    fn take_free<H: CarrierHost>(
        &self,
        st: &mut State,
        me: &Arc<GuestThread>,
        host: &H,
    ) -> Result<Option<Free>, VmError> {
        let mine = st
            .free
            .iter()
            .position(|f| f.resident.as_ref().is_some_and(|r| same(r, me)));
        let empty = || st.free.iter().position(|f| f.resident.is_none());
        if let Some(i) = mine.or_else(empty) {
            return Ok(Some(st.free.swap_remove(i)));
        }
        let created = st.own.len() as u32;
        if created < self.max {
            let fd = host.create_vcpu(created)?;
            let sregs = fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
            st.own.push((sregs.tr, sregs.apic_base));
            let held = Held { fd, index: created };
            return Ok(Some(Free {
                held,
                resident: None,
            }));
        }
        Ok(st.free.pop())
    }

    /// Waits for a vCPU and loads `me`'s context into it (`None`: the VM stops).
    pub(super) fn acquire<H: CarrierHost>(
        &self,
        me: &Arc<GuestThread>,
        host: &H,
    ) -> Result<Option<Held>, VmError> {
        let mut st = lock(&self.state);
        me.preempt.store(false, Ordering::SeqCst);
        st.queue.push_back(me.clone());
        loop {
            let first = st.queue.front().is_some_and(|t| same(t, me));
            if st.stopping {
                st.queue.retain(|t| !same(t, me));
                return Ok(None);
            }
            if !first {
                st = me.turn.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            if let Some(free) = self.take_free(&mut st, me, host)? {
                st.queue.pop_front();
                if let Some(next) = st.queue.front() {
                    next.turn.notify_one();
                }
                let Free { mut held, resident } = free;
                st.holders.push(Holder {
                    thread: me.clone(),
                    index: held.index,
                    since: Instant::now(),
                    // SAFETY: pthread_self has no preconditions.
                    pthread: unsafe { libc::pthread_self() },
                });
                let own = st.own[held.index as usize];
                match resident {
                    Some(r) if same(&r, me) => return Ok(Some(held)),
                    // Saved under the lock: `r` cannot take a vCPU before.
                    Some(r) => save(&mut held.fd, &r)?,
                    None => {}
                }
                drop(st);
                self.load(&held, me, own)?;
                host.shared().stats.context_switches.inc();
                return Ok(Some(held));
            }
            let (guard, waited) = me
                .turn
                .wait_timeout(st, QUANTUM)
                .unwrap_or_else(|e| e.into_inner());
            st = guard;
            if waited.timed_out() && st.free.is_empty() && !st.stopping {
                Self::preempt_longest(&mut st);
            }
        }
    }

    /// Asks the holder that has run longest to give its vCPU up.
    fn preempt_longest(st: &mut State) {
        if let Some(h) = st.holders.iter_mut().min_by_key(|h| h.since) {
            // Counted afresh: if it cannot go now, the next quantum asks another.
            h.since = Instant::now();
            h.thread.preempt.store(true, Ordering::SeqCst);
            kick::kick(h.pthread);
        }
    }

    /// Gives `held` back; `resident` is the thread whose registers it keeps.
    pub(super) fn release(&self, held: Held, resident: Option<Arc<GuestThread>>) {
        let mut st = lock(&self.state);
        st.holders.retain(|h| h.index != held.index);
        st.free.push(Free { held, resident });
        if let Some(next) = st.queue.front() {
            next.turn.notify_one();
        }
    }

    /// `me`'s carrier ends: it leaves the pool's lists. A carrier that ends
    /// holding its vCPU (the VM stops, exits or crashes) would stay a holder,
    /// and a waiter whose quantum ends before the pool's stop hook has run
    /// would kick its pthread id, perhaps after the launcher has joined it
    /// (`pthread_kill` on a joined thread is undefined behaviour).
    fn forget(&self, me: &Arc<GuestThread>) {
        let mut st = lock(&self.state);
        st.holders.retain(|h| !same(&h.thread, me));
        st.queue.retain(|t| !same(t, me));
        if let Some(next) = st.queue.front() {
            next.turn.notify_one();
        }
    }

    fn load(
        &self,
        held: &Held,
        me: &GuestThread,
        (tr, apic_base): (kvm_segment, u64),
    ) -> Result<(), VmError> {
        let ctx = lock(&me.saved)
            .take()
            .ok_or(VmError::Memory("a guest thread lost its registers".into()))?;
        let mut sregs = ctx.sregs;
        sregs.tr = tr;
        sregs.apic_base = apic_base;
        sregs.interrupt_bitmap = [0; 4];
        held.fd.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;
        held.fd.set_regs(&ctx.regs).map_err(kvm("KVM_SET_REGS"))?;
        // SAFETY: the buffer came from KVM_GET_XSAVE on a vCPU of this VM, so
        // it holds only state this VM's vCPUs have.
        unsafe { held.fd.set_xsave(&ctx.xsave) }.map_err(kvm("KVM_SET_XSAVE"))?;
        // rt_cpu_id() reads the vCPU index here (a guest thread's own memory:
        // a bad GS base only misleads that guest).
        let _ = self
            .memory
            .write_obj(held.index, GuestAddress(sregs.gs.base));
        Ok(())
    }

    fn preemptible(&self, fd: &VcpuFd) -> bool {
        let Ok(s) = fd.get_sregs() else {
            return false;
        };
        s.cs.selector & 3 == 3
            && s.gs
                .base
                .checked_add(GS_IN_PERSONALITY)
                .is_some_and(|at| self.memory.read_obj::<u32>(GuestAddress(at)).ok() == Some(0))
    }
}

/// Saves the context resident in `fd` into `thread`.
fn save(fd: &mut VcpuFd, thread: &GuestThread) -> Result<(), VmError> {
    // KVM completes the exit the thread left on (its MMIO write) on entry,
    // then returns at once (immediate_exit): only then are its registers final.
    fd.set_kvm_immediate_exit(1);
    let _ = fd.run();
    fd.set_kvm_immediate_exit(0);
    let regs = fd.get_regs().map_err(kvm("KVM_GET_REGS"))?;
    let sregs = fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let xsave = Box::new(fd.get_xsave().map_err(kvm("KVM_GET_XSAVE"))?);
    *lock(&thread.saved) = Some(Context { regs, sregs, xsave });
    Ok(())
}

/// A new thread's context: its creator's segments and FPU state, the entry
/// registers it asked for, and its own GS block.
pub(super) fn start_context(fd: &VcpuFd, start: &ThreadStart) -> Result<Context, VmError> {
    let mut sregs = fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    sregs.gs.base = start.gs_base;
    let xsave = Box::new(fd.get_xsave().map_err(kvm("KVM_GET_XSAVE"))?);
    let regs = kvm_regs {
        rip: start.rip,
        rsp: start.rsp,
        rdi: start.rdi,
        rflags: START_RFLAGS,
        ..Default::default()
    };
    Ok(Context { regs, sregs, xsave })
}

/// What one stretch of running on a held vCPU ended with.
enum Step {
    /// A write that may block, copied out of kvm_run (address, bytes, length).
    Block(u64, [u8; 8], usize),
    Kicked,
    Action(ExitAction),
}

/// A failure seen with no vCPU at hand (so no registers to report).
fn host_failure(reason: String) -> Outcome {
    Outcome::Crashed(GuestFailure {
        vcpu: 0,
        reason,
        registers: Vec::new(),
        console_tail: String::new(),
        exception: None,
    })
}

/// How a carrier ended: the vCPU it held and its registers, if any.
type Last = Option<(u32, Registers)>;

/// The body of a guest thread's carrier (see the module documentation).
/// `first`: the vCPU it starts on (vCPU 0, for the program's first thread).
pub(super) fn carrier<H: CarrierHost>(host: Arc<H>, me: Arc<GuestThread>, first: Option<VcpuFd>) {
    let mut held = None;
    if let (Some(fd), Some(pool)) = (first, host.pool()) {
        // On this thread: the pool kicks it by its pthread id.
        match pool.adopt(&fd, &me, 0) {
            Ok(()) => held = Some(Held { fd, index: 0 }),
            Err(e) => log::error!("vCPU 0 not adopted: {e}"),
        }
    }
    let last = run_thread(&host, &me, &mut held);
    if let Some(pool) = host.pool() {
        pool.forget(&me);
    }
    super::cpu_clock::retire_current_thread(host.shared());
    host.shared().carrier_stopped(last);
}

fn run_thread<H: CarrierHost>(
    host: &Arc<H>,
    me: &Arc<GuestThread>,
    held: &mut Option<Held>,
) -> Last {
    let shared = host.shared();
    let pool = host.pool()?;
    let (buses, stats) = (&shared.buses, &shared.stats);
    loop {
        let mut h = match held.take() {
            Some(h) => h,
            None => match pool.acquire(me, host.as_ref()) {
                Ok(Some(h)) => h,
                Ok(None) => return None,
                Err(e) => {
                    shared.finish(host_failure(format!("switching guest threads failed: {e}")));
                    return None;
                }
            },
        };
        let armed = ImmediateExit::arm(&mut h.fd.get_kvm_run().immediate_exit as *mut u8);
        let step = loop {
            if shared.stopping() {
                return Some((h.index, vcpu::registers(&h.fd)));
            }
            let step = match h.fd.run() {
                Ok(VcpuExit::MmioWrite(addr, data))
                    if buses.mmio.find(addr).is_some_and(|(d, o)| d.may_block(o)) =>
                {
                    let mut raw = [0u8; 8];
                    let n = data.len().min(8);
                    raw[..n].copy_from_slice(&data[..n]);
                    Step::Block(addr, raw, n)
                }
                Ok(exit) => Step::Action(vcpu::handle_exit(exit, buses, stats)),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    h.fd.set_kvm_immediate_exit(0);
                    stats.exits_kick.inc();
                    Step::Kicked
                }
                Err(e) => Step::Action(ExitAction::Crash(Crash::RunFailed(e.to_string()))),
            };
            match step {
                Step::Action(ExitAction::Continue) => {}
                Step::Kicked if !me.preempt.swap(false, Ordering::SeqCst) => {}
                Step::Kicked if !pool.preemptible(&h.fd) => {}
                Step::Action(ExitAction::Thread(ThreadRequest::Spawn(start))) => {
                    let result = match start_context(&h.fd, &start) {
                        Ok(ctx) => host.spawn_guest_thread(ctx),
                        Err(e) => {
                            log::debug!("guest thread not started: {e}");
                            -EAGAIN
                        }
                    };
                    let _ = pool.memory.write_obj(result, GuestAddress(start.result_at));
                }
                other => break other,
            }
        };
        drop(armed);
        match step {
            Step::Block(addr, raw, n) => {
                stats.exits_mmio.inc();
                pool.release(h, Some(me.clone()));
                // Only Continue comes from a futex wait; anything else ends the VM.
                match vcpu::write_to(&buses.mmio, addr, &raw[..n], stats) {
                    ExitAction::Continue => {}
                    ExitAction::GuestExit(code) => {
                        shared.finish(Outcome::Exited(code));
                        return None;
                    }
                    other => {
                        let why = format!("unexpected answer to a blocking write: {other:?}");
                        shared.finish(host_failure(why));
                        return None;
                    }
                }
            }
            Step::Kicked => {
                stats.preemptions.inc();
                pool.release(h, Some(me.clone()));
            }
            Step::Action(ExitAction::Thread(ThreadRequest::Exit { state_word })) => {
                pool.release(h, None);
                // Off its vCPU for good: the guest may reuse the slot now.
                if let Some(at) = state_word {
                    let _ = pool.memory.store(0u32, GuestAddress(at), Ordering::SeqCst);
                }
                return None;
            }
            Step::Action(ExitAction::GuestExit(code)) => {
                shared.finish(Outcome::Exited(code));
                return Some((h.index, vcpu::registers(&h.fd)));
            }
            Step::Action(ExitAction::Thread(ThreadRequest::Snapshot { point })) => {
                // Only the program's only thread, on vCPU 0; captured, the VM
                // stops here and `Vm::take_snapshot` follows. Refused, the
                // guest goes on (its `result` stays as it set it).
                let live = lock(&shared.run).live;
                let captured = if h.index != 0 || live != 1 {
                    Err(format!(
                        "{live} guest threads running (a snapshot needs one)"
                    ))
                } else {
                    super::snapshot::capture(&mut h.fd, point)
                };
                match captured {
                    Ok(snap) => {
                        *lock(&shared.captured) = Some(snap);
                        shared.finish(Outcome::Killed);
                        return Some((h.index, vcpu::registers(&h.fd)));
                    }
                    Err(why) => {
                        log::debug!("no snapshot taken: {why}");
                        *held = Some(h);
                    }
                }
            }
            Step::Action(ExitAction::Crash(crash)) => {
                let failure = vcpu::failure_report(crash, &mut h.fd, h.index);
                let regs = failure.registers.clone();
                shared.finish(Outcome::Crashed(failure));
                return Some((h.index, regs));
            }
            Step::Action(ExitAction::Continue | ExitAction::Thread(ThreadRequest::Spawn(_))) => {
                unreachable!("served in the run loop")
            }
        }
    }
}

#[cfg(test)]
mod tests;
