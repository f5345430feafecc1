//! The socket I/O exit: large receives and sends of a host socket, served on
//! the vCPU's own host thread (guest/lib/sockets/host.c, `sockio`).
//!
//! Why: the native data plane's RPCs (`sockfast`) are answered on the VM's RPC
//! engine thread. For bulk data that is a third busy host thread beside the
//! vCPU and the peer, and on a small host the vCPU then waits for the engine
//! to get a CPU at every call; a read-ahead buffer filled there also costs a
//! second copy on another core. Here the guest writes the address of a
//! `struct vmrpc_sockio_req` to `VMRPC_MMIO_SOCKIO`, and the vCPU thread does
//! the `recvmsg`/`send` itself, straight between the socket and guest memory:
//! one copy, one core. One exit costs tens of microseconds on this host, so the
//! guest takes this path only for large transfers, and a receive fills the
//! program's buffer and then, in the same system call, the socket's read-ahead.
//!
//! A request may wait (timeout_ms): the thread then sleeps in poll(2) on the
//! socket and on the VM's stop eventfd, so stopping or closing the VM ends the
//! wait at once (-EINTR), and a kick's signal only restarts the poll. The
//! register may block (`may_block`): a Linux program's thread gives its vCPU
//! to the pool before the request is served and takes one again after (its
//! own, resident, when nobody else took it: no ioctl), so a thread waiting
//! here holds no vCPU; the guest must still not hold a lock others need (the
//! personality's lock is let go around socket calls).
//!
//! The request is guest input: copied once, validated (flags, lengths, the
//! module handle through this VM's own registry, the socket through that
//! module's table, both buffers inside guest RAM), and only `result` is
//! written back. A socket the module does not serve natively (TLS, not yet
//! connected) gets -EOPNOTSUPP, and the guest uses the module's RPCs.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guest_kmod_bindings::{
    vmrpc_sockio_req, VMRPC_SOCKIO_FLAGS, VMRPC_SOCKIO_MAX, VMRPC_SOCKIO_PEEK, VMRPC_SOCKIO_SEND,
    VMRPC_SOCKIO_WAITALL,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::bus::{written_value, BusDevice, DeviceAction};
use crate::rpc::registry::{Registered, Registry};
use crate::stats::Stats;
use crate::stop::StopToken;

pub use guest_kmod_bindings::VMRPC_MMIO_SOCKIO as MMIO_SOCKIO;

/// Why a request is refused (the guest gets -errno).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SockIoError {
    /// unknown flag bits, a negative timeout other than -1, a second buffer
    /// for a send or a peek, or more than VMRPC_SOCKIO_MAX bytes
    #[error("invalid socket I/O request")]
    Invalid,
    /// the module handle names no live module of this VM
    #[error("no such module handle")]
    BadModule,
    /// the module has no native data plane, or the socket is not in it
    #[error("socket not served natively")]
    NotNative,
    /// a buffer lies outside guest RAM
    #[error("buffer outside guest memory")]
    Fault,
}

impl SockIoError {
    pub fn errno(&self) -> i32 {
        match self {
            SockIoError::Invalid => libc::EINVAL,
            SockIoError::BadModule => libc::EBADF,
            SockIoError::NotNative => libc::EOPNOTSUPP,
            SockIoError::Fault => libc::EFAULT,
        }
    }
}

/// A validated request: the socket and up to two guest buffers (host pointers
/// into guest RAM, bounds-checked).
struct Transfer {
    /// The module (its data plane counts the bytes).
    module: Arc<Registered>,
    fd: Arc<OwnedFd>,
    flags: u32,
    /// None: wait without limit.
    timeout: Option<Duration>,
    bufs: [(*mut u8, usize); 2],
}

/// How a wait for readiness ended.
enum Waited {
    Ready,
    TimedOut,
    Stopped,
}

pub struct SockIoDevice {
    memory: GuestMemoryMmap,
    registry: Arc<Registry>,
    stop: StopToken,
    stats: Arc<Stats>,
}

