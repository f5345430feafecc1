//! The Linux personality's thread requests (guest/linux/thread.c,
//! guest/linux/vcpu_abi.h): start a guest thread, end the calling one.
//!
//! Guest threads are scheduled by the VMM over the VM's vCPUs (`vm::pool`,
//! docs/linux.md "Threads"). Both requests need the vCPU that made them (a
//! new thread starts from a copy of its creator's segment and FPU state; an
//! ending thread gives its vCPU up), so this device only copies and checks
//! the request and hands it to the vCPU loop as `DeviceAction::Thread`.
//!
//! - offset `SPAWN`: the value is the guest address of a `struct
//!   lx_thread_spawn` (rip, rsp, rdi and GS base of the new thread; the host
//!   writes `result`: 0, or -EAGAIN when no thread can start).
//! - offset `EXIT`: the calling thread ends; the value is the address of its
//!   slot's state word, which the host sets to 0 once the thread is off its
//!   vCPU for good (the slot, its stacks and its GS page may then be reused).
//! - offset `SNAPSHOT`: the calling thread reached a snapshot point
//!   (`vm::snapshot`); the value is the address of its `struct
//!   lx_snapshot_point` (40 bytes, 8-aligned: a result and a fresh seed the
//!   host writes in a VM restored from the snapshot).
//! - offset `YIELD` (sched_yield): a write that "may block", so the pool's
//!   carrier gives its vCPU back before it and queues for one again after it:
//!   a thread waiting for a vCPU gets this one first. Nothing else happens.

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::bus::{BusDevice, DeviceAction, ThreadRequest, ThreadStart};

/// The register block (`LX_MMIO_THREAD`, guest/linux/vcpu_abi.h).
pub const MMIO_THREAD: u64 = guest_kmod_bindings::VMRPC_MMIO_BASE + 0x10_1000;
/// Bytes of the block: four 64-bit registers.
pub const MMIO_THREAD_LEN: u64 = 32;
const SPAWN: u64 = 0;
const EXIT: u64 = 8;
const SNAPSHOT: u64 = 16;
const YIELD: u64 = 24;
/// Bytes of `struct lx_snapshot_point` (guest/linux/vcpu_abi.h).
pub const SNAPSHOT_POINT_LEN: u64 = 40;
/// Bytes of a thread's GS block the host may write (its vCPU index at 0).
pub const GS_BLOCK: u64 = 64;

/// `struct lx_thread_spawn` in guest/linux/vcpu_abi.h.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct SpawnReq {
    rip: u64,
    rsp: u64,
    rdi: u64,
    gs_base: u64,
    result: i64,
}
const _: () = assert!(std::mem::size_of::<SpawnReq>() == 40);
// SAFETY: plain integers, no padding (the size above is the sum of the fields).
unsafe impl ByteValued for SpawnReq {}

/// Why a request is dropped (the guest's result field stays as it set it).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ThreadRequestError {
    #[error("spawn request outside guest memory")]
    Unreadable,
    #[error("GS block {0:#x} outside guest memory")]
    BadGsBase(u64),
    #[error("no thread register at offset {0:#x}")]
    NoSuchRegister(u64),
}

/// The device; it keeps no state of its own.
pub struct GuestThreadDevice {
    memory: GuestMemoryMmap,
}

impl GuestThreadDevice {
    pub fn new(memory: GuestMemoryMmap) -> Self {
        GuestThreadDevice { memory }
    }

    fn in_ram(&self, gpa: u64, len: u64) -> bool {
        usize::try_from(len).is_ok_and(|n| self.memory.check_range(GuestAddress(gpa), n))
    }

    /// Copies and checks the request written at `offset` with `value`.
    pub fn request(&self, offset: u64, value: u64) -> Result<ThreadRequest, ThreadRequestError> {
        match offset {
            SPAWN => {
                let req: SpawnReq = self
                    .memory
                    .read_obj(GuestAddress(value))
                    .map_err(|_| ThreadRequestError::Unreadable)?;
                if !self.in_ram(req.gs_base, GS_BLOCK) || req.gs_base & 7 != 0 {
                    return Err(ThreadRequestError::BadGsBase(req.gs_base));
                }
                Ok(ThreadRequest::Spawn(ThreadStart {
                    rip: req.rip,
                    rsp: req.rsp,
                    rdi: req.rdi,
                    gs_base: req.gs_base,
                    result_at: value + std::mem::offset_of!(SpawnReq, result) as u64,
                }))
            }
            EXIT => Ok(ThreadRequest::Exit {
                state_word: (value & 3 == 0 && self.in_ram(value, 4)).then_some(value),
            }),
            SNAPSHOT if value & 7 == 0 && self.in_ram(value, SNAPSHOT_POINT_LEN) => {
                Ok(ThreadRequest::Snapshot { point: value })
            }
            SNAPSHOT => Err(ThreadRequestError::Unreadable),
            other => Err(ThreadRequestError::NoSuchRegister(other)),
        }
    }
}

