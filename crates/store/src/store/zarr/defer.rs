//! A storage wrapper that holds the root group's metadata documents back until commit.
//!
//! On object storage an output is written in place (there is no rename). anndata opens a
//! store through its root metadata (`zarr.json` in v3, `.zgroup`/`.zattrs`/`.zmetadata` in
//! v2), so as long as those are absent an unfinished store does not look like one. Writes of
//! these keys through [`DeferRoot`] are kept in memory — reads, listings and erasures see
//! them as if stored — and [`DeferRoot::publish`] writes them, the v3 `zarr.json` or the v2
//! `.zmetadata` last, once everything else is stored.

use std::collections::BTreeMap;
use std::sync::Mutex;

use zarrs::storage::byte_range::{extract_byte_ranges, ByteRangeIterator};
use zarrs::storage::{
    Bytes, ListableStorageTraits, MaybeBytes, MaybeBytesIterator, OffsetBytesIterator,
    ReadableStorageTraits, StorageError, StoreKey, StoreKeys, StoreKeysPrefixes, StorePrefix,
    WritableStorageTraits,
};

use super::Storage;

/// Root keys held back, in the order [`DeferRoot::publish`] writes them.
const ROOT_KEYS: [&str; 4] = [".zattrs", ".zgroup", ".zmetadata", "zarr.json"];

pub(super) fn is_root_metadata(key: &StoreKey) -> bool {
    ROOT_KEYS.contains(&key.as_str())
}

/// `inner` with the root metadata documents held back until [`publish`](Self::publish).
pub struct DeferRoot {
    inner: Storage,
    held: Mutex<BTreeMap<String, Bytes>>,
}

impl DeferRoot {
    pub fn new(inner: Storage) -> Self {
        DeferRoot {
            inner,
            held: Mutex::new(BTreeMap::new()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the held root documents to the inner store (call after every other object is
    /// stored): `.zattrs`, `.zgroup`, then `.zmetadata` (v2) or `zarr.json` (v3).
    pub fn publish(&self) -> Result<(), StorageError> {
        let held = self.held().clone();
        for name in ROOT_KEYS {
            if let Some(bytes) = held.get(name) {
                let key = StoreKey::new(name).expect("valid key");
                self.inner.set(&key, bytes.clone())?;
            }
        }
        Ok(())
    }

    /// Adds the held root keys to a listing of the root.
    fn with_held(&self, mut keys: StoreKeys, prefix: &StorePrefix) -> StoreKeys {
        if prefix.as_str().is_empty() {
            for name in self.held().keys() {
                let key = StoreKey::new(name.as_str()).expect("valid key");
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            keys.sort();
        }
        keys
    }
}

impl ReadableStorageTraits for DeferRoot {
    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        if is_root_metadata(key) {
            let Some(bytes) = self.held().get(key.as_str()).cloned() else {
                return Ok(None);
            };
            let parts = extract_byte_ranges(&bytes, byte_ranges)
                .map_err(|e| StorageError::Other(e.to_string()))?;
            let parts: Vec<Result<Bytes, StorageError>> =
                parts.into_iter().map(|b| Ok(Bytes::from(b))).collect();
            return Ok(Some(Box::new(parts.into_iter())));
        }
        self.inner.get_partial_many(key, byte_ranges)
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        if is_root_metadata(key) {
            return Ok(self.held().get(key.as_str()).map(|b| b.len() as u64));
        }
        self.inner.size_key(key)
    }

    fn supports_get_partial(&self) -> bool {
        self.inner.supports_get_partial()
    }

    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        if is_root_metadata(key) {
            return Ok(self.held().get(key.as_str()).cloned());
        }
        self.inner.get(key)
    }
}

impl ListableStorageTraits for DeferRoot {
    fn list(&self) -> Result<StoreKeys, StorageError> {
        let keys = self.inner.list()?;
        Ok(self.with_held(keys, &StorePrefix::root()))
    }

    fn list_prefix(&self, prefix: &StorePrefix) -> Result<StoreKeys, StorageError> {
        let keys = self.inner.list_prefix(prefix)?;
        Ok(self.with_held(keys, prefix))
    }

    fn list_dir(&self, prefix: &StorePrefix) -> Result<StoreKeysPrefixes, StorageError> {
        let listing = self.inner.list_dir(prefix)?;
        if !prefix.as_str().is_empty() {
            return Ok(listing);
        }
        let keys = self.with_held(listing.keys().clone(), prefix);
        Ok(StoreKeysPrefixes::new(keys, listing.prefixes().clone()))
    }

    fn size_prefix(&self, prefix: &StorePrefix) -> Result<u64, StorageError> {
        let mut size = self.inner.size_prefix(prefix)?;
        if prefix.as_str().is_empty() {
            size += self.held().values().map(|b| b.len() as u64).sum::<u64>();
        }
        Ok(size)
    }
}

impl WritableStorageTraits for DeferRoot {
    fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), StorageError> {
        if is_root_metadata(key) {
            self.held().insert(key.as_str().to_string(), value);
            return Ok(());
        }
        self.inner.set(key, value)
    }

    fn set_partial_many(
        &self,
        key: &StoreKey,
        offset_values: OffsetBytesIterator,
    ) -> Result<(), StorageError> {
        if is_root_metadata(key) {
            return zarrs::storage::store_set_partial_many(self, key, offset_values);
        }
        self.inner.set_partial_many(key, offset_values)
    }

    fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        if is_root_metadata(key) {
            self.held().remove(key.as_str());
            return Ok(());
        }
        self.inner.erase(key)
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        if prefix.as_str().is_empty() {
            self.held().clear();
        }
        self.inner.erase_prefix(prefix)
    }

    fn supports_set_partial(&self) -> bool {
        self.inner.supports_set_partial()
    }
}
