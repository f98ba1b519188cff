//! Test support shared by the integration tests of atlasnorm's crates (not published).
//!
//! * [`python`]: the Python env with anndata/h5py that writes inputs and checks outputs.
//! * [`moto`]: a real `moto_server` (S3) on 127.0.0.1, and a slow proxy in front of it.
//! * [`rss`]: the peak resident memory of a child process.

use std::path::{Path, PathBuf};

pub mod moto;
pub mod python;
pub mod rss;

/// The repository's root (the test data, `.tools/`, the Python scripts live there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
