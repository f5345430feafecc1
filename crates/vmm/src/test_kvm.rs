//! For unit tests that need /dev/kvm: the handle, or `None` after saying the test
//! is skipped. Under `CI=true` a missing /dev/kvm fails instead: CI must never
//! pass a KVM test silently.

pub fn kvm_or_skip() -> Option<kvm_ioctls::Kvm> {
    match kvm_ioctls::Kvm::new() {
        Ok(kvm) => Some(kvm),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: /dev/kvm is unusable ({e})"
            );
            eprintln!("skipped: /dev/kvm is not usable here ({e})");
            None
        }
    }
}
