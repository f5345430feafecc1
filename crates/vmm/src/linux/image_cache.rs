//! Loaded program images, kept for the life of the process and mapped into
//! each VM that runs the same file at the same place.
//!
//! Copying a program into guest memory costs a page fault per 4 KiB page and
//! a copy of every byte, in every VM (python3 and its ld.so: about 7 MiB),
//! though a program touches few of its pages before it exits. The first VM
//! that loads a file at a given bias builds its *image* instead: the bytes of
//! guest memory its segments cover (file bytes, zeroed bss tails, `syscall`
//! sites rewritten), written once into a sealed memfd. Every VM then maps that
//! memfd over its guest memory with `MAP_PRIVATE | MAP_FIXED`: pages come in
//! when the guest first touches them, shared with the other VMs until one
//! writes (then it gets its own copy; the memfd never changes: it is sealed
//! against writes, shrinking and growing, so no VM and no one else can alter
//! it or make a mapping of it fault).
//!
//! Keys are the file's identity and state (device, inode, size, modification
//! and change times, read from the descriptor the bytes come from), the bias
//! and whether sites are rewritten: a file changed since is loaded afresh (any
//! write changes its change time, which no user can set).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::elf::{self, Program};
use super::rewrite;
use super::LinuxError;

const PAGE: u64 = 0x1000;
/// Bytes of images kept at most; past it the cache starts again (mapped
/// images stay alive as long as a VM maps them).
const CACHE_BYTES: u64 = 256 << 20;

/// A file's identity and state when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// A program file read and checked.
pub struct Loaded {
    pub id: FileId,
    pub prog: Program,
    /// Its bytes; only read when an image must be built.
    bytes: Option<Vec<u8>>,
    path: std::path::PathBuf,
}

/// One file's segments as guest memory `[lo, lo + len)` holds them after loading.
pub struct Image {
    fd: OwnedFd,
    pub lo: u64,
    pub len: u64,
    /// `syscall` sites rewritten in it.
    pub sites: usize,
}

#[derive(Default)]
struct Cache {
    programs: HashMap<FileId, Program>,
    images: HashMap<(FileId, u64, bool), Arc<Image>>,
    bytes: u64,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

fn with_cache<T>(f: impl FnOnce(&mut Cache) -> T) -> T {
    let mut guard = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    f(guard.get_or_insert_with(Cache::default))
}

/// Opens and checks the program at `path`; its bytes are read only when this
/// state of the file was never parsed in this process.
pub fn load(path: &Path) -> Result<Loaded, LinuxError> {
    read(File::open(path)?, path.to_owned(), None)
}

/// Checks the program open as `file` (exec: the descriptor the guest's open
/// gave, so the file checked is the file loaded); its bytes are always read
/// from that descriptor, never again by `path` (which only names it), and at
/// most `max_bytes` of them (the file may grow while it is read).
pub fn load_open(
    file: File,
    path: std::path::PathBuf,
    max_bytes: u64,
) -> Result<Loaded, LinuxError> {
    read(file, path, Some(max_bytes))
}

/// `keep_bytes`: read the bytes even when the program is known, at most this many.
fn read(
    mut file: File,
    path: std::path::PathBuf,
    keep_bytes: Option<u64>,
) -> Result<Loaded, LinuxError> {
    let id = FileId::of(&file.metadata()?);
    let known = with_cache(|c| c.programs.get(&id).cloned());
    if let (Some(prog), None) = (&known, keep_bytes) {
        return Ok(Loaded {
            id,
            prog: prog.clone(),
            bytes: None,
            path,
        });
    }
    let mut bytes = Vec::new();
    match keep_bytes {
        Some(max) => {
            (&mut file)
                .take(max.saturating_add(1))
                .read_to_end(&mut bytes)?;
            if bytes.len() as u64 > max {
                return Err(LinuxError::Layout("the program does not fit".into()));
            }
        }
        None => {
            file.read_to_end(&mut bytes)?;
        }
    }
    let prog = match known {
        Some(prog) => prog,
        None => {
            let prog = elf::parse(&bytes)?;
            with_cache(|c| c.programs.insert(id, prog.clone()));
            prog
        }
    };
    Ok(Loaded {
        id,
        prog,
        bytes: Some(bytes),
        path,
    })
}

fn io(what: &str) -> impl Fn(std::io::Error) -> LinuxError + '_ {
    move |e| LinuxError::Vm(format!("{what}: {e}"))
}

