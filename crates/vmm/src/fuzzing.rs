//! Fuzz harnesses for every parser of guest-controlled bytes, called by the
//! coverage-guided targets in `fuzz/` (`make fuzz`). Built only with the
//! `fuzzing` feature. Each harness lays the fuzzer's bytes where a guest
//! would write them, runs the real host code over them, and checks that it
//! neither panics nor writes outside the region the guest shares with it.
//!
//! - `rpc_engine`: a vCPU channel (request ring head and descriptors,
//!   response ring tail, data area) served by the real `Engine`, with the
//!   built-in echo module and the system module (bind, unbind, open queue).
//! - `evq_queue`: an event queue's two rings (indices, flags, vCPU numbers,
//!   slot lengths, payloads) through `take_into`, `put`, `ready`.
//! - `sock_buf`: SEND_BUF / RECV_BUF requests of the native socket data
//!   plane (handle, length, guest address) over a connected socket pair, and
//!   socket I/O exits (`devices::sock_io`: module, handle, flags, both
//!   buffers; never waiting) over the same plane, at either register.
//! - `sock_connect`: CONNECT requests (head, address, the options of a new
//!   socket) of the native connect, with one loopback destination allowed.
//! - `files_data`: a Linux program's system-call arguments as the native
//!   files module takes them (`read`/`write`/`pread64`/`pwrite64`: handle,
//!   buffer, length, offset; `openat`/`newfstatat`/`fstat`/`close`: handles,
//!   flags, stat buffer, path bytes) over a mount of a scratch directory; every
//!   file it opens must lie inside the mount.

use std::fs::File;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use guest_kmod_bindings::socket_proto::{
    vmrpc_sock_addr, vmrpc_sock_connect_req, VMRPC_SOCK_AF_INET, VMRPC_SOCK_FN_CONNECT,
    VMRPC_SOCK_SOCK_STREAM,
};
use guest_kmod_bindings::{
    ring_off, VMRPC_CHAN_DATA_OFFSET, VMRPC_CHAN_RESP_RING_OFFSET, VMRPC_MAX_PAYLOAD,
};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::bus::BusDevice;
use crate::devices::sock_io::SockIoDevice;
use crate::evq::geometry::Geometry;
use crate::evq::{EventQueue, VmLink, Wait};
use crate::layout;
use crate::linux::dataplane::FilesDataPlane;
use crate::rpc::channel::{Channel, Completion};
use crate::rpc::engine::Rig;
use crate::rpc::module::{HostModule, NativeHandler, NativeSockets};
use crate::rpc::registry::Registry;
use crate::sockfast::{Gate, SocketDataPlane};
use crate::stats::Stats;
use crate::stop::StopToken;

const CANARY: u8 = 0xa5;

/// Guest memory filled with the canary, once per process; each input resets
/// what it touched.
fn memory(size: usize) -> GuestMemoryMmap {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size)]).expect("memory");
    fill(&mem, 0, size, CANARY);
    mem
}

fn fill(mem: &GuestMemoryMmap, at: u64, len: usize, byte: u8) {
    mem.write_slice(&vec![byte; len], GuestAddress(at))
        .expect("fill");
}

/// Panics if a byte outside `[lo, hi)` lost the canary. Compared as whole
/// slices (memcmp): a byte loop would call the coverage hooks per byte.
fn assert_canary_outside(mem: &GuestMemoryMmap, size: usize, lo: u64, hi: u64) {
    let canary = vec![CANARY; size];
    for (at, len) in [(0, lo as usize), (hi, size - hi as usize)] {
        let mut got = vec![0; len];
        mem.read_slice(&mut got, GuestAddress(at)).expect("read");
        assert!(
            got == canary[..len],
            "host wrote outside the guest's region, in [{at:#x}, {:#x})",
            at + len as u64
        );
    }
}

/// Splits fuzzer bytes into little-endian words, then the rest.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u32(&mut self) -> u32 {
        let (head, rest) = self.0.split_at(self.0.len().min(4));
        self.0 = rest;
        let mut w = [0u8; 4];
        w[..head.len()].copy_from_slice(head);
        u32::from_le_bytes(w)
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(self.0.len().min(n));
        self.0 = rest;
        head
    }
}

// ---- VM RPC ---------------------------------------------------------------------------

const SHARED: u64 = 0x1_0000;
/// The shared header, one channel, and canary around them.
const RPC_MEM: usize = 0x4_0000;

struct RpcFixture {
    mem: GuestMemoryMmap,
    vm_fd: Arc<VmFd>,
}

