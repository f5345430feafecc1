//! The loopback arena: guest memory shared by the VMs of one multi-program Linux VM.
//!
//! Every program of a `LinuxVM(..., also=[...])` runs in a KVM VM of its own (its own
//! RAM, page tables, vCPUs, fd table and host modules, docs/linux.md "Several programs
//! in one VM"). The one thing they share is this arena: one host mapping that each of
//! their VMs maps at the same guest-physical address `ARENA_BASE` (and, identity-mapped,
//! the same virtual address). The guest socket library keeps the listeners and byte
//! pipes of loopback connections between programs there (guest/lib/sockets/arena.c),
//! and waits on words in it through the futex device, whose waits on arena addresses go
//! to one table shared by all the VMs (`futexes`), so a wake from one program reaches a
//! waiter in another.
//!
//! The host never reads the arena's contents: it is ordinary guest memory every
//! program can write, so a program that corrupts it breaks only the connections it
//! shares with the others, never the host.

use std::sync::{Arc, Mutex};

use vm_memory::{GuestAddress, GuestRegionMmap};

use crate::devices::futex::SharedFutexTable;
use crate::error::VmError;
use crate::layout::{ARENA_BASE, ARENA_SIZE};

/// The arena's memory and the futex table of its words; cloned into each VM.
pub struct LoopbackArena {
    region: Arc<GuestRegionMmap>,
    futexes: SharedFutexTable,
}

impl std::fmt::Debug for LoopbackArena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoopbackArena({:#x}, {} bytes)", ARENA_BASE, ARENA_SIZE)
    }
}

impl LoopbackArena {
    pub fn new() -> Result<Arc<Self>, VmError> {
        let region =
            GuestRegionMmap::from_range(GuestAddress(ARENA_BASE), ARENA_SIZE as usize, None)
                .map_err(|e| VmError::Memory(e.to_string()))?;
        Ok(Arc::new(LoopbackArena {
            region: Arc::new(region),
            futexes: Arc::new(Mutex::new(Default::default())),
        }))
    }

    /// The memory region to add to a VM's guest memory.
    pub fn region(&self) -> Arc<GuestRegionMmap> {
        self.region.clone()
    }

    /// The futex table for waits on arena words, shared by every VM that maps it.
    pub fn futexes(&self) -> SharedFutexTable {
        self.futexes.clone()
    }
}
