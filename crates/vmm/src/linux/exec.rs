//! The `linux_exec` host module: execve for a running Linux program
//! (docs/linux.md, "execve").
//!
//! The personality resolves the path itself (it opens the file through the
//! `files` module, so mounts, read-only rules and the audit hook decide on the
//! host file actually opened), follows `#!` lines, and copies argv and envp
//! out of the program's memory into its own. It then sends the open file's
//! handle and that copy here. This module reads the file through the files
//! data plane's descriptor for that handle, and runs the same loader as VM
//! creation (`setup::prepare`, then `setup::commit`): ELF checks, the
//! interpreter, the layout and the initial stack are all settled before guest
//! memory changes, so any of their errors is an errno for the caller; only
//! then are the segments, stack and info block written (the point of no
//! return: a failure past it answers `LATE` and the personality ends the
//! process, as Linux's SIGKILL on a late exec failure).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::dataplane::FilesDataPlane;
use super::image_cache::{self, Loaded};
use super::setup;
use super::LinuxError;
use crate::rpc::channel::Completion;
use crate::rpc::module::HostModule;

/// The module name the personality binds (`LX_EXEC_MODULE`).
pub const EXEC_NAME: &str = "linux_exec";
const FN_EXEC: u32 = 0;
/// Whether the handle's file may be executed at all (asked right after the
/// open, so EACCES comes before the personality reads the file's head).
const FN_CHECK: u32 = 1;
/// `struct lx_exec_req`: handle, strings address, strings length, argc,
/// envc, the lowest address the new mmap area may not reach (the
/// personality's heap), reserved.
const REQ_SIZE: usize = 48;
/// Bytes of argument and environment strings an exec may pass (as the
/// initial stack's room for them, `setup::ARGS_ROOM`); more is E2BIG.
pub const MAX_STRINGS: u64 = 256 << 10;
/// Strings an exec may pass (Linux's MAX_ARG_STRINGS is far larger; the
/// byte cap above binds first in practice).
const MAX_COUNT: u64 = 32 << 10;
/// Answered when guest memory was already being replaced: the process must end.
pub const LATE: i64 = 1;
/// Least room the new program's mmap area must keep below the personality's heap.
const MIN_MMAP: u64 = 4 << 20;

/// Why an exec is refused before anything changed (answered as -errno).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExecError {
    #[error("malformed request")]
    Malformed,
    #[error("strings outside guest memory")]
    Fault,
    #[error("arguments too long")]
    TooBig,
    #[error("not an executable regular file")]
    Access,
    #[error("not a usable x86-64 ELF executable")]
    NoExec,
    #[error("the interpreter is unusable")]
    BadInterpreter,
    #[error("does not fit in memory")]
    NoMemory,
    #[error("host I/O error")]
    Io,
}

impl ExecError {
    fn errno(&self) -> i64 {
        -i64::from(match self {
            ExecError::Malformed => libc::EINVAL,
            ExecError::Fault => libc::EFAULT,
            ExecError::TooBig => libc::E2BIG,
            ExecError::Access => libc::EACCES,
            ExecError::NoExec => libc::ENOEXEC,
            ExecError::BadInterpreter => libc::ELIBBAD,
            ExecError::NoMemory => libc::ENOMEM,
            ExecError::Io => libc::EIO,
        })
    }
}

impl From<LinuxError> for ExecError {
    fn from(e: LinuxError) -> Self {
        match e {
            LinuxError::NotElf | LinuxError::WrongArch(_) | LinuxError::BadProgram(_) => {
                ExecError::NoExec
            }
            LinuxError::Interpreter(_) => ExecError::BadInterpreter,
            LinuxError::Layout(_) => ExecError::NoMemory,
            LinuxError::Args(_) => ExecError::TooBig,
            LinuxError::Io(_) | LinuxError::Vm(_) => ExecError::Io,
        }
    }
}

/// What VM creation decided and every exec keeps.
pub struct ExecConfig {
    pub sysroot: Option<PathBuf>,
    /// `setup::FLAG_*` of the VM (trace, rewriting).
    pub flags: u64,
    /// Where the shared region starts (the stack ends there).
    pub shared_base: u64,
}

pub struct ExecModule {
    config: ExecConfig,
    files: Option<Arc<FilesDataPlane>>,
    /// Execs done (the new image written).
    pub execs: AtomicU64,
}

/// The request, copied out of the RPC payload.
struct Request {
    handle: i64,
    strings: u64,
    len: u64,
    argc: u64,
    envc: u64,
    limit: u64,
}

fn parse(request: &[u8]) -> Result<Request, ExecError> {
    if request.len() != REQ_SIZE {
        return Err(ExecError::Malformed);
    }
    let word = |i: usize| u64::from_le_bytes(request[i * 8..i * 8 + 8].try_into().unwrap());
    Ok(Request {
        handle: word(0) as i64,
        strings: word(1),
        len: word(2),
        argc: word(3) & 0xffff_ffff,
        envc: word(3) >> 32,
        limit: word(4),
    })
}