fn rpc_fixture() -> &'static RpcFixture {
    static F: OnceLock<RpcFixture> = OnceLock::new();
    F.get_or_init(|| RpcFixture {
        mem: memory(RPC_MEM),
        // Event queues keep the VM's fd; nothing here runs a vCPU.
        vm_fd: Arc::new(
            Kvm::new()
                .and_then(|k| k.create_vm())
                .expect("the rpc_engine target needs /dev/kvm"),
        ),
    })
}

/// Input: request ring head, response ring tail, 8 descriptors (32 bytes
/// each), then the data area. The engine polls three times; between polls
/// the "guest" consumes or not (one input bit each).
pub fn rpc_engine(data: &[u8]) {
    let f = rpc_fixture();
    let mem = &f.mem;
    let chan_base = SHARED + layout::CHAN_OFFSET;
    let chan_end = chan_base + layout::chan_stride();
    fill(mem, chan_base, layout::chan_stride() as usize, 0);
    let mut input = Input(data);
    let head = input.u32();
    let resp_tail = input.u32();
    let consume = input.u32();
    let ring = GuestAddress(chan_base);
    let resp = GuestAddress(chan_base + VMRPC_CHAN_RESP_RING_OFFSET as u64);
    mem.write_slice(input.bytes(8 * 32), GuestAddress(chan_base + 128))
        .expect("descs");
    let rest = input.bytes(2 * VMRPC_MAX_PAYLOAD as usize);
    mem.write_slice(
        rest,
        GuestAddress(chan_base + VMRPC_CHAN_DATA_OFFSET as u64),
    )
    .expect("data");
    mem.store(head, ring, Ordering::Release).expect("head");
    mem.store(
        resp_tail,
        GuestAddress(resp.0 + ring_off::TAIL),
        Ordering::Release,
    )
    .expect("tail");

    let mut engine = Rig::new(mem, SHARED, f.vm_fd.clone()).engine;
    for round in 0..3 {
        engine.poll();
        if consume >> round & 1 == 1 {
            let h: u32 = mem.load(resp, Ordering::Acquire).expect("resp head");
            mem.store(h, GuestAddress(resp.0 + ring_off::TAIL), Ordering::Release)
                .expect("tail");
        }
    }
    assert_canary_outside(mem, RPC_MEM, chan_base, chan_end);
}

// ---- event queues ---------------------------------------------------------------------

const EVQ_BASE: u64 = 0x1000;
const EVQ_MEM: usize = 0x4000;

/// Input: shape (entries 1..16, max_event_size 1..64), the guest's header
/// words of both rings, then bytes over both rings' slots.
pub fn evq_queue(data: &[u8]) {
    static MEM: OnceLock<GuestMemoryMmap> = OnceLock::new();
    let mem = MEM.get_or_init(|| memory(EVQ_MEM));
    let mut input = Input(data);
    let shape = input.u32();
    let geo = Geometry::new(1 << (shape & 3), 1 + u64::from((shape >> 2) & 63)).expect("shape");
    let g2h = GuestAddress(EVQ_BASE);
    let h2g = GuestAddress(EVQ_BASE + geo.ring_stride());
    let end = h2g.0 + geo.ring_bytes();
    // Inputs share the memory: every one starts from the canary.
    fill(mem, 0, EVQ_MEM, CANARY);
    fill(mem, EVQ_BASE, (end - EVQ_BASE) as usize, 0);
    for (ring, words) in [
        (g2h, [0u64, 4, 8, 64, 68, 72]),
        (h2g, [0, 4, 8, 64, 68, 72]),
    ] {
        for off in words {
            mem.store(input.u32(), GuestAddress(ring.0 + off), Ordering::Relaxed)
                .expect("word");
        }
    }
    let slots = (geo.ring_bytes() - 128) as usize;
    for ring in [g2h, h2g] {
        mem.write_slice(input.bytes(slots), GuestAddress(ring.0 + 128))
            .expect("slots");
    }
    let efd = || EventFd::new(EFD_NONBLOCK).expect("eventfd");
    let link = Arc::new(VmLink::new(
        mem.clone(),
        vec![efd(), efd()],
        Arc::new(Stats::default()),
        crate::stop::StopToken::new().expect("eventfd"),
        Duration::ZERO,
    ));
    let q = EventQueue::new("fuzz".into(), 1, geo, (g2h, h2g), 0, link).expect("queue");
    let (mut buf, mut lens) = (Vec::new(), Vec::new());
    for round in 0..3 {
        if let Ok(n) = q.take_into(usize::MAX, &mut buf, &mut lens) {
            assert_eq!(n, lens.len());
            assert!(lens.iter().all(|&l| l <= geo.max_event_size as usize));
            assert_eq!(buf.len(), lens.iter().sum::<usize>());
        }
        let event = vec![round as u8; (round * 7) % (geo.max_event_size as usize + 1)];
        let _ = q.put(&[&event[..], &event[..]]);
        let _ = q.ready(Wait::Readable);
        let _ = q.ready(Wait::Writable);
        // The guest moves on: its indices take the next input words.
        mem.store(input.u32(), GuestAddress(g2h.0), Ordering::Relaxed)
            .expect("head");
        mem.store(input.u32(), GuestAddress(h2g.0 + 64), Ordering::Relaxed)
            .expect("tail");
    }
    let _ = q.ring_state();
    assert_canary_outside(mem, EVQ_MEM, EVQ_BASE, end);
}

