//! The .zarr backend (zarr v2 and v3, through `zarrs`).
//!
//! * [`ZarrInput`]: an AnnData store opened for reading, with [`MatrixSource`]s for X and
//!   layers and a [`TreeReader`](crate::store::tree::TreeReader) over the whole tree.
//! * [`ZarrOutput`]: an output store (a raw copy of a zarr input, or built through its
//!   [`TreeWriter`](crate::store::tree::TreeWriter)), staged and committed with consolidated
//!   metadata written last.
//! * [`inspect`]: a readable listing of a store.
//!
//! Everything here works on a [`Storage`] handle, never on paths directly, so that the same
//! code serves a local directory and object storage.
//!
//! [`MatrixSource`]: crate::store::MatrixSource

/// `impl ReadableStorageTraits` and `ListableStorageTraits` for a storage wrapper `$ty`
/// that passes every read and listing to its `inner` field unchanged.
macro_rules! delegate_reads_and_listings {
    ($ty:ty) => {
        impl zarrs::storage::ReadableStorageTraits for $ty {
            fn get_partial_many<'a>(
                &'a self,
                key: &zarrs::storage::StoreKey,
                byte_ranges: zarrs::storage::byte_range::ByteRangeIterator<'a>,
            ) -> Result<zarrs::storage::MaybeBytesIterator<'a>, zarrs::storage::StorageError> {
                self.inner.get_partial_many(key, byte_ranges)
            }

            fn size_key(
                &self,
                key: &zarrs::storage::StoreKey,
            ) -> Result<Option<u64>, zarrs::storage::StorageError> {
                self.inner.size_key(key)
            }

            fn supports_get_partial(&self) -> bool {
                self.inner.supports_get_partial()
            }

            fn get(
                &self,
                key: &zarrs::storage::StoreKey,
            ) -> Result<zarrs::storage::MaybeBytes, zarrs::storage::StorageError> {
                self.inner.get(key)
            }
        }

        impl zarrs::storage::ListableStorageTraits for $ty {
            fn list(&self) -> Result<zarrs::storage::StoreKeys, zarrs::storage::StorageError> {
                self.inner.list()
            }

            fn list_prefix(
                &self,
                prefix: &zarrs::storage::StorePrefix,
            ) -> Result<zarrs::storage::StoreKeys, zarrs::storage::StorageError> {
                self.inner.list_prefix(prefix)
            }

            fn list_dir(
                &self,
                prefix: &zarrs::storage::StorePrefix,
            ) -> Result<zarrs::storage::StoreKeysPrefixes, zarrs::storage::StorageError> {
                self.inner.list_dir(prefix)
            }

            fn size_prefix(
                &self,
                prefix: &zarrs::storage::StorePrefix,
            ) -> Result<u64, zarrs::storage::StorageError> {
                self.inner.size_prefix(prefix)
            }
        }
    };
}

mod consolidated;
mod copy;
mod defer;
mod gate;
mod input;
mod inspect;
pub mod layout;
mod node;
mod output;
pub mod parts;
mod rebase;
pub mod s3;
mod shard_stream;
mod sharding;
mod sink;
mod source;
pub mod staging;
pub mod storage;
mod tree_read;
mod tree_write;
mod unsynced;

use std::ops::Range;
use std::sync::Arc;

use zarrs::storage::Bytes;

pub use input::ZarrInput;
pub use inspect::inspect;
pub use output::ZarrOutput;
pub use source::ZarrSource;

/// A zarr store: local directory or object storage, behind zarrs' synchronous storage traits.
pub type Storage = Arc<dyn zarrs::storage::ReadableWritableListableStorageTraits>;

/// A piece of an object to fetch ahead: its bytes, and the reader's units (a shard's inner
/// chunks, numbered along the array) in it.
pub(crate) type PieceAhead = (Range<u64>, Range<u64>);

/// Storage that can start fetching whole objects before they are read: object storage, where
/// a read waits a round trip and zarrs reads one chunk per thread at a time. A later `get`
/// of a prefetched key takes the fetched object (once).
pub(crate) trait Prefetch: Send + Sync {
    /// Starts fetching `keys` (those not already being fetched), up to a bounded number held.
    fn prefetch(&self, keys: Vec<zarrs::storage::StoreKey>);

    /// Starts fetching `pieces` of the object at `key` (`size` bytes): per piece, its bytes
    /// and the reader's units (a shard's inner chunks, numbered along the array) in it. A
    /// partial read inside a piece is then answered from it. Pieces overlapping held ones
    /// are not fetched again; held pieces of `key` outside the reader's `window` of units
    /// (passed, or ahead of reads that went elsewhere) are let go.
    fn prefetch_ranges(
        &self,
        key: &zarrs::storage::StoreKey,
        size: u64,
        pieces: Vec<PieceAhead>,
        window: Range<u64>,
    );

    /// Holds `data`, bytes `bytes` of the object at `key` (`size` bytes), which the reader
    /// will ask for again and again (a shard's index, read by zarrs on every read of the
    /// shard): partial reads inside it are answered from memory.
    fn keep(&self, key: &zarrs::storage::StoreKey, size: u64, bytes: Range<u64>, data: Bytes);
}

/// The key of `name` inside the node at `path` (`""` is the root): [`tree::join`].
pub(crate) use crate::store::tree::join as key_in;

/// The input's storage handle and format, for copying from it.
pub(crate) fn input_storage(input: &ZarrInput) -> Option<(&Storage, crate::options::ZarrFormat)> {
    Some((input.storage(), input.zarr_format()))
}
