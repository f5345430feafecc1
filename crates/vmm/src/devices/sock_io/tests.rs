//! The socket I/O exit against a real socket pair, a registry and guest memory.

use super::*;
use crate::rpc::channel::Completion;
use crate::rpc::module::{HostModule, NativeSockets};
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
    fn native_sockets(&self) -> Option<&dyn NativeSockets> {
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
    let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
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
    let mut peer = &h.peer;
    // Queued before the call, so its first receive takes exactly "abc" and
    // the device then waits for more (a receive still running when "defgh"
    // arrives would take that too, into the second buffer).
    peer.write_all(b"abc").unwrap();
    let waiter = std::thread::spawn(move || call(&dev, r));
    // Real state, not a sleep: the device waits, with the first piece in guest memory.
    while h.dev.stats.sockio_waits.get() == 0 {
        std::thread::yield_now();
    }
    assert_eq!(guest_bytes(&h, BUF, 3), b"abc");
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

#[test]
fn only_the_register_of_requests_that_may_wait_may_block() {
    // The M:N pool gives the vCPU up before a write that may block; the guest
    // writes there only requests with a timeout, holding no spinlock.
    let h = harness();
    assert!(h.dev.may_block(VMRPC_SOCKIO_MAY_WAIT));
    assert!(!h.dev.may_block(0));
    assert_eq!(MMIO_SOCKIO_LEN, 16);
    // Both registers serve the same request.
    let mut r = req(&h, 0, 0, 4, 0);
    h.peer.try_clone().unwrap().write_all(b"ping").unwrap();
    h.dev.memory.write_obj(r, GuestAddress(REQ)).unwrap();
    assert_eq!(
        h.dev.write(VMRPC_SOCKIO_MAY_WAIT, &REQ.to_le_bytes()),
        DeviceAction::Continue
    );
    r = h.dev.memory.read_obj(GuestAddress(REQ)).unwrap();
    assert_eq!(r.result, 4);
    assert_eq!(guest_bytes(&h, BUF, 4), b"ping");
}
