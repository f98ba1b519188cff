//! Outputs live under a temporary name next to their final one until they are complete.
//!
//! Every live temporary is registered, so that an interrupt (SIGINT, SIGTERM) can remove
//! them before the process exits: nothing half-written is left behind, under any name.
//!
//! A run that cannot clean up (SIGKILL, a power cut) leaves its temporary
//! (`.NAME.atlasnorm-PID.tmp`, and during a `--force` replacement of a directory store the
//! previous OUTPUT moved aside as `.NAME.atlasnorm-PID.old`). The next run on the same OUTPUT
//! removes them, and puts a moved-aside OUTPUT back if the new one never arrived. It knows
//! they are dead because every run first claims OUTPUT (see [`claim_output`]): an exclusive
//! `flock` on `.NAME.atlasnorm.lock`, which the kernel releases when the process dies,
//! however it dies. A PID check could not tell: PIDs are reused. The same lock settles two
//! concurrent runs on one OUTPUT: the second is refused at once, before it writes anything.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, Weak};

use crate::error::{io_message, Error, Result};

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

/// A file (or directory: a zarr store) under a temporary name, removed when dropped unless
/// [`TempFile::keep`] was called. It holds the claim on its OUTPUT until then.
pub struct TempFile {
    pub path: PathBuf,
    kept: bool,
    // Dropped after the temporary is removed (see `Drop`): the lock outlives the file.
    claim: Option<OutputClaim>,
}

impl TempFile {
    /// `.NAME.atlasnorm-PID.tmp` next to `target`, registered for removal on interrupt,
    /// once `target` is claimed for this process (see [`claim_output`]: this is where a
    /// missing or unwritable output directory and a concurrent run are refused).
    pub fn next_to(target: &Path) -> Result<TempFile> {
        let claim = claim_output(target)?;
        let (dir, name) = dir_and_name(target);
        let path = dir.join(format!(".{name}.atlasnorm-{}.tmp", std::process::id()));
        registry().push(path.clone());
        Ok(TempFile {
            path,
            kept: false,
            claim: Some(claim),
        })
    }

    /// Runs `create` (which makes the file or directory at [`TempFile::path`]) while holding
    /// the write permit, so that an interrupt either waits for it and then removes what it
    /// made, or comes first and `create` never runs (the process exits). A creation outside
    /// the permit could land just after the interrupt's removal and outlive the process.
    /// `create` must not write through gated storage itself (the permit is not re-entrant).
    pub fn create<T>(&self, create: impl FnOnce(&Path) -> T) -> T {
        let _permit = write_permit();
        create(&self.path)
    }

