//! The native data plane of socket outsourcing.
//!
//! `vmrpc.sockets.SocketOutsourcing` (Python) owns the control plane: policy,
//! connect, accept, the socket table. Once a guest stream socket is connected
//! (and not wrapped in TLS), Python attaches a duplicate of its file descriptor
//! here under the guest's handle. The guest's zero-copy calls (SEND_BUF,
//! RECV_BUF; see socket_proto.h) are then answered on the RPC engine thread by
//! one non-blocking system call straight between the socket and the guest's own
//! buffer: no Python, no GIL, no copy through the RPC area. This table is the
//! gate of the native path: Python attaches a socket only when its entry turns
//! READY (after the connect, the SOCKS5 and the TLS handshakes; never a TLS
//! socket), so a socket still connecting is answered -EOPNOTSUPP here. They never wait:
//! what would block is answered -EAGAIN, and the guest takes the copying
//! SEND/RECV path, which Python serves (and which waits).
//!
//! The same table answers SETSOCKOPT of an attached socket for the options
//! Python's allow-list names (`new`; anything else goes to Python, which gives
//! the same errors as always) and CLOSE (`close`): a connection's last calls
//! need no Python either.
//!
//! The descriptors are duplicates: if Python closes its socket while a call is
//! in flight here, this table's copy keeps the descriptor valid (no reuse of a
//! closed number); Python detaches a handle before it closes the socket.
//!
//! The same sockets also serve the socket I/O exit (`devices::sock_io`): large
//! receives and sends on the vCPU's own thread, which may wait. A call there
//! holds its own reference to the descriptor (`socket`), so a detach meanwhile
//! cannot close it under the call.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use guest_kmod_bindings::socket_proto::{
    vmrpc_sock_buf_req, vmrpc_sock_handle_req, vmrpc_sock_resp, vmrpc_sock_sockopt_req,
    VMRPC_SOCK_FN_CLOSE, VMRPC_SOCK_FN_CONNECT, VMRPC_SOCK_FN_POLL, VMRPC_SOCK_FN_RECV_BUF,
    VMRPC_SOCK_FN_SEND_BUF, VMRPC_SOCK_FN_SETSOCKOPT, VMRPC_SOCK_MAX_BUF, VMRPC_SOCK_MAX_OPTLEN,
    VMRPC_SOCK_MAX_POLL,
};
use vm_memory::{ByteValued, GuestAddress, GuestMemoryBackend};

use crate::rpc::channel::Completion;
use crate::rpc::module::{NativeHandler, NativeSockets};

/// An attached socket: this table's duplicate, and the number of Python's own
/// descriptor of the same socket (see `SocketDataPlane::close`); for a socket
/// connected here and not yet adopted by Python, that descriptor itself (`connect`).
struct Attached {
    fd: Arc<OwnedFd>,
    python_fd: RawFd,
    born: Option<connect::Born>,
}

#[derive(Default)]
pub struct SocketDataPlane {
    sockets: Mutex<HashMap<u32, Attached>>,
    /// Settable options, `(level, name)` -> the value's size (Python's allow-list).
    options: HashMap<(i32, i32), u32>,
    /// Handles closed here that Python has not yet forgotten (`take_closed`).
    closed: Mutex<Vec<u32>>,
    /// Python operations under way on its event loop (they may use any socket,
    /// so no close happens here meanwhile).
    loop_calls: AtomicU64,
    /// RPCs answered here (SEND_BUF, RECV_BUF) and the bytes they moved;
    /// bytes moved by the socket I/O exit count in the byte totals too.
    pub sends: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub recvs: AtomicU64,
    pub bytes_received: AtomicU64,
    pub setsockopts: AtomicU64,
    pub closes: AtomicU64,
    /// POLLs answered here (every socket attached, one ready).
    pub polls: AtomicU64,
    /// CONNECTs answered here, and the host sockets they made (`connect`).
    pub connects: AtomicU64,
    pub connect_sockets: AtomicU64,
    gate: connect::Gate,
}

/// `struct vmrpc_sock_resp` with `result` (bytes, or -errno).
fn resp(result: i32) -> vmrpc_sock_resp {
    vmrpc_sock_resp { result, aux: 0 }
}

