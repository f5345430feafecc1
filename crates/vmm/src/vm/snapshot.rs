//! Snapshots of a Linux VM at its snapshot point, and VMs started from one
//! (docs/linux.md, "Snapshots").
//!
//! Taking one: the program's only thread writes its `struct
//! lx_snapshot_point` to the guest-thread device (`ThreadRequest::Snapshot`).
//! Its carrier (`pool`) captures the vCPU right there (`capture`) and stops
//! the VM; the owner then calls `Vm::take_snapshot` (in `vm`, which holds
//! what this module needs: it names nothing of its parent), which refuses a VM that
//! is not quiescent (an RPC being answered, an event queue) and copies guest
//! memory into a memfd (only the pages that are not zero).
//!
//! Starting from one: a new VM built with the same configuration (same
//! image, memory size, vCPUs, host modules) maps the memfd over its guest
//! memory copy-on-write (`MAP_PRIVATE`: nothing is copied until the guest
//! writes, and no VM's writes reach the snapshot), takes the vCPU state, the
//! RPC ring positions and module handles, and writes `result` = 1 and a fresh
//! seed into the snapshot point: the program goes on after its write.
//!
//! Why at a point the program chooses: the host-side state a guest depends
//! on (files open on the host, sockets, queued events, other threads) is
//! small and known there, so what is not captured can be checked to be empty.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use kvm_bindings::{
    kvm_lapic_state, kvm_msr_entry, kvm_regs, kvm_sregs, kvm_xcrs, kvm_xsave, Msrs,
};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::error::{kvm, VmError};
use crate::rpc::{RpcHost, RpcResume};

const MSR_IA32_TSC: u32 = 0x10;
/// MSRs the personality sets or the hardware keeps per vCPU (the TSC first:
/// KVM reads a list up to the first MSR it does not know).
const SAVED_MSRS: [u32; 9] = [
    MSR_IA32_TSC,
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR: the personality's system-call entry
    0xc000_0083, // CSTAR
    0xc000_0084, // SFMASK
    0xc000_0102, // KERNEL_GS_BASE
    0xc000_0103, // TSC_AUX
    0x277,       // PAT
    0x2ff,       // MTRR_DEF_TYPE
];
const PAGE: usize = 4096;

fn snap_err(why: impl Into<String>) -> VmError {
    VmError::Snapshot(why.into())
}

/// A vCPU at the snapshot point.
pub struct VcpuSnapshot {
    regs: kvm_regs,
    sregs: kvm_sregs,
    xsave: Box<kvm_xsave>,
    xcrs: kvm_xcrs,
    lapic: kvm_lapic_state,
    msrs: Vec<kvm_msr_entry>,
    /// When the TSC in `msrs` was read, to move it on by the time since.
    taken: Instant,
    tsc_khz: u32,
    /// The guest's `struct lx_snapshot_point`.
    point: u64,
}

/// Captures the vCPU that made a snapshot request (`point`: its `struct
/// lx_snapshot_point`); the caller has checked that the VM may be
/// snapshotted now (`pool`: vCPU 0 running the program's only thread).
pub(super) fn capture(fd: &mut VcpuFd, point: u64) -> Result<VcpuSnapshot, String> {
    // KVM completes the MMIO write on entry and returns at once
    // (immediate_exit): only then does rip point past it.
    fd.set_kvm_immediate_exit(1);
    let _ = fd.run();
    fd.set_kvm_immediate_exit(0);
    let e = |op: &str, err: kvm_ioctls::Error| format!("{op}: {err}");
    let mut msrs = Msrs::from_entries(&SAVED_MSRS.map(|index| kvm_msr_entry {
        index,
        ..Default::default()
    }))
    .map_err(|err| format!("MSR list: {err:?}"))?;
    let n = fd.get_msrs(&mut msrs).map_err(|x| e("KVM_GET_MSRS", x))?;
    let taken = Instant::now();
    let snap = VcpuSnapshot {
        regs: fd.get_regs().map_err(|x| e("KVM_GET_REGS", x))?,
        sregs: fd.get_sregs().map_err(|x| e("KVM_GET_SREGS", x))?,
        xsave: Box::new(fd.get_xsave().map_err(|x| e("KVM_GET_XSAVE", x))?),
        xcrs: fd.get_xcrs().map_err(|x| e("KVM_GET_XCRS", x))?,
        lapic: fd.get_lapic().map_err(|x| e("KVM_GET_LAPIC", x))?,
        msrs: msrs.as_slice()[..n].to_vec(),
        taken,
        tsc_khz: fd.get_tsc_khz().unwrap_or(0),
        point,
    };
    Ok(snap)
}

