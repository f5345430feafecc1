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
//!
//! It also serves the read-only path operations (`pathops.rs`): a plain
//! `openat` of a regular file, `newfstatat`, `fstat` and `close`, when Python
//! handed over its mounts. Handles come from one counter for both sides
//! (`new_handle`); a handle opened here is *native* until Python needs it for
//! a call it serves itself (lseek, ftruncate...) and `adopt`s it.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::pathops::{self, Errno, PathTable, AT_FDCWD};
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
const FN_OPENAT: u32 = 2;
const FN_FSTATAT: u32 = 3;
const FN_CLOSE: u32 = 4;
const FN_FSTAT: u32 = 5;
/// `struct lx_path_req`: a0 (dir handle or handle), flags, mode, guest address
/// of the answer (struct stat); a NUL-terminated path follows for open/stat.
const PATH_REQ_SIZE: usize = 32;
/// The first handle after stdio (0, 1 and 2 are the program's, served by Python).
const FIRST_HANDLE: i64 = 3;
const AT_SYMLINK_NOFOLLOW: i64 = 0x100;
/// Set in the handles of native opens, so that the personality sends their
/// close here and every other close straight to Python (`LX_NATIVE_HANDLE`).
pub const NATIVE_HANDLE_BIT: i64 = 1 << 40;
/// Handles per `FN_CLOSE` batch (`LX_CLOSE_BATCH` in guest/linux/fastpath.c).
const MAX_CLOSE_BATCH: usize = 32;

/// A file served here: its descriptor and, while this module owns it (opened
/// natively, not adopted by Python), where the guest opened it.
struct Entry {
    fd: OwnedFd,
    native: Option<Native>,
}

/// What Python needs to take over a natively opened handle.
pub struct Native {
    /// The guest path it was opened by (absolute).
    pub guest_path: Vec<u8>,
    /// Index of its mount in Python's mount list.
    pub mount: usize,
}

#[derive(Default)]
pub struct FilesDataPlane {
    files: Mutex<HashMap<i64, Entry>>,
    paths: Mutex<PathTable>,
    orphans: Mutex<Vec<i64>>,
    next_handle: AtomicI64,
    pub opens: AtomicU64,
    pub stats: AtomicU64,
    pub fstats: AtomicU64,
    pub closes: AtomicU64,
    pub reads: AtomicU64,
    pub bytes_read: AtomicU64,
    pub writes: AtomicU64,
    pub bytes_written: AtomicU64,
}

impl FilesDataPlane {
    fn table(&self) -> MutexGuard<'_, HashMap<i64, Entry>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The mount table and working directory (set by Python).
    pub fn paths(&self) -> MutexGuard<'_, PathTable> {
        self.paths.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Host files open now (a snapshot is only taken with none: `vm::snapshot`).
    pub fn open_count(&self) -> usize {
        self.table().len()
    }

    /// A fresh guest handle, unique across Python's opens and native ones.
    pub fn new_handle(&self) -> i64 {
        FIRST_HANDLE + self.next_handle.fetch_add(1, Ordering::Relaxed)
    }

    /// Hands a native handle over to Python: a duplicate of its descriptor
    /// and where it was opened; the data plane keeps serving its reads and
    /// writes, and Python closes it. None if `handle` is not native.
    pub fn adopt(&self, handle: i64) -> std::io::Result<Option<(OwnedFd, Native)>> {
        let mut table = self.table();
        let Some(entry) = table.get_mut(&handle) else {
            return Ok(None);
        };
        if entry.native.is_none() {
            return Ok(None);
        }
        let dup = entry.fd.try_clone()?;
        Ok(entry.native.take().map(|native| (dup, native)))
    }

    /// Serves `handle` from now on, through a duplicate of `fd`.
    pub fn attach(&self, handle: i64, fd: RawFd) -> std::io::Result<()> {
        // SAFETY: the caller (Python) passes a descriptor it owns and keeps open
        // for the duration of this call; we only duplicate it.
        let dup = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
        self.table().insert(
            handle,
            Entry {
                fd: dup,
                native: None,
            },
        );
        Ok(())
    }

