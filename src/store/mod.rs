//! Storage backends behind small traits.
//!
//! A backend knows AnnData's on-disk encodings and how to move bytes; it knows nothing of
//! normalization. The engine reads a [`MatrixSource`] in row blocks and writes a
//! [`MatrixSink`] in order; an [`OutputStore`] is a complete copy of the input in the making
//! (every element but the normalized one already carried over) that only becomes visible
//! under the output's name on [`OutputStore::commit`].

pub mod check;
pub mod h5ad;
mod labels;
pub mod temp;
pub mod tree;
pub mod zarr;

use std::ops::Range;
use std::path::Path;

use crate::array::{DType, NumVec};
use crate::error::Result;

/// Which matrix of the AnnData to normalize.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElementPath {
    X,
    Layer(String),
}

impl ElementPath {
    /// Path of the element inside the store, e.g. `X` or `layers/counts`.
    pub fn store_path(&self) -> String {
        match self {
            ElementPath::X => "X".to_string(),
            ElementPath::Layer(name) => format!("layers/{name}"),
        }
    }
}

/// How a matrix is laid out on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatrixLayout {
    Csr,
    Csc,
    Dense,
}

/// What the engine needs to know about a stored matrix before reading it.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixMeta {
    pub layout: MatrixLayout,
    pub n_obs: u64,
    pub n_vars: u64,
    pub data_dtype: DType,
    /// Sparse: `len(data)`; dense: `n_obs * n_vars`.
    pub nnz: u64,
    /// Sparse only.
    pub indices_dtype: Option<DType>,
    /// Sparse only.
    pub indptr_dtype: Option<DType>,
}

/// Random-access reads of one stored matrix.
///
/// Ranges are element ranges into the 1-D arrays (`indptr`, `indices`, `data`) or row ranges
/// for dense matrices. The source checks structure when it is opened (shape attribute, array
/// lengths); the engine checks contents (indptr monotone, indices in range) as it streams.
/// Read errors name the file and the element (`X/data`, ...).
pub trait MatrixSource: Send + Sync {
    fn meta(&self) -> &MatrixMeta;
    /// `indptr[range]`, widened to i64 (sparse only).
    fn read_indptr(&self, range: Range<u64>) -> Result<Vec<i64>>;
    /// `indices[range]` in their stored dtype (sparse only).
    fn read_indices(&self, range: Range<u64>) -> Result<NumVec>;
    /// `data[range]` in its stored dtype (sparse only).
    fn read_data(&self, range: Range<u64>) -> Result<NumVec>;
    /// Rows of a dense matrix, row-major, in the stored dtype (dense only).
    fn read_rows(&self, rows: Range<u64>) -> Result<NumVec>;

    /// [`MatrixSource::read_data`] into `out`, which the caller reuses block after block: a
    /// backend that can fills `out`'s allocation instead of making a new one (whatever `out`
    /// held before is replaced; its dtype may change to the stored one).
    fn read_data_into(&self, range: Range<u64>, out: &mut NumVec) -> Result<()> {
        *out = self.read_data(range)?;
        Ok(())
    }
    /// [`MatrixSource::read_indices`] into a reused buffer (see [`MatrixSource::read_data_into`]).
    fn read_indices_into(&self, range: Range<u64>, out: &mut NumVec) -> Result<()> {
        *out = self.read_indices(range)?;
        Ok(())
    }
    /// [`MatrixSource::read_rows`] into a reused buffer (see [`MatrixSource::read_data_into`]).
    fn read_rows_into(&self, rows: Range<u64>, out: &mut NumVec) -> Result<()> {
        *out = self.read_rows(rows)?;
        Ok(())
    }
}

/// How the output matrix is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputLayout {
    Csr,
    Dense,
}

