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
mod sink;
mod source;
pub mod staging;
pub mod storage;
mod tree_read;
mod tree_write;
mod unsynced;

use std::sync::Arc;

pub use input::ZarrInput;
pub use inspect::inspect;
pub use output::ZarrOutput;
pub use source::ZarrSource;

/// A zarr store: local directory or object storage, behind zarrs' synchronous storage traits.
pub type Storage = Arc<dyn zarrs::storage::ReadableWritableListableStorageTraits>;

/// Storage that can start fetching whole objects before they are read: object storage, where
/// a read waits a round trip and zarrs reads one chunk per thread at a time. A later `get`
/// of a prefetched key takes the fetched object (once).
pub(crate) trait Prefetch: Send + Sync {
    /// Starts fetching `keys` (those not already being fetched), up to a bounded number held.
    fn prefetch(&self, keys: Vec<zarrs::storage::StoreKey>);
}

/// The key of `name` inside the node at `path` (`""` is the root): [`tree::join`].
pub(crate) use crate::store::tree::join as key_in;

/// The input's storage handle and format, for copying from it.
pub(crate) fn input_storage(input: &ZarrInput) -> Option<(&Storage, crate::options::ZarrFormat)> {
    Some((input.storage(), input.zarr_format()))
}
