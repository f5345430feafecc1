//! Exhaustive model check of the VM RPC sleep/wake protocol (docs/design.md,
//! "No lost wakeup") with loom: every interleaving, and every ordering the C11
//! memory model allows, of a publisher and a sleeper.
//!
//! The model is the protocol, not the production code (the guest side is C):
//! the sleeper sets its "waiting" flag, fences, re-checks, and sleeps only if
//! nothing arrived; the publisher publishes, fences, reads the flag and notifies
//! only if it is set. A notification is a counter (an eventfd, or an interrupt
//! that stays pending until `sti; hlt`), so one sent before the sleeper blocks
//! is not lost. The check: whenever the sleeper decides to sleep, a notification
//! is on its way.

use loom::sync::atomic::{fence, AtomicU32, Ordering::*};
use loom::sync::Arc;
use loom::thread;

struct Shared {
    /// Ring head: 1 once the message is published.
    head: AtomicU32,
    /// The sleeper's "notify me" flag (host_sleeping / consumer_waiting).
    waiting: AtomicU32,
    /// Notifications sent (doorbell writes / irqfd writes).
    notified: AtomicU32,
}

fn check(publisher_fence: bool, sleeper_fence: bool) -> bool {
    let mut lost = false;
    let result = std::panic::catch_unwind(|| {
        loom::model(move || {
            let s = Arc::new(Shared {
                head: AtomicU32::new(0),
                waiting: AtomicU32::new(0),
                notified: AtomicU32::new(0),
            });
            let p = s.clone();
            let publisher = thread::spawn(move || {
                p.head.store(1, Release);
                if publisher_fence {
                    fence(SeqCst);
                }
                if p.waiting.load(Relaxed) == 1 {
                    p.notified.fetch_add(1, Relaxed);
                }
            });
            // The sleeper, after its spin found nothing.
            s.waiting.store(1, Relaxed);
            if sleeper_fence {
                fence(SeqCst);
            }
            let will_sleep = s.head.load(Acquire) == 0;
            publisher.join().unwrap();
            if will_sleep {
                // It blocks until a notification arrives; one must have been sent.
                assert_eq!(s.notified.load(Relaxed), 1, "lost wakeup");
            }
        });
    });
    if result.is_err() {
        lost = true;
    }
    !lost
}

#[test]
fn no_lost_wakeup_with_both_fences() {
    assert!(check(true, true));
}

/// The fences are what makes it work: without either one, loom finds the
/// interleaving (a store-buffering reordering) where the sleeper sleeps forever.
#[test]
fn each_fence_is_needed() {
    assert!(!check(false, true), "publisher fence not needed?");
    assert!(!check(true, false), "sleeper fence not needed?");
}