/// Where the output's `indices` and `indptr` come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SparseStructure {
    /// CSR in, CSR out: the sparsity pattern is unchanged, so `indices` and `indptr` are
    /// copied from the input element as they are (raw, still-compressed where possible).
    CopyFromInput,
    /// The engine writes them (CSC in, CSR out) with [`MatrixSink::append_indices`] and
    /// [`MatrixSink::append_indptr`].
    Write { indices: DType, indptr: DType },
}

#[derive(Clone, Debug, PartialEq)]
pub struct OutputMatrixSpec {
    pub layout: OutputLayout,
    pub n_obs: u64,
    pub n_vars: u64,
    /// Number of stored values (`n_obs * n_vars` when dense).
    pub nnz: u64,
    /// F32 or F64: the working dtype.
    pub data_dtype: DType,
    /// Ignored for dense output.
    pub structure: SparseStructure,
}

/// Sequential writes of the normalized matrix.
pub trait MatrixSink: Send {
    /// Appends the next stored values (CSR `data`) or the next rows (dense, row-major), in
    /// order. `values` has the spec's `data_dtype`.
    fn append_data(&mut self, values: &NumVec) -> Result<()>;
    /// Appends the next CSR column indices (only with [`SparseStructure::Write`]).
    fn append_indices(&mut self, indices: &[i64]) -> Result<()>;
    /// Appends the next CSR `indptr` entries (only with [`SparseStructure::Write`]);
    /// `n_obs + 1` in all.
    fn append_indptr(&mut self, indptr: &[i64]) -> Result<()>;
    /// Flushes and checks that exactly `nnz` values (and `n_obs + 1` indptr entries) arrived.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// An opened AnnData input.
pub trait InputStore: Send + Sync {
    fn path(&self) -> &Path;
    /// For backends that copy between two stores of their own kind.
    fn as_any(&self) -> &dyn std::any::Any;
    /// Opens X or a layer; a clear error when it is missing or not a supported encoding.
    fn open_matrix(&self, element: &ElementPath) -> Result<Box<dyn MatrixSource + '_>>;
    /// Whether `uns/log1p` exists (scanpy then warns that the data seem log-transformed).
    fn has_uns_log1p(&self) -> Result<bool>;
    /// Names of the variables at the given positions (for the excluded-genes message).
    fn var_names(&self, positions: &[u64]) -> Result<Vec<String>>;
}

/// An output under construction. It lives under a temporary name next to the final path;
/// dropping it without [`OutputStore::commit`] removes everything it wrote.
pub trait OutputStore: Send {
    /// Creates the normalized matrix at `element`. Everything else of the input (obs, var,
    /// obsm, varm, obsp, varp, uns, other layers, raw) was copied when the store was created.
    fn create_matrix(
        &mut self,
        element: &ElementPath,
        spec: &OutputMatrixSpec,
    ) -> Result<Box<dyn MatrixSink + '_>>;
    /// Sets `obs[name]` to `values` (F32 or F64), replacing a column of that name and keeping
    /// its position, or appending it to `column-order`.
    fn write_obs_column(&mut self, name: &str, values: &NumVec) -> Result<()>;
    /// Sets `uns["log1p"] = {"base": base}` (`None` is stored as a null element).
    fn write_uns_log1p(&mut self, base: Option<f64>) -> Result<()>;
    /// Closes the output and moves it to its final name (replacing what is there, which the
    /// caller has allowed with `--force`).
    fn commit(self: Box<Self>) -> Result<()>;
}

/// Opens an AnnData input, choosing the backend by the path's form.
pub fn open_input(path: &Path) -> Result<Box<dyn InputStore>> {
    open_input_with(path, &zarr::s3::S3Config::default())
}

/// [`open_input`], reaching `s3://` stores with `s3` (environment plus overrides).
pub fn open_input_with(path: &Path, s3: &zarr::s3::S3Config) -> Result<Box<dyn InputStore>> {
    match backend_of(path) {
        Backend::H5ad => Ok(Box::new(h5ad::H5adInput::open(path)?)),
        Backend::Zarr => Ok(Box::new(zarr::ZarrInput::open_with(path, s3)?)),
    }
}

/// True when `path` names a directory store (`.zarr`, or object storage), false for an
/// `.h5ad` file.
pub fn is_directory_store(path: &Path) -> bool {
    matches!(backend_of(path), Backend::Zarr)
}

/// True for `s3://...` (object storage).
pub fn is_object_storage(path: &Path) -> bool {
    path.to_string_lossy().starts_with("s3://")
}

/// Starts an output at a temporary name next to `output`: a copy of everything in `input`
/// except `normalized`, which the engine then writes through [`OutputStore::create_matrix`].
/// `options` supplies the zarr output layout and the memory budget for copying.
pub fn create_output(
    input: &dyn InputStore,
    output: &Path,
    normalized: &ElementPath,
    options: &crate::Options,
) -> Result<Box<dyn OutputStore>> {
    let element = normalized.store_path();
    let budget = options.memory / 2;
    let input_any = input.as_any();
    match backend_of(output) {
        Backend::H5ad => {
            if let Some(h5ad_input) = input_any.downcast_ref::<h5ad::H5adInput>() {
                return Ok(Box::new(h5ad::H5adOutput::create(
                    h5ad_input, output, normalized,
                )?));
            }
            let reader = tree_reader(input_any).ok_or_else(|| unknown_backend(output))?;
            Ok(Box::new(h5ad::H5adOutput::create_from_tree(
                reader,
                input.path(),
                output,
                normalized,
                budget,
            )?))
        }
        Backend::Zarr => {
            if let Some(zarr_input) = input_any.downcast_ref::<zarr::ZarrInput>() {
                // Same format and layout: untouched elements (and a CSR matrix's structure)
                // are copied as encoded bytes. A format, codec, chunk or shard choice means
                // re-encoding: through the tree below.
                let z = &options.zarr;
                let same_format = z.format.is_none_or(|f| f == zarr_input.zarr_format());
                let same_layout = z.codec.is_none() && z.chunk.is_none() && z.shard.is_none();
                // anndata 0.7's uns scalars are upgraded on the way, as anndata does.
                if same_format && same_layout && !zarr_input.has_legacy_uns_scalars()? {
                    return Ok(Box::new(zarr::ZarrOutput::create(
                        zarr::input_storage(zarr_input),
                        output,
                        normalized,
                        options,
                    )?));
                }
            }
            // Another format, zarr version or layout: re-encode the tree.
            let reader = tree_reader(input_any).ok_or_else(|| unknown_backend(output))?;
            let layout_from = input_any
                .downcast_ref::<zarr::ZarrInput>()
                .and_then(zarr::input_storage);
            let mut out =
                zarr::ZarrOutput::create_for_tree(layout_from, output, normalized, options)?;
            tree::copy_all_but_matrix(reader, &mut out, &element, budget)?;
            Ok(Box::new(out))
        }
    }
}

/// The input's tree, whatever its backend.
fn tree_reader(input: &dyn std::any::Any) -> Option<&dyn tree::TreeReader> {
    if let Some(i) = input.downcast_ref::<h5ad::H5adInput>() {
        return Some(i);
    }
    if let Some(i) = input.downcast_ref::<zarr::ZarrInput>() {
        return Some(i);
    }
    None
}

fn unknown_backend(output: &Path) -> crate::error::Error {
    crate::error::Error::Internal(format!(
        "{}: the input's backend cannot be carried into another format",
        output.display()
    ))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    H5ad,
    Zarr,
}

fn backend_of(path: &Path) -> Backend {
    let text = path.to_string_lossy();
    let trimmed = text.trim_end_matches('/');
    if trimmed.ends_with(".zarr") || text.starts_with("s3://") {
        Backend::Zarr
    } else {
        Backend::H5ad
    }
}
