//! Native connect: a new plain TCP socket's CONNECT, answered on the engine
//! thread without Python, for a destination Python has let through plainly.
//!
//! Python stays the authority. After it has itself served a connect that its
//! policy allowed plainly (no TLS, no proxy) to an IPv4 destination and that
//! ended at once, it may hand this gate the request's exact address bytes
//! (`allow_plain`) with the number of its decision. A later CONNECT of a new
//! stream socket to the same bytes is served here: the same socket, options and
//! connect Python makes, the same answer, and a record of the decision for
//! Python's audit log (`take_audit`). Python drops every address at once
//! (`forget_plain`) when anything its decision or its audit text depends on
//! changes (the policy, the names the guest resolved), so the next connect is
//! decided by Python again. Python's limits are kept here exactly: the socket
//! table's size, the VM's host fd budget and the process's fd reserve (see
//! `fdbudget.py`); Python reports its own share, never below the truth, and
//! anything short of room for the socket and its duplicate goes to Python.
//!
//! A socket connected here is attached at once (it is READY) and waits in
//! `born` until Python adopts it (`take_born`, before each Python call): Python
//! then owns its descriptor as it owns the ones it makes. A born socket the
//! guest closes before that is closed here and never reaches Python. Its
//! handle comes from a range Python's table never uses (`NATIVE_HANDLES`).
//!
//! A connect that has not ended by the time a zero-timeout poll looks is not
//! waited for here: its socket goes to Python with the call (`take_started`,
//! on the same thread), which waits as it does for its own.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use guest_kmod_bindings::socket_proto::{
    vmrpc_sock_addr, vmrpc_sock_addr_resp, vmrpc_sock_connect_req, vmrpc_sock_sockopt_req,
    VMRPC_SOCK_AF_INET, VMRPC_SOCK_MAX_CONNECT_OPTS, VMRPC_SOCK_MAX_OPTLEN, VMRPC_SOCK_SOCK_STREAM,
};
use vm_memory::ByteValued;

use super::{last_errno, Attached, SocketDataPlane};

/// Handles of sockets connected here: Python's own are 1..=max_sockets + 1,
/// which it keeps below this (`vmrpc.sockets.table`).
pub const NATIVE_HANDLES: u32 = 1 << 30;

/// The size of `struct vmrpc_sock_addr`, the key of a plain destination.
pub const ADDR_LEN: usize = size_of::<vmrpc_sock_addr>();

/// A socket connected here that Python has not adopted yet: its own
/// descriptor (Python's once adopted) and Python's decision for it.
pub struct Born {
    pub fd: OwnedFd,
    pub decision: u32,
}

/// Python's limits and its share of them (`set_limits`, `set_python_counts`).
#[derive(Default)]
struct Limits {
    /// False until Python has set them: nothing is served here before.
    set: bool,
    max_sockets: u64,
    max_host_fds: u64,
    /// Fds of the soft RLIMIT_NOFILE to keep free; None: `max(64, limit / 8)`.
    reserve: Option<u64>,
    /// Python's table entries and host sockets, never below the truth.
    python_entries: u64,
    python_sockets: u64,
}

#[derive(Default)]
struct State {
    limits: Limits,
    /// Exact `struct vmrpc_sock_addr` bytes -> Python's decision number.
    plain: HashMap<[u8; ADDR_LEN], u32>,
    /// The module closed: nothing is served again.
    disabled: bool,
    /// (time.time(), decision) of each connect served here, for the audit log.
    audit: Vec<(f64, u32)>,
    next_handle: u32,
}

#[derive(Default)]
pub struct Gate {
    state: Mutex<State>,
}

thread_local! {
    /// A connect under way handed to Python with this thread's call: (fd, errno).
    static STARTED: RefCell<Option<(OwnedFd, i32)>> = const { RefCell::new(None) };
}

/// An option of a new socket, as its CONNECT carries it: (level, name, value).
type NewOption<'a> = (i32, i32, &'a [u8]);

