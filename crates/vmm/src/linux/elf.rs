//! Parsing a Linux program's ELF header and program headers.
//!
//! The file is host input, but it may come from anyone: every offset and size is
//! checked against the file before it is used, in 64-bit arithmetic, and a
//! program that needs something part 1 cannot give (a dynamic loader, another
//! architecture) is refused with a message that says so.

use super::LinuxError;

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EM_X86_64: u16 = 62;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
pub const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const PF_X: u32 = 1;
pub const EHDR_SIZE: usize = 64;
pub const PHDR_SIZE: usize = 56;
const MAX_PHDRS: usize = 128;

/// One `PT_LOAD` segment, as the file describes it (not yet relocated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    /// PF_X: the segment holds code (where `syscall` sites are rewritten).
    pub exec: bool,
}

/// A checked static x86-64 executable.
#[derive(Debug, Clone)]
pub struct Program {
    /// Position independent (static-PIE): the loader chooses the load bias.
    pub pie: bool,
    pub entry: u64,
    pub segments: Vec<Segment>,
    /// Virtual address of the program headers (before the bias), for AT_PHDR.
    pub phdr_vaddr: u64,
    pub phnum: u16,
    /// Lowest and highest (exclusive) virtual address of the segments.
    pub lo: u64,
    pub hi: u64,
    /// PT_INTERP: the dynamic loader's path (as the program names it).
    pub interp: Option<String>,
}

/// Longest PT_INTERP path accepted (Linux: PATH_MAX).
const MAX_INTERP: u64 = 4096;

