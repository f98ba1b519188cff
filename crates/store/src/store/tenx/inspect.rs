//! `atlasnorm inspect` of a 10x input: what scanpy's reader would make of it.

use std::path::Path;

use super::{TenxInput, TenxOptions};
use crate::error::Result;
use crate::store::StoredMatrix as _;

/// The 10x layout, the matrix (cells × features, nnz, dtypes) and obs/var columns as scanpy
/// reads them (all feature types, no genome filter). A matrix.mtx is sorted into a
/// temporary directory under the system's temporary directory for this.
pub fn inspect(path: &Path) -> Result<String> {
    let scratch = std::env::temp_dir().join(format!("atlasnorm-inspect-{}", std::process::id()));
    let options = TenxOptions {
        genome: None,
        all_features: true,
    };
    let input = TenxInput::open(path, &options, &scratch, 256 << 20)?;
    let m = input.matrix.meta();
    let mut out = format!(
        "{}: 10x input, {}\n  X: csr_matrix (CSC of features × barcodes on disk) {} cells × {} features, nnz {}, data {} (scanpy: float32 when int32), indices {}\n",
        path.display(),
        input.kind,
        m.n_obs,
        m.n_vars,
        m.nnz,
        m.data_dtype,
        m.indices_dtype.map(|d| d.to_string()).unwrap_or_default(),
    );
    for frame in ["obs", "var"] {
        let cols = crate::store::tree::TreeReader::group_attrs(&input.tree, frame)?
            .get("column-order")
            .cloned()
            .unwrap_or_default();
        out.push_str(&format!("  {frame} columns: {cols}\n"));
    }
    Ok(out)
}
