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
//! wait at once (-EINTR), and a kick's signal only restarts the poll. While it
//! waits the thread holds its vCPU: the guest must not hold a lock others need
//! (the personality's lock is let go around socket calls). This is the one
//! place a vCPU blocks on a socket; M:N threads would move the wait off it.
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
            .socket_plane()
            .and_then(|plane| plane.socket(req.handle))
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
        if let Some(plane) = t.module.module.socket_plane().filter(|_| !peek) {
            let total = if sending {
                &plane.bytes_sent
            } else {
                &plane.bytes_received
            };
            total.fetch_add(done as u64, std::sync::atomic::Ordering::Relaxed);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::channel::Completion;
    use crate::rpc::module::HostModule;
    use crate::sockfast::SocketDataPlane;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    const RAM: u64 = 1 << 20;
    const REQ: u64 = 0x1000;
    const BUF: u64 = 0x1_0000;
    const BUF2: u64 = 0x8_0000;

    /// A module bringing a socket data plane, as the Python socket module does.
    struct Sockets(SocketDataPlane);

    impl HostModule for Sockets {
        fn has_function(&self, _function: u32) -> bool {
            false
        }
        fn call(&self, _function: u32, _request: &[u8], _done: Completion) {}
        fn socket_plane(&self) -> Option<&SocketDataPlane> {
            Some(&self.0)
        }
    }

    struct Harness {
        dev: Arc<SockIoDevice>,
        stop: StopToken,
        module: u32,
        /// The host's end of the socket attached as handle 3.
        peer: UnixStream,
    }

    fn harness() -> Harness {
        let memory =
            GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        let registry = Arc::new(Registry::default());
        let (guest_end, peer) = UnixStream::pair().unwrap();
        let sockets = Sockets(SocketDataPlane::default());
        sockets.0.attach(3, guest_end.as_raw_fd()).unwrap();
        registry
            .register("sockets", 1 << 16, Arc::new(sockets))
            .unwrap();
        registry
            .register("echo", 1 << 16, Arc::new(crate::rpc::module::Echo))
            .unwrap();
        let module = registry.bind(b"sockets", 1 << 16).unwrap();
        let stop = StopToken::new().unwrap();
        let dev = SockIoDevice::new(memory, registry, stop.clone(), Arc::new(Stats::default()));
        Harness {
            dev: Arc::new(dev),
            stop,
            module,
            peer,
        }
    }

    fn req(h: &Harness, flags: u32, timeout_ms: i32, len: u32, len2: u32) -> vmrpc_sockio_req {
        vmrpc_sockio_req {
            module: h.module,
            handle: 3,
            flags,
            timeout_ms,
            gpa: BUF,
            len,
            len2,
            gpa2: BUF2,
            result: 12345,
        }
    }

    /// Writes the request to guest memory, "exits", and returns its result.
    fn call(dev: &SockIoDevice, r: vmrpc_sockio_req) -> i64 {
        dev.memory.write_obj(r, GuestAddress(REQ)).unwrap();
        assert_eq!(dev.write(0, &REQ.to_le_bytes()), DeviceAction::Continue);
        let back: vmrpc_sockio_req = dev.memory.read_obj(GuestAddress(REQ)).unwrap();
        assert_eq!(
            vmrpc_sockio_req {
                result: r.result,
                ..back
            },
            r,
            "only the result is written"
        );
        back.result
    }

    fn guest_bytes(h: &Harness, at: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        h.dev.memory.read_slice(&mut v, GuestAddress(at)).unwrap();
        v
    }

    #[test]
    fn a_receive_fills_the_first_buffer_then_the_second() {
        let mut h = harness();
        h.peer.write_all(b"0123456789").unwrap();
        assert_eq!(call(&h.dev, req(&h, 0, -1, 4, 100)), 10);
        assert_eq!(guest_bytes(&h, BUF, 4), b"0123");
        assert_eq!(guest_bytes(&h, BUF2, 6), b"456789");
        // A peek leaves them queued; never waiting, an empty socket is EAGAIN.
        h.peer.write_all(b"abc").unwrap();
        assert_eq!(call(&h.dev, req(&h, VMRPC_SOCKIO_PEEK, 0, 8, 0)), 3);
        assert_eq!(call(&h.dev, req(&h, 0, 0, 8, 0)), 3);
        assert_eq!(guest_bytes(&h, BUF, 3), b"abc");
        assert_eq!(call(&h.dev, req(&h, 0, 0, 8, 0)), -i64::from(libc::EAGAIN));
        assert_eq!(
            call(&h.dev, req(&h, 0, 20, 8, 0)),
            -i64::from(libc::EAGAIN),
            "timed out"
        );
        // A send moves guest bytes to the socket.
        h.dev
            .memory
            .write_slice(b"from the guest", GuestAddress(BUF))
            .unwrap();
        assert_eq!(call(&h.dev, req(&h, VMRPC_SOCKIO_SEND, -1, 14, 0)), 14);
        let mut got = [0u8; 14];
        h.peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"from the guest");
        h.peer.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(call(&h.dev, req(&h, 0, -1, 8, 0)), 0, "end of stream");
        assert_eq!(h.dev.stats.sockio_calls.get(), 7);
    }

    #[test]
    fn waitall_waits_for_the_whole_first_buffer() {
        let h = harness();
        let dev = h.dev.clone();
        let r = req(&h, VMRPC_SOCKIO_WAITALL, -1, 6, 64);
        let waiter = std::thread::spawn(move || call(&dev, r));
        let mut peer = &h.peer;
        peer.write_all(b"abc").unwrap();
        // Real state, not a sleep: the first piece is in guest memory.
        while guest_bytes(&h, BUF, 3) != b"abc" {
            std::thread::yield_now();
        }
        peer.write_all(b"defgh").unwrap();
        assert_eq!(waiter.join().unwrap(), 6, "the first buffer, no more");
        assert_eq!(guest_bytes(&h, BUF, 6), b"abcdef");
    }

    #[test]
    fn a_stop_ends_a_blocked_receive() {
        let h = harness();
        let dev = h.dev.clone();
        let r = req(&h, 0, -1, 64, 0);
        let waiter = std::thread::spawn(move || call(&dev, r));
        while h.dev.stats.sockio_waits.get() < 1 {
            std::thread::yield_now();
        }
        h.stop.stop();
        assert_eq!(waiter.join().unwrap(), -i64::from(libc::EINTR));
        assert_eq!(
            call(&h.dev, r),
            -i64::from(libc::EINTR),
            "and any later wait"
        );
    }

    #[test]
    fn hostile_requests_get_an_errno() {
        let h = harness();
        let echo = h.dev.registry.bind(b"echo", 1 << 16).unwrap();
        let einval = -i64::from(libc::EINVAL);
        let efault = -i64::from(libc::EFAULT);
        let good = req(&h, 0, 0, 8, 0);
        for (r, want) in [
            (
                vmrpc_sockio_req { module: 0, ..good },
                -i64::from(libc::EBADF),
            ),
            (
                vmrpc_sockio_req {
                    module: 0x7777,
                    ..good
                },
                -i64::from(libc::EBADF),
            ),
            (
                vmrpc_sockio_req {
                    module: echo,
                    ..good
                },
                -i64::from(libc::EOPNOTSUPP),
            ),
            (
                vmrpc_sockio_req { handle: 9, ..good },
                -i64::from(libc::EOPNOTSUPP),
            ),
            (vmrpc_sockio_req { flags: 8, ..good }, einval),
            (
                vmrpc_sockio_req {
                    timeout_ms: -2,
                    ..good
                },
                einval,
            ),
            (req(&h, 0, 0, VMRPC_SOCKIO_MAX, 1), einval),
            (req(&h, 0, 0, u32::MAX, 0), einval),
            (req(&h, VMRPC_SOCKIO_SEND, 0, 8, 8), einval),
            (req(&h, VMRPC_SOCKIO_PEEK, 0, 8, 8), einval),
            (
                req(&h, VMRPC_SOCKIO_PEEK | VMRPC_SOCKIO_WAITALL, 0, 8, 0),
                einval,
            ),
            (
                req(&h, VMRPC_SOCKIO_SEND | VMRPC_SOCKIO_WAITALL, 0, 8, 0),
                einval,
            ),
            (
                vmrpc_sockio_req {
                    gpa: RAM - 4,
                    ..good
                },
                efault,
            ),
            (
                vmrpc_sockio_req {
                    gpa: u64::MAX - 2,
                    ..good
                },
                efault,
            ),
            (
                vmrpc_sockio_req {
                    gpa2: RAM,
                    len2: 1,
                    ..good
                },
                efault,
            ),
            (
                vmrpc_sockio_req {
                    gpa: 0xd000_9000,
                    ..good
                },
                efault,
            ), // MMIO, not RAM
        ] {
            assert_eq!(call(&h.dev, r), want, "{r:?}");
        }
        // A request itself outside guest memory is dropped, not answered.
        assert_eq!(
            h.dev.write(0, &(RAM - 8).to_le_bytes()),
            DeviceAction::Continue
        );
        assert_eq!(h.dev.write(0, &[0xff; 3]), DeviceAction::Continue);
    }
}
