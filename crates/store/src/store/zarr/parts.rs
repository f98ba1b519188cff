//! Writing one part of a zarr output's normalized matrix from a task (see
//! [`crate::distributed`]): the values of whole write units, into the array whose metadata
//! the client stored.

use std::ops::Range;
use std::path::Path;

use zarrs::storage::StoreKey;

use super::sink::{ChunkedWriter, CsrSink, DenseSink};
use super::Storage;
use crate::array::DType;
use crate::error::{Error, Result};
use crate::store::{MatrixLayout, MatrixSink};

/// The matrix's values array: `data` of a CSR group, or the dense array itself.
pub fn values_path(element: &str, layout: MatrixLayout) -> String {
    match layout {
        MatrixLayout::Dense => element.to_string(),
        _ => format!("{element}/data"),
    }
}

/// Elements of one band of write units (shards, else chunks) of the array at `path`: parts
/// start and end on multiples of it.
///
/// # Errors
/// [`Error::Output`] when the array's metadata cannot be read.
pub fn band_len(storage: &Storage, file: &Path, path: &str, dtype: DType) -> Result<u64> {
    let w = ChunkedWriter::open_part(storage, path, dtype, 1, 0..0)
        .map_err(|e| Error::output(file, e.to_string()))?;
    Ok(w.band_len())
}

/// A sink for the values `range` (elements of the values array, whole bands of write units)
/// of the normalized matrix at `element`.
///
/// # Errors
/// [`Error::Output`] when the array cannot be opened or `range` is not whole bands.
pub fn part_sink(
    storage: &Storage,
    file: &Path,
    element: &str,
    layout: MatrixLayout,
    dtype: DType,
    budget: u64,
    range: Range<u64>,
) -> Result<Box<dyn MatrixSink>> {
    let path = values_path(element, layout);
    let data = ChunkedWriter::open_part(storage, &path, dtype, budget, range)
        .map_err(|e| Error::output(file, e.to_string()))?;
    Ok(match layout {
        MatrixLayout::Dense => Box::new(DenseSink {
            file: file.to_path_buf(),
            data,
        }),
        _ => Box::new(CsrSink {
            file: file.to_path_buf(),
            data,
            indices: None,
            indptr: None,
            last_indptr: None,
        }),
    })
}

/// Copies `keys` of `input` into `output` as they are (a copy task's objects).
///
/// # Errors
/// A key that is not a valid store key, the stores' read and write errors.
pub fn copy_keys(input: &Storage, output: &Storage, keys: &[String], budget: u64) -> Result<u64> {
    let keys = keys
        .iter()
        .map(|k| StoreKey::new(k.as_str()).map_err(|e| Error::Internal(format!("{k}: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    super::copy::copy_keys(input, output, &keys, budget)
}
