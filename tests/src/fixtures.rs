//! Paths of the committed fixtures.

use std::path::PathBuf;

/// `tests/fixtures/` of this repository.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}