/// The PT_INTERP string at `offset`, `size` bytes with its NUL, checked against the file.
fn interp_path(file: &[u8], offset: u64, size: u64) -> Result<String, LinuxError> {
    if !(2..=MAX_INTERP).contains(&size) {
        return Err(bad(format!("PT_INTERP of {size} bytes")));
    }
    let end = offset
        .checked_add(size)
        .filter(|&e| e <= file.len() as u64)
        .ok_or_else(|| bad("PT_INTERP lies outside the file"))?;
    let raw = &file[offset as usize..end as usize];
    let path = raw.strip_suffix(b"\0").unwrap_or(raw);
    match std::str::from_utf8(path) {
        Ok(p) if p.starts_with('/') && !p.contains('\0') => Ok(p.to_owned()),
        _ => Err(bad("PT_INTERP is not an absolute path")),
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn bad(why: impl Into<String>) -> LinuxError {
    LinuxError::BadProgram(why.into())
}

/// Parses and checks `file` (the whole program file).
pub fn parse(file: &[u8]) -> Result<Program, LinuxError> {
    if file.len() < EHDR_SIZE || &file[..4] != ELF_MAGIC {
        return Err(LinuxError::NotElf);
    }
    if file[4] != ELFCLASS64 || file[5] != ELFDATA2LSB {
        return Err(LinuxError::WrongArch(
            "not a 64-bit little-endian ELF".into(),
        ));
    }
    let machine = le16(file, 18);
    if machine != EM_X86_64 {
        return Err(LinuxError::WrongArch(format!(
            "e_machine {machine}, not x86-64 (62)"
        )));
    }
    let kind = le16(file, 16);
    let pie = match kind {
        ET_EXEC => false,
        ET_DYN => true,
        other => return Err(bad(format!("e_type {other} is not an executable"))),
    };
    let entry = le64(file, 24);
    let phoff = le64(file, 32);
    let phentsize = le16(file, 54) as usize;
    let phnum = le16(file, 56);
    if phentsize != PHDR_SIZE || phnum == 0 || phnum as usize > MAX_PHDRS {
        return Err(bad(format!(
            "program headers: {phnum} of {phentsize} bytes"
        )));
    }
    let table_len = phnum as u64 * PHDR_SIZE as u64;
    let table_end = phoff
        .checked_add(table_len)
        .filter(|&e| e <= file.len() as u64)
        .ok_or_else(|| bad("program headers lie outside the file"))?;
    let table = &file[phoff as usize..table_end as usize];

    let mut segments = Vec::new();
    let mut phdr_vaddr = None;
    let mut has_dynamic = false;
    let mut interp = None;
    for ph in table.chunks_exact(PHDR_SIZE) {
        let p_type = le32(ph, 0);
        let exec = le32(ph, 4) & PF_X != 0;
        let offset = le64(ph, 8);
        let vaddr = le64(ph, 16);
        let filesz = le64(ph, 32);
        let memsz = le64(ph, 40);
        match p_type {
            PT_INTERP => interp = Some(interp_path(file, offset, filesz)?),
            PT_DYNAMIC => has_dynamic = true,
            PT_PHDR => phdr_vaddr = Some(vaddr),
            PT_LOAD => {
                if filesz > memsz {
                    return Err(bad("a segment's file size exceeds its memory size"));
                }
                offset
                    .checked_add(filesz)
                    .filter(|&e| e <= file.len() as u64)
                    .ok_or_else(|| bad("a segment lies outside the file"))?;
                vaddr
                    .checked_add(memsz)
                    .ok_or_else(|| bad("a segment wraps the address space"))?;
                segments.push(Segment {
                    offset,
                    vaddr,
                    filesz,
                    memsz,
                    exec,
                });
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(bad("no loadable segment"));
    }
    // A static-PIE has PT_DYNAMIC (for its self-relocation) but no PT_INTERP;
    // an ET_DYN without PT_DYNAMIC is not a program either.
    if pie && !has_dynamic {
        return Err(bad(
            "ET_DYN without PT_DYNAMIC is not a static-PIE executable",
        ));
    }
    let lo = segments.iter().map(|s| s.vaddr).min().unwrap_or(0) & !0xfff;
    let hi = segments
        .iter()
        .map(|s| s.vaddr + s.memsz)
        .max()
        .unwrap_or(0);
    // Without PT_PHDR, the headers are wherever the segment holding them maps them.
    let phdr_vaddr = match phdr_vaddr {
        Some(v) => v,
        None => segments
            .iter()
            .find(|s| s.offset <= phoff && table_end <= s.offset + s.filesz)
            .map(|s| s.vaddr + (phoff - s.offset))
            .ok_or_else(|| bad("the program headers are not in any loadable segment"))?,
    };
    if !(lo..hi).contains(&entry) {
        return Err(bad(format!("entry {entry:#x} is outside the program")));
    }
    Ok(Program {
        pie,
        entry,
        segments,
        phdr_vaddr,
        phnum,
        lo,
        hi,
        interp,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF: header, `phdrs` program headers (type, offset, vaddr,
    /// filesz, memsz), then `body` bytes of zeros.
    pub fn build(
        kind: u16,
        machine: u16,
        entry: u64,
        phdrs: &[(u32, u64, u64, u64, u64)],
    ) -> Vec<u8> {
        let mut f = vec![0u8; EHDR_SIZE + phdrs.len() * PHDR_SIZE];
        f[..4].copy_from_slice(ELF_MAGIC);
        f[4] = ELFCLASS64;
        f[5] = ELFDATA2LSB;
        f[6] = 1;
        f[16..18].copy_from_slice(&kind.to_le_bytes());
        f[18..20].copy_from_slice(&machine.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
        f[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        f[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for (i, &(t, off, va, fsz, msz)) in phdrs.iter().enumerate() {
            let p = EHDR_SIZE + i * PHDR_SIZE;
            f[p..p + 4].copy_from_slice(&t.to_le_bytes());
            f[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            f[p + 16..p + 24].copy_from_slice(&va.to_le_bytes());
            f[p + 32..p + 40].copy_from_slice(&fsz.to_le_bytes());
            f[p + 40..p + 48].copy_from_slice(&msz.to_le_bytes());
        }
        f.resize(0x2000, 0x90);
        f
    }

    #[test]
    fn accepts_a_static_executable() {
        let f = build(
            ET_EXEC,
            EM_X86_64,
            0x401000,
            &[(PT_LOAD, 0, 0x400000, 0x2000, 0x3000)],
        );
        let p = parse(&f).unwrap();
        assert!(!p.pie);
        assert_eq!((p.lo, p.hi), (0x400000, 0x403000));
        assert_eq!(p.phdr_vaddr, 0x400000 + EHDR_SIZE as u64);
    }

    #[test]
    fn refuses_what_part_one_cannot_run() {
        let load = (PT_LOAD, 0, 0x400000, 0x2000, 0x2000);
        assert!(matches!(parse(b"#!/bin/sh\n"), Err(LinuxError::NotElf)));
        assert!(matches!(parse(&[0u8; 10]), Err(LinuxError::NotElf)));
        let arm = build(ET_EXEC, 183, 0x401000, &[load]);
        assert!(matches!(parse(&arm), Err(LinuxError::WrongArch(_))));
        // PT_INTERP must be an absolute path inside the file.
        let dynamic = build(
            ET_EXEC,
            EM_X86_64,
            0x401000,
            &[(PT_INTERP, 0, 0, 1, 1), load],
        );
        let err = parse(&dynamic).unwrap_err();
        assert!(err.to_string().contains("PT_INTERP"), "{err}");
        let outside = build(
            ET_EXEC,
            EM_X86_64,
            0x401000,
            &[(PT_INTERP, 1 << 20, 0, 16, 16), load],
        );
        assert!(matches!(parse(&outside), Err(LinuxError::BadProgram(_))));
        let pie_without_dynamic = build(
            ET_DYN,
            EM_X86_64,
            0x1000,
            &[(PT_LOAD, 0, 0, 0x2000, 0x2000)],
        );
        assert!(matches!(
            parse(&pie_without_dynamic),
            Err(LinuxError::BadProgram(_))
        ));
    }

    #[test]
    fn refuses_segments_outside_the_file_or_wrapping() {
        let past = build(
            ET_EXEC,
            EM_X86_64,
            0x401000,
            &[(PT_LOAD, 0x1000, 0x400000, 0x5000, 0x5000)],
        );
        assert!(matches!(parse(&past), Err(LinuxError::BadProgram(_))));
        let wrap = build(
            ET_EXEC,
            EM_X86_64,
            0x401000,
            &[(PT_LOAD, 0, u64::MAX - 10, 0x10, 0x10)],
        );
        assert!(matches!(parse(&wrap), Err(LinuxError::BadProgram(_))));
        let huge_off = build(
            ET_EXEC,
            EM_X86_64,
            0x401000,
            &[(PT_LOAD, u64::MAX, 0x400000, 2, 2)],
        );
        assert!(matches!(parse(&huge_off), Err(LinuxError::BadProgram(_))));
        let mut bad_phoff = build(
            ET_EXEC,
            EM_X86_64,
            0x401000,
            &[(PT_LOAD, 0, 0x400000, 0x10, 0x10)],
        );
        bad_phoff[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(parse(&bad_phoff), Err(LinuxError::BadProgram(_))));
    }
}
