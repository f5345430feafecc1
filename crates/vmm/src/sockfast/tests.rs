//! Unit tests of the socket data plane (`super`).
use super::test_harness::Harness;
use super::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use vm_memory::Bytes;

/// The socket-protocol result of the answer just posted.
fn result(h: &mut Harness) -> i32 {
    h.answer::<vmrpc_sock_resp>().result
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
    assert_eq!(result(&mut h), 17);
    let mut got = [0u8; 17];
    b.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"from guest memory");

    assert!(h.offer(&dp, VMRPC_SOCK_FN_RECV_BUF, &buf_req(3, 64, 0x9_0000)));
    assert_eq!(
        result(&mut h),
        -libc::EAGAIN,
        "nothing to read: never waits"
    );
    b.write_all(b"into guest memory").unwrap();
    assert!(h.offer(&dp, VMRPC_SOCK_FN_RECV_BUF, &buf_req(3, 64, 0x9_0000)));
    assert_eq!(result(&mut h), 17);
    let mut back = [0u8; 17];
    h.mem.read_slice(&mut back, GuestAddress(0x9_0000)).unwrap();
    assert_eq!(&back, b"into guest memory");
    assert_eq!(dp.bytes_sent.load(Ordering::Relaxed), 17);
    assert_eq!(dp.bytes_received.load(Ordering::Relaxed), 17);

    drop(b);
    assert!(h.offer(&dp, VMRPC_SOCK_FN_RECV_BUF, &buf_req(3, 64, 0x9_0000)));
    assert_eq!(result(&mut h), 0, "end of stream");
    assert!(h.offer(&dp, VMRPC_SOCK_FN_SEND_BUF, &buf_req(3, 4, 0x8_0000)));
    assert_eq!(result(&mut h), -libc::EPIPE);
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
        assert_eq!(result(&mut h), want);
    }
    dp.detach(3);
    assert_eq!(dp.attached(), 0);
    assert!(h.offer(&dp, VMRPC_SOCK_FN_SEND_BUF, &buf_req(3, 8, 0x8_0000)));
    assert_eq!(result(&mut h), -libc::EOPNOTSUPP, "detached");
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
    assert_eq!(result(&mut h), 0);
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
    assert_eq!(result(&mut h), 0);
    let err = peer.read(&mut probe).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ECONNRESET), "{err}");
}

#[test]
fn close_leaves_to_python_what_python_may_be_using() {
    let (ours, _peer) = tcp_pair();
    let dp = SocketDataPlane::default();
    let mut h = Harness::new();
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
    assert_eq!(result(&mut h), 0);
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
    let mut h = Harness::new();
    for function in [0, 13, 14, 16, 19] {
        assert!(
            !h.offer(&dp, function, &buf_req(3, 8, 0x8_0000)),
            "{function}"
        );
    }
}
