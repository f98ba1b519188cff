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
                Ok(Location::S3 {
                    bucket: bucket.to_string(),
                    prefix: prefix.to_string(),
                })
            }
            None => Ok(Location::Local(path.to_path_buf())),
        }
    }
}

/// Opens the store at `location` (read and write; callers decide what they do with it).
pub fn open(location: &Location) -> Result<Storage> {
    match location {
        Location::Local(dir) => {
            let store = zarrs::filesystem::FilesystemStore::new(dir)
                .map_err(|e| Error::input(dir, "/", format!("cannot open the zarr store: {e}")))?;
            Ok(std::sync::Arc::new(store))
        }
        Location::S3 { bucket, prefix } => Err(Error::input(
            Path::new(&format!("s3://{bucket}/{prefix}")),
            "/",
            "object storage is not supported yet",
        )),
    }
}
