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