// ---- native modules (socket and files data planes) -------------------------------------

/// Guest RAM of the native-module targets; their channel lies at `NATIVE_CHAN`.
const NATIVE_MEM: usize = 1 << 20;
const NATIVE_CHAN: u64 = 0xf_0000;

/// A channel over `mem` at `NATIVE_CHAN`, with fresh host-side ring state.
fn native_channel(mem: &GuestMemoryMmap) -> Arc<Channel> {
    let irq = EventFd::new(EFD_NONBLOCK).expect("eventfd");
    Arc::new(Channel::new(
        0,
        mem.clone(),
        NATIVE_CHAN,
        Some(irq),
        Arc::new(Stats::default()),
    ))
}

/// A completion for one request on `chan`. When the response ring is full
/// the guest consumes everything; if the guest's buffers overwrote its own
/// ring so that room never comes back, the "guest" starts a new channel.
fn native_completion(chan: &mut Arc<Channel>, mem: &GuestMemoryMmap) -> Completion {
    let resp = GuestAddress(NATIVE_CHAN + VMRPC_CHAN_RESP_RING_OFFSET as u64);
    for _ in 0..2 {
        if chan.reserve() {
            return Completion::new(chan.clone(), 1, 0, 8);
        }
        let head: u32 = mem.load(resp, Ordering::Acquire).expect("head");
        mem.store(
            head,
            GuestAddress(resp.0 + ring_off::TAIL),
            Ordering::Release,
        )
        .expect("tail");
    }
    // Both rings lie below the data area.
    fill(mem, NATIVE_CHAN, VMRPC_CHAN_DATA_OFFSET as usize, 0);
    *chan = native_channel(mem);
    assert!(chan.reserve(), "a fresh channel has room");
    Completion::new(chan.clone(), 1, 0, 8)
}

/// The data plane as the "sockets" module the socket I/O exit looks up.
struct PlaneModule(Arc<SocketDataPlane>);

impl HostModule for PlaneModule {
    fn has_function(&self, _function: u32) -> bool {
        false
    }
    fn call(&self, _function: u32, _request: &[u8], _done: Completion) {}
    fn native_sockets(&self) -> Option<&dyn NativeSockets> {
        Some(&*self.0)
    }
}

/// Where `sock_buf` lays a socket I/O request (the buffers it names may be anywhere).
const SOCKIO_REQ: u64 = 0xe_0000;

/// One socket I/O exit from 40 fuzzer bytes: never waiting (a wait would stall
/// the fuzzer), at either register; only `result` may change, within bounds.
fn sock_io_exit(dev: &SockIoDevice, mem: &GuestMemoryMmap, module: u32, input: &mut Input) {
    use guest_kmod_bindings::vmrpc_sockio_req;
    let sel = input.u32();
    let mut req = vmrpc_sockio_req {
        // Mostly the live handle, so that the checks past it are reached.
        module: if sel & 1 == 0 { module } else { input.u32() },
        handle: if sel & 2 == 0 { 3 } else { input.u32() },
        flags: input.u32() & 0xf,
        timeout_ms: 0,
        gpa: u64::from(input.u32()),
        len: input.u32() & 0x1f_ffff,
        len2: input.u32() & 0x1f_ffff,
        gpa2: u64::from(input.u32()),
        result: 12345,
    };
    if sel & 4 != 0 {
        req.len = input.u32(); // past VMRPC_SOCKIO_MAX, and overflowing sums
    }
    mem.write_obj(req, GuestAddress(SOCKIO_REQ))
        .expect("request");
    let offset = if sel & 8 == 0 { 0 } else { 8 };
    let _ = dev.may_block(offset);
    dev.write(offset, &SOCKIO_REQ.to_le_bytes());
    let back: vmrpc_sockio_req = mem.read_obj(GuestAddress(SOCKIO_REQ)).expect("answer");
    // The buffers may overlap the request, but the result is written last.
    let most = i64::from(req.len) + i64::from(req.len2);
    let r = back.result;
    assert!(
        (-4095..=most).contains(&r),
        "socket I/O result {r} out of range for {req:?}"
    );
}

