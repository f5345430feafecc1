//! zpoline-style rewriting of `syscall` sites at load time (Yasukata et al.,
//! USENIX ATC '23), written here from the paper's description.
//!
//! `syscall` (`0f 05`) becomes `call *%rax` (`ff d0`), the same length. `rax`
//! holds the system-call number, so the call lands in a nop sled at virtual
//! page 0 that slides into a jump to the personality's entry: no PVM
//! transition, a few nanoseconds instead of microseconds. Sites are found by
//! decoding the executable segments with iced-x86 (a linear sweep of exact
//! decodes from each segment's start; compilers keep x86-64 jump tables out of
//! `.text`). A site the sweep misses still works: it traps to `MSR_LSTAR`.

use iced_x86::{Code, Decoder, DecoderOptions};

/// `call *%rax`
pub const CALL_RAX: [u8; 2] = [0xff, 0xd0];
/// `syscall`
pub const SYSCALL: [u8; 2] = [0x0f, 0x05];
/// Bytes of nops at address 0: above every x86-64 system-call number (462 in
/// Linux 6.x); the jump to the entry follows.
pub const SLED_LEN: usize = 0x200;
const _: () = assert!(SLED_LEN > 462);

/// The offsets in `code` (mapped at `vaddr`) of every `syscall` instruction.
pub fn syscall_sites(code: &[u8], vaddr: u64) -> Vec<usize> {
    let mut decoder = Decoder::with_ip(64, code, vaddr, DecoderOptions::NONE);
    let mut sites = Vec::new();
    while decoder.can_decode() {
        let at = decoder.position();
        let ins = decoder.decode();
        if ins.code() == Code::Syscall {
            sites.push(at);
        }
    }
    sites
}

/// Rewrites every `syscall` in `code` (mapped at `vaddr`) to `call *%rax`;
/// returns how many. Programs are decoded once per process: their loaded
/// images are kept (`image_cache`), as are shared libraries' sites (`code`).
pub fn rewrite(code: &mut [u8], vaddr: u64) -> usize {
    let sites = syscall_sites(code, vaddr);
    for &at in &sites {
        code[at..at + 2].copy_from_slice(&CALL_RAX);
    }
    sites.len()
}

/// The page at virtual address 0: the sled, then `jmp *%gs:slot`.
pub fn sled_page(slot: u8) -> Vec<u8> {
    let mut page = vec![0x90u8; SLED_LEN];
    page.extend_from_slice(&[0x65, 0xff, 0x24, 0x25, slot, 0, 0, 0]);
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_real_syscalls_only() {
        // mov $0x050f, %eax (an immediate that looks like syscall); syscall;
        // mov $60, %eax; syscall; ret
        let mut code = vec![
            0xb8, 0x0f, 0x05, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0x3c, 0x00, 0x00, 0x00, 0x0f, 0x05,
            0xc3,
        ];
        assert_eq!(syscall_sites(&code, 0x401000), vec![5, 12]);
        assert_eq!(rewrite(&mut code, 0x401000), 2);
        assert_eq!(&code[1..3], &SYSCALL, "the immediate is left alone");
        assert_eq!(&code[5..7], &CALL_RAX);
        assert_eq!(&code[12..14], &CALL_RAX);
    }

    #[test]
    fn sled_covers_every_syscall_number() {
        let page = sled_page(0x28);
        assert!(page[..SLED_LEN].iter().all(|&b| b == 0x90));
        assert_eq!(&page[SLED_LEN..SLED_LEN + 4], &[0x65, 0xff, 0x24, 0x25]);
    }
}