/// The file's bytes: those read by `load`, or read again (then checked to be
/// the same state of the file).
fn bytes_of(l: &Loaded) -> Result<std::borrow::Cow<'_, [u8]>, LinuxError> {
    if let Some(b) = &l.bytes {
        return Ok(std::borrow::Cow::Borrowed(b));
    }
    let mut file = File::open(&l.path)?;
    if FileId::of(&file.metadata()?) != l.id {
        return Err(LinuxError::Io(std::io::Error::other(
            "the program changed while it was being loaded",
        )));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(std::borrow::Cow::Owned(bytes))
}

/// Builds the image of `l` loaded at `bias`.
fn build(l: &Loaded, bias: u64, rewrite_code: bool) -> Result<Image, LinuxError> {
    let bytes = bytes_of(l)?;
    let segs = &l.prog.segments;
    let lo = segs.iter().map(|s| s.vaddr + bias).min().unwrap_or(0) & !(PAGE - 1);
    let hi = segs
        .iter()
        .map(|s| (s.vaddr + bias + s.filesz).next_multiple_of(PAGE))
        .max()
        .unwrap_or(lo);
    let len = hi - lo;
    // SAFETY: a NUL-terminated name and valid flags; the fd is checked below.
    let raw = unsafe {
        libc::memfd_create(
            c"vmrpc-program-image".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if raw < 0 {
        return Err(io("memfd_create")(std::io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let out = File::from(fd.try_clone().map_err(io("dup"))?);
    out.set_len(len).map_err(io("sizing the image"))?;
    let mut sites = 0;
    // In segment order, as a copy into guest memory would go.
    for seg in segs {
        let at = seg.vaddr + bias - lo;
        let file = &bytes[seg.offset as usize..(seg.offset + seg.filesz) as usize];
        out.write_all_at(file, at)
            .map_err(io("writing the image"))?;
        // The bss part inside the image (the rest stays anonymous guest memory).
        let tail = (len - (at + seg.filesz)).min(seg.memsz - seg.filesz);
        out.write_all_at(&vec![0u8; tail as usize], at + seg.filesz)
            .map_err(io("writing the image"))?;
        if rewrite_code && seg.exec {
            // Decoded once per image: the image itself is what is cached.
            let found = rewrite::syscall_sites(file, seg.vaddr + bias);
            for &site in &found {
                out.write_all_at(&rewrite::CALL_RAX, at + site as u64)
                    .map_err(io("writing the image"))?;
            }
            sites += found.len();
        }
    }
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io("sealing the image")(std::io::Error::last_os_error()));
    }
    Ok(Image { fd, lo, len, sites })
}

/// The image of `l` at `bias` (built once per process) and whether it came
/// from the cache.
pub fn image(l: &Loaded, bias: u64, rewrite_code: bool) -> Result<(Arc<Image>, bool), LinuxError> {
    let key = (l.id, bias, rewrite_code);
    if let Some(img) = with_cache(|c| c.images.get(&key).cloned()) {
        return Ok((img, true));
    }
    let img = Arc::new(build(l, bias, rewrite_code)?);
    with_cache(|c| {
        if c.bytes + img.len > CACHE_BYTES {
            c.images.clear();
            c.bytes = 0;
        }
        c.bytes += img.len;
        c.images.insert(key, img.clone());
    });
    Ok((img, false))
}

/// Maps `img` privately over guest memory `[img.lo, img.lo + img.len)`.
pub fn map(mem: &GuestMemoryMmap, img: &Image) -> Result<(), LinuxError> {
    if img.len == 0 {
        return Ok(());
    }
    let outside = || LinuxError::Layout("the program lies outside guest memory".into());
    let host = mem
        .get_host_address(GuestAddress(img.lo))
        .map_err(|_| outside())?;
    let last = mem
        .get_host_address(GuestAddress(img.lo + img.len - 1))
        .map_err(|_| outside())?;
    // Guest RAM is one contiguous mapping (`Vm::new`): both ends in it, in order.
    if last as usize != host as usize + (img.len - 1) as usize {
        return Err(outside());
    }
    // SAFETY: `[host, host + len)` lies inside the guest memory mapping (checked
    // above); replacing those pages with a private mapping of the sealed image
    // leaves the mapping's extent, which vm-memory and KVM rely on, unchanged.
    let at = unsafe {
        libc::mmap(
            host.cast(),
            img.len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_FIXED,
            img.fd.as_raw_fd(),
            0,
        )
    };
    if at != host.cast() {
        return Err(io("mapping the program image")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::elf::tests::build as build_elf;
    use vm_memory::Bytes;

    #[test]
    fn an_image_is_built_once_and_maps_the_segments_with_sites_rewritten() {
        // One executable segment: `syscall; ret` at its start, bss after.
        let mut file = build_elf(2, 62, 0x401000, &[(1, 0, 0x400000, 0x1003, 0x3000)]);
        let text = 0x1000usize;
        file[text..text + 3].copy_from_slice(&[0x0f, 0x05, 0xc3]);
        let flags = elf::EHDR_SIZE + 4;
        file[flags..flags + 4].copy_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
        let dir = std::env::temp_dir().join(format!("vmrpc-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("prog");
        std::fs::write(&path, &file).unwrap();
        let l = load(&path).unwrap();
        let (img, cached) = image(&l, 0, true).unwrap();
        assert!(!cached);
        assert_eq!((img.lo, img.len, img.sites), (0x400000, 0x2000, 1));
        assert!(
            image(&load(&path).unwrap(), 0, true).unwrap().1,
            "then from the cache"
        );
        assert!(
            !image(&l, 0, false).unwrap().1,
            "not rewritten: another image"
        );

        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x80_0000)]).unwrap();
        mem.write_slice(&[0xaa; 16], GuestAddress(0x401ff0))
            .unwrap();
        map(&mem, &img).unwrap();
        let mut got = [0u8; 4];
        mem.read_slice(&mut got, GuestAddress(0x401000)).unwrap();
        assert_eq!(got, [0xff, 0xd0, 0xc3, 0], "call *%rax, then zeros");
        mem.read_slice(&mut got, GuestAddress(0x401ff0)).unwrap();
        assert_eq!(got, [0; 4], "the bss tail inside the image is zero");
        // A private copy: writing guest memory never reaches the shared image.
        mem.write_slice(&[1, 2], GuestAddress(0x401000)).unwrap();
        let other = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x80_0000)]).unwrap();
        map(&other, &img).unwrap();
        other.read_slice(&mut got, GuestAddress(0x401000)).unwrap();
        assert_eq!(got[..2], [0xff, 0xd0]);

        // The file changes (here its size too, so the test needs no clock):
        // it is loaded afresh.
        file[text..text + 2].copy_from_slice(&[0x90, 0x90]);
        file.push(0);
        std::fs::write(&path, &file).unwrap();
        let l2 = load(&path).unwrap();
        assert_ne!(l2.id, l.id);
        let (img2, cached) = image(&l2, 0, true).unwrap();
        assert!(!cached);
        assert_eq!(img2.sites, 0);
        // An image outside guest memory is refused.
        let small = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
        assert!(matches!(map(&small, &img), Err(LinuxError::Layout(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
