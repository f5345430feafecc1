//! The `linux_code` host module: rewrites the `syscall` sites of code a Linux
//! program maps executable at run time (ld.so loading shared libraries), with
//! the same iced-x86 sweep as the program's own segments at load time
//! (`rewrite.rs`). The personality calls it after copying a file mapping with
//! PROT_EXEC into guest memory and before it drops PROT_WRITE. A site the sweep
//! misses still works through `MSR_LSTAR`.

use std::sync::atomic::{AtomicU64, Ordering};

use vm_memory::{Bytes, GuestAddress};

use super::rewrite;
use super::setup::PROGRAM_MIN;
use crate::rpc::channel::Completion;
use crate::rpc::module::HostModule;

/// The module name the personality binds (`LX_CODE_MODULE`).
pub const CODE_NAME: &str = "linux_code";
/// `struct lx_code_req`: guest address, length.
const REQ_SIZE: usize = 16;
/// Bytes one call may rewrite: more than any shared library's text.
pub const MAX_CODE: u64 = 256 << 20;
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
        let sites = rewrite::syscall_sites(&code, gva);
        for &at in &sites {
            if done
                .mem()
                .write_slice(&rewrite::CALL_RAX, GuestAddress(gva + at as u64))
                .is_err()
            {
                return -i64::from(libc::EFAULT);
            }
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.sites.fetch_add(sites.len() as u64, Ordering::Relaxed);
        sites.len() as i64
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