/// A VM's state at its snapshot point; `Vm::restore` starts new VMs from it.
pub struct Snapshot {
    memory: File,
    mem_size: u64,
    vcpus: u32,
    image: std::path::PathBuf,
    vcpu: VcpuSnapshot,
    rpc: RpcResume,
    /// The runs of pages mapped from `memory` (the rest is zero).
    runs: Vec<(usize, usize)>,
    /// The pages a run from the snapshot touches (`record_working_set`).
    working_set: Mutex<Vec<Touched>>,
}

impl Snapshot {
    /// A snapshot of a VM stopped at its snapshot point: its memory copied
    /// into a memfd now, and what `Vm::take_snapshot` checked and recorded.
    pub(super) fn take(
        mem: &GuestMemoryMmap,
        (mem_size, vcpus, image): (u64, u32, &Path),
        vcpu: VcpuSnapshot,
        rpc: RpcResume,
    ) -> Result<Self, VmError> {
        let (memory, runs) =
            copy_memory(mem).map_err(|e| VmError::Os("copying guest memory into a memfd", e))?;
        Ok(Snapshot {
            runs,
            memory,
            mem_size,
            vcpus,
            image: image.to_path_buf(),
            vcpu,
            rpc,
            working_set: Mutex::new(Vec::new()),
        })
    }

    /// Bytes the memfd holds now: the guest memory's pages that were not
    /// zero (plus any zero page between close runs that a VM touched).
    pub fn stored_bytes(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        self.memory.metadata().map_or(0, |m| m.blocks() * 512)
    }

    /// Makes a created VM (`mem`, its vCPU 0 `fd`, its `rpc`) of the same
    /// configuration go on from the snapshot point.
    pub(super) fn restore(
        &self,
        mem: &GuestMemoryMmap,
        (mem_size, vcpus, image): (u64, u32, &Path),
        fd: &VcpuFd,
        rpc: &RpcHost,
    ) -> Result<(), VmError> {
        if mem_size != self.mem_size || vcpus != self.vcpus || image != self.image {
            return Err(snap_err(
                "the VM's image, memory size or vCPU count differ from the snapshot's",
            ));
        }
        map_private(mem, &self.memory, &self.runs)
            .map_err(|e| VmError::Os("mapping the snapshot's memory", e))?;
        prefault(
            mem,
            &self
                .working_set
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        rpc.import(&self.rpc).map_err(snap_err)?;
        restore_vcpu(fd, &self.vcpu)?;
        let mut seed = [0u8; 40];
        seed[..8].copy_from_slice(&1i64.to_le_bytes());
        fill_random(&mut seed[8..]).map_err(|e| VmError::Os("getrandom", e))?;
        mem.write_slice(&seed, GuestAddress(self.vcpu.point))
            .map_err(|e| VmError::Memory(e.to_string()))
    }

    /// Records which pages of `mem` (a VM started from this snapshot, run,
    /// stopped) were read and written (from /proc/self/pagemap: a page
    /// present in the private mapping is the snapshot's if only read, a copy
    /// if written); later VMs from it fault those in before their vCPU runs.
    pub(super) fn record_working_set(&self, mem: &GuestMemoryMmap) -> Result<usize, VmError> {
        let touched =
            touched_pages(mem).map_err(|e| VmError::Os("reading /proc/self/pagemap", e))?;
        let pages = touched.iter().map(|t| t.len / PAGE).sum();
        *self
            .working_set
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = touched;
        Ok(pages)
    }
}

/// A run of guest pages a VM started from the snapshot touched: its offset,
/// length, and whether it was written (a private copy) or only read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Touched {
    offset: usize,
    len: usize,
    written: bool,
}

/// Faults in, in the host, the pages a run is known to touch: one call per
/// run of pages instead of a page fault each inside the VM's first touches
/// (under PVM, a shadow-paging fault that also faults the host page in costs
/// ~20 us; one whose host page is there already, a fraction of that).
fn prefault(mem: &GuestMemoryMmap, set: &[Touched]) {
    let Some(region) = mem.iter().next() else {
        return;
    };
    let Ok(host) = region.get_host_address(vm_memory::MemoryRegionAddress(0)) else {
        return;
    };
    for t in set {
        if t.offset.saturating_add(t.len) > region.len() as usize {
            continue;
        }
        let advice = if t.written {
            libc::MADV_POPULATE_WRITE
        } else {
            libc::MADV_POPULATE_READ
        };
        // SAFETY: the range lies inside the VM's guest-memory mapping (checked
        // above); populating only faults its pages in (a written one becomes
        // this VM's private copy, as the guest's own write would make it). A
        // failure leaves them to fault in later: only slower.
        unsafe {
            libc::madvise(host.add(t.offset).cast(), t.len, advice);
        }
    }
}