/// Input: a sequence of (function selector, 16-byte request) pairs, served
/// by a data plane with handle 3 attached to one end of a socket pair;
/// selector 31 is a socket I/O exit instead (`sock_io_exit`), after the peer
/// wrote some bytes and read what was sent.
pub fn sock_buf(data: &[u8]) {
    struct Fixture {
        mem: GuestMemoryMmap,
        dp: Arc<SocketDataPlane>,
        sockio: SockIoDevice,
        module: u32,
        // Both ends stay open for the process's life (the plane holds a dup).
        peer: UnixStream,
        _ours: UnixStream,
    }
    static F: OnceLock<Fixture> = OnceLock::new();
    let f = F.get_or_init(|| {
        let (ours, peer) = UnixStream::pair().expect("socketpair");
        peer.set_nonblocking(true).expect("nonblocking");
        let dp = Arc::new(SocketDataPlane::default());
        dp.attach(3, ours.as_raw_fd()).expect("attach");
        let mem = memory(NATIVE_MEM);
        let registry = Arc::new(Registry::default());
        registry
            .register("sockets", 1 << 16, Arc::new(PlaneModule(dp.clone())))
            .expect("register");
        let module = registry.bind(b"sockets", 1 << 16).expect("bind");
        let stop = StopToken::new().expect("stop token");
        let stats = Arc::new(Stats::default());
        let sockio = SockIoDevice::new(mem.clone(), registry, stop, stats);
        Fixture {
            mem,
            dp,
            sockio,
            module,
            peer,
            _ours: ours,
        }
    });
    // The buffers the requests name may be anywhere, in RAM or not.
    let mut chan = native_channel(&f.mem);
    let mut input = Input(data);
    while !input.0.is_empty() {
        let function = input.u32() & 0x1f;
        if function == 31 {
            use std::io::{Read, Write};
            let n = (input.u32() & 0xffff) as usize;
            let _ = (&f.peer).write(&vec![0x5a; n]);
            let mut sink = vec![0; 1 << 16];
            while (&f.peer).read(&mut sink).is_ok_and(|got| got > 0) {}
            sock_io_exit(&f.sockio, &f.mem, f.module, &mut input);
            continue;
        }
        let request = input.bytes(16).to_vec();
        let done = native_completion(&mut chan, &f.mem);
        // Anything not served natively comes back, and is answered as Python would.
        if let Some(done) = f.dp.try_call(function, &request, done) {
            done.err(guest_kmod_bindings::VMRPC_ENOFUNC);
        }
    }
}

/// Input: a sequence of (flags, length, bytes) CONNECTs, served by a data plane
/// that may connect natively to one loopback listener. With flag bit 0 the
/// bytes follow a valid request head for that listener (so the option parser
/// sees them), else they are the whole request. Every socket connected is
/// closed again, so the process's fds stay bounded.
pub fn sock_connect(data: &[u8]) {
    struct Fixture {
        mem: GuestMemoryMmap,
        dp: SocketDataPlane,
        listener: TcpListener,
        head: Vec<u8>,
    }
    static F: OnceLock<Fixture> = OnceLock::new();
    let f = F.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("port").port();
        let dp = SocketDataPlane::new([
            (libc::IPPROTO_TCP, libc::TCP_NODELAY, 4),
            (libc::SOL_SOCKET, libc::SO_LINGER, 8),
        ]);
        dp.gate().set_limits(1 << 16, 1 << 16, Some(0));
        let mut addr = vmrpc_sock_addr {
            family: VMRPC_SOCK_AF_INET as u16,
            port,
            ..Default::default()
        };
        addr.addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        assert!(dp.gate().allow_plain(addr.as_slice(), 0));
        let head = vmrpc_sock_connect_req {
            handle: 0,
            timeout_ms: -1,
            r#type: VMRPC_SOCK_SOCK_STREAM,
            _pad: 0,
            addr,
        };
        Fixture {
            mem: memory(NATIVE_MEM),
            dp,
            listener,
            head: head.as_slice().to_vec(),
        }
    });
    let mut chan = native_channel(&f.mem);
    let mut input = Input(data);
    while !input.0.is_empty() {
        let flags = input.u32();
        let len = (input.u32() % 512) as usize;
        let bytes = input.bytes(len);
        let request = if flags & 1 != 0 {
            [f.head.as_slice(), bytes].concat()
        } else {
            bytes.to_vec()
        };
        let done = native_completion(&mut chan, &f.mem);
        if let Some(done) = f.dp.try_call(VMRPC_SOCK_FN_CONNECT, &request, done) {
            done.err(guest_kmod_bindings::VMRPC_ENOFUNC);
        }
        drop(Gate::take_started()); // what Python would have taken over
        for (handle, fd, _) in f.dp.take_born() {
            drop(fd);
            f.dp.detach(handle);
        }
        drop(f.dp.gate().take_audit());
        while f.listener.accept().is_ok() {}
    }
}

