//! Where a zarr store lives and how to reach it.
//!
//! A [`Location`] is parsed from the command line's INPUT/OUTPUT; [`open`] turns it into a
//! [`Storage`] handle. Everything above this module sees only the handle, so local
//! directories and object storage share one code path.

use std::path::{Path, PathBuf};

use super::Storage;
use crate::error::{Error, Result};

/// A zarr store's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A directory store on local disk.
    Local(PathBuf),
    /// `s3://bucket/prefix.zarr`.
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// Reads a command-line path: `s3://bucket/prefix` or a local directory.
    pub fn parse(path: &Path) -> Result<Self> {
        let text = path.to_string_lossy();
        match text.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                let prefix = prefix.trim_end_matches('/');
                if bucket.is_empty() || prefix.is_empty() {
                    return Err(Error::input(
                        path,
                        "/",
                        "an object-storage address is s3://BUCKET/PREFIX.zarr",
                    ));
                }
                if prefix.to_ascii_lowercase().ends_with(".h5ad") {
                    return Err(Error::input(
                        path,
                        "/",
                        "an .h5ad file cannot be used on object storage (HDF5 needs random access \
                         to one file): use a zarr store, e.g. s3://BUCKET/PREFIX.zarr (convert \
                         with `anndata.read_h5ad(f).write_zarr(d)` and upload the directory)",
                    ));
                }
                Ok(Location::S3 {
                    bucket: bucket.to_string(),
                    prefix: prefix.to_string(),
                })
            }
            None => Ok(Location::Local(path.to_path_buf())),
        }
    }
}

pub use super::s3::S3Config;

/// What a store is opened for: decides the check made at open (object storage only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// No check.
    Any,
    /// INPUT: the store must exist (root metadata present).
    Input,
    /// OUTPUT: the bucket must be reachable and writable.
    Output,
}

/// Opens the store at `location` (read and write; callers decide what they do with it).
/// Object storage is configured from the environment alone.
pub fn open(location: &Location) -> Result<Storage> {
    open_with(location, &S3Config::default(), Purpose::Any)
}

/// Opens the store at `location`; for object storage with `s3` (environment plus overrides)
/// and, before any work is done, the check `purpose` asks for.
pub fn open_with(location: &Location, s3: &S3Config, purpose: Purpose) -> Result<Storage> {
    match location {
        Location::Local(dir) => {
            let store = zarrs::filesystem::FilesystemStore::new(dir)
                .map_err(|e| Error::input(dir, "/", format!("cannot open the zarr store: {e}")))?;
            Ok(std::sync::Arc::new(store))
        }
        Location::S3 { bucket, prefix } => Ok(open_s3(bucket, prefix, s3, purpose)?.as_storage()),
    }
}

/// The object store under `bucket`/`prefix`, checked as `purpose` asks.
fn open_s3(
    bucket: &str,
    prefix: &str,
    s3: &S3Config,
    purpose: Purpose,
) -> Result<std::sync::Arc<super::s3::S3Storage>> {
    let storage = super::s3::open(bucket, prefix, s3)?;
    match purpose {
        Purpose::Any => {}
        Purpose::Input => {
            storage.check_input()?;
            // Nothing writes an input while atlasnorm runs: its metadata, sizes and
            // listings are read once.
            storage.remember_answers();
        }
        Purpose::Output => storage.check_output()?,
    }
    Ok(storage)
}

/// [`open_with`] for INPUT, with the storage's [`Prefetch`](super::Prefetch) when it has one
/// (object storage).
pub(crate) fn open_input(
    location: &Location,
    s3: &S3Config,
) -> Result<(Storage, Option<std::sync::Arc<dyn super::Prefetch>>)> {
    match location {
        Location::Local(_) => Ok((open_with(location, s3, Purpose::Input)?, None)),
        Location::S3 { bucket, prefix } => {
            let storage = open_s3(bucket, prefix, s3, Purpose::Input)?;
            Ok((storage.as_storage(), Some(storage)))
        }
    }
}
