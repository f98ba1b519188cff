//! What the engine reads from and writes to, as small traits: a [`MatrixSource`] (a
//! [`SparseSource`] or a [`DenseSource`]) read in row blocks, a [`MatrixSink`] written in order, and the [`InputStore`] / [`OutputStore`]
//! around them. Backends (HDF5, zarr, memory) implement them; the engine knows nothing else
//! of files.

use std::ops::Range;
use std::path::Path;

use crate::array::{DType, NumVec};
use crate::error::Result;

/// Which matrix of the `AnnData` to normalize.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElementPath {
    /// The main matrix, `X`.
    X,
    /// `layers/NAME`, by the layer's name.
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
    /// Compressed sparse rows (`encoding-type: csr_matrix`): one `indptr` entry per cell.
    Csr,
    /// Compressed sparse columns (`csc_matrix`): one `indptr` entry per gene, streamed by
    /// columns.
    Csc,
    /// A 2-D array, row-major, one row per cell.
    Dense,
}

/// What the engine needs to know about a stored matrix before reading it.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixMeta {
    /// How the matrix is stored.
    pub layout: MatrixLayout,
    /// Number of rows (cells, `obs`).
    pub n_obs: u64,
    /// Number of columns (genes, `var`).
    pub n_vars: u64,
    /// Stored dtype of the values (`data`, or the dense array); it picks the working dtype
    /// (f64 for float64 input, f32 otherwise, as scanpy).
    pub data_dtype: DType,
    /// Sparse: `len(data)`; dense: `n_obs * n_vars`.
    pub nnz: u64,
    /// Stored dtype of `indices`; sparse only (`None` when dense).
    pub indices_dtype: Option<DType>,
    /// Stored dtype of `indptr`; sparse only (`None` when dense).
    pub indptr_dtype: Option<DType>,
}

/// What every stored matrix tells before it is read.
pub trait StoredMatrix: Send + Sync {
    /// Layout, shape and dtypes, as found when the matrix was opened.
    fn meta(&self) -> &MatrixMeta;
}

/// Random-access reads of a stored sparse matrix (CSR or CSC).
///
/// Ranges are element ranges into the 1-D arrays (`indptr`, `indices`, `data`). The source
/// checks structure when it is opened (shape attribute, array lengths); the engine checks
/// contents (indptr monotone, indices in range) as it streams. Read errors name the file
/// and the element (`X/data`, ...).
///
/// # Errors
/// Every read returns an error (usually [`Error::Input`](crate::error::Error::Input)) when
/// the backend cannot read or decode the range.
pub trait SparseSource: StoredMatrix {
    /// `indptr[range]`, widened to i64.
    fn read_indptr(&self, range: Range<u64>) -> Result<Vec<i64>>;
    /// `indices[range]` in their stored dtype.
    fn read_indices(&self, range: Range<u64>) -> Result<NumVec>;
    /// `data[range]` in its stored dtype.
    fn read_data(&self, range: Range<u64>) -> Result<NumVec>;

    /// [`SparseSource::read_data`] into `out`, which the caller reuses block after block: a
    /// backend that can fills `out`'s allocation instead of making a new one (whatever `out`
    /// held before is replaced; its dtype may change to the stored one).
    fn read_data_into(&self, range: Range<u64>, out: &mut NumVec) -> Result<()> {
        *out = self.read_data(range)?;
        Ok(())
    }
    /// [`SparseSource::read_indices`] into a reused buffer (see [`SparseSource::read_data_into`]).
    fn read_indices_into(&self, range: Range<u64>, out: &mut NumVec) -> Result<()> {
        *out = self.read_indices(range)?;
        Ok(())
    }
}

/// Row reads of a stored dense (2-D, row-major) matrix.
///
/// # Errors
/// Every read returns an error (usually [`Error::Input`](crate::error::Error::Input)) when
/// the backend cannot read or decode the rows.
pub trait DenseSource: StoredMatrix {
    /// Rows `rows`, row-major, in the stored dtype.
    fn read_rows(&self, rows: Range<u64>) -> Result<NumVec>;
    /// [`DenseSource::read_rows`] into a reused buffer (see [`SparseSource::read_data_into`]).
    fn read_rows_into(&self, rows: Range<u64>, out: &mut NumVec) -> Result<()> {
        *out = self.read_rows(rows)?;
        Ok(())
    }
}

// A borrowed source reads as the source (a backend can hand out a view of a matrix it keeps).
impl<S: StoredMatrix + ?Sized> StoredMatrix for &S {
    fn meta(&self) -> &MatrixMeta {
        (**self).meta()
    }
}

impl<S: SparseSource + ?Sized> SparseSource for &S {
    fn read_indptr(&self, range: Range<u64>) -> Result<Vec<i64>> {
        (**self).read_indptr(range)
    }
    fn read_indices(&self, range: Range<u64>) -> Result<NumVec> {
        (**self).read_indices(range)
    }
    fn read_data(&self, range: Range<u64>) -> Result<NumVec> {
        (**self).read_data(range)
    }
    fn read_data_into(&self, range: Range<u64>, out: &mut NumVec) -> Result<()> {
        (**self).read_data_into(range, out)
    }
    fn read_indices_into(&self, range: Range<u64>, out: &mut NumVec) -> Result<()> {
        (**self).read_indices_into(range, out)
    }
}

impl<S: DenseSource + ?Sized> DenseSource for &S {
    fn read_rows(&self, rows: Range<u64>) -> Result<NumVec> {
        (**self).read_rows(rows)
    }
    fn read_rows_into(&self, rows: Range<u64>, out: &mut NumVec) -> Result<()> {
        (**self).read_rows_into(rows, out)
    }
}

