//! 10x Genomics inputs: Cell Ranger `.h5` matrices ([`h5`]) and matrix directories
//! (`matrix.mtx[.gz]` + `features.tsv[.gz]`/`genes.tsv` + `barcodes.tsv[.gz]`, [`mtx`]),
//! read as scanpy's `read_10x_h5` / `read_10x_mtx` read them.
//!
//! A [`TenxInput`] is an AnnData in the making: obs and var as anndata would write them
//! ([`frame`], in memory: O(n_obs + n_vars)), and X, a CSR of cells streamed from the input
//! ([`cells`]). It is carried to any output through the format-neutral tree
//! ([`crate::store::tree`]): `X/indices` and `X/indptr` are served from the matrix, so the
//! engine only adds `X/data`.

pub mod cells;
pub mod float_text;
pub mod frame;
pub mod h5;
pub mod inspect;
pub mod mtx;
pub mod table;

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::array::{DType, NumVec};
use crate::error::{Error, Result};
use crate::store::tree::{ArrayData, ArrayInfo, Attrs, ElemType, NodeKind, TreeReader};
use crate::store::{ElementPath, InputStore, MatrixSource, SparseSource as _, StoredMatrix as _};

pub use inspect::inspect;

/// scanpy's reader arguments (`--genome`, `--all-features`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenxOptions {
    /// `genome=`: keep the features of this genome (required for a legacy multi-genome h5).
    pub genome: Option<String>,
    /// `gex_only=False`: keep every feature type, not only "Gene Expression".
    pub all_features: bool,
}

/// The kind of 10x input at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    H5,
    Mtx,
}

/// Whether `path` is a 10x input, and which kind: a directory with a `matrix.mtx[.gz]`, or an
/// HDF5 file laid out as Cell Ranger writes it (not AnnData).
pub fn detect(path: &Path) -> Option<Kind> {
    let text = path.to_string_lossy();
    if text.starts_with("s3://") || text.trim_end_matches('/').ends_with(".zarr") {
        return None;
    }
    if path.is_dir() {
        return mtx::is_10x_dir(path).then_some(Kind::Mtx);
    }
    if path.is_file() && h5::is_10x_h5(path) {
        return Some(Kind::H5);
    }
    None
}

/// A 10x input opened as an AnnData (see the module doc).
pub struct TenxInput {
    path: PathBuf,
    tree: frame::MemTree,
    var_names: Vec<String>,
    matrix: cells::Cells,
    /// The 10x layout, in words.
    kind: String,
    /// Temporary files the input needs while it is read (a sorted matrix.mtx); removed
    /// when the input is dropped.
    _scratch: Option<mtx::Scratch>,
}

impl TenxInput {
    /// Opens the 10x input at `path`. `scratch_next_to`: a local path (OUTPUT) next to which a
    /// matrix.mtx is sorted; `memory`: the budget of that sort.
    pub fn open(
        path: &Path,
        options: &TenxOptions,
        scratch_next_to: &Path,
        memory: u64,
    ) -> Result<Self> {
        let gex_only = !options.all_features;
        let (read, scratch) = match detect(path) {
            Some(Kind::H5) => (h5::read(path, options.genome.as_deref(), gex_only)?, None),
            Some(Kind::Mtx) => {
                if let Some(g) = &options.genome {
                    return Err(Error::Options(format!(
                        "--genome {g}: scanpy's read_10x_mtx has no genome selection (a matrix \
                         directory holds one matrix)"
                    )));
                }
                let (read, scratch) = mtx::read(path, gex_only, scratch_next_to, memory)?;
                (read, Some(scratch))
            }
            None => {
                return Err(Error::input(
                    path,
                    "/",
                    "not a 10x .h5 file or matrix directory",
                ))
            }
        };
        Ok(TenxInput {
            path: path.to_path_buf(),
            tree: frame::MemTree::anndata(&read.obs, &read.var),
            // pandas' `str` of a missing name, for messages that name genes
            var_names: (read.var.index.iter())
                .map(|n| n.clone().unwrap_or_else(|| "nan".into()))
                .collect(),
            matrix: read.matrix,
            kind: read.kind,
            _scratch: scratch,
        })
    }

    fn index_dtype(&self) -> DType {
        self.matrix.meta().indices_dtype.unwrap_or(DType::I64)
    }
}

impl InputStore for TenxInput {
    fn path(&self) -> &Path {
        &self.path
    }

    fn open_matrix(&self, element: &ElementPath) -> Result<MatrixSource<'_>> {
        match element {
            ElementPath::X => Ok(MatrixSource::Sparse(Box::new(&self.matrix))),
            ElementPath::Layer(name) => Err(Error::input(
                &self.path,
                format!("layers/{name}"),
                "a 10x input has no layers (normalize X)",
            )),
        }
    }

    fn has_uns(&self, _key: &str) -> Result<bool> {
        // scanpy's 10x readers leave uns empty.
        Ok(false)
    }

    fn var_names(&self, positions: &[u64]) -> Result<Vec<String>> {
        positions
            .iter()
            .map(|&i| {
                self.var_names
                    .get(i as usize)
                    .cloned()
                    .ok_or_else(|| Error::Internal(format!("variable {i} out of range")))
            })
            .collect()
    }
}

/// The tree of `AnnData(X, obs, var)`: X's structure from the matrix, the rest in memory.
impl TreeReader for TenxInput {
    fn children(&self, group: &str) -> Result<Vec<(String, NodeKind)>> {
        match group {
            "X" => Ok(vec![
                ("indices".into(), NodeKind::Array),
                ("indptr".into(), NodeKind::Array),
            ]),
            "" => {
                let mut c = self.tree.children("")?;
                c.push(("X".into(), NodeKind::Group));
                c.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(c)
            }
            _ => self.tree.children(group),
        }
    }

    fn group_attrs(&self, group: &str) -> Result<Attrs> {
        if group != "X" {
            return self.tree.group_attrs(group);
        }
        let m = self.matrix.meta();
        let mut a = Attrs::new();
        a.insert("encoding-type".into(), "csr_matrix".into());
        a.insert("encoding-version".into(), "0.1.0".into());
        a.insert("shape".into(), vec![m.n_obs, m.n_vars].into());
        Ok(a)
    }

    fn array_info(&self, array: &str) -> Result<ArrayInfo> {
        let m = self.matrix.meta();
        let len = match array {
            "X/indices" => m.nnz,
            "X/indptr" => m.n_obs + 1,
            _ => return self.tree.array_info(array),
        };
        Ok(ArrayInfo {
            elem: ElemType::Num(self.index_dtype()),
            shape: vec![len],
            attrs: Attrs::new(),
        })
    }

    fn read_rows(&self, array: &str, rows: Range<u64>) -> Result<ArrayData> {
        match array {
            "X/indices" => Ok(ArrayData::Num(self.matrix.read_indices(rows)?)),
            "X/indptr" => {
                let v = self.matrix.read_indptr(rows)?;
                Ok(ArrayData::Num(match self.index_dtype() {
                    DType::I32 => NumVec::I32(v.into_iter().map(|x| x as i32).collect()),
                    _ => NumVec::I64(v),
                }))
            }
            _ => self.tree.read_rows(array, rows),
        }
    }
}
