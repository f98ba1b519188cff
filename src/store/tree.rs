//! A format-neutral view of an AnnData element tree, for carrying a whole store across
//! formats (`.h5ad` → `.zarr`, `.zarr` → `.h5ad`, zarr v2 ↔ v3).
//!
//! AnnData's encodings are the same in every format; only the physical representation of
//! attributes, strings, booleans and `null` differs. A backend exposes its tree through
//! [`TreeReader`] and builds one through [`TreeWriter`], translating to this common model:
//!
//! * **Attributes** are JSON values, as zarr stores them. An `.h5ad` reader maps HDF5
//!   attributes to JSON (strings, numbers, booleans, 1-D arrays of those); an `.h5ad` writer
//!   maps back the way h5py/anndata write them (scalar strings as variable-length UTF-8,
//!   integer arrays as int64, booleans as h5py's enum bool, and an **empty list as an empty
//!   float64 array**, which is how anndata writes an empty `column-order`).
//! * **Arrays** have an [`ElemType`] (numeric, bool or string) and a shape; 0-d arrays
//!   (scalars) have shape `[]`. Data move in row ranges along axis 0, C order, so an element
//!   of any size streams through a bounded buffer (a 0-d array is read as rows `0..1`).
//! * **`null` elements** (`encoding-type: null`) are not arrays to copy: each backend writes
//!   its own form ([`TreeWriter::create_null`]).

use std::ops::Range;

use crate::array::{DType, NumVec};
use crate::error::Result;

/// Attributes of a group or array, as JSON.
pub type Attrs = serde_json::Map<String, serde_json::Value>;

/// Element type of a stored array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemType {
    Num(DType),
    Bool,
    /// Variable-length UTF-8 strings.
    String,
}

impl ElemType {
    /// Bytes one element takes in memory while it is copied (strings: an estimate).
    pub fn approx_size(self) -> usize {
        match self {
            ElemType::Num(d) => d.size(),
            ElemType::Bool => 1,
            ElemType::String => 32,
        }
    }
}

/// What a [`TreeWriter`] needs to create an array.
#[derive(Clone, Debug, PartialEq)]
pub struct ArrayInfo {
    pub elem: ElemType,
    /// `[]` for a scalar.
    pub shape: Vec<u64>,
    pub attrs: Attrs,
}

impl ArrayInfo {
    /// Elements in one row (product of all but the first dimension); 1 for 0-d and 1-D arrays.
    pub fn row_len(&self) -> u64 {
        self.shape.iter().skip(1).product()
    }

    /// Rows along axis 0 (1 for a scalar).
    pub fn n_rows(&self) -> u64 {
        self.shape.first().copied().unwrap_or(1)
    }
}

/// A run of array elements in C order.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrayData {
    Num(NumVec),
    Bool(Vec<bool>),
    String(Vec<String>),
}

/// Whether a node is a group or an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Group,
    Array,
}

/// Reads an AnnData tree. Paths are `/`-separated without a leading slash; `""` is the root.
pub trait TreeReader {
    /// Names of a group's members, sorted.
    fn children(&self, group: &str) -> Result<Vec<(String, NodeKind)>>;
    fn group_attrs(&self, group: &str) -> Result<Attrs>;
    fn array_info(&self, array: &str) -> Result<ArrayInfo>;
    /// Rows `rows` of the array (all dimensions past the first in full), C order.
    fn read_rows(&self, array: &str, rows: Range<u64>) -> Result<ArrayData>;
}

/// Builds an AnnData tree. Parents are created before their children; an array's rows are
/// written in order, each row range exactly once.
pub trait TreeWriter {
    fn create_group(&mut self, group: &str, attrs: &Attrs) -> Result<()>;
    fn create_array(&mut self, array: &str, info: &ArrayInfo) -> Result<()>;
    fn write_rows(&mut self, array: &str, first_row: u64, data: &ArrayData) -> Result<()>;
    /// An element whose `encoding-type` is `null` (e.g. `uns/log1p/base`, zarr's `raw`).
    fn create_null(&mut self, path: &str, attrs: &Attrs) -> Result<()>;
}

/// Whether `attrs` mark a `null` element.
pub fn is_null(attrs: &Attrs) -> bool {
    attrs.get("encoding-type").and_then(|v| v.as_str()) == Some("null")
}

/// Joins a parent path and a member name.
pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}
