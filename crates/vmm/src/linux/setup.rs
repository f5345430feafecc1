//! Placing a checked program in a created (not yet started) VM.
//!
//! Guest memory stays identity-mapped (see `layout`). A Linux VM uses it so:
//!
//! | GVA | what |
//! |---|---|
//! | `0x0..0x1000` | supervisor-only (a NULL access from the program faults) |
//! | `0x3000` | the page table that maps the first 2 MiB in 4 KiB pages |
//! | `0x8000` | `LinuxInfo`, then the LSTAR trampoline at `0x8800` |
//! | `0x100000..0x400000` | the personality image and its heap |
//! | `0x400000..` | the program (static-PIE programs are placed at `0x400000`) |
//! | after it | its ELF interpreter (ld.so) if it names one (PT_INTERP) |
//! | then | brk area (a quarter of what is free), then the mmap area |
//! | 8 MiB below the shared region | the program's stack |

use std::path::Path;
use std::sync::Arc;

use guest_kmod_bindings::{vmrpc_version, BootInfo};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::elf::{self, Program};
use super::fork::{ForkMemory, FORK_NAME};
use super::image_cache::{self, Loaded};
use super::rewrite;
use super::stack::{self, Auxv};
use super::LinuxError;
use crate::layout;

/// Where the info block lives (a free page between boot info and the page tables).
pub const INFO_GPA: u64 = 0x8000;
/// The syscall trampoline `MSR_LSTAR` points at: `jmp *%gs:TRAMPOLINE_SLOT`.
pub const TRAMPOLINE_GPA: u64 = 0x8800;
/// Offset in the per-vCPU (GS) page where the personality stores its handler.
pub const TRAMPOLINE_SLOT: u8 = 0x20;
/// Offset in the per-vCPU page of the rewritten sites' entry (the sled jumps through it).
pub const ZPOLINE_SLOT: u8 = 0x28;
/// The 4 KiB page table for the first 2 MiB (a free page after the TSSs).
pub const LOW_PT_GPA: u64 = 0x3000;
/// The physical page mapped at virtual page 0 when sites are rewritten: the
/// nop sled, and a copy of the GDT (the CPU reads it at linear `GDT_START`).
pub const SLED_GPA: u64 = 0x4000;
/// Programs start here; the personality lives below.
pub const PROGRAM_MIN: u64 = 0x40_0000;
/// Stack size of the program's main thread.
pub const STACK_SIZE: u64 = 8 << 20;
/// Bytes of the stack argv, envp and auxv may take.
const ARGS_ROOM: u64 = 256 << 10;
/// At least this much memory must be left for brk and mmap.
const MIN_FREE: u64 = 8 << 20;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_EFER: u32 = 0xc000_0080;
/// EFER as the VMM sets it (LME, LMA) plus SCE: `syscall` is architecturally
/// enabled, as hardware KVM requires (PVM delivers it either way); and NXE, so
/// the personality can withhold PROT_EXEC (bit 63 of its 4 KiB entries).
const EFER_LINUX: u64 = (1 << 8) | (1 << 10) | (1 << 11) | 1;
const PAGE: u64 = 0x1000;
/// `struct vmrpc_linux_info.magic`: "VMRLINUX".
pub const INFO_MAGIC: u64 = u64::from_le_bytes(*b"VMRLINUX");
/// `flags` bit: send every system call to the host's trace.
pub const FLAG_TRACE: u64 = 1;
/// `flags` bit: `syscall` sites are rewritten (code mapped later too, `code.rs`).
pub const FLAG_REWRITE: u64 = 2;