/// argv, envp and execfn, borrowed from the strings block.
type Strings<'a> = (Vec<&'a [u8]>, Vec<&'a [u8]>, &'a [u8]);

/// Splits the strings block (each NUL-terminated) into argv, envp and execfn.
fn split_strings(block: &[u8], argc: u64, envc: u64) -> Result<Strings<'_>, ExecError> {
    if argc + envc >= MAX_COUNT {
        return Err(ExecError::TooBig);
    }
    let Some((&0, body)) = block.split_last() else {
        return Err(ExecError::Malformed);
    };
    let mut all: Vec<&[u8]> = body.split(|&b| b == 0).collect();
    if all.len() as u64 != argc + envc + 1 {
        return Err(ExecError::Malformed);
    }
    let execfn = all.pop().ok_or(ExecError::Malformed)?;
    let envp = all.split_off(argc as usize);
    Ok((all, envp, execfn))
}

/// Whether the host's user may execute a file of this mode and owner (root:
/// any execute bit, as Linux).
fn may_execute(meta: &std::fs::Metadata) -> bool {
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mode = meta.mode();
    let bits = if uid == 0 {
        mode & 0o111
    } else if meta.uid() == uid {
        mode & 0o100
    } else if meta.gid() == gid {
        mode & 0o010
    } else {
        mode & 0o001
    };
    bits != 0
}

impl ExecModule {
    pub fn new(config: ExecConfig, files: Option<Arc<FilesDataPlane>>) -> Self {
        ExecModule {
            config,
            files,
            execs: AtomicU64::new(0),
        }
    }

    /// The file behind guest handle `handle` if it may be executed.
    fn executable(&self, handle: i64) -> Result<(File, std::fs::Metadata), ExecError> {
        let plane = self.files.as_ref().ok_or(ExecError::Access)?;
        // Only regular files are attached to the data plane: a pipe, device
        // or directory handle is not there, and is EACCES as on Linux.
        let fd = plane
            .dup_fd(handle)
            .ok_or(ExecError::Access)?
            .map_err(|_| ExecError::Io)?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(|_| ExecError::Io)?;
        if !meta.is_file() || !may_execute(&meta) {
            return Err(ExecError::Access);
        }
        Ok((file, meta))
    }

    /// FN_CHECK: 0 or -EACCES for the file behind the handle the request names.
    pub fn check(&self, request: &[u8]) -> i64 {
        let Ok(word) = <[u8; 8]>::try_from(request) else {
            return ExecError::Malformed.errno();
        };
        match self.executable(i64::from_le_bytes(word)) {
            Ok(_) => 0,
            Err(e) => e.errno(),
        }
    }

    /// Reads and checks the program behind guest handle `handle`.
    fn program(&self, handle: i64, max_size: u64) -> Result<Loaded, ExecError> {
        let (file, meta) = self.executable(handle)?;
        if meta.len() > max_size {
            return Err(ExecError::NoMemory);
        }
        // The path only names the file (the image cache keys on its identity).
        let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .unwrap_or_else(|_| PathBuf::from("<exec>"));
        Ok(image_cache::load_open(file, path, max_size)?)
    }

    /// Everything before the point of no return: the new image, or why not.
    fn prepare(&self, mem: &GuestMemoryMmap, req: &Request) -> Result<setup::Image, ExecError> {
        if req.len > MAX_STRINGS {
            return Err(ExecError::TooBig);
        }
        let mut block = vec![0u8; req.len as usize];
        mem.read_slice(&mut block, GuestAddress(req.strings))
            .map_err(|_| ExecError::Fault)?;
        let (argv, envp, execfn) = split_strings(&block, req.argc, req.envc)?;
        let exe = self.program(req.handle, self.config.shared_base)?;
        let img = setup::prepare(
            exe,
            self.config.sysroot.as_deref(),
            self.config.shared_base,
            &argv,
            &envp,
            execfn,
            self.config.flags,
        )?;
        // The personality keeps its heap (pipes, sockets) at the top of the
        // mmap area: the new program's areas must end below it.
        if img.info().mmap_lo.saturating_add(MIN_MMAP) > req.limit {
            return Err(ExecError::NoMemory);
        }
        Ok(img)
    }

    /// One exec: 0 (the new image is in place), -errno (nothing changed), or `LATE`.
    pub fn exec(&self, mem: &GuestMemoryMmap, request: &[u8]) -> i64 {
        let img = match parse(request).and_then(|req| self.prepare(mem, &req)) {
            Ok(img) => img,
            Err(e) => return e.errno(),
        };
        // Point of no return: guest memory is being replaced.
        match setup::commit(mem, &img) {
            Ok(_) => {
                self.execs.fetch_add(1, Ordering::Relaxed);
                0
            }
            Err(_) => LATE,
        }
    }
}

