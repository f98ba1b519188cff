//! The local directory store an output is written into, without a sync per write.
//!
//! zarrs' [`FilesystemStore`] calls `fsync` after every `set` and partial write. A local
//! output is written into a temporary directory that is renamed into place once complete
//! (see `staging`), so a sync per chunk buys nothing the rename does not: it only blocks the
//! writer (measured on pbmc68k as zarr v2: 305 syncs of ~0.5 ms each, 0.1–0.15 s of a 0.7 s
//! run). The h5ad output is not synced either. Reads, listings and erasures are zarrs' own.

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;

use zarrs::filesystem::FilesystemStore;
use zarrs::storage::byte_range::ByteRangeIterator;
use zarrs::storage::{
    Bytes, ListableStorageTraits, MaybeBytes, MaybeBytesIterator, OffsetBytesIterator,
    ReadableStorageTraits, StorageError, StoreKey, StoreKeys, StoreKeysPrefixes, StorePrefix,
    WritableStorageTraits,
};

/// A [`FilesystemStore`] whose writes are left to the page cache.
pub struct UnsyncedStore {
    inner: FilesystemStore,
}

impl UnsyncedStore {
    pub fn new(inner: FilesystemStore) -> Self {
        UnsyncedStore { inner }
    }

    /// The file of `key`, its directory created.
    fn file_path(&self, key: &StoreKey) -> Result<PathBuf, StorageError> {
        let path = self.inner.key_to_fspath(key);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(path)
    }
}

impl ReadableStorageTraits for UnsyncedStore {
    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        self.inner.get_partial_many(key, byte_ranges)
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        self.inner.size_key(key)
    }

    fn supports_get_partial(&self) -> bool {
        self.inner.supports_get_partial()
    }

    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        self.inner.get(key)
    }
}

impl ListableStorageTraits for UnsyncedStore {
    fn list(&self) -> Result<StoreKeys, StorageError> {
        self.inner.list()
    }

    fn list_prefix(&self, prefix: &StorePrefix) -> Result<StoreKeys, StorageError> {
        self.inner.list_prefix(prefix)
    }

    fn list_dir(&self, prefix: &StorePrefix) -> Result<StoreKeysPrefixes, StorageError> {
        self.inner.list_dir(prefix)
    }

    fn size_prefix(&self, prefix: &StorePrefix) -> Result<u64, StorageError> {
        self.inner.size_prefix(prefix)
    }
}

impl WritableStorageTraits for UnsyncedStore {
    fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), StorageError> {
        let mut file = std::fs::File::create(self.file_path(key)?)?;
        file.write_all(&value)?;
        Ok(())
    }

    fn set_partial_many(
        &self,
        key: &StoreKey,
        offset_values: OffsetBytesIterator,
    ) -> Result<(), StorageError> {
        // In place: the rest of the file is kept (it grows, zero-filled, past its end).
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.file_path(key)?)?;
        for (offset, value) in offset_values {
            file.write_all_at(&value, offset)?;
        }
        Ok(())
    }

    fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        self.inner.erase(key)
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        self.inner.erase_prefix(prefix)
    }

    fn supports_set_partial(&self) -> bool {
        true
    }
}
