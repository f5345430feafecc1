//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// A guest image built by `make -C guest` (the Makefile builds them before
/// `cargo test`).
pub fn image(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../guest/build/{name}.elf"));
    assert!(
        p.exists(),
        "{} is missing: run `make -C guest` first",
        p.display()
    );
    p
}

/// Why `/dev/kvm` cannot be used here, if it cannot.
pub fn kvm_unusable() -> Option<String> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => None,
        Err(e) => Some(format!("/dev/kvm cannot be opened: {e}")),
    }
}

/// Outside CI, a test that needs KVM skips (says why on stderr) where there
/// is none; under `CI=true` it fails instead, so a runner without KVM cannot
/// pass the suite by skipping it.
pub fn skip_or_fail(reason: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    assert!(!ci, "CI=true and KVM is unusable: {reason}");
    eprintln!("skipped: needs KVM: {reason}");
}

/// First line of every test that runs a VM: returns from it (a skip) when
/// KVM is unusable, see `skip_or_fail`.
#[macro_export]
macro_rules! require_kvm {
    () => {
        if let Some(reason) = common::kvm_unusable() {
            common::skip_or_fail(&reason);
            return;
        }
    };
}