/// A new stream socket's CONNECT to an IPv4 address, parsed: the address bytes
/// and the options to set. None: anything else, or a request Python should see
/// (every malformed one: the errors stay Python's).
fn parse(request: &[u8]) -> Option<([u8; ADDR_LEN], Vec<NewOption<'_>>)> {
    let mut req = vmrpc_sock_connect_req::default();
    let head = size_of_val(&req);
    req.as_mut_slice().copy_from_slice(request.get(..head)?);
    let timeout_ok = req.timeout_ms == -1 || req.timeout_ms > 0; // 0: non-blocking
    if req.handle != 0 || req.r#type != VMRPC_SOCK_SOCK_STREAM || !timeout_ok {
        return None;
    }
    let addr = req.addr;
    if u32::from(addr.family) != VMRPC_SOCK_AF_INET || addr.addr[4..].iter().any(|&b| b != 0) {
        return None;
    }
    let mut key = [0u8; ADDR_LEN];
    key.copy_from_slice(addr.as_slice());
    let mut options = Vec::new();
    let mut rest = &request[head..];
    while !rest.is_empty() {
        let mut opt = vmrpc_sock_sockopt_req::default();
        let size = size_of_val(&opt);
        if options.len() == VMRPC_SOCK_MAX_CONNECT_OPTS as usize || rest.len() < size {
            return None;
        }
        opt.as_mut_slice().copy_from_slice(&rest[..size]);
        let end = size.checked_add(opt.len as usize)?;
        if opt.len > VMRPC_SOCK_MAX_OPTLEN || rest.len() < end {
            return None;
        }
        options.push((opt.level, opt.name, &rest[size..end]));
        rest = &rest[end..];
    }
    Some((key, options))
}

/// Open fds of this process (one stat of /proc/self/fd: Linux 6.2 and later
/// give the count as its size); None where that is not so (then Python counts).
fn open_fds() -> Option<u64> {
    let size = std::fs::metadata("/proc/self/fd").ok()?.len();
    (size > 0).then_some(size)
}

fn soft_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0; // unknown: no room, Python decides
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        1 << 30
    } else {
        lim.rlim_cur
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The answer Python gives: the result, the new handle in `aux`, and the local
/// address (`getsockname`) for a connected socket (all zero otherwise).
fn answer(result: i32, handle: u32, local: vmrpc_sock_addr) -> Vec<u8> {
    vmrpc_sock_addr_resp {
        result,
        aux: handle,
        addr: local,
    }
    .as_slice()
    .to_vec()
}

fn local_addr(fd: RawFd) -> Option<vmrpc_sock_addr> {
    // SAFETY: an all-zero sockaddr_in is valid; getsockname writes at most len bytes.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `sin` and `len` are ours and sized as getsockname expects.
    let rc = unsafe { libc::getsockname(fd, (&raw mut sin).cast(), &mut len) };
    if rc != 0 || i32::from(sin.sin_family) != libc::AF_INET {
        return None;
    }
    let mut addr = vmrpc_sock_addr {
        family: VMRPC_SOCK_AF_INET as u16,
        port: u16::from_be(sin.sin_port),
        ..Default::default()
    };
    addr.addr[..4].copy_from_slice(&sin.sin_addr.s_addr.to_ne_bytes());
    Some(addr)
}

/// How a connect attempt ended without waiting.
enum Outcome {
    Connected,
    Failed(i32),
    UnderWay(i32),
}

/// A non-blocking connect to `key`'s address, then a zero-timeout poll, as
/// Python's `_start_connect` does it.
fn connect_now(fd: RawFd, key: &[u8; ADDR_LEN]) -> Outcome {
    let mut addr = vmrpc_sock_addr::default();
    addr.as_mut_slice().copy_from_slice(key);
    // SAFETY: an all-zero sockaddr_in is valid.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_port = addr.port.to_be();
    sin.sin_addr.s_addr =
        u32::from_ne_bytes([addr.addr[0], addr.addr[1], addr.addr[2], addr.addr[3]]);
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `sin` is a valid sockaddr_in of `len` bytes; `fd` is our socket.
    if unsafe { libc::connect(fd, (&raw const sin).cast(), len) } == 0 {
        return Outcome::Connected;
    }
    let err = last_errno();
    if err != libc::EINPROGRESS && err != libc::EAGAIN {
        return Outcome::Failed(err);
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd; a zero timeout never blocks.
    if unsafe { libc::poll(&mut pfd, 1, 0) } <= 0 {
        return Outcome::UnderWay(err);
    }
    if pfd.revents & (libc::POLLERR | libc::POLLHUP) == 0 {
        return Outcome::Connected; // TCP reports no POLLOUT while SYN_SENT
    }
    let mut so_error: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_ERROR writes one int we own.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut so_error).cast(),
            &mut len,
        )
    };
    Outcome::Failed(if rc == 0 && so_error != 0 {
        so_error
    } else {
        libc::EIO
    })
}

impl Gate {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_limits(&self, max_sockets: u64, max_host_fds: u64, reserve: Option<u64>) {
        let mut s = self.state();
        if s.disabled {
            return;
        }
        s.limits.max_sockets = max_sockets;
        s.limits.max_host_fds = max_host_fds;
        s.limits.reserve = reserve;
        s.limits.set = true;
    }