/// The scratch tree of `files_data`, made once per process: the mount root
/// holds a file, a directory and symlinks that point out of it; `secret`
/// lies beside the root, outside the mount.
struct FilesTree {
    root: PathBuf,
    root_dir: File,
    file: File,
    null: File,
}

/// The scratch tree's top directory, removed at exit.
static FILES_TOP: OnceLock<PathBuf> = OnceLock::new();

/// libFuzzer ends with `exit()`, which runs no Rust destructors: remove the
/// scratch tree from an `atexit` handler instead.
extern "C" fn remove_files_tree() {
    if let Some(top) = FILES_TOP.get() {
        let _ = std::fs::remove_dir_all(top);
    }
}

fn files_tree() -> &'static FilesTree {
    static T: OnceLock<FilesTree> = OnceLock::new();
    T.get_or_init(|| {
        let top = FILES_TOP.get_or_init(|| {
            std::env::temp_dir().join(format!("vmrpc-fuzz-files-{}", std::process::id()))
        });
        // SAFETY: registers a plain function with no captured state; it only
        // reads a static set above and removes a directory.
        unsafe { libc::atexit(remove_files_tree) };
        let root = top.join("root");
        std::fs::create_dir_all(root.join("dir")).expect("scratch dir");
        std::fs::write(top.join("secret"), b"outside the mount").expect("secret");
        std::fs::write(root.join("file"), vec![7u8; 5000]).expect("file");
        std::fs::write(root.join("dir/inner"), b"inner").expect("inner");
        for (name, target) in [
            ("up", ".."),
            ("abs", "/etc/passwd"),
            ("sec", "../secret"),
            ("self", "file"),
        ] {
            let _ = symlink(target, root.join(name));
        }
        let root = root.canonicalize().expect("canonical root");
        FilesTree {
            root_dir: File::open(&root).expect("root"),
            file: File::open(root.join("file")).expect("file"),
            null: File::options()
                .read(true)
                .write(true)
                .open("/dev/null")
                .expect("/dev/null"),
            root,
        }
    })
}

/// Input: a sequence of (function 0..7, request length, request bytes),
/// served by a fresh files data plane: mounts `/` and `/data` (both the
/// scratch root), cwd `/dir`, handle 3 a read-only file and 4 `/dev/null`.
/// After each native open the file must be inside the mount.
pub fn files_data(data: &[u8]) {
    static MEM: OnceLock<GuestMemoryMmap> = OnceLock::new();
    let mem = MEM.get_or_init(|| memory(NATIVE_MEM));
    let tree = files_tree();
    let plane = FilesDataPlane::default();
    {
        let fd = tree.root_dir.as_raw_fd();
        let mut paths = plane.paths();
        paths
            .set_mounts(&[(b"/".to_vec(), fd), (b"/data".to_vec(), fd)])
            .expect("mounts");
        paths.set_cwd(b"/dir");
    }
    plane.attach(3, tree.file.as_raw_fd()).expect("attach");
    plane.attach(4, tree.null.as_raw_fd()).expect("attach");
    let mut chan = native_channel(mem);
    let mut input = Input(data);
    while !input.0.is_empty() {
        let head = input.u32();
        let function = head & 7;
        let request = input.bytes((head >> 3) as usize & 0x7f).to_vec();
        let done = native_completion(&mut chan, mem);
        let opened_before = plane.opens.load(Ordering::Relaxed);
        plane.call(function, &request, done);
        if plane.opens.load(Ordering::Relaxed) != opened_before {
            assert_opened_inside(&plane, &tree.root);
        }
    }
}

/// Panics unless the newest native handle is a file below `root`.
fn assert_opened_inside(plane: &FilesDataPlane, root: &std::path::Path) {
    // `new_handle` counts up: the handle just opened is the one before it.
    let handle = (plane.new_handle() - 1) | crate::linux::dataplane::NATIVE_HANDLE_BIT;
    let (fd, _) = plane
        .adopt(handle)
        .expect("dup")
        .expect("the open made a native handle");
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("fd path");
    assert!(
        path.starts_with(root),
        "opened {path:?}, outside the mount {root:?}"
    );
}