impl BusDevice for GuestThreadDevice {
    fn write(&self, offset: u64, data: &[u8]) -> DeviceAction {
        if offset == YIELD {
            return DeviceAction::Continue; // the vCPU was given back before (may_block)
        }
        let mut raw = [0u8; 8];
        let n = data.len().min(8);
        raw[..n].copy_from_slice(&data[..n]);
        match self.request(offset, u64::from_le_bytes(raw)) {
            Ok(r) => DeviceAction::Thread(r),
            Err(e) => {
                log::debug!("guest thread request dropped: {e}");
                DeviceAction::Continue
            }
        }
    }

    fn may_block(&self, offset: u64) -> bool {
        offset == YIELD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> GuestThreadDevice {
        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        GuestThreadDevice::new(memory)
    }

    #[test]
    fn the_guest_header_names_the_same_register_block() {
        let header = include_str!("../../../../guest/linux/vcpu_abi.h");
        let offset = MMIO_THREAD - guest_kmod_bindings::VMRPC_MMIO_BASE;
        assert!(header.contains(&format!("(0xd0000000ull + {offset:#x}u)")));
        assert!(header.contains("#define LX_THREAD_SPAWN 0u"));
        assert!(header.contains("#define LX_THREAD_EXIT 8u"));
        assert!(header.contains("#define LX_THREAD_SNAPSHOT 16u"));
        assert!(header.contains("#define LX_THREAD_YIELD 24u"));
    }

    #[test]
    fn a_spawn_request_is_copied_and_its_gs_block_checked() {
        let d = device();
        let req = SpawnReq {
            rip: 0x1234,
            rsp: 0x8000,
            rdi: 7,
            gs_base: 0x3000,
            result: -11,
        };
        d.memory.write_obj(req, GuestAddress(0x100)).unwrap();
        let want = ThreadStart {
            rip: 0x1234,
            rsp: 0x8000,
            rdi: 7,
            gs_base: 0x3000,
            result_at: 0x120,
        };
        assert_eq!(
            d.write(SPAWN, &0x100u64.to_le_bytes()),
            DeviceAction::Thread(ThreadRequest::Spawn(want))
        );
        d.memory
            .write_obj(
                SpawnReq {
                    gs_base: 0xfff0,
                    ..req
                },
                GuestAddress(0x100),
            )
            .unwrap();
        assert_eq!(
            d.request(SPAWN, 0x100),
            Err(ThreadRequestError::BadGsBase(0xfff0))
        );
        assert_eq!(
            d.request(SPAWN, 0xfff0),
            Err(ThreadRequestError::Unreadable)
        );
        assert_eq!(
            d.write(SPAWN, &u64::MAX.to_le_bytes()),
            DeviceAction::Continue
        );
    }

    #[test]
    fn an_exit_names_its_state_word_only_if_aligned_and_in_memory() {
        let d = device();
        assert_eq!(
            d.request(EXIT, 0x200),
            Ok(ThreadRequest::Exit {
                state_word: Some(0x200)
            })
        );
        for bad in [0x201, 0x10000, u64::MAX - 3] {
            assert_eq!(
                d.request(EXIT, bad),
                Ok(ThreadRequest::Exit { state_word: None })
            );
        }
        assert_eq!(d.request(4, 0), Err(ThreadRequestError::NoSuchRegister(4)));
    }

    #[test]
    fn a_snapshot_point_must_be_aligned_and_in_memory() {
        let d = device();
        assert_eq!(
            d.request(SNAPSHOT, 0x200),
            Ok(ThreadRequest::Snapshot { point: 0x200 })
        );
        for bad in [0x204, 0x10000 - 32, u64::MAX - 7] {
            assert_eq!(
                d.request(SNAPSHOT, bad),
                Err(ThreadRequestError::Unreadable)
            );
        }
    }
}
