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
//! The descriptors are duplicates: if Python closes its socket while a call is
//! in flight here, this table's copy keeps the descriptor valid (no reuse of a
//! closed number); Python detaches a handle before it closes the socket.
//!
//! The same sockets also serve the socket I/O exit (`devices::sock_io`): large
//! receives and sends on the vCPU's own thread, which may wait. A call there
//! holds its own reference to the descriptor (`socket`), so a detach meanwhile
//! cannot close it under the call.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use guest_kmod_bindings::socket_proto::{
    vmrpc_sock_buf_req, vmrpc_sock_resp, VMRPC_SOCK_FN_POLL, VMRPC_SOCK_FN_RECV_BUF,
    VMRPC_SOCK_FN_SEND_BUF, VMRPC_SOCK_MAX_BUF, VMRPC_SOCK_MAX_POLL,
};
use vm_memory::{ByteValued, GuestAddress, GuestMemoryBackend};

use crate::rpc::channel::Completion;
use crate::rpc::module::{NativeHandler, NativeSockets};

#[derive(Default)]
pub struct SocketDataPlane {
    sockets: Mutex<HashMap<u32, Arc<OwnedFd>>>,
    /// RPCs answered here (SEND_BUF, RECV_BUF) and the bytes they moved;
    /// bytes moved by the socket I/O exit count in the byte totals too.
    pub sends: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub recvs: AtomicU64,
    pub bytes_received: AtomicU64,
    /// POLLs answered here (every socket attached, one ready).
    pub polls: AtomicU64,
}

/// `struct vmrpc_sock_resp` with `result` (bytes, or -errno).
fn resp(result: i32) -> vmrpc_sock_resp {
    vmrpc_sock_resp { result, aux: 0 }
}

impl SocketDataPlane {
    fn table(&self) -> MutexGuard<'_, HashMap<u32, Arc<OwnedFd>>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves `handle`'s zero-copy calls from now on, through a duplicate of `fd`.
    pub fn attach(&self, handle: u32, fd: RawFd) -> std::io::Result<()> {
        // SAFETY: the caller (Python) passes the descriptor of a socket it owns
        // and keeps open for the duration of this call; we only duplicate it.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let dup = borrowed.try_clone_to_owned()?;
        self.table().insert(handle, Arc::new(dup));
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
            let Some(fd) = table.get(&handle) else {
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
            let errno = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            return if errno == libc::EINTR {
                -libc::EAGAIN
            } else {
                -errno
            };
        }
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        n as i32
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
                let fd = table.get(&handle)?.clone();
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
        self.table().get(&handle).cloned()
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

    /// Answers SEND_BUF / RECV_BUF (returns None); any other call is handed
    /// back for Python.
    fn try_call(&self, function: u32, request: &[u8], done: Completion) -> Option<Completion> {
        let sending = match function {
            VMRPC_SOCK_FN_SEND_BUF => true,
            VMRPC_SOCK_FN_RECV_BUF => false,
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
        let result = self.move_bytes(sending, request, &done);
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