impl SockIoDevice {
    pub fn new(
        memory: GuestMemoryMmap,
        registry: Arc<Registry>,
        stop: StopToken,
        stats: Arc<Stats>,
    ) -> Self {
        SockIoDevice {
            memory,
            registry,
            stop,
            stats,
        }
    }

    /// A guest buffer as a host pointer, bounds-checked against guest RAM.
    fn buffer(&self, gpa: u64, len: u32) -> Result<(*mut u8, usize), SockIoError> {
        if len == 0 {
            return Ok((std::ptr::null_mut(), 0));
        }
        let slice = self
            .memory
            .get_slice(GuestAddress(gpa), len as usize)
            .map_err(|_| SockIoError::Fault)?;
        Ok((slice.ptr_guard_mut().as_ptr(), len as usize))
    }

    fn validate(&self, req: &vmrpc_sockio_req) -> Result<Transfer, SockIoError> {
        let sending = req.flags & VMRPC_SOCKIO_SEND != 0;
        let peek = req.flags & VMRPC_SOCKIO_PEEK != 0;
        let waitall = req.flags & VMRPC_SOCKIO_WAITALL != 0;
        if req.flags & !VMRPC_SOCKIO_FLAGS != 0
            || req.timeout_ms < -1
            || u64::from(req.len) + u64::from(req.len2) > u64::from(VMRPC_SOCKIO_MAX)
            || (req.len2 != 0 && (sending || peek))
            || (sending && (peek || waitall))
            || (peek && waitall)
        {
            return Err(SockIoError::Invalid);
        }
        let module = self
            .registry
            .lookup(req.module)
            .map_err(|_| SockIoError::BadModule)?;
        let fd = module
            .module
            .native_sockets()
            .and_then(|sockets| sockets.socket(req.handle))
            .ok_or(SockIoError::NotNative)?;
        let bufs = [
            self.buffer(req.gpa, req.len)?,
            self.buffer(req.gpa2, req.len2)?,
        ];
        let timeout = u64::try_from(req.timeout_ms)
            .ok()
            .map(Duration::from_millis);
        Ok(Transfer {
            module,
            fd,
            flags: req.flags,
            timeout,
            bufs,
        })
    }

    /// Serves a validated request: bytes moved or -errno.
    fn transfer(&self, t: &Transfer) -> i64 {
        // A timeout too far to represent is no timeout (never a panic).
        let deadline = t.timeout.and_then(|d| Instant::now().checked_add(d));
        let never_wait = t.timeout == Some(Duration::ZERO);
        let sending = t.flags & VMRPC_SOCKIO_SEND != 0;
        let want = t.bufs[0].1;
        let events = if sending { libc::POLLOUT } else { libc::POLLIN };
        let mut done = 0usize;
        let outcome = loop {
            let n = if sending {
                self.send_once(t, done)
            } else {
                self.recv_once(t, done)
            };
            match n {
                Ok(0) if !sending => break 0, // end of stream
                Ok(n) => {
                    done += n;
                    // A send finishes its buffer (as a blocking send does); a
                    // receive returns what came, unless MSG_WAITALL wants more.
                    let more = sending || t.flags & VMRPC_SOCKIO_WAITALL != 0;
                    if done >= want || !more || never_wait {
                        break 0;
                    }
                }
                Err(libc::EINTR) => {
                    if self.stop.is_stopped() {
                        break libc::EINTR;
                    }
                }
                Err(libc::EAGAIN) if !never_wait => {
                    self.stats.sockio_waits.inc();
                    match self.wait(&t.fd, events, deadline) {
                        Waited::Ready => {}
                        Waited::TimedOut => break libc::EAGAIN,
                        Waited::Stopped => break libc::EINTR,
                    }
                }
                Err(errno) => break errno,
            }
        };
        self.stats.sockio_bytes.add(done as u64);
        let peek = t.flags & VMRPC_SOCKIO_PEEK != 0;
        if let Some(sockets) = t.module.module.native_sockets().filter(|_| !peek) {
            sockets.count_bytes(sending, done as u64);
        }
        if done > 0 || outcome == 0 {
            done as i64
        } else {
            -i64::from(outcome)
        }
    }

