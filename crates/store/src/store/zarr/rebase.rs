//! Opening zarr arrays whose node path zarrs refuses.
//!
//! zarrs validates node paths by the zarr v3 rules, which reserve names beginning with `__`.
//! zarr v2 has no such rule, and anndata 0.7.x wrote its categories at `obs/__categories/<col>`
//! (`var/__categories/<col>`, `raw/var/__categories/<col>`), which anndata still reads. Keys
//! themselves are fine (a [`StoreKey`] may contain `__`): only the path handed to
//! `Array::open` / `Array::new_with_metadata` is checked. So such an array is opened as the
//! *root* node of a [`NodeView`]: a storage adapter that puts the node's prefix in front of every
//! key, so zarrs reads `.zarray` (or `zarr.json`) and the chunks where they really are, and
//! writes them there too. Everything else (raw key copies, metadata documents) already works on
//! keys and needs nothing from here.

use std::sync::Arc;

use zarrs::node::NodePath;
use zarrs_storage::byte_range::ByteRangeIterator;
use zarrs_storage::{
    Bytes, ListableStorageTraits, MaybeBytes, MaybeBytesIterator, OffsetBytesIterator,
    ReadableStorageTraits, StorageError, StoreKey, StoreKeys, StoreKeysPrefixes, StorePrefix,
    WritableStorageTraits,
};

use super::Storage;

/// The storage handle and zarrs node path under which the array at `path` (store-relative,
/// no leading `/`) can be opened: the store itself and `/path` when zarrs accepts the path, a
/// [`NodeView`] rooted at the node and `/` otherwise.
pub(crate) fn array_handle(storage: &Storage, path: &str) -> (Storage, String) {
    let node_path = format!("/{path}");
    if path.is_empty() || NodePath::validate(&node_path) {
        (storage.clone(), node_path)
    } else {
        let view: Storage = Arc::new(NodeView::new(storage.clone(), path));
        (view, "/".to_string())
    }
}

/// A store seen from inside one node: key `k` of the view is key `<node>/k` of the store.
pub(crate) struct NodeView {
    inner: Storage,
    /// `<node>/`.
    prefix: String,
}

impl NodeView {
    pub(crate) fn new(inner: Storage, node: &str) -> Self {
        NodeView {
            inner,
            prefix: format!("{}/", node.trim_end_matches('/')),
        }
    }

    fn key(&self, key: &StoreKey) -> Result<StoreKey, StorageError> {
        StoreKey::new(format!("{}{}", self.prefix, key.as_str()))
            .map_err(|e| StorageError::Other(e.to_string()))
    }

    fn store_prefix(&self, prefix: &StorePrefix) -> Result<StorePrefix, StorageError> {
        StorePrefix::new(format!("{}{}", self.prefix, prefix.as_str()))
            .map_err(|e| StorageError::Other(e.to_string()))
    }

    /// The view's key for a key of the store (which lies under the node: it was listed there).
    fn unkey(&self, key: &StoreKey) -> Result<StoreKey, StorageError> {
        let rest = key.as_str().strip_prefix(&self.prefix).ok_or_else(|| {
            StorageError::Other(format!("{} lies outside {}", key.as_str(), self.prefix))
        })?;
        StoreKey::new(rest).map_err(|e| StorageError::Other(e.to_string()))
    }

    fn unkeys(&self, keys: StoreKeys) -> Result<StoreKeys, StorageError> {
        keys.iter().map(|k| self.unkey(k)).collect()
    }
}

impl ReadableStorageTraits for NodeView {
    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        self.inner.get(&self.key(key)?)
    }

    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        self.inner.get_partial_many(&self.key(key)?, byte_ranges)
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        self.inner.size_key(&self.key(key)?)
    }

    fn supports_get_partial(&self) -> bool {
        self.inner.supports_get_partial()
    }
}

impl WritableStorageTraits for NodeView {
    fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), StorageError> {
        self.inner.set(&self.key(key)?, value)
    }

    fn set_partial_many(
        &self,
        key: &StoreKey,
        offset_values: OffsetBytesIterator,
    ) -> Result<(), StorageError> {
        self.inner.set_partial_many(&self.key(key)?, offset_values)
    }

    fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        self.inner.erase(&self.key(key)?)
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        self.inner.erase_prefix(&self.store_prefix(prefix)?)
    }

    fn supports_set_partial(&self) -> bool {
        self.inner.supports_set_partial()
    }
}

impl ListableStorageTraits for NodeView {
    fn list(&self) -> Result<StoreKeys, StorageError> {
        self.list_prefix(&StorePrefix::root())
    }

    fn list_prefix(&self, prefix: &StorePrefix) -> Result<StoreKeys, StorageError> {
        let keys = self.inner.list_prefix(&self.store_prefix(prefix)?)?;
        self.unkeys(keys)
    }

    fn list_dir(&self, prefix: &StorePrefix) -> Result<StoreKeysPrefixes, StorageError> {
        let listed = self.inner.list_dir(&self.store_prefix(prefix)?)?;
        let keys = self.unkeys(listed.keys().clone())?;
        let prefixes = listed
            .prefixes()
            .iter()
            .map(|p| {
                let rest = p.as_str().strip_prefix(&self.prefix).ok_or_else(|| {
                    StorageError::Other(format!("{} lies outside {}", p.as_str(), self.prefix))
                })?;
                StorePrefix::new(rest).map_err(|e| StorageError::Other(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StoreKeysPrefixes::new(keys, prefixes))
    }

    fn size_prefix(&self, prefix: &StorePrefix) -> Result<u64, StorageError> {
        self.inner.size_prefix(&self.store_prefix(prefix)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zarrs::array::{data_type, Array, ArrayBuilder};

    fn memory() -> Storage {
        Arc::new(zarrs_storage::store::MemoryStore::new())
    }

    #[test]
    fn valid_paths_are_opened_on_the_store_itself() {
        let s = memory();
        let (_, p) = array_handle(&s, "obs/cell_type/codes");
        assert_eq!(p, "/obs/cell_type/codes");
    }

    #[test]
    fn a_dunder_node_is_written_and_read_where_it_really_is() {
        let s = memory();
        let path = "obs/__categories/cell_type";
        assert!(!NodePath::validate(&format!("/{path}")), "zarrs refuses it");
        let (view, p) = array_handle(&s, path);
        assert_eq!(p, "/");
        let array = ArrayBuilder::new(vec![5], vec![2], data_type::int32(), 0i32)
            .build(view.clone(), &p)
            .unwrap();
        array.store_metadata().unwrap();
        array
            .store_array_subset(&array.subset_all(), &[1i32, 2, 3, 4, 5][..])
            .unwrap();
        let mut keys: Vec<String> = s.list().unwrap().iter().map(|k| k.to_string()).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "obs/__categories/cell_type/c/0",
                "obs/__categories/cell_type/c/1",
                "obs/__categories/cell_type/c/2",
                "obs/__categories/cell_type/zarr.json",
            ]
        );
        let (view, p) = array_handle(&s, path);
        let back = Array::open(view.clone(), &p).unwrap();
        let got: Vec<i32> = back.retrieve_array_subset(&back.subset_all()).unwrap();
        assert_eq!(got, [1, 2, 3, 4, 5]);
        assert_eq!(view.list().unwrap().len(), 4);
        let dir = view.list_dir(&StorePrefix::root()).unwrap();
        assert_eq!(dir.keys().len(), 1);
        assert_eq!(dir.prefixes()[0].as_str(), "c/");
    }
}
