//! `atlasnorm inspect`: what is inside an AnnData store.

use std::path::Path;

use crate::error::Result;

/// A readable tree of the store at `path`: every element with its encoding, shape, dtype,
/// chunking and filters/codecs (and nnz for sparse matrices).
pub fn inspect(path: &Path) -> Result<String> {
    if crate::store::tenx::detect(path).is_some() {
        return crate::store::tenx::inspect(path);
    }
    if crate::store::is_directory_store(path) {
        return crate::store::zarr::inspect(path);
    }
    crate::store::h5ad::inspect(path)
}
