//! Unit tests of the native connect (`super`): what it serves, what it leaves
//! to Python (every malformed or hostile request among them), and its limits.
use super::super::test_harness::Harness;
use super::super::*;
use super::*;
use guest_kmod_bindings::socket_proto::{VMRPC_SOCK_AF_INET6, VMRPC_SOCK_SOCK_DGRAM};
use std::io::Read;
use std::net::TcpListener;

/// CONNECT through the data plane: Some(answer) if served here, None if
/// handed on to Python.
fn connect(h: &mut Harness, dp: &SocketDataPlane, request: &[u8]) -> Option<vmrpc_sock_addr_resp> {
    h.offer(dp, VMRPC_SOCK_FN_CONNECT, request)
        .then(|| h.answer())
}

fn addr(port: u16) -> vmrpc_sock_addr {
    let mut a = vmrpc_sock_addr {
        family: VMRPC_SOCK_AF_INET as u16,
        port,
        ..Default::default()
    };
    a.addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    a
}

fn connect_req(a: vmrpc_sock_addr) -> Vec<u8> {
    vmrpc_sock_connect_req {
        handle: 0,
        timeout_ms: -1,
        r#type: VMRPC_SOCK_SOCK_STREAM,
        _pad: 0,
        addr: a,
    }
    .as_slice()
    .to_vec()
}

fn option(level: i32, name: i32, value: &[u8]) -> Vec<u8> {
    let head = vmrpc_sock_sockopt_req {
        handle: 0,
        level,
        name,
        len: value.len() as u32,
    };
    [head.as_slice(), value].concat()
}

/// A data plane with room, that may set TCP_NODELAY, and a listener it may
/// connect to natively (decision 5).
fn ready() -> (SocketDataPlane, TcpListener, vmrpc_sock_addr) {
    let dp = SocketDataPlane::new([(libc::IPPROTO_TCP, libc::TCP_NODELAY, 4)]);
    dp.gate().set_limits(64, 64, Some(0));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = addr(listener.local_addr().unwrap().port());
    assert!(dp.gate().allow_plain(a.as_slice(), 5));
    (dp, listener, a)
}

#[test]
fn an_allowed_destination_is_connected_here_and_left_for_python_to_adopt() {
    let (dp, listener, a) = ready();
    let mut h = Harness::new();
    let nodelay = option(libc::IPPROTO_TCP, libc::TCP_NODELAY, &1i32.to_ne_bytes());
    let answer =
        connect(&mut h, &dp, &[connect_req(a), nodelay].concat()).expect("served natively");
    assert_eq!(answer.result, 0);
    assert!(answer.aux >= NATIVE_HANDLES);
    let (peer, from) = listener.accept().unwrap();
    assert_eq!(
        answer.addr.port,
        from.port(),
        "the local address is the socket's"
    );
    assert_eq!(&answer.addr.addr[..4], &[127, 0, 0, 1]);
    assert_eq!(dp.connects.load(Ordering::Relaxed), 1);
    assert_eq!(dp.born(), 1);
    let audit = dp.gate().take_audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].1, 5);

    let born = dp.take_born();
    assert_eq!(born.len(), 1);
    let (handle, fd, decision) = &born[0];
    assert_eq!((*handle, *decision), (answer.aux, 5));
    let mut nodelay = 0i32;
    let mut len = 4 as libc::socklen_t;
    // SAFETY: reads one int option of a socket we own.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw mut nodelay).cast(),
            &mut len,
        )
    };
    assert_eq!(
        (rc, nodelay != 0),
        (0, true),
        "the option travelled with the connect"
    );
    assert_eq!(dp.born(), 0);
    assert!(
        dp.is_attached(answer.aux),
        "attached: the data plane serves it"
    );
    drop(peer);
}

#[test]
fn a_born_socket_closed_before_python_saw_it_closes_here() {
    let (dp, listener, a) = ready();
    let mut h = Harness::new();
    let answer = connect(&mut h, &dp, &connect_req(a)).unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let close = vmrpc_sock_handle_req {
        handle: answer.aux,
        arg: 0,
    };
    assert_eq!(dp.close(close.as_slice()), Some(0));
    let mut buf = [0u8; 1];
    assert_eq!(peer.read(&mut buf).unwrap(), 0, "the peer sees the end");
    assert!(dp.take_born().is_empty());
    assert!(dp.take_closed().is_empty(), "Python never knew the handle");
    assert_eq!(
        dp.gate().take_audit().len(),
        1,
        "its decision is still recorded"
    );
}

#[test]
fn a_refused_connect_answers_its_errno_and_is_recorded() {
    let (dp, _listener, _) = ready();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed); // nobody listens there now
    let a = addr(port);
    assert!(dp.gate().allow_plain(a.as_slice(), 2));
    let mut h = Harness::new();
    let answer = connect(&mut h, &dp, &connect_req(a)).unwrap();
    assert_eq!((answer.result, answer.aux), (-libc::ECONNREFUSED, 0));
    assert_eq!(answer.addr, vmrpc_sock_addr::default());
    assert_eq!(dp.attached(), 0);
    assert_eq!(dp.connect_sockets.load(Ordering::Relaxed), 1);
    assert_eq!(dp.gate().take_audit().len(), 1);
}

#[test]
fn only_exactly_the_allowed_address_bytes_are_served() {
    let (dp, _listener, a) = ready();
    let mut h = Harness::new();
    let mut other_port = a;
    other_port.port = a.port.wrapping_add(1);
    let mut flowinfo = a; // IPv4 ignores it, but these are not the bytes allowed
    flowinfo.flowinfo = 1;
    for other in [other_port, flowinfo] {
        assert!(connect(&mut h, &dp, &connect_req(other)).is_none());
    }
    dp.gate().forget_plain();
    assert!(
        connect(&mut h, &dp, &connect_req(a)).is_none(),
        "forgotten: Python's again"
    );
    assert!(!dp.gate().allow_plain(&[0u8; 5], 1), "not an address");
    assert_eq!(dp.connect_sockets.load(Ordering::Relaxed), 0);
}