/// The errno of the last failed system call.
fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A socket that is never connected, shared by the process: what Python's
/// descriptor number of a natively closed socket points at until Python closes
/// it. None if it cannot be made (then every close goes to Python).
fn placeholder() -> Option<RawFd> {
    static PLACEHOLDER: OnceLock<Option<OwnedFd>> = OnceLock::new();
    PLACEHOLDER
        .get_or_init(|| {
            // SAFETY: plain socket(2); a non-negative result is a new descriptor we own.
            let fd =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
            // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
            (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .as_ref()
        .map(AsRawFd::as_raw_fd)
}

impl SocketDataPlane {
    /// A data plane that may set the options of `options` (level, name, value
    /// size): Python's allow-list, so that both answer alike.
    pub fn new(options: impl IntoIterator<Item = (i32, i32, u32)>) -> Self {
        SocketDataPlane {
            options: options
                .into_iter()
                .map(|(l, n, size)| ((l, n), size))
                .collect(),
            ..Default::default()
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<u32, Attached>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves `handle`'s zero-copy calls from now on, through a duplicate of `fd`.
    ///
    /// `fd` stays Python's: it must detach `handle` before it closes `fd`, and
    /// must not use `fd` after a close here until it has taken the handle from
    /// `take_closed` (this table then points `fd` at a placeholder, see `close`).
    pub fn attach(&self, handle: u32, fd: RawFd) -> std::io::Result<()> {
        // SAFETY: the caller (Python) passes the descriptor of a socket it owns
        // and keeps open for the duration of this call; we only duplicate it.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let dup = borrowed.try_clone_to_owned()?;
        let attached = Attached {
            fd: Arc::new(dup),
            python_fd: fd,
            born: None,
        };
        self.table().insert(handle, attached);
        Ok(())
    }

    /// Stops serving `handle` and closes the duplicate.
    pub fn detach(&self, handle: u32) {
        self.table().remove(&handle);
    }

    /// Detaches every handle (the module is closing).
    /// Also connects nothing from now on (the module is closed).
    pub fn clear(&self) {
        self.gate.disable();
        self.table().clear();
    }

    pub fn attached(&self) -> usize {
        self.table().len()
    }

    fn is_attached(&self, handle: u32) -> bool {
        self.table().contains_key(&handle)
    }

    /// Sockets attached, and of those the ones connected here and not adopted.
    fn attached_and_born(&self) -> (u64, u64) {
        let table = self.table();
        let born = table.values().filter(|a| a.born.is_some()).count();
        (table.len() as u64, born as u64)
    }

    /// Sockets connected here and not yet adopted: (handle, descriptor, Python's
    /// decision). The descriptors are the caller's from now on.
    pub fn take_born(&self) -> Vec<(u32, OwnedFd, u32)> {
        let mut table = self.table();
        let mut out = Vec::new();
        for (&handle, attached) in table.iter_mut() {
            if let Some(b) = attached.born.take() {
                out.push((handle, b.fd, b.decision));
            }
        }
        out
    }

    /// Sockets connected here that Python has not adopted (cheap: no descriptor moves).
    pub fn born(&self) -> usize {
        self.attached_and_born().1 as usize
    }

    /// The native connect's gate (`connect`): Python's plain destinations and limits.
    pub fn gate(&self) -> &connect::Gate {
        &self.gate
    }

    /// Python's count of its operations waiting on its event loop; no close
    /// is done here while it is not zero.
    pub fn set_loop_calls(&self, n: u64) {
        self.loop_calls.store(n, Ordering::SeqCst);
    }

    /// The handles closed here since the last call: Python forgets them (and
    /// closes its descriptor, which by then is the placeholder).
    pub fn take_closed(&self) -> Vec<u32> {
        std::mem::take(&mut *self.closed.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Closed here, not yet taken by Python.
    pub fn closed_pending(&self) -> usize {
        self.closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// One non-blocking `send`/`recv` between the socket and the guest buffer
    /// the request names: bytes moved, or -errno (-EAGAIN: nothing now;
    /// -EOPNOTSUPP: this socket is not served natively, use SEND / RECV).
    fn move_bytes(&self, sending: bool, request: &[u8], done: &Completion) -> i32 {
        let mut req = vmrpc_sock_buf_req::default();
        if request.len() != size_of_val(&req) {
            return -libc::EINVAL;
        }
        req.as_mut_slice().copy_from_slice(request);
        let vmrpc_sock_buf_req { handle, len, gpa } = req;
        if len > VMRPC_SOCK_MAX_BUF {
            return -libc::EINVAL;
        }
        // Bounds-checked: the buffer must lie in guest RAM.
        let Ok(buf) = done.mem().get_slice(GuestAddress(gpa), len as usize) else {
            return -libc::EFAULT;
        };
        let n = {
            let table = self.table();
            let Some(Attached { fd, .. }) = table.get(&handle) else {
                return -libc::EOPNOTSUPP;
            };
            // SAFETY: `buf` is `len` bytes of mapped guest memory (bounds checked
            // by get_slice; the mapping outlives this call) and `fd` a descriptor
            // this table owns, kept open by the lock we hold. The kernel reads or
            // writes guest bytes the guest itself asked to move.
            unsafe {
                if sending {
                    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
                    libc::send(
                        fd.as_raw_fd(),
                        buf.ptr_guard().as_ptr().cast(),
                        len as usize,
                        flags,
                    )
                } else {
                    libc::recv(
                        fd.as_raw_fd(),
                        buf.ptr_guard_mut().as_ptr().cast(),
                        len as usize,
                        libc::MSG_DONTWAIT,
                    )
                }
            }
        };
        let (calls, bytes) = if sending {
            (&self.sends, &self.bytes_sent)
        } else {
            (&self.recvs, &self.bytes_received)
        };
        calls.fetch_add(1, Ordering::Relaxed);
        if n < 0 {
            let errno = last_errno();
            return if errno == libc::EINTR {
                -libc::EAGAIN
            } else {
                -errno
            };
        }
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        n as i32
    }

    /// SETSOCKOPT of an attached socket, for an allowed option with a value of
    /// at least its size: 0 or -errno, as Python's `setsockopt` on the same
    /// socket answers. None: a request for Python (anything else, including
    /// every malformed one, so the errors stay Python's).
    fn setsockopt(&self, request: &[u8]) -> Option<i32> {
        let mut req = vmrpc_sock_sockopt_req::default();
        let head = size_of_val(&req);
        if request.len() < head {
            return None;
        }
        req.as_mut_slice().copy_from_slice(&request[..head]);
        let value = &request[head..];
        if req.len > VMRPC_SOCK_MAX_OPTLEN || value.len() != req.len as usize {
            return None;
        }
        let size = *self.options.get(&(req.level, req.name))?;
        if req.len < size {
            return None;
        }
        let table = self.table();
        let attached = table.get(&req.handle)?;
        // SAFETY: `value` holds at least `size` bytes (checked above); the
        // descriptor is this table's, kept open by the lock we hold.
        let rc = unsafe {
            libc::setsockopt(
                attached.fd.as_raw_fd(),
                req.level,
                req.name,
                value.as_ptr().cast(),
                size as libc::socklen_t,
            )
        };
        self.setsockopts.fetch_add(1, Ordering::Relaxed);
        Some(if rc < 0 { -last_errno() } else { 0 })
    }

    /// CLOSE of an attached socket: closes it here, at once, unless Python
    /// has operations on its loop (they may be using it). Python's descriptor
    /// number is first pointed at the placeholder (dup3), so this table's is
    /// the socket's last descriptor and closing it is the guest's close, as the
    /// kernel does it (FIN, or RST with unread data or a zero linger; SO_LINGER
    /// as set); the number itself stays taken until Python, told by
    /// `take_closed`, closes it, so nothing can reuse it under Python's feet.
    /// None: a request for Python.
    fn close(&self, request: &[u8]) -> Option<i32> {
        let mut req = vmrpc_sock_handle_req::default();
        if request.len() != size_of_val(&req) {
            return None;
        }
        req.as_mut_slice().copy_from_slice(request);
        if self.loop_calls.load(Ordering::SeqCst) != 0 {
            return None;
        }
        let placeholder = placeholder()?;
        let mut table = self.table();
        let attached = table.get(&req.handle)?;
        // A socket I/O exit holds its own reference while it runs: then this
        // table's would not be the last descriptor, so Python closes it.
        if Arc::strong_count(&attached.fd) != 1 {
            return None;
        }
        if attached.born.is_some() {
            // Connected here, never seen by Python: both descriptors close here.
            drop(table.remove(&req.handle));
            self.closes.fetch_add(1, Ordering::Relaxed);
            return Some(0);
        }
        // SAFETY: `python_fd` is still Python's open descriptor: Python detaches
        // a handle (under this lock) before it closes its socket, and the handle
        // is attached. dup3 only replaces what that number refers to.
        if unsafe { libc::dup3(placeholder, attached.python_fd, libc::O_CLOEXEC) } < 0 {
            return None;
        }
        drop(table.remove(&req.handle)); // the socket's last descriptor: closes it
        self.closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(req.handle);
        self.closes.fetch_add(1, Ordering::Relaxed);
        Some(0)
    }
}

/// `struct vmrpc_sock_poll_req` and `struct vmrpc_sock_pollfd`: 8 bytes each.
const POLL_HEAD: usize = 8;
const POLLFD: usize = 8;

impl SocketDataPlane {
    /// A POLL answered without Python when every socket it names is attached
    /// here and one of them is ready now (a program that checks readiness
    /// before each send, as iperf3 does, then never waits for Python's loop).
    /// The answer is the one Python's poll gives an attached (READY, plain
    /// TCP) socket: poll(2) of its descriptor. Anything else (an unknown or
    /// unattached socket, nothing ready) is Python's, which also waits.
    fn poll_now(&self, request: &[u8]) -> Option<Vec<u8>> {
        let body = request.get(POLL_HEAD..)?;
        let nfds = u32::from_le_bytes(request[4..8].try_into().ok()?);
        if nfds == 0 || nfds > VMRPC_SOCK_MAX_POLL || body.len() != nfds as usize * POLLFD {
            return None;
        }
        let mut fds = Vec::with_capacity(nfds as usize);
        let mut held = Vec::with_capacity(nfds as usize);
        {
            let table = self.table();
            for pf in body.chunks_exact(POLLFD) {
                let handle = u32::from_le_bytes(pf[0..4].try_into().ok()?);
                let fd = Arc::clone(&table.get(&handle)?.fd);
                fds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: i16::from_le_bytes([pf[4], pf[5]]),
                    revents: 0,
                });
                held.push(fd); // open until the poll is done, whatever a detach does
            }
        }
        // SAFETY: `fds` is a valid array of nfds pollfds whose descriptors `held`
        // keeps open; a zero timeout never blocks.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        if ready <= 0 {
            return None;
        }
        self.polls.fetch_add(1, Ordering::Relaxed);
        let mut answer = resp(ready).as_slice().to_vec();
        answer[4..8].copy_from_slice(&nfds.to_le_bytes());
        for (pf, fd) in body.chunks_exact(POLLFD).zip(&fds) {
            answer.extend_from_slice(&pf[..6]);
            answer.extend_from_slice(&fd.revents.to_le_bytes());
        }
        Some(answer)
    }
}

impl NativeSockets for SocketDataPlane {
    /// The descriptor of an attached socket, for a call that may outlast a
    /// detach (the socket I/O exit's waits).
    fn socket(&self, handle: u32) -> Option<Arc<OwnedFd>> {
        self.table().get(&handle).map(|a| Arc::clone(&a.fd))
    }

    fn count_bytes(&self, sent: bool, bytes: u64) {
        let total = if sent {
            &self.bytes_sent
        } else {
            &self.bytes_received
        };
        total.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl NativeHandler for SocketDataPlane {
    fn native_sockets(&self) -> Option<&dyn NativeSockets> {
        Some(self)
    }

    /// Answers SEND_BUF / RECV_BUF, and SETSOCKOPT / CLOSE of attached
    /// sockets (returns None); any other call is handed back for Python.
    fn try_call(&self, function: u32, request: &[u8], done: Completion) -> Option<Completion> {
        let result = match function {
            VMRPC_SOCK_FN_SEND_BUF => self.move_bytes(true, request, &done),
            VMRPC_SOCK_FN_RECV_BUF => self.move_bytes(false, request, &done),
            VMRPC_SOCK_FN_SETSOCKOPT => match self.setsockopt(request) {
                Some(result) => result,
                None => return Some(done),
            },
            VMRPC_SOCK_FN_CLOSE => match self.close(request) {
                Some(result) => result,
                None => return Some(done),
            },
            VMRPC_SOCK_FN_CONNECT => {
                return match self.connect(request) {
                    Some(answer) => {
                        done.ok(&answer);
                        None
                    }
                    None => Some(done),
                }
            }
            VMRPC_SOCK_FN_POLL => {
                return match self.poll_now(request) {
                    Some(answer) => {
                        done.ok(&answer);
                        None
                    }
                    None => Some(done),
                }
            }
            _ => return Some(done),
        };
        done.ok(resp(result).as_slice());
        None
    }
}

mod connect;
#[cfg(test)]
mod test_harness;
#[cfg(test)]
mod tests;

pub use connect::{Gate, NATIVE_HANDLES};
