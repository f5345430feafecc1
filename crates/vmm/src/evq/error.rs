//! What event queue operations fail with, and the two words those errors
//! use: what a host thread waited for, and why a queue closed.

/// What a host thread waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// An event to take (g2h not empty).
    Readable,
    /// Room to put an event (h2g not full).
    Writable,
}

/// Why a queue is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Deleted,
    VmClosed,
}

#[derive(Debug, thiserror::Error)]
pub enum EvqError {
    /// make_ev_queue with a capacity that is not a power of two in range
    #[error("capacity must be a power of two from 1 to 65536, got {0}")]
    BadCapacity(u64),
    /// make_ev_queue with an event size out of range
    #[error("max_event_size must be 1 to 65528 bytes, got {0}")]
    BadEventSize(u64),
    /// a queue name that is empty or too long
    #[error("event queue name must be 1 to 255 bytes, got {0}")]
    BadName(usize),
    /// a name with a NUL byte: C guests pass names as strings and cannot name it
    #[error("event queue name {0:?} contains a NUL byte")]
    NulInName(String),
    /// make_ev_queue with the name of a live queue
    #[error("an event queue named {0:?} already exists")]
    Exists(String),
    /// del_ev_queue of a name that has no live queue
    #[error("no event queue named {0:?}")]
    NotFound(String),
    /// the event queue arena has no room left for the queue
    #[error(
        "event queue arena full: queue {name:?} needs {need} bytes but only {left} of the \
         arena's {size} are left (space of deleted queues is not reused while the VM lives; \
         use a smaller capacity or max_event_size)"
    )]
    ArenaFull {
        name: String,
        need: u64,
        left: u64,
        size: u64,
    },
    /// an event larger than the queue's max_event_size
    #[error("event of {len} bytes is larger than max_event_size ({max} bytes) of queue {name:?}")]
    TooBig { name: String, len: usize, max: u32 },
    /// the queue was deleted, or its VM closed
    #[error("event queue {name:?} is closed ({})", match reason {
        CloseReason::Deleted => "it was deleted",
        CloseReason::VmClosed => "its VM was closed",
    })]
    Closed { name: String, reason: CloseReason },
    /// a blocking operation that can never complete: the VM stopped
    #[error("event queue {name:?}: the VM has stopped, so {} will never come", match what {
        Wait::Readable => "another event",
        Wait::Writable => "room for another event",
    })]
    VmStopped { name: String, what: Wait },
    /// the guest wrote impossible values into the queue's rings
    #[error("event queue {name:?} is corrupt: {what}")]
    Corrupt { name: String, what: String },
    /// guest memory could not be reached (a VMM bug)
    #[error("event queue memory: {0}")]
    Memory(String),
    /// an OS resource could not be created
    #[error("{0}: {1}")]
    Os(&'static str, std::io::Error),
    /// a KVM ioctl failed
    #[error("{op} failed: {source}")]
    Kvm {
        op: &'static str,
        source: kvm_ioctls::Error,
    },
}

impl PartialEq for EvqError {
    /// Compares by message: enough for tests, and errors are not keys.
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}