/// Registers `linux_exec` on a VM `setup::setup` prepared: execs keep its
/// sysroot and flags (`placed.info.flags`), and read programs through `files`
/// (without it execve answers EACCES).
pub fn register(
    vm: &crate::Vm,
    sysroot: Option<&std::path::Path>,
    flags: u64,
    files: Option<Arc<FilesDataPlane>>,
) -> Result<(), LinuxError> {
    let (shared_base, _) =
        crate::layout::shared_region(vm.config().mem_size(), vm.config().rpc_channels());
    let config = ExecConfig {
        sysroot: sysroot.map(std::path::Path::to_owned),
        flags,
        shared_base,
    };
    let module = Arc::new(ExecModule::new(config, files));
    vm.register_module(EXEC_NAME, guest_kmod_bindings::vmrpc_version(1, 0), module)
        .map_err(|e| LinuxError::Vm(e.to_string()))
}

impl HostModule for ExecModule {
    fn has_function(&self, function: u32) -> bool {
        function == FN_EXEC || function == FN_CHECK
    }

    fn call(&self, function: u32, request: &[u8], done: Completion) {
        let code = match function {
            FN_EXEC => self.exec(done.mem(), request),
            _ => self.check(request),
        };
        done.ok(&code.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(handle: i64, strings: u64, len: u64, argc: u32, envc: u32, limit: u64) -> Vec<u8> {
        [
            handle as u64,
            strings,
            len,
            u64::from(argc) | (u64::from(envc) << 32),
            limit,
            0,
        ]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect()
    }

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn module() -> ExecModule {
        let config = ExecConfig {
            sysroot: None,
            flags: 0,
            shared_base: 1 << 20,
        };
        ExecModule::new(config, Some(Arc::new(FilesDataPlane::default())))
    }

    #[test]
    fn strings_split_into_argv_envp_and_execfn() {
        let (argv, envp, execfn) = split_strings(b"sh\0-c\0A=1\0/bin/sh\0", 2, 1).unwrap();
        assert_eq!(argv, [&b"sh"[..], b"-c"]);
        assert_eq!(envp, [&b"A=1"[..]]);
        assert_eq!(execfn, b"/bin/sh");
        assert_eq!(split_strings(b"a\0b\0", 2, 1), Err(ExecError::Malformed));
        assert_eq!(split_strings(b"a\0b", 1, 0), Err(ExecError::Malformed));
        assert_eq!(split_strings(b"", 0, 0), Err(ExecError::Malformed));
        assert_eq!(split_strings(b"\0", 0, 0).unwrap().2, b"");
    }

    #[test]
    fn hostile_requests_get_errnos_and_change_nothing() {
        let mem = memory();
        let m = module();
        mem.write_slice(b"sh\0/bin/sh\0", GuestAddress(0x1000))
            .unwrap();
        let errno = |e: i32| -i64::from(e);
        assert_eq!(m.exec(&mem, &[0u8; 47]), errno(libc::EINVAL));
        let outside = request(3, (1 << 20) - 4, 16, 1, 0, 1 << 20);
        assert_eq!(m.exec(&mem, &outside), errno(libc::EFAULT));
        let wrapping = request(3, u64::MAX - 2, 16, 1, 0, 1 << 20);
        assert_eq!(m.exec(&mem, &wrapping), errno(libc::EFAULT));
        let huge = request(3, 0x1000, MAX_STRINGS + 1, 1, 0, 1 << 20);
        assert_eq!(m.exec(&mem, &huge), errno(libc::E2BIG));
        let miscounted = request(3, 0x1000, 11, 5, 0, 1 << 20);
        assert_eq!(m.exec(&mem, &miscounted), errno(libc::EINVAL));
        // A handle the data plane does not serve (not a regular file).
        let unknown = request(99, 0x1000, 11, 1, 0, 1 << 20);
        assert_eq!(m.exec(&mem, &unknown), errno(libc::EACCES));
        assert_eq!(m.execs.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn only_executable_elf_files_are_taken() {
        let mem = memory();
        let m = module();
        mem.write_slice(b"p\0/p\0", GuestAddress(0x1000)).unwrap();
        let dir = std::env::temp_dir().join(format!("vmrpc-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plane = m.files.as_ref().unwrap();
        let cases: [(&str, u32, &[u8], i32); 2] = [
            ("noexec", 0o644, b"\x7fELF....", libc::EACCES),
            ("text", 0o755, b"echo hi\n", libc::ENOEXEC),
        ];
        for (i, (name, mode, body, want)) in cases.into_iter().enumerate() {
            let path = dir.join(name);
            std::fs::write(&path, body).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap();
            let f = File::open(&path).unwrap();
            let handle = 10 + i as i64;
            plane.attach(handle, f.as_raw_fd()).unwrap();
            let req = request(handle, 0x1000, 5, 1, 0, 1 << 20);
            // Root may read a 0644 file but not execute it: the mode decides.
            assert_eq!(m.exec(&mem, &req), -i64::from(want), "{name}");
            let check = if want == libc::EACCES { want } else { 0 };
            assert_eq!(m.check(&handle.to_le_bytes()), -i64::from(check), "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
