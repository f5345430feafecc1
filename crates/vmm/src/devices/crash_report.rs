//! The crash-report register: the guest runtime's exception handlers write the
//! guest address of a `struct vmrpc_crash_frame` here (a 64-bit write), and the
//! VM ends as crashed with what the frame says.
//!
//! The frame is guest data: it is copied once and only reported (numbers in an
//! error message), never acted upon. A frame that cannot be read (a bad address,
//! a short write) still ends the VM, as a crash without details.

use guest_kmod_bindings::CrashFrame;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::bus::{BusDevice, DeviceAction};

pub struct CrashReport {
    memory: GuestMemoryMmap,
}

impl CrashReport {
    pub fn new(memory: GuestMemoryMmap) -> Self {
        CrashReport { memory }
    }
}

impl BusDevice for CrashReport {
    fn write(&self, _offset: u64, data: &[u8]) -> DeviceAction {
        let frame = <[u8; 8]>::try_from(data).ok().and_then(|gpa| {
            self.memory
                .read_obj::<CrashFrame>(GuestAddress(u64::from_le_bytes(gpa)))
                .ok()
        });
        DeviceAction::GuestCrash(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> CrashReport {
        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        CrashReport::new(memory)
    }

    #[test]
    fn reads_the_frame_at_the_written_address() {
        let dev = device();
        let frame = CrashFrame {
            vector: 14,
            error_code: 5,
            cr2: 0x10,
            rip: 0x10_0123,
            ..Default::default()
        };
        dev.memory.write_obj(frame, GuestAddress(0x8000)).unwrap();
        assert_eq!(
            dev.write(0, &0x8000u64.to_le_bytes()),
            DeviceAction::GuestCrash(Some(frame))
        );
    }

    #[test]
    fn bad_addresses_and_short_writes_still_crash_without_a_frame() {
        let dev = device();
        // The frame would end past RAM; far outside; a 4-byte write.
        for data in [
            0xfff0u64.to_le_bytes().to_vec(),
            u64::MAX.to_le_bytes().to_vec(),
            vec![0, 0x80, 0, 0],
        ] {
            assert_eq!(dev.write(0, &data), DeviceAction::GuestCrash(None));
        }
    }
}
