//! Native path operations of a Linux program's files: the common, read-only
//! cases of `openat`, `newfstatat`, `fstat` and `close`, served in Rust so that
//! a stat+open+close does not cost three trips through Python.
//!
//! Python (`vmrpc.linux.FilesModule`) stays the authority: it hands over its
//! mount table and working directory (`set_mounts`, `set_cwd`) only when no
//! audit hook must see every path, and anything this module does not serve
//! (writes, creation, directories, paths relative to a directory handle, flags
//! it does not know) answers -EOPNOTSUPP so that the personality asks Python.
//! Confinement is the same as Python's (`confine.py`): the part of the guest
//! path below the mount is opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)` relative to the mount's root, so the kernel keeps it
//! inside whatever `..` or symlinks say. Guest paths are never trusted as
//! strings.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A Linux error number for the guest (the personality returns it negated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("errno {0}")]
pub struct Errno(pub i32);

impl Errno {
    /// The calling thread's last OS error.
    fn last() -> Self {
        Errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }
}

/// `AT_FDCWD` as the personality sends it for "relative to the working directory".
pub const AT_FDCWD: i64 = -100;
/// Size of the x86-64 `struct stat` the program receives.
pub const STAT_SIZE: usize = 144;
/// Open flags served natively: read-only opens of existing files. Anything
/// else (writes, O_CREAT, O_DIRECTORY, O_PATH, O_TMPFILE...) goes to Python.
const NATIVE_OPEN_FLAGS: i64 = LINUX_O_LARGEFILE
    | (libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_NOFOLLOW) as i64;
/// x86-64's O_LARGEFILE, which musl passes (the libc crate's is 0 on x86-64).
const LINUX_O_LARGEFILE: i64 = 0o100000;
/// Of those, the ones the host open takes (O_CLOEXEC is the guest fd's own).
const HOST_OPEN_FLAGS: i64 = (libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_NOFOLLOW) as i64;

/// `struct open_how` of openat2(2) (libc's cannot be built outside the crate).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// One mount: the guest path's components and an `O_PATH` fd of the host root.
struct Root {
    parts: Vec<Vec<u8>>,
    fd: OwnedFd,
}

/// The mount table and working directory Python handed over; empty (nothing
/// served) until it does.
#[derive(Default)]
pub struct PathTable {
    roots: Vec<Root>,
    cwd: Vec<u8>,
}

/// The non-empty components of `path`, without `.` (as `files.py`'s `_split`).
fn split(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
}

