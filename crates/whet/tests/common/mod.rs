//! Helpers shared by the `whet` crate's integration tests.

use std::path::{Path, PathBuf};

/// The repository root (found through the run-time `CARGO_MANIFEST_DIR`, so a target folder
/// shared by two checkouts cannot point a test at the other one's files).
pub fn repo() -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../..")
    .canonicalize()
    .unwrap()
}
