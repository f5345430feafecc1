//! The native data plane of socket outsourcing.
//!
//! `vmrpc.sockets.SocketOutsourcing` (Python) owns the control plane: policy,
//! connect, accept, the socket table. Once a guest stream socket is connected
//! (and not wrapped in TLS), Python attaches a duplicate of its file descriptor
//! here under the guest's handle. From then on SEND and RECV requests without
//! flags are answered on the RPC engine thread by one non-blocking system call,
//! without Python, the GIL or a Python `bytes` per call. Whatever cannot be
//! finished that way (would block, partial send, flags, unknown handle) goes to
//! Python as before, so the semantics stay in one place.
//!
//! The descriptors are duplicates: if Python closes its socket while a call is
//! in flight here, this table's copy keeps the descriptor valid (no reuse of a
//! closed number); Python detaches a handle before it closes the socket.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use guest_kmod_bindings::socket_proto::{
    VSOCK_FN_RECV, VSOCK_FN_RECV_BUF, VSOCK_FN_SEND, VSOCK_FN_SEND_BUF, VSOCK_MAX_BUF,
    VSOCK_MAX_RECV,
};

use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};

use crate::rpc::channel::Completion;
use crate::rpc::module::InPlace;

const REQ_SIZE: usize = 16;
const RESP_SIZE: usize = 8;

/// What became of a call offered to the data plane.
pub enum Fast {
    /// Answered here.
    Done,
    /// Not for the data plane: hand the call to Python unchanged.
    Fallback(Completion),
    /// A SEND that put out this many bytes and must wait for the rest: Python
    /// continues it (`continue_send(payload, sent)`).
    PartialSend(Completion, usize),
}

#[derive(Default)]
pub struct SocketDataPlane {
    sockets: Mutex<HashMap<u32, OwnedFd>>,
    pub sends: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub recvs: AtomicU64,
    pub bytes_received: AtomicU64,
}

/// `struct vsock_wait_req`, decoded from the request bytes.
struct WaitReq {
    handle: u32,
    flags: u32,
    timeout_ms: i32,
    arg: u32,
}

fn parse(head: &[u8]) -> Option<WaitReq> {
    let payload = head;
    let word = |i: usize| u32::from_le_bytes(payload[i..i + 4].try_into().unwrap());
    (payload.len() >= REQ_SIZE).then(|| WaitReq {
        handle: word(0),
        flags: word(4),
        timeout_ms: word(8) as i32,
        arg: word(12),
    })
}

/// `struct vsock_resp` with `result`, followed by nothing (the caller appends).
fn resp(result: i32) -> [u8; RESP_SIZE] {
    let mut r = [0u8; RESP_SIZE];
    r[..4].copy_from_slice(&result.to_le_bytes());
    r
}

fn would_block(errno: i32) -> bool {
    errno == libc::EAGAIN || errno == libc::EWOULDBLOCK || errno == libc::EINTR
}

