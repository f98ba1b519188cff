//! The .zarr backend (zarr v2 and v3, through `zarrs`).
//!
//! * [`ZarrInput`]: an AnnData store opened for reading, with [`MatrixSource`]s for X and
//!   layers and a [`TreeReader`](crate::store::tree::TreeReader) over the whole tree.
//! * [`inspect`]: a readable listing of a store.
//!
//! Everything here works on a [`Storage`] handle, never on paths directly, so that the same
//! code serves a local directory and object storage.
//!
//! [`MatrixSource`]: crate::store::MatrixSource

mod input;
mod inspect;
mod node;
mod source;
pub mod storage;
mod tree_read;

use std::sync::Arc;

pub use input::ZarrInput;
pub use inspect::inspect;
pub use source::ZarrSource;

/// A zarr store: local directory or object storage, behind zarrs' synchronous storage traits.
pub type Storage = Arc<dyn zarrs::storage::ReadableWritableListableStorageTraits>;