/// The info block at `INFO_GPA` (`struct vmrpc_linux_info` in guest/linux/linux_abi.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxInfo {
    pub magic: u64,
    pub entry: u64,
    pub sp: u64,
    pub brk_start: u64,
    pub brk_max: u64,
    pub mmap_lo: u64,
    pub mmap_hi: u64,
    pub flags: u64,
    pub uid: u32,
    pub gid: u32,
    pub seed: [u8; 32],
}
const _: () = assert!(std::mem::size_of::<LinuxInfo>() == 104);
// The fixed pages sit in holes of the VMM's low-memory layout.
const _: () = {
    let max = guest_kmod_bindings::VMRPC_MAX_VCPUS as u64;
    assert!(layout::TSS_START + max * layout::TSS_STRIDE <= LOW_PT_GPA);
    assert!(LOW_PT_GPA + PAGE <= SLED_GPA);
    assert!(SLED_GPA + PAGE <= layout::BOOT_INFO_START);
    assert!(super::rewrite::SLED_LEN as u64 + 8 <= layout::GDT_START);
    assert!(layout::BOOT_INFO_END <= INFO_GPA);
    assert!(INFO_GPA + 104 <= TRAMPOLINE_GPA);
    assert!(TRAMPOLINE_GPA + 8 <= layout::PML4_START);
};
// SAFETY: plain integers and byte arrays, no padding (checked by the size above).
unsafe impl vm_memory::ByteValued for LinuxInfo {}

/// What the caller asks for.
pub struct LinuxParams<'a> {
    pub program: &'a Path,
    pub argv: &'a [String],
    pub envp: &'a [String],
    /// AT_EXECFN: the path the program was started by, as the guest sees it.
    pub execfn: &'a str,
    pub trace: bool,
    /// Where the interpreter of a dynamically linked program is looked up on
    /// the host (its PT_INTERP path below this directory); `None`: the host's `/`.
    pub sysroot: Option<&'a Path>,
    /// Rewrite `syscall` sites to calls into the page-0 sled (see `rewrite`).
    pub rewrite: bool,
}

/// The flat layout `place` chose; returned for diagnostics and tests.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub bias: u64,
    /// Load bias of the ELF interpreter (AT_BASE), 0 without one.
    pub interp_bias: u64,
    pub info: LinuxInfo,
    /// `syscall` instructions rewritten to `call *%rax`.
    pub syscall_sites: usize,
    /// Where `place` spent its time (diagnostics: benches/startup.py).
    pub times: PlaceTimes,
    /// Images (program, interpreter) mapped from the process's cache.
    pub images_cached: u32,
}

/// Nanoseconds of each step of `place`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlaceTimes {
    /// Reading and checking the program and its interpreter.
    pub read_ns: u64,
    /// Copying their segments into guest memory, rewriting `syscall` sites.
    pub load_ns: u64,
    /// The stack, the info block, page 0.
    pub rest_ns: u64,
}

