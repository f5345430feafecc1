//! Build script: when the Python extension is built (feature `python`, i.e. by maturin
//! for `pip install`, `maturin develop` and `maturin build`), build the guest images and
//! the guest SDK into `python/vmrpc/_guest` so that every install path ships them.
//!
//! The copy itself is the top-level Makefile's `sdk` target, the same one `make dev`
//! runs: one way to lay out the SDK. Plain `cargo build/test` (no `python` feature)
//! builds no guest.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-env-changed=CARGO_FEATURE_PYTHON");
    if env::var_os("CARGO_FEATURE_PYTHON").is_none() {
        return;
    }
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("crates/vmm sits two levels below the repository root")
        .to_path_buf();
    watch_guest_sources(&root);

    let mut make = Command::new(env::var_os("MAKE").unwrap_or_else(|| "make".into()));
    make.arg("-s").arg("-C").arg(&root).arg("sdk");
    // An outer make (e.g. `make dev`) exports its own flags and jobserver; this is a
    // separate, self-contained build.
    for var in ["MAKEFLAGS", "MFLAGS", "MAKELEVEL"] {
        make.env_remove(var);
    }
    let status = make.status().unwrap_or_else(|e| {
        panic!("vmrpc needs GNU make and gcc to build its guest images: running `make` failed: {e}")
    });
    assert!(
        status.success(),
        "building the guest images and SDK (`make -C {} sdk`) failed: {status}",
        root.display()
    );
}

/// Rerun when a guest source or a Makefile changes, or when the SDK is missing (a fresh
/// sdist unpacked onto a warm target directory, a deleted `_guest`). The build's own
/// outputs are not watched, or every build would rerun: the SDK's stamp is dated 1970.
fn watch_guest_sources(root: &Path) {
    println!(
        "cargo::rerun-if-changed={}",
        root.join("Makefile").display()
    );
    let stamp = root.join("python/vmrpc/_guest/.complete");
    println!("cargo::rerun-if-changed={}", stamp.display());
    let guest = root.join("guest");
    let entries = std::fs::read_dir(&guest)
        .unwrap_or_else(|e| panic!("the guest sources are missing ({}): {e}", guest.display()));
    for entry in entries.flatten() {
        if entry.file_name() != "build" {
            println!("cargo::rerun-if-changed={}", entry.path().display());
        }
    }
}
