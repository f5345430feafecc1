//! The boot-info block and the guest's argv, written into the boot-info page.

use guest_kmod_bindings::{BootInfo, VMRPC_ABI_VERSION, VMRPC_BOOT_MAGIC};
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::layout::{BOOT_INFO_END, BOOT_INFO_START};

const INFO_SIZE: u64 = std::mem::size_of::<BootInfo>() as u64;

/// Bytes of the boot-info page available for argv pointers and strings.
pub fn args_room() -> usize {
    (BOOT_INFO_END - BOOT_INFO_START - INFO_SIZE) as usize
}

/// Bytes `argv` needs: a NULL-terminated pointer array, then NUL-terminated strings.
pub fn args_size(argv: &[String]) -> usize {
    8 * (argv.len() + 1) + argv.iter().map(|a| a.len() + 1).sum::<usize>()
}

/// What the VMM tells the guest; the rest of `BootInfo` is derived here.
pub struct BootParams<'a> {
    pub mem_size: u64,
    pub vcpu_count: u32,
    pub argv: &'a [String],
    pub shared_base: u64,
    pub shared_size: u64,
    pub tsc_khz: u64,
    /// The loopback arena's (GPA, size), when the VM maps one.
    pub arena: Option<(u64, u64)>,
}

/// Writes boot info, argv pointers and strings; returns the boot-info GPA.
pub fn write(mem: &GuestMemoryMmap, p: &BootParams) -> Result<u64, GuestMemoryError> {
    let argv_start = BOOT_INFO_START + INFO_SIZE;
    let mut string_at = argv_start + 8 * (p.argv.len() as u64 + 1);
    for (i, arg) in p.argv.iter().enumerate() {
        mem.write_obj(string_at, GuestAddress(argv_start + 8 * i as u64))?;
        mem.write_slice(arg.as_bytes(), GuestAddress(string_at))?;
        mem.write_obj(0u8, GuestAddress(string_at + arg.len() as u64))?;
        string_at += arg.len() as u64 + 1;
    }
    mem.write_obj(0u64, GuestAddress(argv_start + 8 * p.argv.len() as u64))?;
    let info = BootInfo {
        magic: VMRPC_BOOT_MAGIC,
        abi_version: VMRPC_ABI_VERSION,
        mem_size: p.mem_size,
        vcpu_count: p.vcpu_count,
        argc: p.argv.len() as u32,
        argv: argv_start,
        shared_base: p.shared_base,
        shared_size: p.shared_size,
        heap_end: p.shared_base,
        tsc_khz: p.tsc_khz,
        arena_base: p.arena.map_or(0, |a| a.0),
        arena_size: p.arena.map_or(0, |a| a.1),
        reserved: [0; 6],
    };
    mem.write_obj(info, GuestAddress(BOOT_INFO_START))?;
    Ok(BOOT_INFO_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_argv_the_guest_can_walk() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let argv = vec!["hello".to_string(), "a".into(), "b c".into()];
        let p = BootParams {
            mem_size: 1 << 20,
            vcpu_count: 2,
            argv: &argv,
            shared_base: 0x80000,
            shared_size: 0x1000,
            tsc_khz: 1000,
            arena: None,
        };
        let at = write(&mem, &p).unwrap();
        let info: BootInfo = mem.read_obj(GuestAddress(at)).unwrap();
        assert_eq!(info.magic, VMRPC_BOOT_MAGIC);
        assert_eq!(info.argc, 3);
        for (i, want) in argv.iter().enumerate() {
            let ptr: u64 = mem
                .read_obj(GuestAddress(info.argv + 8 * i as u64))
                .unwrap();
            let mut buf = vec![0u8; want.len() + 1];
            mem.read_slice(&mut buf, GuestAddress(ptr)).unwrap();
            assert_eq!(&buf[..want.len()], want.as_bytes());
            assert_eq!(buf[want.len()], 0);
        }
        let end: u64 = mem.read_obj(GuestAddress(info.argv + 24)).unwrap();
        assert_eq!(end, 0);
        assert!(args_size(&argv) <= args_room());
    }
}