/// The runs of pages of the guest memory mapping that are present: written
/// (a page of this mapping's own) or only read (the memfd's page, or the
/// zero page of a hole); see `Snapshot::record_working_set`.
fn touched_pages(mem: &GuestMemoryMmap) -> io::Result<Vec<Touched>> {
    const PRESENT: u64 = 1 << 63;
    const FILE_OR_SHARED: u64 = 1 << 61;
    /// Mapped only here: a page of this VM's own (the zero page is not).
    const EXCLUSIVE: u64 = 1 << 56;
    let region = mem.iter().next().ok_or(io::ErrorKind::InvalidInput)?;
    let host = region
        .get_host_address(vm_memory::MemoryRegionAddress(0))
        .map_err(|_| io::ErrorKind::InvalidInput)? as usize;
    let pages = region.len() as usize / PAGE;
    let mut raw = vec![0u8; pages * 8];
    File::open("/proc/self/pagemap")?.read_exact_at(&mut raw, (host / PAGE * 8) as u64)?;
    let mut out: Vec<Touched> = Vec::new();
    for (i, word) in raw.chunks_exact(8).enumerate() {
        let e = u64::from_le_bytes(word.try_into().unwrap_or_default());
        if e & PRESENT == 0 {
            continue;
        }
        let written = e & (FILE_OR_SHARED | EXCLUSIVE) == EXCLUSIVE;
        match out.last_mut() {
            Some(t) if t.offset + t.len == i * PAGE && t.written == written => t.len += PAGE,
            _ => out.push(Touched {
                offset: i * PAGE,
                len: PAGE,
                written,
            }),
        }
    }
    Ok(out)
}

