//! A storage wrapper whose writes pass the interrupt gate of [`crate::store::temp`].
//!
//! A directory store creates missing parent directories on every write, so a write still in
//! flight when an interrupt removes the temporary store would bring part of it back. Writes
//! through [`GatedStorage`] hold [`write_permit`] for their duration; the interrupt path
//! waits for them, closes the gate, and only then removes the directory.

use zarrs::storage::{
    Bytes, OffsetBytesIterator, StorageError, StoreKey, StorePrefix, WritableStorageTraits,
};

use super::Storage;
use crate::store::temp::write_permit;

/// `inner` with gated writes.
pub struct GatedStorage {
    inner: Storage,
}

impl GatedStorage {
    pub fn new(inner: Storage) -> Self {
        GatedStorage { inner }
    }
}

delegate_reads_and_listings!(GatedStorage);

impl WritableStorageTraits for GatedStorage {
    fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), StorageError> {
        let _permit = write_permit();
        self.inner.set(key, value)
    }

    fn set_partial_many(
        &self,
        key: &StoreKey,
        offset_values: OffsetBytesIterator,
    ) -> Result<(), StorageError> {
        let _permit = write_permit();
        self.inner.set_partial_many(key, offset_values)
    }

    fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        let _permit = write_permit();
        self.inner.erase(key)
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        let _permit = write_permit();
        self.inner.erase_prefix(prefix)
    }

    fn supports_set_partial(&self) -> bool {
        self.inner.supports_set_partial()
    }
}
