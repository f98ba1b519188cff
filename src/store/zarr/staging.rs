//! Where a zarr output is written until it is complete, and how it becomes visible.
//!
//! * [`Staging::LocalRename`]: a local directory store is written under a temporary name next
//!   to OUTPUT (registered for removal on interrupt) and renamed on commit; `--force` moves
//!   an existing OUTPUT aside first and deletes it only once the new store is in place.
//! * Object storage (to come) has no rename: the store is written in place, its root metadata
//!   (with the consolidated metadata) last, so that readers never see a root before the rest,
//!   and everything under the prefix is erased on failure. A variant for it slots in here;
//!   the output code only asks for [`Staging::storage`] and calls [`Staging::commit`] after
//!   writing the root metadata.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::gate::GatedStorage;
use super::Storage;
use crate::error::{Error, Result};
use crate::store::temp::{remove_path, TempFile};

pub enum Staging {
    LocalRename {
        tmp: TempFile,
        target: PathBuf,
        storage: Storage,
    },
}

impl Staging {
    /// A temporary directory store next to `target`.
    pub fn local(target: &Path) -> Result<Self> {
        let tmp = TempFile::next_to(target);
        // A leftover from a crashed run with the same pid: not ours to keep.
        remove_path(&tmp.path);
        std::fs::create_dir(&tmp.path).map_err(|e| {
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
            storage: Arc::new(GatedStorage::new(Arc::new(store))),
        })
    }

    pub fn storage(&self) -> &Storage {
        match self {
            Staging::LocalRename { storage, .. } => storage,
        }
    }

    /// Where the store is being written (for messages and tests).
    pub fn temp_path(&self) -> Option<&Path> {
        match self {
            Staging::LocalRename { tmp, .. } => Some(&tmp.path),
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