    pub fn set_python_counts(&self, entries: u64, sockets: u64) {
        let mut s = self.state();
        s.limits.python_entries = entries;
        s.limits.python_sockets = sockets;
    }

    /// Returns false for an address that is not a `struct vmrpc_sock_addr`.
    pub fn allow_plain(&self, addr: &[u8], decision: u32) -> bool {
        let Ok(key) = <[u8; ADDR_LEN]>::try_from(addr) else {
            return false;
        };
        let mut s = self.state();
        if !s.disabled {
            s.plain.insert(key, decision);
        }
        true
    }

    pub fn forget_plain(&self) {
        self.state().plain.clear();
    }

    /// Serves nothing any more, whatever Python says later (the module closed).
    pub fn disable(&self) {
        let mut s = self.state();
        s.plain.clear();
        s.limits.set = false;
        s.disabled = true;
    }

    pub fn take_audit(&self) -> Vec<(f64, u32)> {
        std::mem::take(&mut self.state().audit)
    }

    /// The connect under way this thread's call handed to Python, if any.
    pub fn take_started() -> Option<(OwnedFd, i32)> {
        STARTED.with(|s| s.borrow_mut().take())
    }
}

impl SocketDataPlane {
    /// CONNECT served here (Some(answer)), or None: Python's. No lock is held
    /// while another is taken (the table's and the gate's are never nested).
    pub(super) fn connect(&self, request: &[u8]) -> Option<Vec<u8>> {
        let (key, options) = parse(request)?;
        let (attached, born) = self.attached_and_born();
        let (decision, handle) = {
            let mut s = self.gate.state();
            let decision = *s.plain.get(&key)?;
            let l = &s.limits;
            // Room for the entry, and for the socket and its duplicate: else
            // Python (it gives the errors, or serves the socket without a duplicate).
            let entries = l.python_entries.saturating_add(born + 1);
            let fds = l.python_sockets.saturating_add(born + attached + 2);
            if !l.set || entries > l.max_sockets || fds > l.max_host_fds {
                return None;
            }
            let limit = soft_nofile();
            let reserve = l.reserve.unwrap_or((limit / 8).max(64));
            if open_fds()?.saturating_add(2) > limit.saturating_sub(reserve) {
                return None;
            }
            let handle = NATIVE_HANDLES + s.next_handle % (u32::MAX - NATIVE_HANDLES);
            s.next_handle = s.next_handle.wrapping_add(1);
            (decision, handle)
        };
        if self.is_attached(handle) {
            return None; // wrapped onto a socket still open: Python's turn
        }
        // SAFETY: plain socket(2); a non-negative result is a new descriptor we own.
        let raw = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return None; // Python tries, and reports what the host says
        }
        // SAFETY: `raw` was just returned by socket(2) and is owned by nobody else.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        self.set_new_options(raw, &options);
        let when = now();
        let outcome = connect_now(raw, &key);
        if let Outcome::UnderWay(err) = outcome {
            // Python takes the socket over with this very call and waits for it
            // (and records and counts it, as its own).
            STARTED.with(|st| *st.borrow_mut() = Some((sock, err)));
            return None;
        }
        self.connect_sockets.fetch_add(1, Ordering::Relaxed);
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.gate.state().audit.push((when, decision));
        let local = match outcome {
            Outcome::Failed(err) => return Some(answer(-err, 0, vmrpc_sock_addr::default())),
            _ => local_addr(raw),
        };
        let (Some(local), Ok(dup)) = (local, sock.try_clone()) else {
            return Some(answer(-libc::EIO, 0, vmrpc_sock_addr::default()));
        };
        let attached = Attached {
            fd: Arc::new(dup),
            python_fd: raw,
            born: Some(Born { fd: sock, decision }),
        };
        self.table().insert(handle, attached);
        Some(answer(0, handle, local))
    }

    /// A new socket's options, as Python's `optnames.vet` takes them: the
    /// allow-listed ones, their first `size` bytes; any other is ignored, and so
    /// are errors, as Python ignores them for a new socket.
    fn set_new_options(&self, fd: RawFd, options: &[NewOption<'_>]) {
        for &(level, name, value) in options {
            let Some(&size) = self.options.get(&(level, name)) else {
                continue;
            };
            if value.len() < size as usize {
                continue;
            }
            // SAFETY: `value` holds at least `size` bytes; `fd` is our socket.
            unsafe {
                libc::setsockopt(
                    fd,
                    level,
                    name,
                    value.as_ptr().cast(),
                    size as libc::socklen_t,
                )
            };
        }
    }
}

#[cfg(test)]
mod tests;