fn restore_vcpu(fd: &VcpuFd, s: &VcpuSnapshot) -> Result<(), VmError> {
    // This vCPU's own TSS and APIC base, as when a guest thread moves (`pool`).
    let own = fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let mut sregs = s.sregs;
    sregs.tr = own.tr;
    sregs.apic_base = own.apic_base;
    sregs.interrupt_bitmap = [0; 4];
    fd.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;
    fd.set_regs(&s.regs).map_err(kvm("KVM_SET_REGS"))?;
    // SAFETY: the buffer came from KVM_GET_XSAVE on a vCPU of this process
    // with the same CPUID (same image and configuration).
    unsafe { fd.set_xsave(&s.xsave) }.map_err(kvm("KVM_SET_XSAVE"))?;
    fd.set_xcrs(&s.xcrs).map_err(kvm("KVM_SET_XCRS"))?;
    fd.set_lapic(&s.lapic).map_err(kvm("KVM_SET_LAPIC"))?;
    // The TSC goes on from where it was by the time passed since (the
    // personality's clocks are the TSC plus a base read at boot).
    let elapsed = s.taken.elapsed().as_micros() as u64;
    let ticks = elapsed.saturating_mul(u64::from(s.tsc_khz)) / 1000;
    let entries: Vec<kvm_msr_entry> = s
        .msrs
        .iter()
        .map(|m| match m.index {
            MSR_IA32_TSC => kvm_msr_entry {
                data: m.data.wrapping_add(ticks),
                ..*m
            },
            _ => *m,
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).map_err(|e| snap_err(format!("MSRs: {e:?}")))?;
    fd.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
    Ok(())
}

/// Zero pages between two stored runs that still go with them into one
/// mapping (fewer mappings per VM; such a page faulted in is a page of the
/// memfd, which then keeps it).
const MERGE_GAP: usize = 4 * PAGE;

/// The guest memory's non-zero pages in a new memfd (zero pages stay holes),
/// and the runs of pages to map from it: (offset, length).
fn copy_memory(mem: &GuestMemoryMmap) -> io::Result<(File, Vec<(usize, usize)>)> {
    // SAFETY: a plain syscall with a NUL-terminated name; the fd is checked.
    let fd = unsafe { libc::memfd_create(c"vmrpc-snapshot".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let file = unsafe { File::from_raw_fd(fd) };
    let region = mem.iter().next().ok_or(io::ErrorKind::InvalidInput)?;
    let size = region.len() as usize;
    file.set_len(size as u64)?;
    let host = region
        .get_host_address(vm_memory::MemoryRegionAddress(0))
        .map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: the whole region is mapped readable for the VM's life and every
    // vCPU has stopped, so nothing writes it while it is read here.
    let bytes = unsafe { std::slice::from_raw_parts(host, size) };
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut at = 0;
    while at < size {
        // A run of non-zero pages is written with one call.
        let start = at;
        while at < size && bytes[at..at + PAGE].iter().any(|&b| b != 0) {
            at += PAGE;
        }
        if at == start {
            at += PAGE;
            continue;
        }
        file.write_all_at(&bytes[start..at], start as u64)?;
        match runs.last_mut() {
            Some((o, l)) if start - (*o + *l) <= MERGE_GAP => *l = at - *o,
            _ => runs.push((start, at - start)),
        }
    }
    Ok((file, runs))
}

/// Maps `runs` of `file` over the guest memory, private (the guest's writes
/// go to copies of the pages, never to the file), and fresh anonymous memory
/// everywhere else: memory a run touches for the first time (its heap, its
/// stack) comes zeroed from the host, not through the memfd, which would
/// keep a page for every hole any run touched.
fn map_private(mem: &GuestMemoryMmap, file: &File, runs: &[(usize, usize)]) -> io::Result<()> {
    let region = mem.iter().next().ok_or(io::ErrorKind::InvalidInput)?;
    let host = region
        .get_host_address(vm_memory::MemoryRegionAddress(0))
        .map_err(|_| io::ErrorKind::InvalidInput)?;
    if file.metadata()?.len() != region.len() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let size = region.len() as usize;
    if runs
        .iter()
        .any(|&(o, l)| o.checked_add(l).is_none_or(|end| end > size))
    {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // SAFETY: replaces exactly the VM's own guest-memory mapping (same
    // address and length, still owned by `mem`, which unmaps it at drop) with
    // fresh private anonymous memory, before any vCPU has run; KVM's memory
    // slot follows the host virtual addresses, which do not change.
    let at = unsafe {
        libc::mmap(
            host.cast(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if at == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    for &(offset, len) in runs {
        // SAFETY: as above, for a part of the same mapping (checked to lie
        // inside it), from the same offset of the file.
        let at = unsafe {
            libc::mmap(
                host.add(offset).cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_NORESERVE,
                file.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut at = 0;
    while at < buf.len() {
        // SAFETY: writes at most `buf.len() - at` bytes into `buf[at..]`.
        let n = unsafe { libc::getrandom(buf[at..].as_mut_ptr().cast(), buf.len() - at, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        at += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 64 * PAGE)]).unwrap()
    }

    #[test]
    fn only_pages_that_are_not_zero_are_stored_and_a_private_map_never_writes_back() {
        let original = memory();
        original.write_slice(b"first", GuestAddress(0)).unwrap();
        original
            .write_slice(b"tenth", GuestAddress(10 * PAGE as u64 + 7))
            .unwrap();
        let (file, runs) = copy_memory(&original).unwrap();
        assert_eq!(runs, vec![(0, PAGE), (10 * PAGE, PAGE)]);

        let (one, two) = (memory(), memory());
        one.write_slice(b"stale", GuestAddress(30 * PAGE as u64))
            .unwrap();
        map_private(&one, &file, &runs).unwrap();
        map_private(&two, &file, &runs).unwrap();
        one.write_slice(b"WRITE", GuestAddress(0)).unwrap();
        one.write_slice(b"fresh", GuestAddress(20 * PAGE as u64))
            .unwrap();
        let mut got = [0u8; 5];
        two.read_slice(&mut got, GuestAddress(0)).unwrap();
        assert_eq!(&got, b"first", "one VM's write reached another's memory");
        two.read_slice(&mut got, GuestAddress(10 * PAGE as u64 + 7))
            .unwrap();
        assert_eq!(&got, b"tenth");
        let mut in_file = [0u8; 5];
        file.read_exact_at(&mut in_file, 0).unwrap();
        assert_eq!(&in_file, b"first", "a write reached the snapshot");
        one.read_slice(&mut got, GuestAddress(30 * PAGE as u64))
            .unwrap();
        assert_eq!(
            got, [0; 5],
            "what the VM held before the snapshot's memory stays"
        );
        let blocks = std::os::unix::fs::MetadataExt::blocks(&file.metadata().unwrap());
        assert_eq!(
            blocks * 512,
            2 * PAGE as u64,
            "a run's fresh page went into the memfd"
        );

        // `one` wrote pages 0 and 20 (its copies) and read page 30 (the zero page).
        let touched = touched_pages(&one).unwrap();
        let written: Vec<usize> = touched
            .iter()
            .filter(|t| t.written)
            .flat_map(|t| (t.offset..t.offset + t.len).step_by(PAGE))
            .collect();
        assert_eq!(written, vec![0, 20 * PAGE]);
    }
}