    /// A duplicate of the descriptor behind `handle` (exec reads the program
    /// through it, `exec.rs`); None if `handle` is not served here.
    pub fn dup_fd(&self, handle: i64) -> Option<std::io::Result<OwnedFd>> {
        self.table().get(&handle).map(|e| e.fd.try_clone())
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
        let Some(Entry { fd, .. }) = table.get(&handle) else {
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

/// The answer for a call this module leaves to Python.
const NOT_HERE: Errno = Errno(libc::EOPNOTSUPP);
/// The answer to a path operation when Python keeps them all (an audit hook):
/// the personality stops asking.
const NEVER_HERE: Errno = Errno(libc::ENOSYS);

impl FilesDataPlane {
    /// One native path operation (`FN_OPENAT` .. `FN_FSTAT`): its result, or
    /// the errno for the guest (EOPNOTSUPP: ask Python).
    fn path_op(&self, function: u32, request: &[u8], done: &Completion) -> Result<i64, Errno> {
        if function == FN_CLOSE {
            return self.close_many(request);
        }
        if request.len() < PATH_REQ_SIZE {
            return Err(Errno(libc::EINVAL));
        }
        let word = |i: usize| i64::from_le_bytes(request[i..i + 8].try_into().unwrap());
        let (a0, flags, gpa) = (word(0), word(8), word(24) as u64);
        // The path: up to its NUL (the personality always sends one).
        let tail = &request[PATH_REQ_SIZE..];
        let path = &tail[..tail.iter().position(|&b| b == 0).unwrap_or(tail.len())];
        let relative_to_handle = a0 != AT_FDCWD && !path.starts_with(b"/");
        match function {
            FN_OPENAT => {
                let paths = self.paths();
                if !paths.enabled() {
                    return Err(NEVER_HERE);
                }
                let host_flags = pathops::native_open_flags(flags).ok_or(NOT_HERE)?;
                if relative_to_handle || path.is_empty() {
                    return Err(NOT_HERE);
                }
                let (mount, rest) = paths.resolve(path)?;
                let fd = paths.open_beneath(mount, &rest, host_flags)?;
                drop(paths);
                // Directories, devices and FIFOs need Python (getdents, waits).
                if pathops::fstat(fd.as_raw_fd())?.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Err(NOT_HERE);
                }
                let mut guest_path = Vec::new();
                if !path.starts_with(b"/") {
                    guest_path.extend_from_slice(&self.paths().cwd());
                    guest_path.push(b'/');
                }
                guest_path.extend_from_slice(path);
                let handle = self.new_handle() | NATIVE_HANDLE_BIT;
                let native = Some(Native { guest_path, mount });
                self.table().insert(handle, Entry { fd, native });
                self.opens.fetch_add(1, Ordering::Relaxed);
                Ok(handle)
            }
            FN_FSTATAT => {
                let paths = self.paths();
                if !paths.enabled() {
                    return Err(NEVER_HERE);
                }
                if flags & !AT_SYMLINK_NOFOLLOW != 0 || path.is_empty() || relative_to_handle {
                    return Err(NOT_HERE);
                }
                let (mount, rest) = paths.resolve(path)?;
                let nofollow = if flags & AT_SYMLINK_NOFOLLOW != 0 {
                    libc::O_NOFOLLOW
                } else {
                    0
                };
                let fd = paths.open_beneath(mount, &rest, libc::O_PATH | nofollow)?;
                drop(paths);
                let st = pathops::fstat(fd.as_raw_fd())?;
                self.stats.fetch_add(1, Ordering::Relaxed);
                write_stat(done, gpa, &st)
            }
            FN_FSTAT => {
                let st = {
                    let table = self.table();
                    let entry = table.get(&a0).ok_or(NOT_HERE)?;
                    pathops::fstat(entry.fd.as_raw_fd())?
                };
                self.fstats.fetch_add(1, Ordering::Relaxed);
                write_stat(done, gpa, &st)
            }
            _ => Err(Errno(libc::ENOSYS)),
        }
    }
}

impl FilesDataPlane {
    /// Closes a batch of natively opened handles (`FN_CLOSE`: an array of
    /// handles, each with `NATIVE_HANDLE_BIT`). The personality sends them in
    /// batches: a read-only regular file's close has no effect the program
    /// could see, and its handle is never reused. A handle Python adopted in
    /// the meantime is dropped here and queued for Python (`take_orphans`).
    /// Returns how many were closed.
    fn close_many(&self, request: &[u8]) -> Result<i64, Errno> {
        if request.is_empty()
            || !request.len().is_multiple_of(8)
            || request.len() > 8 * MAX_CLOSE_BATCH
        {
            return Err(Errno(libc::EINVAL));
        }
        let mut table = self.table();
        let mut closed = 0;
        for word in request.chunks_exact(8) {
            let handle = i64::from_le_bytes(word.try_into().unwrap());
            if handle & NATIVE_HANDLE_BIT == 0 {
                continue; // Python's own: never batched, ignore a confused guest
            }
            if let Some(entry) = table.remove(&handle) {
                if entry.native.is_none() {
                    self.orphans().push(handle);
                }
                closed += 1;
            }
        }
        self.closes.fetch_add(closed, Ordering::Relaxed);
        Ok(closed as i64)
    }

    fn orphans(&self) -> MutexGuard<'_, Vec<i64>> {
        self.orphans.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adopted handles the program has closed since the last call: Python
    /// closes its side of them.
    pub fn take_orphans(&self) -> Vec<i64> {
        std::mem::take(&mut *self.orphans())
    }
}

/// Writes the program's `struct stat` at `gpa` (bounds-checked against guest RAM).
fn write_stat(done: &Completion, gpa: u64, st: &libc::stat) -> Result<i64, Errno> {
    done.mem()
        .write_slice(&pathops::pack_stat(st), GuestAddress(gpa))
        .map_err(|_| Errno(libc::EFAULT))?;
    Ok(0)
}

impl HostModule for FilesDataPlane {
    fn has_function(&self, function: u32) -> bool {
        function <= FN_FSTAT
    }

    fn call(&self, function: u32, request: &[u8], done: Completion) {
        let result = match function {
            FN_READ | FN_WRITE => self.io(function == FN_WRITE, request, &done),
            _ => match self.path_op(function, request, &done) {
                Ok(value) => value,
                Err(Errno(errno)) => -i64::from(errno),
            },
        };
        done.ok(&result.to_le_bytes());
    }
}
