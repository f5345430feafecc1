//! Compiles guest/include/vmrpc/abi.h with the system C compiler and checks that
//! every size, field offset and constant the Rust mirror defines agrees with it.

use std::collections::HashMap;
use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use guest_kmod_bindings::*;

/// (name, C expression, Rust value)
fn expectations() -> Vec<(&'static str, &'static str, u64)> {
    macro_rules! size {
        ($c:literal, $t:ty) => {
            (
                concat!("sizeof ", $c),
                concat!("sizeof(struct ", $c, ")"),
                size_of::<$t>() as u64,
            )
        };
    }
    macro_rules! off {
        ($c:literal, $t:ty, $f:ident) => {
            (
                concat!($c, ".", stringify!($f)),
                concat!("offsetof(struct ", $c, ", ", stringify!($f), ")"),
                offset_of!($t, $f) as u64,
            )
        };
    }
    macro_rules! constant {
        ($c:ident, $v:expr) => {
            (stringify!($c), stringify!($c), $v as i64 as u64)
        };
    }
    vec![
        size!("vmrpc_boot_info", BootInfo),
        off!("vmrpc_boot_info", BootInfo, magic),
        off!("vmrpc_boot_info", BootInfo, mem_size),
        off!("vmrpc_boot_info", BootInfo, vcpu_count),
        off!("vmrpc_boot_info", BootInfo, argc),
        off!("vmrpc_boot_info", BootInfo, argv),
        off!("vmrpc_boot_info", BootInfo, shared_base),
        off!("vmrpc_boot_info", BootInfo, shared_size),
        off!("vmrpc_boot_info", BootInfo, heap_end),
        off!("vmrpc_boot_info", BootInfo, tsc_khz),
        size!("vmrpc_crash_frame", CrashFrame),
        off!("vmrpc_crash_frame", CrashFrame, r15),
        off!("vmrpc_crash_frame", CrashFrame, rax),
        off!("vmrpc_crash_frame", CrashFrame, cr2),
        off!("vmrpc_crash_frame", CrashFrame, vector),
        off!("vmrpc_crash_frame", CrashFrame, error_code),
        off!("vmrpc_crash_frame", CrashFrame, rip),
        off!("vmrpc_crash_frame", CrashFrame, ss),
        constant!(VMRPC_MMIO_CRASH, VMRPC_MMIO_CRASH),
        size!("vmrpc_ring", RingHdr),
        off!("vmrpc_ring", RingHdr, head),
        off!("vmrpc_ring", RingHdr, producer_waiting),
        off!("vmrpc_ring", RingHdr, producer_vcpu),
        off!("vmrpc_ring", RingHdr, closed),
        off!("vmrpc_ring", RingHdr, tail),
        off!("vmrpc_ring", RingHdr, consumer_waiting),
        off!("vmrpc_ring", RingHdr, consumer_vcpu),
        (
            "ring_off::HEAD",
            "offsetof(struct vmrpc_ring, head)",
            ring_off::HEAD,
        ),
        (
            "ring_off::TAIL",
            "offsetof(struct vmrpc_ring, tail)",
            ring_off::TAIL,
        ),
        (
            "ring_off::PRODUCER_WAITING",
            "offsetof(struct vmrpc_ring, producer_waiting)",
            ring_off::PRODUCER_WAITING,
        ),
        (
            "ring_off::PRODUCER_VCPU",
            "offsetof(struct vmrpc_ring, producer_vcpu)",
            ring_off::PRODUCER_VCPU,
        ),
        (
            "ring_off::CLOSED",
            "offsetof(struct vmrpc_ring, closed)",
            ring_off::CLOSED,
        ),
        (
            "ring_off::CONSUMER_WAITING",
            "offsetof(struct vmrpc_ring, consumer_waiting)",
            ring_off::CONSUMER_WAITING,
        ),
        (
            "ring_off::CONSUMER_VCPU",
            "offsetof(struct vmrpc_ring, consumer_vcpu)",
            ring_off::CONSUMER_VCPU,
        ),
        size!("vmrpc_shared_hdr", SharedHdr),
        off!("vmrpc_shared_hdr", SharedHdr, vcpu_count),
        off!("vmrpc_shared_hdr", SharedHdr, ring_entries),
        off!("vmrpc_shared_hdr", SharedHdr, max_payload),
        off!("vmrpc_shared_hdr", SharedHdr, chan_offset),
        off!("vmrpc_shared_hdr", SharedHdr, chan_stride),
        off!("vmrpc_shared_hdr", SharedHdr, evq_offset),
        off!("vmrpc_shared_hdr", SharedHdr, evq_size),
        off!("vmrpc_shared_hdr", SharedHdr, host_sleeping),
        (
            "SHARED_HOST_SLEEPING_OFFSET",
            "offsetof(struct vmrpc_shared_hdr, host_sleeping)",
            SHARED_HOST_SLEEPING_OFFSET,
        ),
        size!("vmrpc_req_desc", ReqDesc),
        off!("vmrpc_req_desc", ReqDesc, tag),
        off!("vmrpc_req_desc", ReqDesc, handle),
        off!("vmrpc_req_desc", ReqDesc, function),
        off!("vmrpc_req_desc", ReqDesc, req_off),
        off!("vmrpc_req_desc", ReqDesc, req_len),
        off!("vmrpc_req_desc", ReqDesc, resp_off),
        off!("vmrpc_req_desc", ReqDesc, resp_cap),
        size!("vmrpc_resp_desc", RespDesc),
        off!("vmrpc_resp_desc", RespDesc, tag),
        off!("vmrpc_resp_desc", RespDesc, status),
        size!("vmrpc_evq_info", EvqInfo),
        off!("vmrpc_evq_info", EvqInfo, entries),
        off!("vmrpc_evq_info", EvqInfo, max_event_size),
        off!("vmrpc_evq_info", EvqInfo, slot_size),
        off!("vmrpc_evq_info", EvqInfo, g2h_offset),
        off!("vmrpc_evq_info", EvqInfo, h2g_offset),
        off!("vmrpc_evq_info", EvqInfo, queue_id),
        size!("vmrpc_ev_slot", EvSlot),
        off!("vmrpc_ev_slot", EvSlot, len),
        constant!(VMRPC_EVQ_MAX_ENTRIES, VMRPC_EVQ_MAX_ENTRIES),
        constant!(VMRPC_EVQ_MAX_EVENT_SIZE, VMRPC_EVQ_MAX_EVENT_SIZE),
        (
            "VMRPC_EVQ_SLOT_SIZE(1)",
            "VMRPC_EVQ_SLOT_SIZE(1)",
            vmrpc_evq_slot_size(1) as u64,
        ),
        (
            "VMRPC_EVQ_SLOT_SIZE(64)",
            "VMRPC_EVQ_SLOT_SIZE(64)",
            vmrpc_evq_slot_size(64) as u64,
        ),
        (
            "VMRPC_EVQ_SLOT_SIZE(65528)",
            "VMRPC_EVQ_SLOT_SIZE(65528)",
            vmrpc_evq_slot_size(65528) as u64,
        ),
        constant!(VMRPC_ABI_VERSION, VMRPC_ABI_VERSION),
        constant!(VMRPC_BOOT_MAGIC, VMRPC_BOOT_MAGIC),
        constant!(VMRPC_IMAGE_BASE, VMRPC_IMAGE_BASE),
        constant!(VMRPC_MAX_VCPUS, VMRPC_MAX_VCPUS),
        constant!(VMRPC_KERNEL_CS, VMRPC_KERNEL_CS),
        constant!(VMRPC_MMIO_BASE, VMRPC_MMIO_BASE),
        constant!(VMRPC_MMIO_SIZE, VMRPC_MMIO_SIZE),
        constant!(VMRPC_MMIO_CONSOLE, VMRPC_MMIO_CONSOLE),
        constant!(VMRPC_MMIO_DEBUG_EXIT, VMRPC_MMIO_DEBUG_EXIT),
        constant!(VMRPC_MMIO_DOORBELL, VMRPC_MMIO_DOORBELL),
        constant!(VMRPC_MMIO_CONSOLE_WRITE, VMRPC_MMIO_CONSOLE_WRITE),
        (
            "VMRPC_CONSOLE_WRITE(0x123456789abc, 77)",
            "VMRPC_CONSOLE_WRITE(0x123456789abcull, 77)",
            vmrpc_console_write(0x1234_5678_9abc, 77),
        ),
        constant!(VMRPC_MMIO_EVQ_DOORBELL, VMRPC_MMIO_EVQ_DOORBELL),
        constant!(VMRPC_MMIO_YIELD, VMRPC_MMIO_YIELD),
        constant!(VMRPC_YIELD_MAX_US, VMRPC_YIELD_MAX_US),
        constant!(VMRPC_IRQ_VECTOR, VMRPC_IRQ_VECTOR),
        constant!(VMRPC_SHARED_MAGIC, VMRPC_SHARED_MAGIC),
        constant!(VMRPC_MAX_PAYLOAD, VMRPC_MAX_PAYLOAD),
        constant!(VMRPC_RPC_RING_ENTRIES, VMRPC_RPC_RING_ENTRIES),
        constant!(VMRPC_CHAN_REQ_RING_OFFSET, VMRPC_CHAN_REQ_RING_OFFSET),
        constant!(VMRPC_CHAN_RESP_RING_OFFSET, VMRPC_CHAN_RESP_RING_OFFSET),
        constant!(VMRPC_CHAN_DATA_OFFSET, VMRPC_CHAN_DATA_OFFSET),
        constant!(VMRPC_CHAN_DATA_SIZE, VMRPC_CHAN_DATA_SIZE),
        constant!(VMRPC_SYS_HANDLE, VMRPC_SYS_HANDLE),
        constant!(VMRPC_SYS_BIND, VMRPC_SYS_BIND),
        constant!(VMRPC_SYS_UNBIND, VMRPC_SYS_UNBIND),
        constant!(VMRPC_SYS_OPEN_EVQ, VMRPC_SYS_OPEN_EVQ),
        (
            "VMRPC_VERSION(3, 7)",
            "VMRPC_VERSION(3, 7)",
            vmrpc_version(3, 7) as u64,
        ),
        constant!(VMRPC_ENOMODULE, VMRPC_ENOMODULE),
        constant!(VMRPC_ENOFUNC, VMRPC_ENOFUNC),
        constant!(VMRPC_EHOSTFN, VMRPC_EHOSTFN),
        constant!(VMRPC_ETOOBIG, VMRPC_ETOOBIG),
        constant!(VMRPC_EGONE, VMRPC_EGONE),
        constant!(VMRPC_EBADHANDLE, VMRPC_EBADHANDLE),
        constant!(VMRPC_EINVAL, VMRPC_EINVAL),
        constant!(VMRPC_ERANGE, VMRPC_ERANGE),
        constant!(VMRPC_ESHUTDOWN, VMRPC_ESHUTDOWN),
        constant!(VMRPC_ENODEV, VMRPC_ENODEV),
        constant!(VMRPC_EFULL, VMRPC_EFULL),
        constant!(VMRPC_EEMPTY, VMRPC_EEMPTY),
        constant!(VMRPC_ENOQUEUE, VMRPC_ENOQUEUE),
        constant!(VMRPC_ELIMIT, VMRPC_ELIMIT),
        constant!(VMRPC_ETIMEDOUT, VMRPC_ETIMEDOUT),
        // socket_proto.h: what the native socket data plane reads
        (
            "sizeof vmrpc_sock_wait_req",
            "sizeof(struct vmrpc_sock_wait_req)",
            size_of::<socket_proto::WaitReq>() as u64,
        ),
        (
            "vmrpc_sock_wait_req.handle",
            "offsetof(struct vmrpc_sock_wait_req, handle)",
            offset_of!(socket_proto::WaitReq, handle) as u64,
        ),
        (
            "vmrpc_sock_wait_req.flags",
            "offsetof(struct vmrpc_sock_wait_req, flags)",
            offset_of!(socket_proto::WaitReq, flags) as u64,
        ),
        (
            "vmrpc_sock_wait_req.timeout_ms",
            "offsetof(struct vmrpc_sock_wait_req, timeout_ms)",
            offset_of!(socket_proto::WaitReq, timeout_ms) as u64,
        ),
        (
            "vmrpc_sock_wait_req.arg",
            "offsetof(struct vmrpc_sock_wait_req, arg)",
            offset_of!(socket_proto::WaitReq, arg) as u64,
        ),
        (
            "sizeof vmrpc_sock_resp",
            "sizeof(struct vmrpc_sock_resp)",
            size_of::<socket_proto::Resp>() as u64,
        ),
        (
            "VMRPC_SOCK_FN_SEND",
            "VMRPC_SOCK_FN_SEND",
            socket_proto::VMRPC_SOCK_FN_SEND as u64,
        ),
        (
            "VMRPC_SOCK_FN_RECV",
            "VMRPC_SOCK_FN_RECV",
            socket_proto::VMRPC_SOCK_FN_RECV as u64,
        ),
        (
            "VMRPC_SOCK_MAX_RECV",
            "VMRPC_SOCK_MAX_RECV",
            socket_proto::VMRPC_SOCK_MAX_RECV as u64,
        ),
    ]
}

#[test]
fn rust_mirror_matches_c_header() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let include = root.join("guest/include");
    let dir = std::env::temp_dir().join(format!("vmrpc-abi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exp = expectations();

    let mut src = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"vmrpc/abi.h\"\n\
         #include \"vmrpc/socket_proto.h\"\nint main(void) {\n",
    );
    for (name, expr, _) in &exp {
        src += &format!("  printf(\"%s=%llu\\n\", \"{name}\", (unsigned long long)({expr}));\n");
    }
    src += "  return 0;\n}\n";
    let c_file = dir.join("abi_probe.c");
    let exe = dir.join("abi_probe");
    std::fs::write(&c_file, src).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(&include)
        .arg(&c_file)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("a C compiler (cc) is needed to check the ABI header");
    assert!(status.success(), "abi.h does not compile");
    let out = Command::new(&exe).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let c_values: HashMap<&str, u64> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k, v.parse().unwrap()))
        .collect();

    let mut mismatches = Vec::new();
    for (name, _, rust) in &exp {
        let c = c_values[name];
        if c != *rust {
            mismatches.push(format!("{name}: C {c:#x}, Rust {rust:#x}"));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        mismatches.is_empty(),
        "ABI mismatch:\n{}",
        mismatches.join("\n")
    );
}
