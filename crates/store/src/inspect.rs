//! `atlasnorm inspect`: what is inside an AnnData store.

use std::path::Path;

use crate::error::Result;

/// A readable tree of the store at `path`: every element with its encoding, shape, dtype,
/// chunking and filters/codecs (and nnz for sparse matrices).
pub fn inspect(path: &Path) -> Result<String> {
    let text = path.to_string_lossy();
    if text.trim_end_matches('/').ends_with(".zarr") || text.starts_with("s3://") {
        return crate::store::zarr::inspect(path);
    }
    crate::store::h5ad::inspect(path)
}
