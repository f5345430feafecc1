//! Linux programs in the guest (part 1: unmodified static x86-64 executables).
//!
//! The host side of the Linux personality: it checks the program's ELF, copies
//! its segments into guest memory, builds the initial stack (argv, envp, auxv),
//! tells the guest personality (`guest/linux/`, a ring-3 guest image) where
//! everything is through an info block at a fixed address, and points every
//! vCPU's `MSR_LSTAR` at a trampoline that enters the personality's system-call
//! handler. See docs/linux.md.

pub mod code;
pub mod dataplane;
pub mod elf;
pub mod exec;
pub mod fork;
pub mod image_cache;
pub mod pathops;
pub mod rewrite;
pub mod setup;
pub mod stack;

/// Why a program cannot be set up in a VM.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// the program file cannot be read
    #[error("cannot read the program: {0}")]
    Io(#[from] std::io::Error),
    /// not an ELF file
    #[error("not an ELF executable")]
    NotElf,
    /// an ELF for another machine
    #[error("not an x86-64 program: {0}")]
    WrongArch(String),
    /// the ELF interpreter (PT_INTERP) named by a dynamically linked program is unusable
    #[error("the program's interpreter {0}")]
    Interpreter(String),
    /// a malformed or unsupported ELF
    #[error("unusable ELF: {0}")]
    BadProgram(String),
    /// the program does not fit in the VM's memory layout
    #[error("{0}")]
    Layout(String),
    /// argv/envp unusable
    #[error("{0}")]
    Args(String),
    /// writing guest memory or configuring vCPUs failed
    #[error("{0}")]
    Vm(String),
}
