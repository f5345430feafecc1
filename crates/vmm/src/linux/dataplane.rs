//! The files data plane: bulk reads and writes of a Linux program's regular
//! files, between the host file and the program's own buffer, in Rust.
//!
//! `vmrpc.linux.FilesModule` (Python) keeps the control plane: paths, mounts,
//! confinement, audit, the handle table. When it opens a regular file it
//! attaches a duplicate of the descriptor here under the guest's handle. The
//! personality then sends `read`/`write`/`pread64`/`pwrite64` of that handle to
//! this module (`files_data`): one system call straight into or out of guest
//! memory on the RPC engine thread, no Python, no copy through the RPC area,
//! no 64 KiB payload limit. Handles not attached here (stdio, directories,
//! pipes) answer -EOPNOTSUPP and the personality asks Python instead. Only
//! regular files are attached, so a call here never waits for long.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use vm_memory::{GuestAddress, GuestMemoryBackend};

use crate::rpc::channel::Completion;
use crate::rpc::module::HostModule;

/// The module name the personality binds (`LX_FILES_DATA_MODULE`).
pub const FILES_DATA_NAME: &str = "files_data";
/// `struct lx_data_req`: handle, guest address, length, offset (-1: the file position).
const REQ_SIZE: usize = 32;
/// Bytes one call may move (the personality never asks for more).
pub const MAX_IO: u64 = 16 << 20;
const FN_READ: u32 = 0;
const FN_WRITE: u32 = 1;

#[derive(Default)]
pub struct FilesDataPlane {
    files: Mutex<HashMap<i64, OwnedFd>>,
    pub reads: AtomicU64,
    pub bytes_read: AtomicU64,
    pub writes: AtomicU64,
    pub bytes_written: AtomicU64,
}

impl FilesDataPlane {
    fn table(&self) -> MutexGuard<'_, HashMap<i64, OwnedFd>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves `handle` from now on, through a duplicate of `fd`.
    pub fn attach(&self, handle: i64, fd: RawFd) -> std::io::Result<()> {
        // SAFETY: the caller (Python) passes a descriptor it owns and keeps open
        // for the duration of this call; we only duplicate it.
        let dup = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
        self.table().insert(handle, dup);
        Ok(())
    }

    /// Stops serving `handle` and closes the duplicate.
    pub fn detach(&self, handle: i64) {
        self.table().remove(&handle);
    }

    /// One read or write between the file and the guest buffer the request
    /// names: bytes moved, or -errno (-EOPNOTSUPP: not attached, ask Python).
    fn io(&self, write: bool, request: &[u8], done: &Completion) -> i64 {
        if request.len() != REQ_SIZE {
            return -i64::from(libc::EINVAL);
        }
        let word = |i: usize| u64::from_le_bytes(request[i..i + 8].try_into().unwrap());
        let (handle, gpa, len, offset) = (word(0) as i64, word(8), word(16), word(24) as i64);
        if len > MAX_IO || offset < -1 {
            return -i64::from(libc::EINVAL);
        }
        // Bounds-checked: the buffer must lie in guest RAM.
        let Ok(buf) = done.mem().get_slice(GuestAddress(gpa), len as usize) else {
            return -i64::from(libc::EFAULT);
        };
        let table = self.table();
        let Some(fd) = table.get(&handle) else {
            return -i64::from(libc::EOPNOTSUPP);
        };
        let (fd, ptr, n) = (fd.as_raw_fd(), buf.ptr_guard_mut().as_ptr(), len as usize);
        // SAFETY: `ptr` is `n` bytes of mapped guest memory (bounds checked by
        // get_slice; the mapping outlives this call) and `fd` a descriptor this
        // table owns, kept open by the lock we hold. The kernel moves bytes the
        // guest asked to move, into or out of the guest's own buffer.
        let r = unsafe {
            match (write, offset) {
                (false, -1) => libc::read(fd, ptr.cast(), n),
                (false, off) => libc::pread(fd, ptr.cast(), n, off),
                (true, -1) => libc::write(fd, ptr.cast(), n),
                (true, off) => libc::pwrite(fd, ptr.cast(), n, off),
            }
        };
        if r < 0 {
            let errno = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            return -i64::from(errno);
        }
        let (calls, bytes) = if write {
            (&self.writes, &self.bytes_written)
        } else {
            (&self.reads, &self.bytes_read)
        };
        calls.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(r as u64, Ordering::Relaxed);
        r as i64
    }
}

impl HostModule for FilesDataPlane {
    fn has_function(&self, function: u32) -> bool {
        function == FN_READ || function == FN_WRITE
    }

    fn call(&self, function: u32, request: &[u8], done: Completion) {
        let result = self.io(function == FN_WRITE, request, &done);
        done.ok(&result.to_le_bytes());
    }
}