    /// One non-blocking `recvmsg` into what is left of the first buffer and,
    /// on the first attempt only, the whole second one.
    fn recv_once(&self, t: &Transfer, done: usize) -> Result<usize, i32> {
        let (first, first_len) = t.bufs[0];
        let mut iov = [libc::iovec {
            // SAFETY (pointer arithmetic): done < first_len whenever this runs
            // again after a partial receive, so the result stays inside the buffer.
            iov_base: first.wrapping_add(done).cast(),
            iov_len: first_len - done,
        }; 2];
        let mut count = 1;
        if done == 0 && t.bufs[1].1 > 0 {
            iov[1] = libc::iovec {
                iov_base: t.bufs[1].0.cast(),
                iov_len: t.bufs[1].1,
            };
            count = 2;
        }
        // SAFETY: an all-zero msghdr is valid (no name, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = count;
        let mut flags = libc::MSG_DONTWAIT;
        if t.flags & VMRPC_SOCKIO_PEEK != 0 {
            flags |= libc::MSG_PEEK;
        }
        // SAFETY: every iovec names guest RAM bounds-checked by `validate` (the
        // mapping outlives the VM's devices), and `fd` is kept open by our
        // reference. The kernel writes guest bytes the guest asked it to.
        let n = unsafe { libc::recvmsg(t.fd.as_raw_fd(), &mut msg, flags) };
        result(n)
    }

    /// One non-blocking `send` of what is left of the buffer.
    fn send_once(&self, t: &Transfer, done: usize) -> Result<usize, i32> {
        let (buf, len) = t.bufs[0];
        // SAFETY: [buf + done, buf + len) is guest RAM bounds-checked by
        // `validate`; `fd` is kept open by our reference; the kernel only reads.
        let n = unsafe {
            libc::send(
                t.fd.as_raw_fd(),
                buf.wrapping_add(done).cast(),
                len - done,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        result(n)
    }

    /// Sleeps until `fd` has `events`, the deadline passes or the VM stops.
    fn wait(&self, fd: &OwnedFd, events: i16, deadline: Option<Instant>) -> Waited {
        loop {
            if self.stop.is_stopped() {
                return Waited::Stopped;
            }
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Waited::TimedOut;
                    }
                    // Rounded up: never a busy loop of zero-length polls.
                    i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
                }
            };
            let mut fds = [
                libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.stop.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two valid pollfds; both descriptors stay open meanwhile.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
            if r > 0 && fds[1].revents != 0 {
                return Waited::Stopped;
            }
            if r > 0 {
                return Waited::Ready; // readable, writable, or an error to report
            }
            // 0: the timeout (checked above); EINTR: a kick (the stop flag is checked above).
        }
    }

    /// Serves the request at `gpa`: copied once, validated, answered in `result`.
    fn serve(&self, gpa: u64) -> Result<(), SockIoError> {
        let req: vmrpc_sockio_req = self
            .memory
            .read_obj(GuestAddress(gpa))
            .map_err(|_| SockIoError::Fault)?;
        self.stats.sockio_calls.inc();
        let result = match self.validate(&req) {
            Ok(t) => self.transfer(&t),
            Err(e) => -i64::from(e.errno()),
        };
        let at = gpa + std::mem::offset_of!(vmrpc_sockio_req, result) as u64;
        self.memory
            .write_obj(result, GuestAddress(at))
            .map_err(|_| SockIoError::Fault)
    }
}

/// A system call's return as bytes or errno.
fn result(n: isize) -> Result<usize, i32> {
    if n >= 0 {
        return Ok(n as usize);
    }
    Err(std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO))
}

impl BusDevice for SockIoDevice {
    fn write(&self, _offset: u64, data: &[u8]) -> DeviceAction {
        // A request outside guest memory cannot be answered: dropped, and the
        // guest sees its result field as it left it.
        let _ = self.serve(written_value(data));
        DeviceAction::Continue
    }

    fn may_block(&self, _offset: u64) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