fn ns_since(t: std::time::Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn page_up(v: u64) -> u64 {
    v.next_multiple_of(PAGE)
}

/// Chooses addresses for `prog` (and its interpreter, placed right after it)
/// in a VM whose shared region starts at `shared_base`: the program's bias,
/// the interpreter's, and the info block.
pub fn plan(
    prog: &Program,
    interp: Option<&Program>,
    shared_base: u64,
) -> Result<(u64, u64, LinuxInfo), LinuxError> {
    let bias = if prog.pie { PROGRAM_MIN - prog.lo } else { 0 };
    let lo = prog.lo + bias;
    let mut hi = prog.hi + bias;
    let mut interp_bias = 0;
    let mut entry = prog.entry + bias;
    if let Some(i) = interp {
        if !i.pie || i.interp.is_some() {
            return Err(LinuxError::Interpreter(
                "is not a position-independent, self-contained loader".into(),
            ));
        }
        interp_bias = page_up(hi) - i.lo;
        hi = i.hi + interp_bias;
        entry = i.entry + interp_bias;
    }
    let stack_lo = shared_base.saturating_sub(STACK_SIZE);
    if lo < PROGRAM_MIN {
        return Err(LinuxError::Layout(format!(
            "the program is linked at {lo:#x}; it must load at or above {PROGRAM_MIN:#x}"
        )));
    }
    let brk_start = page_up(hi);
    if brk_start.saturating_add(MIN_FREE) > stack_lo {
        return Err(LinuxError::Layout(format!(
            "the program ends at {hi:#x}: too big for this VM's memory (raise memory_mib)"
        )));
    }
    let brk_max = page_up(brk_start + (stack_lo - brk_start) / 4);
    Ok((
        bias,
        interp_bias,
        LinuxInfo {
            magic: INFO_MAGIC,
            entry,
            sp: 0,
            brk_start,
            brk_max,
            mmap_lo: brk_max,
            mmap_hi: stack_lo,
            ..Default::default()
        },
    ))
}

fn host_random() -> Result<[u8; 48], LinuxError> {
    let mut buf = [0u8; 48];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: writes at most `len - got` bytes into `buf` past `got`.
        let n = unsafe { libc::getrandom(buf[got..].as_mut_ptr().cast(), buf.len() - got, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(LinuxError::Io(e));
        }
        got += n as usize;
    }
    Ok(buf)
}

/// CPUID.1:EDX, which Linux reports as AT_HWCAP on x86-64.
fn hwcap() -> u64 {
    // SAFETY: cpuid leaf 1 exists on every x86-64 CPU.
    #[allow(unused_unsafe)]
    let r = unsafe { std::arch::x86_64::__cpuid(1) };
    r.edx.into()
}

fn mem_err(e: vm_memory::GuestMemoryError) -> LinuxError {
    LinuxError::Vm(format!("guest memory: {e}"))
}

/// Splits the first 2 MiB into 4 KiB pages so that page 0 can differ from
/// the identity map. Without rewriting it is supervisor-only: the CPU still
/// reads the GDT there, the program's NULL accesses fault. With rewriting it
/// is the sled page, user read/execute but not writable (CR0.WP is clear, so
/// the CPU's own GDT accesses are unaffected): NULL writes fault, NULL reads
/// see the sled, as in zpoline.
fn map_page_zero(mem: &GuestMemoryMmap, rewrite: bool) -> Result<(), LinuxError> {
    const PRESENT: u64 = 1;
    const WRITABLE: u64 = 2;
    const USER: u64 = 4;
    let page0 = if rewrite {
        let gdt_len = layout::GDT_ENTRIES * 8;
        let mut gdt = vec![0u8; gdt_len];
        mem.read_slice(&mut gdt, GuestAddress(layout::GDT_START))
            .map_err(mem_err)?;
        mem.write_slice(&rewrite::sled_page(ZPOLINE_SLOT), GuestAddress(SLED_GPA))
            .map_err(mem_err)?;
        mem.write_slice(&gdt, GuestAddress(SLED_GPA + layout::GDT_START))
            .map_err(mem_err)?;
        SLED_GPA | PRESENT | USER
    } else {
        PRESENT | WRITABLE
    };
    mem.write_obj(page0, GuestAddress(LOW_PT_GPA))
        .map_err(mem_err)?;
    for i in 1..512u64 {
        mem.write_obj(
            (i * PAGE) | PRESENT | WRITABLE | USER,
            GuestAddress(LOW_PT_GPA + i * 8),
        )
        .map_err(mem_err)?;
    }
    mem.write_obj(
        LOW_PT_GPA | PRESENT | WRITABLE | USER,
        GuestAddress(layout::PD_START),
    )
    .map_err(mem_err)
}

/// `jmp *%gs:TRAMPOLINE_SLOT`: LSTAR must be a fixed address the host knows;
/// the personality publishes its handler's address in its per-vCPU page.
pub fn trampoline() -> [u8; 8] {
    [0x65, 0xff, 0x24, 0x25, TRAMPOLINE_SLOT, 0, 0, 0]
}

/// The host path of interpreter `interp` (a guest path) under `sysroot`.
fn interp_host_path(interp: &str, sysroot: Option<&Path>) -> std::path::PathBuf {
    match sysroot {
        Some(root) => root.join(interp.trim_start_matches('/')),
        None => Path::new(interp).to_owned(),
    }
}

/// Faults in the host pages behind guest range `[at, at + len)` with one
/// `madvise(MADV_POPULATE_WRITE)`: one system call instead of a page fault per
/// 4 KiB page, which costs a hypervisor round trip each when this host is
/// itself a VM. Only a speed-up: on any failure the writes fault them in.
fn populate(mem: &GuestMemoryMmap, at: u64, len: u64) {
    let lo = at & !(PAGE - 1);
    let hi = page_up(at.saturating_add(len));
    let Ok(host) = mem.get_host_address(GuestAddress(lo)) else {
        return;
    };
    // The whole range must lie in guest memory (one region: `Vm::new`).
    if hi <= lo || mem.get_host_address(GuestAddress(hi - 1)).is_err() {
        return;
    }
    // SAFETY: `[host, host + hi - lo)` is inside the guest memory mapping
    // (both ends checked above; guest RAM is one contiguous region), and
    // populating pages changes no byte of it.
    let _ = unsafe { libc::madvise(host.cast(), (hi - lo) as usize, libc::MADV_POPULATE_WRITE) };
}

/// Puts `l`'s segments at `bias` into guest memory: its image (built once per
/// process, `image_cache`) mapped privately, then zeros for the bss past it.
/// Returns the `syscall` sites rewritten and whether the image was cached.
fn load_segments(
    mem: &GuestMemoryMmap,
    l: &Loaded,
    bias: u64,
    rewrite_code: bool,
) -> Result<(usize, bool), LinuxError> {
    let (img, cached) = image_cache::image(l, bias, rewrite_code)?;
    image_cache::map(mem, &img)?;
    let image_end = img.lo + img.len;
    for seg in &l.prog.segments {
        let start = (seg.vaddr + bias + seg.filesz).max(image_end);
        // Up to the end of the last page, as Linux: an exec lands on the old
        // image's bytes, and ld.so's early calloc takes the rest of its bss
        // page as zeroed.
        let end = page_up(seg.vaddr + bias + seg.memsz);
        if end > start {
            populate(mem, start, end - start);
            let zeros = vec![0u8; (end - start) as usize];
            mem.write_slice(&zeros, GuestAddress(start))
                .map_err(mem_err)?;
        }
    }
    Ok((img.sites, cached))
}

/// A program ready to be written into guest memory: everything that can
/// fail for a reason of the program's (its interpreter, the layout, the
/// arguments) was found before any guest memory changes (exec's point of no
/// return, `exec.rs`, comes after this).
pub(crate) struct Image {
    exe: Loaded,
    interp: Option<Loaded>,
    bias: u64,
    interp_bias: u64,
    info: LinuxInfo,
    stack: stack::InitialStack,
}

impl Image {
    /// The info block the image will have (its areas, entry and stack).
    pub(crate) fn info(&self) -> &LinuxInfo {
        &self.info
    }
}

/// Loads `exe`'s interpreter (from the host, under `sysroot`), plans the
/// layout below `shared_base` and builds the initial stack.
pub(crate) fn prepare<S: AsRef<[u8]>>(
    exe: Loaded,
    sysroot: Option<&Path>,
    shared_base: u64,
    argv: &[S],
    envp: &[S],
    execfn: &[u8],
    flags: u64,
) -> Result<Image, LinuxError> {
    let interp = match &exe.prog.interp {
        Some(path) => {
            let host = interp_host_path(path, sysroot);
            Some(image_cache::load(&host).map_err(|e| {
                LinuxError::Interpreter(format!("{path} ({}): {e}", host.display()))
            })?)
        }
        None => None,
    };
    let prog = &exe.prog;
    let (bias, interp_bias, mut info) = plan(prog, interp.as_ref().map(|l| &l.prog), shared_base)?;
    let random = host_random()?;
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut at_random = [0u8; 16];
    at_random.copy_from_slice(&random[..16]);
    let aux = Auxv {
        phdr: prog.phdr_vaddr + bias,
        phent: elf::PHDR_SIZE as u64,
        phnum: prog.phnum.into(),
        entry: prog.entry + bias,
        base: interp_bias,
        uid,
        gid,
        hwcap: hwcap(),
        random: at_random,
    };
    let top = info.mmap_hi + STACK_SIZE;
    let st = stack::build(top, ARGS_ROOM, argv, envp, execfn, &aux)?;
    info.sp = st.sp;
    info.uid = uid;
    info.gid = gid;
    info.seed.copy_from_slice(&random[16..]);
    info.flags = flags;
    Ok(Image {
        exe,
        interp,
        bias,
        interp_bias,
        info,
        stack: st,
    })
}

/// What `commit` wrote: `syscall` sites rewritten, and images (program,
/// interpreter) mapped from the process's cache.
pub(crate) struct Committed {
    pub(crate) syscall_sites: usize,
    pub(crate) images_cached: u32,
}

/// Writes the image into guest memory: segments (code rewritten if asked),
/// the initial stack and the info block.
pub(crate) fn commit(mem: &GuestMemoryMmap, img: &Image) -> Result<Committed, LinuxError> {
    let rewrite_code = img.info.flags & FLAG_REWRITE != 0;
    let (mut syscall_sites, exe_cached) = load_segments(mem, &img.exe, img.bias, rewrite_code)?;
    let mut images_cached = u32::from(exe_cached);
    if let Some(l) = &img.interp {
        let (sites, cached) = load_segments(mem, l, img.interp_bias, rewrite_code)?;
        syscall_sites += sites;
        images_cached += u32::from(cached);
    }
    mem.write_slice(&img.stack.bytes, GuestAddress(img.stack.sp))
        .map_err(mem_err)?;
    mem.write_obj(img.info, GuestAddress(INFO_GPA))
        .map_err(mem_err)?;
    Ok(Committed {
        syscall_sites,
        images_cached,
    })
}

/// Loads the program (and its interpreter) into `mem` and writes the info
/// block; returns the placement.
pub fn place(
    mem: &GuestMemoryMmap,
    shared_base: u64,
    p: &LinuxParams,
) -> Result<Placement, LinuxError> {
    let t0 = std::time::Instant::now();
    let flags = if p.trace { FLAG_TRACE } else { 0 } | if p.rewrite { FLAG_REWRITE } else { 0 };
    let img = prepare(
        image_cache::load(p.program)?,
        p.sysroot,
        shared_base,
        p.argv,
        p.envp,
        p.execfn.as_bytes(),
        flags,
    )?;
    let read_ns = ns_since(t0);
    let t1 = std::time::Instant::now();
    let done = commit(mem, &img)?;
    let load_ns = ns_since(t1);
    let t2 = std::time::Instant::now();
    mem.write_slice(&trampoline(), GuestAddress(TRAMPOLINE_GPA))
        .map_err(mem_err)?;
    // The personality's own heap must end where the program begins.
    let heap_end = layout::BOOT_INFO_START + std::mem::offset_of!(BootInfo, heap_end) as u64;
    mem.write_obj(PROGRAM_MIN, GuestAddress(heap_end))
        .map_err(mem_err)?;
    map_page_zero(mem, p.rewrite)?;
    Ok(Placement {
        bias: img.bias,
        interp_bias: img.interp_bias,
        info: img.info,
        syscall_sites: done.syscall_sites,
        images_cached: done.images_cached,
        times: PlaceTimes {
            read_ns,
            load_ns,
            rest_ns: ns_since(t2),
        },
    })
}

/// Sets up a created VM to run the program: memory, then LSTAR on every vCPU,
/// and the `linux_fork` module that keeps a forked parent's memory (`fork.rs`).
/// (`exec::register` adds the module that loads programs at run time.)
pub fn setup(vm: &crate::Vm, p: &LinuxParams) -> Result<Placement, LinuxError> {
    let (shared_base, _) =
        layout::shared_region(vm.config().mem_size(), vm.config().rpc_channels());
    let placement = place(vm.memory(), shared_base, p)?;
    let fork = Arc::new(ForkMemory::default());
    vm.register_module(FORK_NAME, vmrpc_version(1, 0), fork)
        .map_err(|e| LinuxError::Vm(e.to_string()))?;
    for (msr, value) in [(MSR_LSTAR, TRAMPOLINE_GPA), (MSR_EFER, EFER_LINUX)] {
        vm.set_msr_before_start(msr, value)
            .map_err(|e| LinuxError::Vm(e.to_string()))?;
    }
    Ok(placement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::elf::tests::build;

    #[test]
    fn plans_exec_and_pie_in_their_places() {
        let exec =
            elf::parse(&build(2, 62, 0x401000, &[(1, 0, 0x400000, 0x2000, 0x3000)])).unwrap();
        let (bias, _, info) = plan(&exec, None, 256 << 20).unwrap();
        assert_eq!(bias, 0);
        assert_eq!(info.brk_start, 0x403000);
        assert!(info.brk_start < info.brk_max && info.brk_max == info.mmap_lo);
        assert_eq!(info.mmap_hi, (256 << 20) - STACK_SIZE);
        let pie = elf::parse(&build(
            3,
            62,
            0x1000,
            &[(1, 0, 0, 0x2000, 0x2000), (2, 0, 0, 0, 0)],
        ))
        .unwrap();
        let (bias, _, info) = plan(&pie, None, 256 << 20).unwrap();
        assert_eq!(bias, PROGRAM_MIN);
        assert_eq!(info.entry, PROGRAM_MIN + 0x1000);
    }

    #[test]
    fn places_the_interpreter_after_the_program_and_starts_there() {
        let pie = elf::parse(&build(
            3,
            62,
            0x1000,
            &[(1, 0, 0, 0x2000, 0x2800), (2, 0, 0, 0, 0)],
        ))
        .unwrap();
        let ld = elf::parse(&build(
            3,
            62,
            0x1100,
            &[(1, 0, 0, 0x2000, 0x3000), (2, 0, 0, 0, 0)],
        ))
        .unwrap();
        let (bias, interp_bias, info) = plan(&pie, Some(&ld), 256 << 20).unwrap();
        assert_eq!(bias, PROGRAM_MIN);
        assert_eq!(
            interp_bias,
            PROGRAM_MIN + 0x3000,
            "the next page after the program"
        );
        assert_eq!(info.entry, interp_bias + 0x1100, "ld.so runs first");
        assert_eq!(info.brk_start, interp_bias + 0x3000);
        // An interpreter that itself wants one, or is not position independent: refused.
        let exec =
            elf::parse(&build(2, 62, 0x401000, &[(1, 0, 0x400000, 0x2000, 0x3000)])).unwrap();
        assert!(matches!(
            plan(&pie, Some(&exec), 256 << 20),
            Err(LinuxError::Interpreter(_))
        ));
    }

    #[test]
    fn refuses_programs_that_do_not_fit() {
        let low = elf::parse(&build(2, 62, 0x101000, &[(1, 0, 0x100000, 0x2000, 0x2000)])).unwrap();
        assert!(matches!(
            plan(&low, None, 256 << 20),
            Err(LinuxError::Layout(_))
        ));
        let huge = elf::parse(&build(
            2,
            62,
            0x401000,
            &[(1, 0, 0x400000, 0x2000, 1 << 30)],
        ))
        .unwrap();
        assert!(matches!(
            plan(&huge, None, 256 << 20),
            Err(LinuxError::Layout(_))
        ));
    }
}
