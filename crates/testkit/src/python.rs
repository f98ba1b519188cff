//! Helpers shared by the h5ad integration tests: the Python env (anndata, h5py) that writes
//! inputs and checks outputs, and scratch directories.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python interpreter with anndata/h5py: `$ATLASNORM_PYTHON`, else the repo's
/// `.tools/py312/bin/python` (made by the set-up script). Missing is a test failure.
pub fn python() -> PathBuf {
    let p = match std::env::var_os("ATLASNORM_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => crate::repo_root().join(".tools/py312/bin/python"),
    };
    assert!(
        p.exists(),
        "these tests need a Python with anndata and h5py: set ATLASNORM_PYTHON or run the \
         set-up script to create {} (not found)",
        p.display()
    );
    p
}

/// Runs `script` with `args`; panics with its stderr when it fails. Returns stdout.
pub fn run_py(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .expect("cannot run python");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The test matrix: value at (i, j) of an n_obs x n_vars matrix, ~30% non-zero.
pub fn value(i: u64, j: u64) -> f64 {
    if (i * 7 + j * 3) % 10 < 3 {
        ((i + 2 * j) % 11 + 1) as f64
    } else {
        0.0
    }
}

/// The same formula in Python (numpy), for scripts.
pub const PY_MATRIX: &str = r#"
import numpy as np
def matrix(n, m):
    i = np.arange(n)[:, None]; j = np.arange(m)[None, :]
    return np.where((i * 7 + j * 3) % 10 < 3, (i + 2 * j) % 11 + 1, 0).astype(np.float64)
"#;
