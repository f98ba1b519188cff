//! Outputs live under a temporary name next to their final one until they are complete.
//!
//! Every live temporary is registered, so that an interrupt (SIGINT, SIGTERM) can remove
//! them before the process exits: nothing half-written is left behind, under any name.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Clean-ups of outputs that are not local temporaries (object storage, written in place):
/// each erases what it wrote and says what happened.
type Cleanup = Box<dyn Fn() -> String + Send + Sync>;
static CLEANUPS: Mutex<Vec<(u64, std::sync::Arc<Cleanup>)>> = Mutex::new(Vec::new());
static NEXT_CLEANUP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long an interrupt waits for the clean-ups of object-storage outputs.
const CLEANUP_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// A registered clean-up (see [`register_cleanup`]).
#[derive(Debug)]
pub struct CleanupId(u64);

/// Registers `cleanup` to run on interrupt (after the write gate is closed).
pub fn register_cleanup(cleanup: Cleanup) -> CleanupId {
    let id = NEXT_CLEANUP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    cleanups().push((id, std::sync::Arc::new(cleanup)));
    CleanupId(id)
}

/// The output is committed or cleaned up by its owner: nothing to do on interrupt.
pub fn unregister_cleanup(id: CleanupId) {
    cleanups().retain(|(i, _)| *i != id.0);
}

fn cleanups() -> std::sync::MutexGuard<'static, Vec<(u64, std::sync::Arc<Cleanup>)>> {
    CLEANUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

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
/// for writes in progress, then closes the gate for good (see [`write_permit`]), then runs
/// the registered clean-ups of object-storage outputs, waiting at most 15 s for them.
/// Returns what the clean-ups report (nothing when there were none).
pub fn remove_all() -> Vec<String> {
    if let Ok(gate) = WRITE_GATE.write() {
        std::mem::forget(gate);
    }
    for path in registry().drain(..) {
        remove_path(&path);
    }
    let pending: Vec<_> = cleanups().drain(..).map(|(_, c)| c).collect();
    if pending.is_empty() {
        return Vec::new();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let n = pending.len();
    for cleanup in pending {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(cleanup());
        });
    }
    let deadline = std::time::Instant::now() + CLEANUP_WAIT;
    let mut messages = Vec::new();
    while messages.len() < n {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(m) => messages.push(m),
            Err(_) => {
                messages.push(format!(
                    "clean-up of {} object-storage output(s) still running after {}s; objects \
                     (without root metadata) may remain under the OUTPUT prefix",
                    n - messages.len(),
                    CLEANUP_WAIT.as_secs()
                ));
                break;
            }
        }
    }
    messages
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
