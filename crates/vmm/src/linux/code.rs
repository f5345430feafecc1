//! The `linux_code` host module: rewrites the `syscall` sites of code a Linux
//! program maps executable at run time (ld.so loading shared libraries), with
//! the same iced-x86 sweep as the program's own segments at load time
//! (`rewrite.rs`). The personality calls it after copying a file mapping with
//! PROT_EXEC into guest memory and before it drops PROT_WRITE. A site the sweep
//! misses still works through `MSR_LSTAR`.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use vm_memory::{Bytes, GuestAddress};

use super::rewrite;
use super::setup::PROGRAM_MIN;
use crate::rpc::channel::Completion;
use crate::rpc::module::HostModule;

/// The module name the personality binds (`LX_CODE_MODULE`).
pub const CODE_NAME: &str = "linux_code";
/// `struct lx_range`: guest address, length.
const REQ_SIZE: usize = 16;
/// Bytes one call may rewrite: more than any shared library's text.
pub const MAX_CODE: u64 = 64 << 20;
/// Code mappings whose sites are remembered (libc's text takes ~15 ms to decode;
/// the same libraries are mapped by every program started in this process).
const CACHE_ENTRIES: usize = 256;

/// Decoded sites by (length, hash of the bytes), for the life of the process.
/// A guest that forged a collision would only get its own bytes rewritten
/// wrongly; a listed site is still only rewritten where it says `syscall`.
static SITES_BY_CONTENT: Mutex<Option<SiteCache>> = Mutex::new(None);
/// (length, hash of the bytes) -> offsets of `syscall`.
type SiteCache = HashMap<(usize, u64), Vec<usize>>;

/// The `syscall` sites of `code`, decoded once per distinct content.
fn sites_of(code: &[u8], gva: u64) -> Vec<usize> {
    let mut h = DefaultHasher::new();
    h.write(code);
    let key = (code.len(), h.finish());
    let cached = SITES_BY_CONTENT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|c| c.get(&key).cloned());
    if let Some(sites) = cached {
        return sites;
    }
    let sites = rewrite::syscall_sites(code, gva);
    let mut cache = SITES_BY_CONTENT
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let cache = cache.get_or_insert_with(HashMap::new);
    if cache.len() >= CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(key, sites.clone());
    sites
}
const FN_REWRITE: u32 = 0;

#[derive(Default)]
pub struct CodeRewriter {
    /// Calls served and `syscall` sites rewritten by them.
    pub calls: AtomicU64,
    pub sites: AtomicU64,
}

impl CodeRewriter {
    /// Rewrites the sites in the guest range the request names: their count, or -errno.
    fn rewrite(&self, request: &[u8], done: &Completion) -> i64 {
        if request.len() != REQ_SIZE {
            return -i64::from(libc::EINVAL);
        }
        let word = |i: usize| u64::from_le_bytes(request[i..i + 8].try_into().unwrap());
        let (gva, len) = (word(0), word(8));
        // The personality and the fixed pages below the program are never rewritten.
        if gva < PROGRAM_MIN || len > MAX_CODE {
            return -i64::from(libc::EINVAL);
        }
        // Identity-mapped guest: the address is also the guest-physical one. A
        // copy, so a guest racing on the bytes cannot make us misread a site.
        let mut code = vec![0u8; len as usize];
        if done.mem().read_slice(&mut code, GuestAddress(gva)).is_err() {
            return -i64::from(libc::EFAULT);
        }
        let sites = sites_of(&code, gva);
        for &at in &sites {
            if code.get(at..at + 2) != Some(&rewrite::SYSCALL[..]) {
                continue;
            }
            if done
                .mem()
                .write_slice(&rewrite::CALL_RAX, GuestAddress(gva + at as u64))
                .is_err()
            {
                return -i64::from(libc::EFAULT);
            }
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let n = sites
            .iter()
            .filter(|&&at| code.get(at..at + 2) == Some(&rewrite::SYSCALL[..]))
            .count();
        self.sites.fetch_add(n as u64, Ordering::Relaxed);
        n as i64
    }
}

impl HostModule for CodeRewriter {
    fn has_function(&self, function: u32) -> bool {
        function == FN_REWRITE
    }

    fn call(&self, _function: u32, request: &[u8], done: Completion) {
        let result = self.rewrite(request, &done);
        done.ok(&result.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_are_decoded_once_per_content() {
        // mov $0x050f, %eax; syscall; ret — and the same bytes once more.
        let code = [0xb8, 0x0f, 0x05, 0x00, 0x00, 0x0f, 0x05, 0xc3];
        assert_eq!(sites_of(&code, 0x40_0000), vec![5]);
        assert_eq!(sites_of(&code, 0x80_0000), vec![5], "from the cache");
        let mut other = code;
        other[5] = 0x90;
        assert!(
            sites_of(&other, 0x40_0000).is_empty(),
            "other bytes, other entry"
        );
    }
}
