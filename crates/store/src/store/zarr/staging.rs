//! Where a zarr output is written until it is complete, and how it becomes visible.
//!
//! * [`Staging::LocalRename`]: a local directory store is written under a temporary name next
//!   to OUTPUT (registered for removal on interrupt) and renamed on commit; `--force` moves
//!   an existing OUTPUT aside first and deletes it only once the new store is in place.
//! * [`Staging::S3InPlace`]: object storage has no rename: the store is written in place
//!   under its prefix, with its root metadata (which carries the consolidated metadata) held
//!   back by [`DeferRoot`] and written on commit, after every other object is stored — so
//!   readers never see a root before the rest. Without `--force` an occupied prefix is
//!   refused; with it, the prefix is cleared first. On failure (dropped without commit) or
//!   interrupt everything under the prefix is erased; if that fails too, the message says
//!   which prefix still holds objects (none of them root metadata).
//!
//! The output code only asks for [`Staging::storage`] and calls [`Staging::commit`] after
//! writing the root metadata.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::defer::DeferRoot;
use super::gate::GatedStorage;
use super::s3::{S3Config, S3Storage};
use super::storage::Location;
use super::unsynced::UnsyncedStore;
use super::Storage;
use crate::error::{Error, Result};
use crate::store::temp::{self, remove_path, TempFile};

pub enum Staging {
    LocalRename {
        tmp: TempFile,
        target: PathBuf,
        storage: Storage,
    },
    S3InPlace(S3Staging),
}

/// An output written in place on object storage.
pub struct S3Staging {
    target: PathBuf,
    s3: Arc<S3Storage>,
    root: Arc<DeferRoot>,
    storage: Storage,
    /// Registration of the interrupt clean-up.
    cleanup: Option<temp::CleanupId>,
    committed: bool,
}

impl Staging {
    /// The staging area for `target`: a temporary directory next to a local path, or the
    /// prefix itself on object storage (checked writable and, without `force`, empty).
    pub fn for_target(target: &Path, s3: &S3Config, force: bool) -> Result<Self> {
        match Location::parse(target)? {
            Location::Local(_) => Self::local(target),
            Location::S3 { bucket, prefix } => {
                Self::s3(target, &bucket, &prefix, s3, force).map(Staging::S3InPlace)
            }
        }
    }

    fn s3(
        target: &Path,
        bucket: &str,
        prefix: &str,
        config: &S3Config,
        force: bool,
    ) -> Result<S3Staging> {
        let s3 = super::s3::open(bucket, prefix, config)?;
        s3.check_output()?;
        let occupied = s3
            .exists()
            .map_err(|e| Error::output(target, format!("cannot list the prefix: {e}")))?;
        if occupied {
            if !force {
                return Err(Error::output(
                    target,
                    "already exists: objects are stored under this prefix (use --force to replace them)",
                ));
            }
            s3.discard().map_err(|e| {
                Error::output(target, format!("cannot clear the existing store: {e}"))
            })?;
        }
        let root = Arc::new(DeferRoot::new(s3.as_storage()));
        let storage: Storage = Arc::new(GatedStorage::new(root.clone()));
        let on_interrupt = s3.clone();
        let cleanup = temp::register_cleanup(Box::new(move || match on_interrupt.discard() {
            Ok(()) => format!(
                "the unfinished store under {} was removed",
                on_interrupt.url()
            ),
            Err(e) => e.to_string(),
        }));
        Ok(S3Staging {
            target: target.to_path_buf(),
            s3,
            root,
            storage,
            cleanup: Some(cleanup),
            committed: false,
        })
    }

    /// A temporary directory store next to `target`.
    pub fn local(target: &Path) -> Result<Self> {
        // Claims `target`: leftovers of dead runs (this pid's included) are gone.
        let tmp = TempFile::next_to(target)?;
        tmp.create(|path| std::fs::create_dir(path)).map_err(|e| {
            Error::output(
                target,
                format!(
                    "cannot create the temporary directory {}: {e}",
                    tmp.path.display()
                ),
            )
        })?;
        let store = zarrs::filesystem::FilesystemStore::new(&tmp.path).map_err(|e| {
            Error::output(
                target,
                format!("cannot open {} as a zarr store: {e}", tmp.path.display()),
            )
        })?;
        Ok(Staging::LocalRename {
            tmp,
            target: target.to_path_buf(),
            storage: Arc::new(GatedStorage::new(Arc::new(UnsyncedStore::new(store)))),
        })
    }

    pub fn storage(&self) -> &Storage {
        match self {
            Staging::LocalRename { storage, .. } => storage,
            Staging::S3InPlace(s) => &s.storage,
        }
    }

    /// Where the store is being written (for messages and tests); `None` when in place.
    pub fn temp_path(&self) -> Option<&Path> {
        match self {
            Staging::LocalRename { tmp, .. } => Some(&tmp.path),
            Staging::S3InPlace(_) => None,
        }
    }

    /// Makes the complete store visible under its final name.
    pub fn commit(self) -> Result<()> {
        match self {
            Staging::LocalRename {
                mut tmp,
                target,
                storage,
            } => {
                drop(storage);
                replace(&tmp.path, &target).map_err(|e| {
                    Error::output(
                        &target,
                        format!("cannot move {} to its final name: {e}", tmp.path.display()),
                    )
                })?;
                tmp.keep();
                Ok(())
            }
            Staging::S3InPlace(mut s) => {
                let published = s.s3.flush().and_then(|()| s.root.publish());
                match published {
                    Ok(()) => {
                        s.committed = true;
                        Ok(())
                    }
                    Err(e) => {
                        // Dropping `s` erases the prefix (or says what is left).
                        Err(Error::output(&s.target, e.to_string()))
                    }
                }
            }
        }
    }
}

impl Drop for S3Staging {
    fn drop(&mut self) {
        if let Some(id) = self.cleanup.take() {
            temp::unregister_cleanup(id);
        }
        if self.committed {
            return;
        }
        match self.s3.discard() {
            Ok(()) => eprintln!(
                "atlasnorm: the unfinished store under {} was removed",
                self.s3.url()
            ),
            Err(e) => eprintln!("atlasnorm: {e}"),
        }
    }
}

/// Renames `new` to `target`; an existing `target` is moved aside first, put back if the
/// rename fails, and removed once `new` is in place.
fn replace(new: &Path, target: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(target).is_err() {
        return std::fs::rename(new, target);
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let old = target.with_file_name(format!(".{name}.atlasnorm-{}.old", std::process::id()));
    remove_path(&old);
    std::fs::rename(target, &old)?;
    if let Err(e) = std::fs::rename(new, target) {
        let _ = std::fs::rename(&old, target);
        return Err(e);
    }
    remove_path(&old);
    Ok(())
}
