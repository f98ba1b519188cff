//! The .zarr backend (zarr v2 and v3, through `zarrs`).
//!
//! * [`ZarrInput`]: an AnnData store opened for reading, with [`MatrixSource`]s for X and
//!   layers and a [`TreeReader`](crate::store::tree::TreeReader) over the whole tree.
//!
//! Everything here works on a [`Storage`] handle, never on paths directly, so that the same
//! code serves a local directory and object storage.

mod input;
pub mod s3;
pub mod storage;

use std::sync::Arc;

pub use input::ZarrInput;

/// A zarr store: local directory or object storage, behind zarrs' synchronous storage traits.
pub type Storage = Arc<dyn zarrs::storage::ReadableWritableListableStorageTraits>;
