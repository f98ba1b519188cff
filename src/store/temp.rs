//! Outputs live under a temporary name next to their final one until they are complete.
//!
//! Every live temporary is registered, so that an interrupt (SIGINT, SIGTERM) can remove
//! them before the process exits: nothing half-written is left behind, under any name.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Writers into temporary directories hold this (shared) while they write; [`remove_all`]
/// takes it exclusively and never gives it back, so that no write can recreate a directory
/// after it was removed (a directory store's writes create missing parent directories).
static WRITE_GATE: RwLock<()> = RwLock::new(());

/// Permission to write into a temporary output. Once the process is being interrupted
/// this blocks until the process exits.
pub fn write_permit() -> RwLockReadGuard<'static, ()> {
    WRITE_GATE
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A file (or directory: a zarr store) under a temporary name, removed when dropped unless [`TempFile::keep`] was called.
pub struct TempFile {
    pub path: PathBuf,
    kept: bool,
}

impl TempFile {
    /// `.NAME.atlasnorm-PID.tmp` next to `target`, registered for removal on interrupt.
    pub fn next_to(target: &Path) -> TempFile {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        let path = dir.join(format!(".{name}.atlasnorm-{}.tmp", std::process::id()));
        registry().push(path.clone());
        TempFile { path, kept: false }
    }

    /// The file has moved to its final name: nothing to remove any more.
    pub fn keep(&mut self) {
        self.kept = true;
        forget(&self.path);
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            remove_path(&self.path);
            forget(&self.path);
        }
    }
}

/// Removes a temporary file, or a temporary directory with everything in it (zarr stores).
pub fn remove_path(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// Removes every temporary output still alive; for signal handlers about to exit. Waits
/// for writes in progress, then closes the gate for good (see [`write_permit`]).
pub fn remove_all() {
    if let Ok(gate) = WRITE_GATE.write() {
        std::mem::forget(gate);
    }
    for path in registry().drain(..) {
        remove_path(&path);
    }
}

fn registry() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn forget(path: &Path) {
    registry().retain(|p| p != path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_are_removed_on_drop_and_on_interrupt_but_not_when_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dropped = TempFile::next_to(&dir.path().join("a.h5ad"));
        std::fs::write(&dropped.path, b"x").unwrap();
        let path = dropped.path.clone();
        drop(dropped);
        assert!(!path.exists());

        let mut kept = TempFile::next_to(&dir.path().join("b.h5ad"));
        std::fs::write(&kept.path, b"x").unwrap();
        kept.keep();
        let live = TempFile::next_to(&dir.path().join("c.h5ad"));
        std::fs::write(&live.path, b"x").unwrap();
        remove_all();
        assert!(kept.path.exists());
        assert!(!live.path.exists());
    }
}
