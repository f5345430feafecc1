//! Guest images: ELF64 x86-64 executables linked at `IMAGE_BASE`.
//!
//! The header and program headers are checked before any KVM object exists, so
//! a wrong file fails fast with a message that names the problem; linux-loader
//! then copies the segments into guest memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::loader::{elf::Elf, KernelLoader};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::layout::IMAGE_BASE;

const EM_X86_64: u16 = 62;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const PT_LOAD: u32 = 1;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const MAX_PHDRS: u16 = 64;

/// Why an image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// the image file does not exist
    #[error("image not found: {0}")]
    NotFound(PathBuf),
    /// the image file cannot be read
    #[error("cannot read image {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// not an ELF file at all
    #[error("{0} is not an ELF file")]
    NotElf(PathBuf),
    /// an ELF the VMM cannot run
    #[error("{path}: {why}")]
    Unsupported { path: PathBuf, why: String },
    /// linux-loader refused the image
    #[error("cannot load {0}: {1}")]
    Load(PathBuf, linux_loader::loader::Error),
}

/// An image whose headers were checked; `load` copies it into guest memory.
#[derive(Debug)]
pub struct Image {
    path: PathBuf,
    file: File,
    pub entry: u64,
    /// End of the highest loadable segment (including .bss).
    pub end: u64,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

impl Image {
    /// Opens `path` and checks that it is an x86-64 executable whose loadable
    /// segments lie in `[IMAGE_BASE, limit)`.
    pub fn open(path: &Path, limit: u64) -> Result<Image, ImageError> {
        let unsupported = |why: String| ImageError::Unsupported {
            path: path.to_owned(),
            why,
        };
        let mut file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ImageError::NotFound(path.to_owned()),
            _ => ImageError::Io(path.to_owned(), e),
        })?;
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(unsupported("is a directory, not an image file".into()));
        }
        let mut eh = [0u8; EHDR_SIZE];
        let n = read_up_to(&mut file, &mut eh).map_err(|e| ImageError::Io(path.to_owned(), e))?;
        if n < 4 || &eh[..4] != b"\x7fELF" {
            return Err(ImageError::NotElf(path.to_owned()));
        }
        if n < EHDR_SIZE || eh[4] != 2 || eh[5] != 1 {
            return Err(unsupported("not a 64-bit little-endian ELF".into()));
        }
        let (e_type, machine) = (le16(&eh, 16), le16(&eh, 18));
        if machine != EM_X86_64 {
            return Err(unsupported(format!("ELF machine {machine} is not x86-64")));
        }
        if e_type == ET_DYN {
            return Err(unsupported(format!(
                "position-independent executable; link with -no-pie at {IMAGE_BASE:#x} \
                 (the vmrpc guest linker script does)"
            )));
        }
        if e_type != ET_EXEC {
            return Err(unsupported(format!(
                "ELF type {e_type} is not an executable"
            )));
        }
        let entry = le64(&eh, 24);
        let (phoff, phentsize, phnum) = (le64(&eh, 32), le16(&eh, 54), le16(&eh, 56));
        if phentsize as usize != PHDR_SIZE || phnum == 0 || phnum > MAX_PHDRS {
            return Err(unsupported(format!(
                "bad program headers ({phnum} of {phentsize} bytes)"
            )));
        }
        let mut ph = vec![0u8; PHDR_SIZE * phnum as usize];
        file.seek(SeekFrom::Start(phoff))
            .and_then(|_| file.read_exact(&mut ph))
            .map_err(|_| unsupported("program headers run past the end of the file".into()))?;
        let mut end = 0u64;
        for p in ph.chunks_exact(PHDR_SIZE) {
            if le32(p, 0) != PT_LOAD {
                continue;
            }
            let (paddr, memsz) = (le64(p, 24), le64(p, 40));
            let seg_end = paddr.checked_add(memsz).filter(|e| *e <= limit);
            match seg_end {
                Some(e) if paddr >= IMAGE_BASE => end = end.max(e),
                _ => {
                    return Err(unsupported(format!(
                        "segment [{paddr:#x}, +{memsz:#x}) is outside guest memory \
                         [{IMAGE_BASE:#x}, {limit:#x})"
                    )))
                }
            }
        }
        if !(IMAGE_BASE..end).contains(&entry) {
            return Err(unsupported(format!(
                "entry point {entry:#x} is outside the image"
            )));
        }
        Ok(Image {
            path: path.to_owned(),
            file,
            entry,
            end,
        })
    }

    /// Copies the loadable segments into guest memory (which starts zeroed, so
    /// .bss needs no clearing).
    pub fn load(mut self, mem: &GuestMemoryMmap) -> Result<u64, ImageError> {
        Elf::load(mem, None, &mut self.file, Some(GuestAddress(IMAGE_BASE)))
            .map_err(|e| ImageError::Load(self.path.clone(), e))?;
        Ok(self.entry)
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
        let p = std::env::temp_dir().join(format!("vmrpc-img-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// A minimal ELF64 header plus one PT_LOAD program header.
    fn elf(e_type: u16, machine: u16, paddr: u64, memsz: u64, entry: u64) -> Vec<u8> {
        let mut b = vec![0u8; EHDR_SIZE + PHDR_SIZE];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[16..18].copy_from_slice(&e_type.to_le_bytes());
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
        b[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        let p = &mut b[EHDR_SIZE..];
        p[..4].copy_from_slice(&PT_LOAD.to_le_bytes());
        p[24..32].copy_from_slice(&paddr.to_le_bytes());
        p[40..48].copy_from_slice(&memsz.to_le_bytes());
        b
    }

    #[test]
    fn classifies_bad_images() {
        let limit = 8 << 20;
        let missing = Path::new("/nonexistent/vmrpc.elf");
        assert!(matches!(
            Image::open(missing, limit),
            Err(ImageError::NotFound(_))
        ));
        let junk = tmp("junk", b"this is not an elf");
        assert!(matches!(
            Image::open(&junk, limit),
            Err(ImageError::NotElf(_))
        ));
        let cases = [
            (
                "pie",
                elf(ET_DYN, EM_X86_64, IMAGE_BASE, 0x1000, IMAGE_BASE),
                "position-independent",
            ),
            (
                "arm",
                elf(ET_EXEC, 183, IMAGE_BASE, 0x1000, IMAGE_BASE),
                "not x86-64",
            ),
            (
                "low",
                elf(ET_EXEC, EM_X86_64, 0x1000, 0x1000, 0x1000),
                "outside guest memory",
            ),
            (
                "big",
                elf(ET_EXEC, EM_X86_64, IMAGE_BASE, u64::MAX, IMAGE_BASE),
                "outside guest",
            ),
            (
                "entry",
                elf(ET_EXEC, EM_X86_64, IMAGE_BASE, 0x1000, 0x5000),
                "entry point",
            ),
        ];
        for (name, bytes, want) in cases {
            let p = tmp(name, &bytes);
            let err = Image::open(&p, limit).unwrap_err().to_string();
            assert!(err.contains(want), "{name}: {err}");
            std::fs::remove_file(p).ok();
        }
        let ok = tmp(
            "ok",
            &elf(ET_EXEC, EM_X86_64, IMAGE_BASE, 0x2000, IMAGE_BASE + 4),
        );
        let img = Image::open(&ok, limit).unwrap();
        assert_eq!((img.entry, img.end), (IMAGE_BASE + 4, IMAGE_BASE + 0x2000));
        std::fs::remove_file(ok).ok();
        std::fs::remove_file(junk).ok();
    }
}
