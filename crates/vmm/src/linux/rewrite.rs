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

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

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

/// Which file (path, size, modification time) and segment (file offset) a list
/// of sites belongs to: decoding a big program takes tens of milliseconds, and
/// the same program is often started many times in one process.
pub type SiteKey = (PathBuf, u64, SystemTime, u64);

/// Decoded sites by program segment, for the life of the process (a few KiB each).
static SITE_CACHE: Mutex<Option<HashMap<SiteKey, Vec<usize>>>> = Mutex::new(None);

/// Rewrites every `syscall` in `code` to `call *%rax`; returns how many. With a
/// `key`, the sites are decoded once per process for that file and segment.
pub fn rewrite(code: &mut [u8], vaddr: u64, key: Option<SiteKey>) -> usize {
    let sites = sites_of(code, vaddr, key);
    for &at in &sites {
        debug_assert_eq!(code[at..at + 2], SYSCALL);
        code[at..at + 2].copy_from_slice(&CALL_RAX);
    }
    sites.len()
}

/// The offsets of every `syscall` in `code` (mapped at `vaddr`), each checked
/// to still hold `syscall`; with a `key`, decoded once per process.
pub fn sites_of(code: &[u8], vaddr: u64, key: Option<SiteKey>) -> Vec<usize> {
    let cached = key.as_ref().and_then(|k| {
        let cache = SITE_CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        cache.as_ref().and_then(|c| c.get(k).cloned())
    });
    // A cached list is only trusted where the bytes still say `syscall`.
    let sites = match cached {
        Some(sites)
            if sites
                .iter()
                .all(|&at| code.get(at..at + 2) == Some(&SYSCALL[..])) =>
        {
            sites
        }
        _ => {
            let sites = syscall_sites(code, vaddr);
            if let Some(k) = key {
                let mut cache = SITE_CACHE.lock().unwrap_or_else(PoisonError::into_inner);
                cache
                    .get_or_insert_with(HashMap::new)
                    .insert(k, sites.clone());
            }
            sites
        }
    };
    sites
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
        let key = Some((PathBuf::from("/x"), 15, SystemTime::UNIX_EPOCH, 0));
        let original = code.clone();
        assert_eq!(rewrite(&mut code, 0x401000, key.clone()), 2);
        let mut again = original.clone();
        assert_eq!(
            rewrite(&mut again, 0x401000, key.clone()),
            2,
            "from the cache"
        );
        assert_eq!(again, code);
        // Different bytes under the same key: the cache is not trusted.
        let mut other = original.clone();
        other[5..7].copy_from_slice(&[0x90, 0x90]);
        assert_eq!(rewrite(&mut other, 0x401000, key), 1);
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