#[test]
fn hostile_or_unusual_requests_go_to_python_untouched() {
    let (dp, _listener, a) = ready();
    let mut h = Harness::new();
    let good = connect_req(a);
    let with = |edit: &dyn Fn(&mut vmrpc_sock_connect_req)| {
        let mut req = vmrpc_sock_connect_req::default();
        req.as_mut_slice().copy_from_slice(&good);
        edit(&mut req);
        req.as_slice().to_vec()
    };
    let mut v6 = a;
    v6.family = VMRPC_SOCK_AF_INET6 as u16;
    let mut padded = a;
    padded.addr[15] = 1;
    let big = option(libc::IPPROTO_TCP, libc::TCP_NODELAY, &vec![0; 300]);
    let mut short_value = option(libc::IPPROTO_TCP, libc::TCP_NODELAY, &[1, 0, 0, 0]);
    short_value.truncate(short_value.len() - 1);
    let mut lying = option(libc::IPPROTO_TCP, libc::TCP_NODELAY, &[1, 0, 0, 0]);
    lying[12..16].copy_from_slice(&u32::MAX.to_ne_bytes()); // len far past the request
    let one = option(libc::IPPROTO_TCP, libc::TCP_NODELAY, &[1, 0, 0, 0]);
    let too_many: Vec<u8> = (0..=VMRPC_SOCK_MAX_CONNECT_OPTS)
        .flat_map(|_| one.clone())
        .collect();
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        good[..good.len() - 1].to_vec(),
        with(&|r| r.handle = 3),
        with(&|r| r.r#type = VMRPC_SOCK_SOCK_DGRAM),
        with(&|r| r.r#type = 0),
        with(&|r| r.timeout_ms = 0),
        with(&|r| r.timeout_ms = -2),
        with(&|r| r.timeout_ms = i32::MIN),
        with(&|r| r.addr = v6),
        with(&|r| r.addr = padded),
        [good.clone(), big].concat(),
        [good.clone(), short_value].concat(),
        [good.clone(), lying].concat(),
        [good.clone(), one[..7].to_vec()].concat(),
        [good.clone(), too_many].concat(),
    ];
    for case in &cases {
        assert!(connect(&mut h, &dp, case).is_none(), "{case:?}");
    }
    // Whatever follows a valid head, nothing panics and nothing is made
    // unless the options parse.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 96) as usize;
        let tail: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
        let _ = connect(&mut h, &dp, &[good.clone(), tail].concat());
    }
    assert!(dp.connects.load(Ordering::Relaxed) <= 2000);
    drop(dp.take_born());
}

#[test]
fn without_room_for_the_socket_and_its_duplicate_python_decides() {
    let (dp, _listener, a) = ready();
    let mut h = Harness::new();
    dp.gate().set_python_counts(64, 0); // the table is full
    assert!(connect(&mut h, &dp, &connect_req(a)).is_none());
    dp.gate().set_python_counts(1, 63); // one fd left: the socket, not its duplicate
    assert!(connect(&mut h, &dp, &connect_req(a)).is_none());
    dp.gate().set_limits(64, 64, Some(u64::MAX)); // the process reserve takes all
    dp.gate().set_python_counts(0, 0);
    assert!(connect(&mut h, &dp, &connect_req(a)).is_none());
    let unset = SocketDataPlane::default();
    assert!(unset.gate().allow_plain(a.as_slice(), 1));
    assert!(
        connect(&mut h, &unset, &connect_req(a)).is_none(),
        "no limits from Python yet"
    );
    assert_eq!(dp.connect_sockets.load(Ordering::Relaxed), 0);
}

#[test]
fn a_closed_module_connects_nothing_more() {
    let (dp, _listener, a) = ready();
    let mut h = Harness::new();
    dp.clear(); // SocketOutsourcing.close()
    assert!(connect(&mut h, &dp, &connect_req(a)).is_none());
    dp.gate().set_limits(64, 64, Some(0));
    assert!(dp.gate().allow_plain(a.as_slice(), 5));
    assert!(
        connect(&mut h, &dp, &connect_req(a)).is_none(),
        "a late hand-over is ignored"
    );
    assert_eq!(dp.connect_sockets.load(Ordering::Relaxed), 0);
}

#[test]
fn a_connect_not_finished_at_once_goes_to_python_with_its_socket() {
    let (dp, listener, a) = ready();
    // An accept queue of one, never accepted: Linux then drops the SYNs, and
    // a connect stays under way.
    // SAFETY: listen(2) on a listening socket we own only changes its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let mut h = Harness::new();
    let mut handed = None;
    for _ in 0..8 {
        match connect(&mut h, &dp, &connect_req(a)) {
            Some(answer) => assert_eq!(answer.result, 0),
            None => {
                handed = Gate::take_started();
                break;
            }
        }
    }
    let (fd, err) = handed.expect("a connect left under way, handed on");
    assert_eq!(err, libc::EINPROGRESS);
    assert!(Gate::take_started().is_none(), "taken once");
    let made = dp.connect_sockets.load(Ordering::Relaxed);
    assert_eq!(
        dp.born() as u64,
        made,
        "the handed socket is not the plane's"
    );
    assert_eq!(
        dp.gate().take_audit().len() as u64,
        made,
        "Python records it itself"
    );
    drop(fd);
    drop(dp.take_born());
}