impl SocketDataPlane {
    fn table(&self) -> MutexGuard<'_, HashMap<u32, OwnedFd>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves `handle`'s SEND/RECV from now on, through a duplicate of `fd`.
    pub fn attach(&self, handle: u32, fd: RawFd) -> std::io::Result<()> {
        // SAFETY: the caller (Python) passes the descriptor of a socket it owns
        // and keeps open for the duration of this call; we only duplicate it.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let dup = borrowed.try_clone_to_owned()?;
        self.table().insert(handle, dup);
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

    /// Offers one call of the sockets module to the data plane. The request
    /// is still in guest memory; only its header (in `request.head`) is parsed.
    pub fn try_call(&self, function: u32, request: &InPlace<'_>, done: Completion) -> Fast {
        match (function, parse(request.head)) {
            (VSOCK_FN_SEND, Some(req))
                if req.flags == 0 && req.arg == 0 && req.timeout_ms >= -1 =>
            {
                self.send(&req, request, done)
            }
            (VSOCK_FN_RECV, Some(req))
                if request.len == REQ_SIZE && req.flags == 0 && req.arg <= VSOCK_MAX_RECV =>
            {
                self.recv(&req, done)
            }
            (VSOCK_FN_SEND_BUF | VSOCK_FN_RECV_BUF, _) if request.len == REQ_SIZE => {
                self.buffer_call(function == VSOCK_FN_SEND_BUF, request, done)
            }
            _ => Fast::Fallback(done),
        }
    }

    /// SEND_BUF / RECV_BUF: one non-blocking system call straight between the
    /// socket and the guest's own buffer, which the request names by address.
    /// Always answered here: bytes moved, or -errno (-EAGAIN: nothing now;
    /// -EOPNOTSUPP: this socket is not served natively, use SEND / RECV).
    fn buffer_call(&self, sending: bool, request: &InPlace<'_>, done: Completion) -> Fast {
        let word = |i: usize| u32::from_le_bytes(request.head[i..i + 4].try_into().unwrap());
        let (handle, len) = (word(0), word(4));
        let gpa = u64::from(word(8)) | (u64::from(word(12)) << 32);
        let answer = |done: Completion, result: i32| {
            done.ok(&resp(result));
            Fast::Done
        };
        if len > VSOCK_MAX_BUF {
            return answer(done, -libc::EINVAL);
        }
        // Bounds-checked: the buffer must lie in guest RAM.
        let Ok(buf) = request.mem.get_slice(GuestAddress(gpa), len as usize) else {
            return answer(done, -libc::EFAULT);
        };
        let n = {
            let table = self.table();
            let Some(fd) = table.get(&handle) else {
                return answer(done, -libc::EOPNOTSUPP);
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
            let errno = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            return answer(
                done,
                if errno == libc::EINTR {
                    -libc::EAGAIN
                } else {
                    -errno
                },
            );
        }
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        answer(done, n as i32)
    }

    /// Sends the request's data straight from guest memory.
    fn send(&self, req: &WaitReq, request: &InPlace<'_>, done: Completion) -> Fast {
        let len = request.len - REQ_SIZE;
        let Some(data) = request
            .addr
            .checked_add(REQ_SIZE as u64)
            .and_then(|at| request.mem.get_slice(at, len).ok())
        else {
            return Fast::Fallback(done);
        };
        let n = {
            let table = self.table();
            let Some(fd) = table.get(&req.handle) else {
                return Fast::Fallback(done);
            };
            let ptr = data.ptr_guard();
            // SAFETY: `ptr` points at `len` bytes of mapped guest memory (bounds
            // checked by get_slice; the mapping outlives this call), and `fd` is
            // a descriptor this table owns, kept open by the lock we hold. The
            // guest may change those bytes meanwhile: they are opaque payload.
            unsafe {
                libc::send(
                    fd.as_raw_fd(),
                    ptr.as_ptr().cast(),
                    len,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            }
        };
        if n < 0 {
            let errno = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            if would_block(errno) {
                return Fast::Fallback(done);
            }
            self.sends.fetch_add(1, Ordering::Relaxed);
            done.ok(&resp(-errno));
            return Fast::Done;
        }
        let n = n as usize;
        if n < len && req.timeout_ms != 0 {
            return Fast::PartialSend(done, n);
        }
        self.sends.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
        done.ok(&resp(n as i32));
        Fast::Done
    }

    /// Receives straight into the guest's response buffer.
    fn recv(&self, req: &WaitReq, done: Completion) -> Fast {
        let want = req.arg as usize;
        let (resp_at, cap) = done.response_area();
        if cap < RESP_SIZE + want {
            return Fast::Fallback(done); // Python answers what does not fit
        }
        let Ok(buf) = done
            .mem()
            .get_slice(resp_at.unchecked_add(RESP_SIZE as u64), want)
        else {
            return Fast::Fallback(done);
        };
        let n = {
            let table = self.table();
            let Some(fd) = table.get(&req.handle) else {
                return Fast::Fallback(done);
            };
            let ptr = buf.ptr_guard_mut();
            // SAFETY: `ptr` points at `want` bytes of mapped guest memory (the
            // guest's response buffer, bounds checked by get_slice), and `fd` is
            // a descriptor this table owns, kept open by the lock we hold.
            unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    ptr.as_ptr().cast(),
                    want,
                    libc::MSG_DONTWAIT,
                )
            }
        };
        if n < 0 {
            let errno = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            if would_block(errno) {
                return Fast::Fallback(done);
            }
            self.recvs.fetch_add(1, Ordering::Relaxed);
            done.ok(&resp(-errno));
            return Fast::Done;
        }
        let n = n as usize;
        if done.mem().write_slice(&resp(n as i32), resp_at).is_err() {
            return Fast::Fallback(done); // cannot happen: the area was checked above
        }
        self.recvs.fetch_add(1, Ordering::Relaxed);
        self.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
        done.ok_in_place(RESP_SIZE + n);
        Fast::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::channel::Channel;
    use crate::stats::Stats;
    use guest_kmod_bindings::{RespDesc, VMRPC_CHAN_DATA_OFFSET, VMRPC_CHAN_RESP_RING_OFFSET};
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
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

        /// Puts `request` in guest memory (the channel's data area) and offers it.
        fn offer(&self, dp: &SocketDataPlane, function: u32, request: &[u8]) -> Fast {
            let at = GuestAddress(BASE + VMRPC_CHAN_DATA_OFFSET as u64 + 0x10000);
            self.mem.write_slice(request, at).unwrap();
            let head = &request[..request.len().min(crate::rpc::module::IN_PLACE_HEAD)];
            let req = InPlace {
                head,
                mem: &self.mem,
                addr: at,
                len: request.len(),
            };
            dp.try_call(function, &req, self.completion())
        }

        fn completion(&self) -> Completion {
            assert!(self.chan.reserve());
            Completion::new(self.chan.clone(), 7, 0, 65536)
        }

        /// The answer just posted: (vsock result, data after the 8-byte head).
        fn answer(&mut self) -> (i32, Vec<u8>) {
            let ring = BASE + VMRPC_CHAN_RESP_RING_OFFSET as u64;
            let slot = ring + 128 + (self.answers % 8) as u64 * 16;
            self.answers += 1;
            // The guest consumes it, so the ring never fills.
            self.mem
                .write_obj(self.answers, GuestAddress(ring + 64))
                .unwrap();
            let desc: RespDesc = self.mem.read_obj(GuestAddress(slot)).unwrap();
            assert!(desc.status >= RESP_SIZE as i32, "status {}", desc.status);
            let mut out = vec![0u8; desc.status as usize];
            self.mem
                .read_slice(&mut out, GuestAddress(BASE + VMRPC_CHAN_DATA_OFFSET as u64))
                .unwrap();
            let result = i32::from_le_bytes(out[..4].try_into().unwrap());
            (result, out[RESP_SIZE..].to_vec())
        }
    }

    fn req(handle: u32, flags: u32, timeout_ms: i32, arg: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [handle, flags, timeout_ms as u32, arg] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn send_and_recv_go_straight_to_the_socket() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let dp = SocketDataPlane::default();
        let mut h = Harness::new();
        dp.attach(3, a.as_raw_fd()).unwrap();
        drop(a); // the data plane holds its own duplicate

        assert!(matches!(
            h.offer(&dp, VSOCK_FN_SEND, &req(3, 0, -1, 0, b"hello")),
            Fast::Done
        ));
        assert_eq!(h.answer(), (5, vec![]));
        let mut got = [0u8; 5];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");

        b.write_all(b"world!").unwrap();
        assert!(matches!(
            h.offer(&dp, VSOCK_FN_RECV, &req(3, 0, -1, 4, b"")),
            Fast::Done
        ));
        assert_eq!(h.answer(), (4, b"worl".to_vec()));
        assert_eq!(dp.bytes_sent.load(Ordering::Relaxed), 5);
        assert_eq!(dp.bytes_received.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn what_would_wait_or_is_unknown_goes_to_python() {
        let (a, b) = UnixStream::pair().unwrap();
        let dp = SocketDataPlane::default();
        let h = Harness::new();
        dp.attach(3, a.as_raw_fd()).unwrap();
        let fallback = |f, r: Vec<u8>| matches!(h.offer(&dp, f, &r), Fast::Fallback(_));
        assert!(
            fallback(VSOCK_FN_RECV, req(3, 0, -1, 4, b"")),
            "nothing to read yet"
        );
        assert!(
            fallback(VSOCK_FN_RECV, req(9, 0, -1, 4, b"")),
            "unknown handle"
        );
        assert!(fallback(VSOCK_FN_RECV, req(3, 1, -1, 4, b"")), "MSG_PEEK");
        assert!(
            fallback(VSOCK_FN_RECV, req(3, 0, -1, VSOCK_MAX_RECV + 1, b"")),
            "too big"
        );
        assert!(
            fallback(VSOCK_FN_SEND, req(3, 0, -1, 1, b"x")),
            "arg must be 0"
        );
        assert!(fallback(VSOCK_FN_SEND, vec![1, 2, 3]), "short request");
        assert!(fallback(15, req(3, 0, -1, 0, b"x")), "not SEND/RECV");
        dp.detach(3);
        assert!(fallback(VSOCK_FN_SEND, req(3, 0, -1, 0, b"x")), "detached");
        assert_eq!(dp.attached(), 0);
        drop(b);
    }

    #[test]
    fn errors_come_back_as_negative_errno() {
        let (a, b) = UnixStream::pair().unwrap();
        let dp = SocketDataPlane::default();
        let mut h = Harness::new();
        dp.attach(3, a.as_raw_fd()).unwrap();
        drop(b);
        assert!(matches!(
            h.offer(&dp, VSOCK_FN_SEND, &req(3, 0, -1, 0, b"x")),
            Fast::Done
        ));
        assert_eq!(h.answer().0, -libc::EPIPE);
        assert!(matches!(
            h.offer(&dp, VSOCK_FN_RECV, &req(3, 0, -1, 4, b"")),
            Fast::Done
        ));
        assert_eq!(h.answer(), (0, vec![]), "EOF");
    }

    fn buf_req(handle: u32, len: u32, gpa: u64) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&handle.to_le_bytes());
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(&gpa.to_le_bytes());
        v
    }

    #[test]
    fn zero_copy_calls_move_bytes_to_and_from_guest_buffers() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let dp = SocketDataPlane::default();
        let mut h = Harness::new();
        dp.attach(3, a.as_raw_fd()).unwrap();
        let guest_buf = GuestAddress(0x8_0000);
        h.mem.write_slice(b"from guest memory", guest_buf).unwrap();
        assert!(matches!(
            h.offer(&dp, VSOCK_FN_SEND_BUF, &buf_req(3, 17, 0x8_0000)),
            Fast::Done
        ));
        assert_eq!(h.answer().0, 17);
        let mut got = [0u8; 17];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"from guest memory");