impl PathTable {
    /// Replaces the mounts: `(guest path, host root fd)` in Python's order
    /// (longest guest path first). The fds are duplicated.
    pub fn set_mounts(&mut self, mounts: &[(Vec<u8>, RawFd)]) -> std::io::Result<()> {
        let mut roots = Vec::with_capacity(mounts.len());
        for (guest, fd) in mounts {
            // SAFETY: the caller (Python) passes descriptors it owns and keeps
            // open for the duration of this call; we only duplicate them.
            let dup = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) }.try_clone_to_owned()?;
            roots.push(Root {
                parts: split(guest).map(<[u8]>::to_vec).collect(),
                fd: dup,
            });
        }
        self.roots = roots;
        Ok(())
    }

    /// The program's working directory (a guest path), as Python keeps it.
    pub fn set_cwd(&mut self, cwd: &[u8]) {
        self.cwd = cwd.to_vec();
    }

    /// The working directory.
    pub fn cwd(&self) -> Vec<u8> {
        self.cwd.clone()
    }

    /// Whether Python handed over a mount table (no audit hook).
    pub fn enabled(&self) -> bool {
        !self.roots.is_empty()
    }

    /// The mount `path` falls in (its index) and the rest of it below the root
    /// (`.` for the root itself). `path` is absolute, or relative to the
    /// working directory. EOPNOTSUPP when no mount holds it: Python decides then,
    /// since it also serves entries no mount holds (`/dev/null`, `/proc/self/exe`).
    pub fn resolve(&self, path: &[u8]) -> Result<(usize, Vec<u8>), Errno> {
        let cwd: &[u8] = if path.starts_with(b"/") {
            b""
        } else {
            &self.cwd
        };
        let parts: Vec<&[u8]> = split(cwd).chain(split(path)).collect();
        for (index, root) in self.roots.iter().enumerate() {
            let n = root.parts.len();
            if parts.len() >= n
                && parts[..n]
                    .iter()
                    .zip(&root.parts)
                    .all(|(a, b)| *a == &b[..])
            {
                let rest = parts[n..].join(&b'/');
                return Ok((index, if rest.is_empty() { b".".to_vec() } else { rest }));
            }
        }
        Err(Errno(libc::EOPNOTSUPP))
    }

    /// Opens `rest` below mount `index` with `flags` (host O_* flags), confined
    /// by the kernel. An attempt to leave the mount is EACCES, as in Python.
    pub fn open_beneath(&self, index: usize, rest: &[u8], flags: i32) -> Result<OwnedFd, Errno> {
        let root = self.roots.get(index).ok_or(Errno(libc::ENOENT))?;
        let path = CString::new(rest).map_err(|_| Errno(libc::EINVAL))?;
        let how = OpenHow {
            flags: (flags | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: `path` is a NUL-terminated string and `how` a valid open_how,
        // both alive across the call; the result is a new fd we take ownership of.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.fd.as_raw_fd(),
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd < 0 {
            let e = Errno::last();
            return Err(if e.0 == libc::EXDEV {
                Errno(libc::EACCES)
            } else {
                e
            });
        }
        // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

/// Whether an `openat` with these guest flags is served natively, and the
/// host flags to open with.
pub fn native_open_flags(flags: i64) -> Option<i32> {
    let read_only = flags & i64::from(libc::O_ACCMODE) == i64::from(libc::O_RDONLY);
    (read_only && flags & !NATIVE_OPEN_FLAGS == 0)
        .then_some((flags & HOST_OPEN_FLAGS) as i32 | libc::O_RDONLY)
}

/// `fstat` of a host descriptor.
pub fn fstat(fd: RawFd) -> Result<libc::stat, Errno> {
    // SAFETY: an all-zero `struct stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a writable struct stat; `fd` is a descriptor the caller holds open.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(Errno::last());
    }
    Ok(st)
}

/// The x86-64 `struct stat` the program receives (the layout `files.py` packs).
pub fn pack_stat(st: &libc::stat) -> [u8; STAT_SIZE] {
    let mut out = [0u8; STAT_SIZE];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&st.st_dev.to_le_bytes());
    put(&st.st_ino.to_le_bytes());
    put(&st.st_nlink.to_le_bytes());
    put(&st.st_mode.to_le_bytes());
    put(&st.st_uid.to_le_bytes());
    put(&st.st_gid.to_le_bytes());
    put(&0u32.to_le_bytes());
    put(&st.st_rdev.to_le_bytes());
    put(&st.st_size.to_le_bytes());
    put(&st.st_blksize.to_le_bytes());
    put(&st.st_blocks.to_le_bytes());
    for (sec, nsec) in [
        (st.st_atime, st.st_atime_nsec),
        (st.st_mtime, st.st_mtime_nsec),
        (st.st_ctime, st.st_ctime_nsec),
    ] {
        put(&sec.to_le_bytes());
        put(&nsec.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    fn table(dir: &std::path::Path) -> PathTable {
        let root = std::fs::File::open(dir).unwrap().into_raw_fd();
        let mut t = PathTable::default();
        t.set_mounts(&[(b"/data".to_vec(), root)]).unwrap();
        // SAFETY: `root` was just opened here and is not used after this.
        drop(unsafe { OwnedFd::from_raw_fd(root) });
        t.set_cwd(b"/data/sub");
        t
    }

    #[test]
    fn paths_resolve_to_the_longest_mount_and_relative_to_cwd() {
        let dir = std::env::temp_dir();
        let t = table(&dir);
        assert_eq!(t.resolve(b"/data/./a//b").unwrap(), (0, b"a/b".to_vec()));
        assert_eq!(t.resolve(b"/data").unwrap(), (0, b".".to_vec()));
        assert_eq!(t.resolve(b"x").unwrap(), (0, b"sub/x".to_vec()));
        assert_eq!(t.resolve(b"/elsewhere/x"), Err(Errno(libc::EOPNOTSUPP)));
        assert_eq!(t.resolve(b"/database"), Err(Errno(libc::EOPNOTSUPP)));
    }

    #[test]
    fn escapes_are_refused_by_the_kernel() {
        let dir = std::env::temp_dir().join(format!("vmrpc-pathops-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("abs")).unwrap_or(());
        let t = table(&dir);
        let ro = libc::O_RDONLY;
        assert_eq!(
            t.open_beneath(0, b"../x", ro).err(),
            Some(Errno(libc::EACCES))
        );
        assert_eq!(
            t.open_beneath(0, b"abs", ro).err(),
            Some(Errno(libc::EACCES))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_plain_read_only_opens_are_native() {
        assert!(native_open_flags(i64::from(libc::O_RDONLY | libc::O_CLOEXEC)).is_some());
        for flags in [
            libc::O_WRONLY,
            libc::O_RDWR,
            libc::O_CREAT,
            libc::O_TRUNC,
            libc::O_DIRECTORY,
            libc::O_PATH,
        ] {
            assert_eq!(native_open_flags(i64::from(flags)), None, "{flags:#x}");
        }
    }
}