/// An opened matrix: sparse or dense, each with only the reads its layout has (a backend
/// cannot be asked for the `indptr` of a dense array).
pub enum MatrixSource<'a> {
    /// CSR or CSC (see [`MatrixMeta::layout`]).
    Sparse(Box<dyn SparseSource + 'a>),
    /// A dense 2-D array.
    Dense(Box<dyn DenseSource + 'a>),
}

impl<'a> MatrixSource<'a> {
    /// Layout, shape and dtypes.
    pub fn meta(&self) -> &MatrixMeta {
        self.as_ref().meta()
    }

    /// The matrix borrowed.
    pub fn as_ref(&self) -> MatrixRef<'_> {
        match self {
            MatrixSource::Sparse(s) => MatrixRef::Sparse(s.as_ref()),
            MatrixSource::Dense(d) => MatrixRef::Dense(d.as_ref()),
        }
    }

    /// The sparse matrix (`None` when dense).
    pub fn sparse(&self) -> Option<&(dyn SparseSource + 'a)> {
        match self {
            MatrixSource::Sparse(s) => Some(s.as_ref()),
            MatrixSource::Dense(_) => None,
        }
    }

    /// The dense matrix (`None` when sparse).
    pub fn dense(&self) -> Option<&(dyn DenseSource + 'a)> {
        match self {
            MatrixSource::Dense(d) => Some(d.as_ref()),
            MatrixSource::Sparse(_) => None,
        }
    }

    /// `source` as the kind its layout says: for a backend whose one type reads both kinds.
    pub fn by_layout<S: SparseSource + DenseSource + 'a>(source: S) -> Self {
        match source.meta().layout {
            MatrixLayout::Dense => MatrixSource::Dense(Box::new(source)),
            MatrixLayout::Csr | MatrixLayout::Csc => MatrixSource::Sparse(Box::new(source)),
        }
    }
}

/// A borrowed [`MatrixSource`].
#[derive(Clone, Copy)]
pub enum MatrixRef<'a> {
    /// CSR or CSC.
    Sparse(&'a dyn SparseSource),
    /// A dense 2-D array.
    Dense(&'a dyn DenseSource),
}

impl<'a> MatrixRef<'a> {
    /// Layout, shape and dtypes.
    pub fn meta(self) -> &'a MatrixMeta {
        match self {
            MatrixRef::Sparse(s) => s.meta(),
            MatrixRef::Dense(d) => d.meta(),
        }
    }
}

/// How the output matrix is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputLayout {
    /// A CSR matrix (sparse input: CSR stays CSR, CSC becomes CSR).
    Csr,
    /// A dense 2-D array, row-major (dense input).
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
    Write {
        /// Dtype of the written `indices`.
        indices: DType,
        /// Dtype of the written `indptr`.
        indptr: DType,
    },
}

/// Shape, dtype and structure of the normalized matrix, given to
/// [`OutputStore::create_matrix`].
#[derive(Clone, Debug, PartialEq)]
pub struct OutputMatrixSpec {
    /// How the output matrix is stored.
    pub layout: OutputLayout,
    /// Number of rows (cells), as in the input.
    pub n_obs: u64,
    /// Number of columns (genes), as in the input.
    pub n_vars: u64,
    /// Number of stored values (`n_obs * n_vars` when dense).
    pub nnz: u64,
    /// F32 or F64: the working dtype.
    pub data_dtype: DType,
    /// Ignored for dense output.
    pub structure: SparseStructure,
}

/// A value written into `uns`, in the forms anndata reads back: a `dict`, a float
/// `numeric-scalar`, or `None` (a `null` element).
#[derive(Clone, Debug, PartialEq)]
pub enum UnsValue {
    /// Python's `None`.
    None,
    /// A float64 scalar.
    Float(f64),
    /// A dict, its entries in order.
    Dict(Vec<(String, UnsValue)>),
}

/// Sequential writes of the normalized matrix.
///
/// # Errors
/// Every method returns an error (usually [`Error::Output`](crate::error::Error::Output))
/// when the backend cannot write, and `finish` also when the counts do not add up.
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

/// An opened `AnnData` input.
///
/// # Errors
/// The fallible methods return [`Error::Input`](crate::error::Error::Input) naming the
/// file and the element that cannot be read or is malformed.
pub trait InputStore: Send + Sync {
    /// The path (or `s3://` URL) the input was opened from, for messages.
    fn path(&self) -> &Path;
    /// Opens X or a layer; a clear error when it is missing or not a supported encoding.
    fn open_matrix(&self, element: &ElementPath) -> Result<MatrixSource<'_>>;
    /// Whether `uns[key]` exists.
    fn has_uns(&self, key: &str) -> Result<bool>;
    /// Names of the variables at the given positions (for the excluded-genes message).
    fn var_names(&self, positions: &[u64]) -> Result<Vec<String>>;
}

/// An output under construction. It lives under a temporary name next to the final path;
/// dropping it without [`OutputStore::commit`] removes everything it wrote.
///
/// # Errors
/// Every method returns [`Error::Output`](crate::error::Error::Output) when the backend
/// cannot write, create or move what it must.
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
    /// Sets `uns[key]` to `value`, replacing an element of that name.
    fn write_uns(&mut self, key: &str, value: &UnsValue) -> Result<()>;
    /// Closes the output and moves it to its final name (replacing what is there, which the
    /// caller has allowed with `--force`).
    fn commit(self: Box<Self>) -> Result<()>;
}
