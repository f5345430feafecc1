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
    VMRPC_SOCK_FN_CLOSE, VMRPC_SOCK_FN_POLL, VMRPC_SOCK_FN_RECV_BUF, VMRPC_SOCK_FN_SEND_BUF,
    VMRPC_SOCK_FN_SETSOCKOPT, VMRPC_SOCK_MAX_BUF, VMRPC_SOCK_MAX_OPTLEN, VMRPC_SOCK_MAX_POLL,
};
use vm_memory::{ByteValued, GuestAddress, GuestMemoryBackend};

use crate::rpc::channel::Completion;
use crate::rpc::module::{NativeHandler, NativeSockets};

/// An attached socket: this table's duplicate, and the number of Python's own
/// descriptor of the same socket (see `SocketDataPlane::close`).
struct Attached {
    fd: Arc<OwnedFd>,
    python_fd: RawFd,
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
        };
        self.table().insert(handle, attached);
        Ok(())
    }

    /// Stops serving `handle` and closes the duplicate.
    pub fn detach(&self, handle: u32) {
        self.table().remove(&handle);
    }

    /// Detaches every handle (the module is closing).
    pub fn clear(&self) {
        self.table().clear();
    }

    pub fn attached(&self) -> usize {
        self.table().len()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::channel::Channel;
    use crate::stats::Stats;
    use guest_kmod_bindings::{
        ring_off, RespDesc, RingHdr, VMRPC_CHAN_DATA_OFFSET, VMRPC_CHAN_RESP_RING_OFFSET,
        VMRPC_RPC_RING_ENTRIES,
    };
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use vm_memory::{Bytes, GuestMemoryMmap};
    use vmm_sys_util::eventfd::EventFd;

    const BASE: u64 = 0x1000;

    struct Harness {
        mem: GuestMemoryMmap,
        chan: Arc<Channel>,
        answers: u32,
    }

    impl Harness {
        fn new() -> Self {
            let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
            let irq = EventFd::new(0).unwrap();
            let chan = Arc::new(Channel::new(
                0,
                mem.clone(),
                BASE,
                irq,
                Arc::new(Stats::default()),
            ));
            Harness {
                mem,
                chan,
                answers: 0,
            }
        }

        fn offer(&self, dp: &SocketDataPlane, function: u32, request: &[u8]) -> bool {
            assert!(self.chan.reserve());
            let done = Completion::new(self.chan.clone(), 7, 0, 64);
            dp.try_call(function, request, done).is_none()
        }

        /// The socket-protocol result of the answer just posted.
        fn answer(&mut self) -> i32 {
            let ring = BASE + VMRPC_CHAN_RESP_RING_OFFSET as u64;
            let index = (self.answers % VMRPC_RPC_RING_ENTRIES) as usize;
            let slot = ring + (size_of::<RingHdr>() + index * size_of::<RespDesc>()) as u64;
            self.answers += 1;
            // The guest consumes it, so the ring never fills.
            self.mem
                .write_obj(self.answers, GuestAddress(ring + ring_off::TAIL))
                .unwrap();
            let desc: RespDesc = self.mem.read_obj(GuestAddress(slot)).unwrap();
            assert_eq!(desc.status as usize, size_of::<vmrpc_sock_resp>());
            let answer: vmrpc_sock_resp = self
                .mem
                .read_obj(GuestAddress(BASE + VMRPC_CHAN_DATA_OFFSET as u64))
                .unwrap();
            answer.result
        }
    }

    fn buf_req(handle: u32, len: u32, gpa: u64) -> Vec<u8> {
        vmrpc_sock_buf_req { handle, len, gpa }.as_slice().to_vec()
    }

    #[test]
    fn zero_copy_calls_move_bytes_to_and_from_guest_buffers() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let dp = SocketDataPlane::default();
        let mut h = Harness::new();
        dp.attach(3, a.as_raw_fd()).unwrap();
        drop(a); // the data plane holds its own duplicate
        h.mem
            .write_slice(b"from guest memory", GuestAddress(0x8_0000))
            .unwrap();
        assert!(h.offer(&dp, VMRPC_SOCK_FN_SEND_BUF, &buf_req(3, 17, 0x8_0000)));
        assert_eq!(h.answer(), 17);
        let mut got = [0u8; 17];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"from guest memory");

        assert!(h.offer(&dp, VMRPC_SOCK_FN_RECV_BUF, &buf_req(3, 64, 0x9_0000)));
        assert_eq!(h.answer(), -libc::EAGAIN, "nothing to read: never waits");
        b.write_all(b"into guest memory").unwrap();
        assert!(h.offer(&dp, VMRPC_SOCK_FN_RECV_BUF, &buf_req(3, 64, 0x9_0000)));
        assert_eq!(h.answer(), 17);
        let mut back = [0u8; 17];
        h.mem.read_slice(&mut back, GuestAddress(0x9_0000)).unwrap();
        assert_eq!(&back, b"into guest memory");
        assert_eq!(dp.bytes_sent.load(Ordering::Relaxed), 17);
        assert_eq!(dp.bytes_received.load(Ordering::Relaxed), 17);

        drop(b);
        assert!(h.offer(&dp, VMRPC_SOCK_FN_RECV_BUF, &buf_req(3, 64, 0x9_0000)));
        assert_eq!(h.answer(), 0, "end of stream");
        assert!(h.offer(&dp, VMRPC_SOCK_FN_SEND_BUF, &buf_req(3, 4, 0x8_0000)));
        assert_eq!(h.answer(), -libc::EPIPE);
    }

    #[test]
    fn bad_or_unsupported_requests_are_answered_with_errno() {
        let (a, _b) = UnixStream::pair().unwrap();
        let dp = SocketDataPlane::default();
        let mut h = Harness::new();
        dp.attach(3, a.as_raw_fd()).unwrap();
        for (req, want) in [
            (buf_req(9, 8, 0x8_0000), -libc::EOPNOTSUPP), // not attached
            (buf_req(3, 8, (1 << 20) - 4), -libc::EFAULT), // runs past guest RAM
            (buf_req(3, 8, u64::MAX - 2), -libc::EFAULT), // wraps
            (buf_req(3, VMRPC_SOCK_MAX_BUF + 1, 0), -libc::EINVAL),
            (vec![1, 2, 3], -libc::EINVAL), // short request
        ] {
            assert!(h.offer(&dp, VMRPC_SOCK_FN_SEND_BUF, &req));
            assert_eq!(h.answer(), want);
        }
        dp.detach(3);
        assert_eq!(dp.attached(), 0);
        assert!(h.offer(&dp, VMRPC_SOCK_FN_SEND_BUF, &buf_req(3, 8, 0x8_0000)));
        assert_eq!(h.answer(), -libc::EOPNOTSUPP, "detached");
    }

    fn handle_req(handle: u32) -> Vec<u8> {
        vmrpc_sock_handle_req { handle, arg: 0 }.as_slice().to_vec()
    }

    fn sockopt_req(handle: u32, level: i32, name: i32, value: &[u8]) -> Vec<u8> {
        let head = vmrpc_sock_sockopt_req {
            handle,
            level,
            name,
            len: value.len() as u32,
        };
        [head.as_slice(), value].concat()
    }

    /// A connected TCP pair on loopback: (ours, as Python holds it; the peer).
    fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        (ours, peer)
    }

    #[test]
    fn close_closes_the_socket_and_parks_pythons_descriptor() {
        let (ours, mut peer) = tcp_pair();
        let dp = SocketDataPlane::default();
        let mut h = Harness::new();
        dp.attach(3, ours.as_raw_fd()).unwrap();
        assert!(h.offer(&dp, VMRPC_SOCK_FN_CLOSE, &handle_req(3)));
        assert_eq!(h.answer(), 0);
        // Python still holds its descriptor, yet the peer sees the close.
        let mut buf = [0u8; 4];
        assert_eq!(peer.read(&mut buf).unwrap(), 0, "EOF at the peer");
        assert_eq!(
            ours.peer_addr().unwrap_err().raw_os_error(),
            Some(libc::ENOTCONN),
            "Python's number now names the never-connected placeholder"
        );
        assert_eq!(dp.take_closed(), vec![3]);
        assert!(dp.take_closed().is_empty());
        assert_eq!((dp.attached(), dp.closes.load(Ordering::Relaxed)), (0, 1));
        assert!(
            !h.offer(&dp, VMRPC_SOCK_FN_CLOSE, &handle_req(3)),
            "gone: Python's"
        );
    }

    #[test]
    fn close_with_unread_data_resets_the_connection() {
        let (ours, mut peer) = tcp_pair();
        let dp = SocketDataPlane::default();
        let mut h = Harness::new();
        dp.attach(3, ours.as_raw_fd()).unwrap();
        peer.write_all(b"unread").unwrap();
        // The bytes are queued at our end before the close (loopback delivers at once).
        let mut probe = [0u8; 6];
        assert_eq!(ours.peek(&mut probe).unwrap(), 6);
        assert!(h.offer(&dp, VMRPC_SOCK_FN_CLOSE, &handle_req(3)));
        assert_eq!(h.answer(), 0);
        let err = peer.read(&mut probe).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ECONNRESET), "{err}");
    }

    #[test]
    fn close_leaves_to_python_what_python_may_be_using() {
        let (ours, _peer) = tcp_pair();
        let dp = SocketDataPlane::default();
        let h = Harness::new();
        dp.attach(3, ours.as_raw_fd()).unwrap();
        dp.set_loop_calls(1); // an operation waits on Python's loop
        assert!(!h.offer(&dp, VMRPC_SOCK_FN_CLOSE, &handle_req(3)));
        dp.set_loop_calls(0);
        assert!(
            !h.offer(&dp, VMRPC_SOCK_FN_CLOSE, &handle_req(9)),
            "not attached"
        );
        assert!(!h.offer(&dp, VMRPC_SOCK_FN_CLOSE, &[3, 0, 0]), "malformed");
        assert_eq!((dp.attached(), dp.closes.load(Ordering::Relaxed)), (1, 0));
        assert!(ours.peer_addr().is_ok(), "still connected");
    }

    #[test]
    fn setsockopt_sets_allowed_options_and_leaves_the_rest_to_python() {
        let (ours, _peer) = tcp_pair();
        let nodelay = (libc::IPPROTO_TCP, libc::TCP_NODELAY);
        let dp = SocketDataPlane::new([(nodelay.0, nodelay.1, 4)]);
        let mut h = Harness::new();
        dp.attach(3, ours.as_raw_fd()).unwrap();
        assert!(!ours.nodelay().unwrap());
        let one = 1i32.to_ne_bytes();
        assert!(h.offer(
            &dp,
            VMRPC_SOCK_FN_SETSOCKOPT,
            &sockopt_req(3, nodelay.0, nodelay.1, &one)
        ));
        assert_eq!(h.answer(), 0);
        assert!(
            ours.nodelay().unwrap(),
            "set on the very socket Python holds"
        );
        for req in [
            sockopt_req(3, libc::SOL_SOCKET, libc::SO_REUSEADDR, &one), // not in the list
            sockopt_req(3, nodelay.0, nodelay.1, &[1, 0]),              // too short
            sockopt_req(9, nodelay.0, nodelay.1, &one),                 // not attached
            sockopt_req(3, nodelay.0, nodelay.1, &one)[..18].to_vec(),  // len != value
        ] {
            assert!(!h.offer(&dp, VMRPC_SOCK_FN_SETSOCKOPT, &req));
        }
        assert_eq!(dp.setsockopts.load(Ordering::Relaxed), 1);
    }

    fn poll_req(fds: &[(u32, i16)]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(-1i32).to_le_bytes());
        v.extend_from_slice(&(fds.len() as u32).to_le_bytes());
        for (handle, events) in fds {
            v.extend_from_slice(&handle.to_le_bytes());
            v.extend_from_slice(&events.to_le_bytes());
            v.extend_from_slice(&0i16.to_le_bytes());
        }
        v
    }

    #[test]
    fn a_poll_of_attached_sockets_with_one_ready_is_answered_here() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let (c, _d) = UnixStream::pair().unwrap();
        let dp = SocketDataPlane::default();
        dp.attach(3, a.as_raw_fd()).unwrap();
        dp.attach(4, c.as_raw_fd()).unwrap();
        let pollin = libc::POLLIN;
        let both = poll_req(&[(3, pollin), (4, pollin)]);
        assert_eq!(dp.poll_now(&both), None, "nothing ready: Python waits");
        b.write_all(b"x").unwrap();
        let answer = dp.poll_now(&both).unwrap();
        assert_eq!(answer.len(), 8 + 2 * 8);
        assert_eq!(i32::from_le_bytes(answer[0..4].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(answer[4..8].try_into().unwrap()), 2);
        assert_eq!(&answer[8..14], &both[8..14], "handle and events echoed");
        assert_eq!(i16::from_le_bytes([answer[14], answer[15]]), pollin);
        assert_eq!(i16::from_le_bytes([answer[22], answer[23]]), 0);
        assert_eq!(dp.polls.load(Ordering::Relaxed), 1);
        // Python's: a socket not attached here, or a malformed request.
        assert_eq!(dp.poll_now(&poll_req(&[(3, pollin), (9, pollin)])), None);
        assert_eq!(dp.poll_now(&poll_req(&[])), None);
        assert_eq!(dp.poll_now(&both[..20]), None);
        assert_eq!(dp.poll_now(&[1, 2, 3]), None);
    }

    #[test]
    fn other_functions_go_to_python() {
        let dp = SocketDataPlane::default();
        let h = Harness::new();
        for function in [0, 13, 14, 16, 19] {
            assert!(
                !h.offer(&dp, function, &buf_req(3, 8, 0x8_0000)),
                "{function}"
            );
        }
    }
}