    /// The file has moved to its final name: nothing to remove any more.
    pub fn keep(&mut self) {
        self.kept = true;
        forget(&self.path);
        self.claim = None;
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

/// This process's claim on a local OUTPUT: while any clone lives, the lock file
/// `.NAME.atlasnorm.lock` next to OUTPUT is locked (`flock`, exclusive) and no other run
/// can claim OUTPUT. The last clone dropped removes the lock file.
#[derive(Clone)]
pub struct OutputClaim(#[allow(dead_code)] Arc<Claim>);

struct Claim {
    lock_path: PathBuf,
    /// The open lock file (the lock lives as long as it is open); `None` where the file
    /// system does not support locks.
    _file: Option<std::fs::File>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Removed while still locked (the file closes after this): a run waiting on this
        // file sees it gone and takes a new one (see `lock`).
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Claims held by this process (a second claim of the same OUTPUT shares the first).
static CLAIMS: Mutex<Vec<Weak<Claim>>> = Mutex::new(Vec::new());

/// Set by [`remove_all`]: no new claim (no new lock file) once the interrupt cleaned up.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Claims the local `target` for this run, before anything is written:
/// * the directory that will hold OUTPUT must exist, be a directory and be writable
///   (creating the lock file tests that): otherwise a plain error, before any work;
/// * the lock file is locked, or the run is refused: "another atlasnorm run (pid N) is
///   writing this output" — the first run keeps OUTPUT, its temporary is never touched;
/// * then what dead runs left next to OUTPUT is cleared: their temporaries removed, an
///   OUTPUT moved aside by an unfinished replacement put back (or removed, when OUTPUT
///   exists).
///
/// Holding the claim (keep the returned value alive) for the whole run keeps those
/// leftovers' owners provably dead: every run that writes them holds the claim. Where the
/// file system has no locks, the run goes ahead unclaimed and leaves leftovers alone.
pub fn claim_output(target: &Path) -> Result<OutputClaim> {
    let (dir, name) = dir_and_name(target);
    let lock_path = dir.join(format!(".{name}.atlasnorm.lock"));
    let mut claims = CLAIMS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    claims.retain(|c| c.strong_count() > 0);
    if let Some(claim) = claims
        .iter()
        .filter_map(Weak::upgrade)
        .find(|c| c.lock_path == lock_path)
    {
        return Ok(OutputClaim(claim));
    }
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(Error::output(target, "interrupted"));
    }
    check_dir(target, &dir)?;
    let file = lock(target, &dir, &lock_path)?;
    let locked = file.is_some();
    let claim = Arc::new(Claim {
        lock_path,
        _file: file,
    });
    claims.push(Arc::downgrade(&claim));
    drop(claims);
    if locked {
        clear_leftovers(target, &dir, &name);
    }
    Ok(OutputClaim(claim))
}

/// The directory OUTPUT goes into (`.` for a bare name) and OUTPUT's file name.
fn dir_and_name(target: &Path) -> (PathBuf, String) {
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    (dir, name)
}

/// The output directory exists and is a directory.
fn check_dir(target: &Path, dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::output(
            target,
            format!("{} is not a directory", dir.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::output(
            target,
            format!("the output directory {} does not exist", dir.display()),
        )),
        Err(e) => Err(Error::output(
            target,
            format!(
                "cannot use the output directory {}: {}",
                dir.display(),
                io_message(&e)
            ),
        )),
    }
}

/// Opens (creating) and locks the lock file; `None` when the file system cannot lock.
fn lock(target: &Path, dir: &Path, lock_path: &Path) -> Result<Option<std::fs::File>> {
    loop {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path)
            .map_err(|e| {
                Error::output(
                    target,
                    format!(
                        "cannot write in the output directory {}: {}",
                        dir.display(),
                        io_message(&e)
                    ),
                )
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let pid = match text.trim().parse::<u32>() {
                    Ok(pid) => format!(" (pid {pid})"),
                    Err(_) => String::new(),
                };
                return Err(Error::output(
                    target,
                    format!(
                        "another atlasnorm run{pid} is writing this output; wait for it to \
                         finish or choose another OUTPUT"
                    ),
                ));
            }
            // No locks on this file system (some network and FUSE mounts).
            Err(std::fs::TryLockError::Error(_)) => return Ok(None),
        }
        // Between our open and our lock the previous holder may have finished and removed
        // the file: then we hold a lock nobody else can find. Take the file now there.
        if same_file(&file, lock_path) {
            // Only for the message of a refused run: failure (a full disk) is harmless.
            let _ = file
                .set_len(0)
                .and_then(|()| write!(file, "{}", std::process::id()));
            return Ok(Some(file));
        }
    }
}

fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Removes the temporaries dead runs left next to `target` and puts back an OUTPUT one of
/// them had moved aside (`.NAME.atlasnorm-PID.old`) when no new OUTPUT replaced it; such an
/// OUTPUT is removed when OUTPUT exists. Best effort: what cannot be removed stays.
fn clear_leftovers(target: &Path, dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.atlasnorm-");
    let mut moved_aside = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some((pid, kind)) = rest.rsplit_once('.') else {
            continue;
        };
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        match kind {
            "tmp" => remove_path(&entry.path()),
            "old" => moved_aside.push(entry.path()),
            _ => {}
        }
    }
    for old in moved_aside {
        let restored =
            std::fs::symlink_metadata(target).is_err() && std::fs::rename(&old, target).is_ok();
        if !restored {
            remove_path(&old);
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
    remove_live(true, None);
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

/// Removes the registered temporaries, then the lock files of the live claims (the locks
/// themselves go with the process); `last`: no claim is taken after this. `under` limits
/// both to one directory (for tests, which share the registry).
fn remove_live(last: bool, under: Option<&Path>) {
    let mine = |p: &Path| under.is_none_or(|d| p.starts_with(d));
    let paths: Vec<PathBuf> = {
        let mut live = registry();
        let (taken, kept): (Vec<PathBuf>, Vec<PathBuf>) = live.drain(..).partition(|p| mine(p));
        *live = kept;
        taken
    };
    for path in paths {
        remove_path(&path);
    }
    let claims = CLAIMS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if last {
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    for claim in claims.iter().filter_map(Weak::upgrade) {
        if mine(&claim.lock_path) {
            let _ = std::fs::remove_file(&claim.lock_path);
        }
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
        let dropped = TempFile::next_to(&dir.path().join("a.h5ad")).unwrap();
        std::fs::write(&dropped.path, b"x").unwrap();
        let path = dropped.path.clone();
        drop(dropped);
        assert!(!path.exists());

        let mut kept = TempFile::next_to(&dir.path().join("b.h5ad")).unwrap();
        std::fs::write(&kept.path, b"x").unwrap();
        kept.keep();
        let live = TempFile::next_to(&dir.path().join("c.h5ad")).unwrap();
        std::fs::write(&live.path, b"x").unwrap();
        // What the interrupt does, without closing the write gate for the other tests.
        remove_live(false, Some(dir.path()));
        assert!(kept.path.exists());
        assert!(!live.path.exists());
        assert!(!dir.path().join(".c.h5ad.atlasnorm.lock").exists());
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Another process's claim, as `flock` sees it: a lock on a separate open file.
    fn foreign_lock(dir: &Path, name: &str, pid: &str) -> std::fs::File {
        let mut f = std::fs::File::create(dir.join(format!(".{name}.atlasnorm.lock"))).unwrap();
        f.try_lock().unwrap();
        write!(f, "{pid}").unwrap();
        f
    }

    #[test]
    fn a_claim_clears_dead_runs_leftovers_and_its_lock_file_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join(".o.h5ad.atlasnorm-4242.tmp"), b"half").unwrap();
        std::fs::create_dir_all(d.join(".o.h5ad.atlasnorm-4243.tmp/X/data")).unwrap();
        // A dead run's lock file, not locked by anyone.
        std::fs::write(d.join(".o.h5ad.atlasnorm.lock"), b"4242").unwrap();
        // Not leftovers of this OUTPUT.
        for other in [
            ".o.h5ad.atlasnorm-x1.tmp",
            ".p.h5ad.atlasnorm-4242.tmp",
            "o.h5ad.tmp",
        ] {
            std::fs::write(d.join(other), b"keep").unwrap();
        }
        let claim = claim_output(&d.join("o.h5ad")).unwrap();
        assert_eq!(
            names(d),
            [
                ".o.h5ad.atlasnorm-x1.tmp",
                ".o.h5ad.atlasnorm.lock",
                ".p.h5ad.atlasnorm-4242.tmp",
                "o.h5ad.tmp"
            ]
        );
        assert_eq!(
            std::fs::read_to_string(d.join(".o.h5ad.atlasnorm.lock")).unwrap(),
            std::process::id().to_string()
        );
        drop(claim);
        assert!(!d.join(".o.h5ad.atlasnorm.lock").exists());
    }

    #[test]
    fn a_live_run_keeps_its_temporary_and_the_second_run_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let held = foreign_lock(d, "o.zarr", "31337");
        std::fs::create_dir(d.join(".o.zarr.atlasnorm-31337.tmp")).unwrap();
        let e = TempFile::next_to(&d.join("o.zarr"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.ends_with(
                "o.zarr: another atlasnorm run (pid 31337) is writing this output; wait for it \
                 to finish or choose another OUTPUT"
            ),
            "{e}"
        );
        assert!(d.join(".o.zarr.atlasnorm-31337.tmp").is_dir());
        assert!(d.join(".o.zarr.atlasnorm.lock").exists());
        // The first run ends (its lock file removed while locked): the next claim succeeds
        // on a new lock file and clears what the first left.
        std::fs::remove_file(d.join(".o.zarr.atlasnorm.lock")).unwrap();
        drop(held);
        let claim = claim_output(&d.join("o.zarr")).unwrap();
        assert_eq!(names(d), [".o.zarr.atlasnorm.lock"]);
        drop(claim);
        assert!(names(d).is_empty());
    }

    #[test]
    fn an_output_moved_aside_by_a_dead_replacement_is_put_back_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Killed between moving OUTPUT aside and moving the new store in.
        std::fs::create_dir(d.join(".o.zarr.atlasnorm-77.old")).unwrap();
        std::fs::write(d.join(".o.zarr.atlasnorm-77.old/zarr.json"), b"old").unwrap();
        std::fs::create_dir(d.join(".o.zarr.atlasnorm-77.tmp")).unwrap();
        drop(claim_output(&d.join("o.zarr")).unwrap());
        assert_eq!(names(d), ["o.zarr"]);
        assert_eq!(std::fs::read(d.join("o.zarr/zarr.json")).unwrap(), b"old");
        // Killed after the new store was moved in, before the old one was removed.
        std::fs::create_dir(d.join(".o.zarr.atlasnorm-78.old")).unwrap();
        drop(claim_output(&d.join("o.zarr")).unwrap());
        assert_eq!(names(d), ["o.zarr"]);
    }

    #[test]
    fn a_missing_or_non_directory_output_directory_is_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let missing = d.join("nope/o.h5ad");
        let e = TempFile::next_to(&missing).err().unwrap().to_string();
        assert_eq!(
            e,
            format!(
                "{}: the output directory {} does not exist",
                missing.display(),
                d.join("nope").display()
            )
        );
        std::fs::write(d.join("file"), b"").unwrap();
        let under_file = d.join("file/o.h5ad");
        let e = claim_output(&under_file).err().unwrap().to_string();
        assert_eq!(
            e,
            format!(
                "{}: {} is not a directory",
                under_file.display(),
                d.join("file").display()
            )
        );
        let deeper = d.join("file/sub/o.h5ad");
        let e = claim_output(&deeper).err().unwrap().to_string();
        assert!(e.ends_with(": not a directory"), "{e}");
        assert_eq!(names(d), ["file"]);
    }
}
