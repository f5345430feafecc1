//! The debug-exit port: the guest writes its exit code, the VM ends with it.

use crate::bus::{BusDevice, DeviceAction};

pub struct DebugExit;

impl BusDevice for DebugExit {
    fn write(&self, _offset: u64, data: &[u8]) -> DeviceAction {
        let mut code = [0u8; 4];
        let n = data.len().min(4);
        code[..n].copy_from_slice(&data[..n]);
        DeviceAction::GuestExit(i32::from_le_bytes(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_from_any_width_write() {
        assert_eq!(
            DebugExit.write(0, &7u32.to_le_bytes()),
            DeviceAction::GuestExit(7)
        );
        assert_eq!(DebugExit.write(0, &[3]), DeviceAction::GuestExit(3));
        assert_eq!(
            DebugExit.write(0, &(-1i32).to_le_bytes()),
            DeviceAction::GuestExit(-1)
        );
    }
}