        assert!(matches!(
            h.offer(&dp, VSOCK_FN_RECV_BUF, &buf_req(3, 64, 0x9_0000)),
            Fast::Done
        ));
        assert_eq!(h.answer().0, -libc::EAGAIN, "nothing to read: never waits");
        b.write_all(b"into guest memory").unwrap();
        assert!(matches!(
            h.offer(&dp, VSOCK_FN_RECV_BUF, &buf_req(3, 64, 0x9_0000)),
            Fast::Done
        ));
        assert_eq!(h.answer().0, 17);
        let mut back = [0u8; 17];
        h.mem.read_slice(&mut back, GuestAddress(0x9_0000)).unwrap();
        assert_eq!(&back, b"into guest memory");

        // Hostile or unsupported requests are answered, never fall through.
        for (req, want) in [
            (buf_req(9, 8, 0x8_0000), -libc::EOPNOTSUPP), // not attached
            (buf_req(3, 8, (1 << 20) - 4), -libc::EFAULT), // runs past guest RAM
            (buf_req(3, 8, u64::MAX - 2), -libc::EFAULT), // wraps
            (buf_req(3, VSOCK_MAX_BUF + 1, 0), -libc::EINVAL), // too long
        ] {
            assert!(matches!(h.offer(&dp, VSOCK_FN_SEND_BUF, &req), Fast::Done));
            assert_eq!(h.answer().0, want);
        }
    }

    #[test]
    fn a_send_that_fills_the_socket_is_partial() {
        let (a, _b) = UnixStream::pair().unwrap();
        let dp = SocketDataPlane::default();
        let h = Harness::new();
        dp.attach(3, a.as_raw_fd()).unwrap();
        let big = vec![0u8; 60000];
        let (mut partial, mut full) = (None, false);
        for _ in 0..64 {
            match h.offer(&dp, VSOCK_FN_SEND, &req(3, 0, -1, 0, &big)) {
                Fast::PartialSend(_done, n) => {
                    partial = Some(n);
                    break;
                }
                Fast::Fallback(_) => {
                    full = true; // the buffer was exactly full
                    break;
                }
                Fast::Done => {
                    // Keep the harness's ring from filling: pretend the guest took it.
                    let ring = BASE + VMRPC_CHAN_RESP_RING_OFFSET as u64;
                    let head: u32 = h.mem.read_obj(GuestAddress(ring)).unwrap();
                    h.mem.write_obj(head, GuestAddress(ring + 64)).unwrap();
                }
            }
        }
        match partial {
            Some(n) => assert!(n > 0 && n < big.len()),
            None => assert!(full, "64 sends of 60000 bytes never filled the socket"),
        }
    }
}
