//! Built without the cargo feature `s3`: no S3 client, and every `s3://` location fails to
//! open with one error saying so (instead of `s3://` paths being read as local directories).

use std::sync::Arc;

use zarrs::storage::StorageError;

use super::S3Config;
use crate::error::{Error, Result};
use crate::store::zarr::Storage;

/// No S3 storage exists in this build: the type has no values, so code that would use one
/// is never reached (every [`open`] fails).
pub enum S3Storage {}

/// Fails: this build of atlasnorm has no S3 client.
///
/// # Errors
/// Always, naming the `s3://` URL.
pub fn open(bucket: &str, prefix: &str, _config: &S3Config) -> Result<Arc<S3Storage>> {
    let url = format!("s3://{bucket}/{prefix}");
    Err(Error::input(
        std::path::Path::new(&url),
        "",
        "this atlasnorm was built without S3 support (cargo feature `s3`); rebuild with it \
         or copy the store to a local directory",
    ))
}

// Every method is unreachable: there is no S3Storage to call it on.
impl S3Storage {
    pub fn as_storage(self: &Arc<Self>) -> Storage {
        match **self {}
    }
    pub fn url(&self) -> &str {
        match *self {}
    }
    pub fn flush(&self) -> std::result::Result<(), StorageError> {
        match *self {}
    }
    pub fn check_input(&self) -> Result<()> {
        match *self {}
    }
    pub fn check_output(&self) -> Result<()> {
        match *self {}
    }
    pub fn discard(&self) -> std::result::Result<(), StorageError> {
        match *self {}
    }
    pub fn exists(&self) -> std::result::Result<bool, StorageError> {
        match *self {}
    }
    pub fn remember_answers(&self) {
        match *self {}
    }
}

impl crate::store::zarr::Prefetch for S3Storage {
    fn prefetch(&self, _keys: Vec<zarrs::storage::StoreKey>) {
        match *self {}
    }
    fn prefetch_ranges(
        &self,
        _key: &zarrs::storage::StoreKey,
        _size: u64,
        _pieces: Vec<crate::store::zarr::PieceAhead>,
        _window: std::ops::Range<u64>,
    ) {
        match *self {}
    }
    fn keep(
        &self,
        _key: &zarrs::storage::StoreKey,
        _size: u64,
        _bytes: std::ops::Range<u64>,
        _data: zarrs::storage::Bytes,
    ) {
        match *self {}
    }
}
