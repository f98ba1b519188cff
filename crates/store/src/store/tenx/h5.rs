//! Cell Ranger `.h5` matrices, read as scanpy 1.12.4's `read_10x_h5` reads them.
//!
//! * v3+ (`/matrix`): `_read_v3_10x_h5` — var names from `features/name`, `gene_ids` from
//!   `features/id` (probe-barcode matrices: `gene_ids` from `features/gene_id`, `probe_ids`
//!   from `features/id`), `feature_types`, then every other dataset of `features/` (but
//!   `_all_tag_keys`) in name order, as str (bool datasets as bool); `obs.filtered_barcodes`
//!   when present. Then `genome` and `gex_only` select features.
//! * legacy v2 (`/<genome>/...`): `_read_legacy_10x_h5` — one genome (required by name when
//!   there are several), var names from `gene_names`, `gene_ids` from `genes`.
//!
//! The matrix is CSC of features × barcodes on disk, i.e. CSR of cells: its datasets are
//! served as they are by the .h5ad backend's raw-chunk source.

use std::path::Path;

use hdf5::types::TypeDescriptor;
use hdf5::{Dataset, File, Group, LocationType};

use super::cells::Cells;
use super::float_text::{numpy_f16_str, numpy_f32_str, python_float_repr};
use super::frame::{Column, Frame};
use crate::error::{Error, Result};
use crate::store::h5ad::encoding::{numeric_dtype, MatrixElem, SparseElem};
use crate::store::h5ad::file::{dataset_strings, open_read, short};
use crate::store::h5ad::H5adSource;
use crate::store::MatrixLayout;

/// What scanpy's reader gives: obs, var and X.
pub struct Read {
    pub obs: Frame,
    pub var: Frame,
    pub matrix: Cells,
    /// Which 10x layout the file has, for `inspect` and messages.
    pub kind: String,
}

/// Whether `path` is a Cell Ranger h5 matrix (`/matrix`, or groups holding `indptr` and
/// `barcodes`), not an AnnData file.
pub fn is_10x_h5(path: &Path) -> bool {
    let Ok(file) = open_read(path) else {
        return false;
    };
    if file.link_exists("obs") || file.link_exists("var") {
        return false;
    }
    if file.link_exists("matrix") {
        return true;
    }
    let names = file.member_names().unwrap_or_default();
    !names.is_empty()
        && names.iter().all(|n| {
            file.group(n)
                .is_ok_and(|g| g.link_exists("indptr") && g.link_exists("barcodes"))
        })
}

struct H5<'a> {
    path: &'a Path,
}

impl H5<'_> {
    fn err(&self, element: &str, problem: impl Into<String>) -> Error {
        Error::input(self.path, element, problem)
    }

    fn dataset(&self, g: &Group, base: &str, name: &str) -> Result<Dataset> {
        let element = format!("{base}/{name}");
        if !g.link_exists(name) {
            return Err(self.err(
                &element,
                "missing (scanpy's read_10x_h5: \"File is missing one or more required datasets\")",
            ));
        }
        g.dataset(name)
            .map_err(|e| self.err(&element, format!("not a dataset: {}", short(&e))))
    }

    /// A dataset of names as scanpy's `dsets[name].astype(str)` makes them.
    fn strings(&self, g: &Group, base: &str, name: &str) -> Result<Vec<String>> {
        let ds = self.dataset(g, base, name)?;
        self.as_str(&ds, &format!("{base}/{name}"))
    }

    /// numpy's `astype(str)` of a 1-D dataset as h5py reads it: variable-length strings as
    /// they are; fixed-length ones are bytes, decoded as ASCII (other bytes make numpy fail);
    /// integers in decimal; floats as numpy's `str` (the shortest digits that read back);
    /// booleans `True`/`False`.
    fn as_str(&self, ds: &Dataset, element: &str) -> Result<Vec<String>> {
        let bad = |e: hdf5::Error| self.err(element, short(&e));
        let desc = ds.dtype().and_then(|t| t.to_descriptor()).map_err(|e| {
            self.err(
                element,
                format!(
                    "has a datatype this reader does not turn into strings as numpy would: {}",
                    short(&e)
                ),
            )
        })?;
        if ds.ndim() > 1 {
            return Err(self.err(
                element,
                format!(
                    "has {} dimensions; scanpy's reader needs 1 (pandas: \"Data must be \
                     1-dimensional\")",
                    ds.ndim()
                ),
            ));
        }
        Ok(match desc {
            TypeDescriptor::Boolean => (ds.read_raw::<bool>().map_err(bad)?.iter())
                .map(|&b| if b { "True" } else { "False" }.to_string())
                .collect(),
            TypeDescriptor::Integer(_) => (ds.read_raw::<i64>().map_err(bad)?.iter())
                .map(i64::to_string)
                .collect(),
            TypeDescriptor::Unsigned(_) => (ds.read_raw::<u64>().map_err(bad)?.iter())
                .map(u64::to_string)
                .collect(),
            TypeDescriptor::Float(hdf5::types::FloatSize::U2) => {
                (ds.read_raw::<half::f16>().map_err(bad)?.iter())
                    .map(|&x| numpy_f16_str(x))
                    .collect()
            }
            TypeDescriptor::Float(hdf5::types::FloatSize::U4) => {
                (ds.read_raw::<f32>().map_err(bad)?.iter())
                    .map(|&x| numpy_f32_str(x))
                    .collect()
            }
            TypeDescriptor::Float(hdf5::types::FloatSize::U8) => {
                (ds.read_raw::<f64>().map_err(bad)?.iter())
                    .map(|&x| python_float_repr(x))
                    .collect()
            }
            TypeDescriptor::FixedAscii(_)
            | TypeDescriptor::FixedUnicode(_)
            | TypeDescriptor::VarLenAscii
            | TypeDescriptor::VarLenUnicode => {
                if ds.ndim() == 0 {
                    return Err(self.err(
                        element,
                        "is a scalar string; h5py reads it as bytes, which scanpy's astype(str) \
                         fails on",
                    ));
                }
                let values = dataset_strings(ds).map_err(bad)?;
                if let Some(v) = values.iter().find(|v| !v.is_ascii()) {
                    return Err(self.err(
                        element,
                        format!(
                            "holds non-ASCII text ({v:?}): h5py reads these strings as bytes \
                             and numpy's astype(str) decodes bytes as ASCII, so scanpy fails \
                             (UnicodeDecodeError)"
                        ),
                    ));
                }
                values
            }
            other => {
                return Err(self.err(
                    element,
                    format!("is {other}, which scanpy's reader does not turn into strings here"),
                ))
            }
        })
    }

    /// numpy's `astype(bool)` of a numeric dataset: non-zero (NaN included) is true.
    fn as_bool(&self, ds: &Dataset, element: &str) -> Result<Vec<bool>> {
        let bad = |e: hdf5::Error| self.err(element, short(&e));
        Ok(
            match ds.dtype().and_then(|t| t.to_descriptor()).map_err(bad)? {
                TypeDescriptor::Boolean => ds.read_raw::<bool>().map_err(bad)?,
                TypeDescriptor::Integer(_) => (ds.read_raw::<i64>().map_err(bad)?.iter())
                    .map(|&x| x != 0)
                    .collect(),
                TypeDescriptor::Unsigned(_) => (ds.read_raw::<u64>().map_err(bad)?.iter())
                    .map(|&x| x != 0)
                    .collect(),
                TypeDescriptor::Float(_) => (ds.read_raw::<f64>().map_err(bad)?.iter())
                    .map(|&x| x != 0.0)
                    .collect(),
                other => {
                    return Err(self.err(
                        element,
                        format!("is {other}, not a numeric or boolean dataset"),
                    ))
                }
            },
        )
    }

    /// A `features/` metadata dataset as scanpy's `astype(bool if kind == "b" else str)`; a
    /// scalar dataset is broadcast to every feature, as pandas does with a scalar in a dict.
    fn column(&self, ds: &Dataset, element: &str, n_features: usize) -> Result<Column> {
        let is_bool = matches!(
            ds.dtype().and_then(|t| t.to_descriptor()),
            Ok(TypeDescriptor::Boolean)
        );
        let bad = |e: hdf5::Error| self.err(element, short(&e));
        let scalar = ds.ndim() == 0;
        let broadcast = |v: Vec<String>| match (scalar, v.first()) {
            (true, Some(x)) => vec![x.clone(); n_features],
            _ => v,
        };
        Ok(if is_bool && ds.ndim() <= 1 {
            let v = ds.read_raw::<bool>().map_err(bad)?;
            Column::Bool(match (scalar, v.first()) {
                (true, Some(&x)) => vec![x; n_features],
                _ => v,
            })
        } else {
            Column::strings(broadcast(self.as_str(ds, element)?))
        })
    }

    /// The stored matrix of `g` (`data`, `indices`, `indptr`, `shape`) as a CSR of cells.
    fn matrix(&self, g: &Group, base: &str) -> Result<(H5adSource, u64, u64)> {
        let shape_ds = self.dataset(g, base, "shape")?;
        let shape: Vec<i64> = shape_ds
            .read_raw::<i64>()
            .map_err(|e| self.err(&format!("{base}/shape"), short(&e)))?;
        let [n_features, n_barcodes] = shape[..] else {
            return Err(self.err(&format!("{base}/shape"), "is not [features, barcodes]"));
        };
        if n_features < 0 || n_barcodes < 0 {
            return Err(self.err(&format!("{base}/shape"), "has a negative dimension"));
        }
        let (n_features, n_barcodes) = (n_features as u64, n_barcodes as u64);
        let member = |name: &str| -> Result<(Dataset, crate::array::DType, u64)> {
            let ds = self.dataset(g, base, name)?;
            let desc = ds
                .dtype()
                .and_then(|t| t.to_descriptor())
                .map_err(|e| self.err(&format!("{base}/{name}"), short(&e)))?;
            let dtype = numeric_dtype(&desc).ok_or_else(|| {
                self.err(
                    &format!("{base}/{name}"),
                    format!("is not numeric ({desc})"),
                )
            })?;
            let len = ds.size() as u64;
            Ok((ds, dtype, len))
        };
        let (data, data_dtype, nnz) = member("data")?;
        let (indices, indices_dtype, n_indices) = member("indices")?;
        let (indptr, indptr_dtype, n_indptr) = member("indptr")?;
        if n_indices != nnz {
            return Err(self.err(
                &format!("{base}/indices"),
                format!("has {n_indices} entries but data has {nnz}"),
            ));
        }
        if n_indptr != n_barcodes + 1 {
            return Err(self.err(
                &format!("{base}/indptr"),
                format!(
                    "has {n_indptr} entries but shape says {n_barcodes} barcodes (expected {})",
                    n_barcodes + 1
                ),
            ));
        }
        if indices_dtype.is_float() || indptr_dtype.is_float() {
            return Err(self.err(base, "indices and indptr must be integers"));
        }
        let elem = SparseElem {
            layout: MatrixLayout::Csr,
            shape: (n_barcodes, n_features),
            data,
            indices,
            indptr,
            data_dtype,
            indices_dtype,
            indptr_dtype,
            nnz,
        };
        Ok((
            H5adSource::new(
                self.path.to_path_buf(),
                base.to_string(),
                MatrixElem::Sparse(elem),
            ),
            n_barcodes,
            n_features,
        ))
    }

    fn check_len(&self, element: &str, len: usize, want: u64, what: &str) -> Result<()> {
        if len as u64 != want {
            return Err(self.err(
                element,
                format!("has {len} entries but the matrix has {want} {what}"),
            ));
        }
        Ok(())
    }
}

/// Reads a v3+ or legacy file (see the module doc). `genome`: scanpy's `genome=`;
/// `gex_only`: scanpy's `gex_only=`.
pub fn read(path: &Path, genome: Option<&str>, gex_only: bool) -> Result<Read> {
    let file = open_read(path).map_err(|p| Error::input(path, "/", p))?;
    let h = H5 { path };
    if file.link_exists("matrix") {
        read_v3(&h, &file, genome, gex_only)
    } else {
        read_legacy(&h, &file, genome)
    }
}

fn read_v3(h: &H5, file: &File, genome: Option<&str>, gex_only: bool) -> Result<Read> {
    let g = file
        .group("matrix")
        .map_err(|e| h.err("matrix", format!("not a group: {}", short(&e))))?;
    if !g.link_exists("features") {
        return Err(h.err(
            "matrix/features",
            "missing (scanpy: \"10x h5 has no features group\")",
        ));
    }
    let f = g
        .group("features")
        .map_err(|e| h.err("matrix/features", short(&e)))?;
    let (source, n_obs, n_vars) = h.matrix(&g, "matrix")?;
    let barcodes = h.strings(&g, "matrix", "barcodes")?;
    h.check_len("matrix/barcodes", barcodes.len(), n_obs, "barcodes")?;
    let names = h.strings(&f, "matrix/features", "name")?;
    h.check_len("matrix/features/name", names.len(), n_vars, "features")?;
    let mut var = Frame::new(names);
    let ids = h.strings(&f, "matrix/features", "id")?;
    if f.link_exists("gene_id") {
        var.set(
            "gene_ids",
            Column::strings(h.strings(&f, "matrix/features", "gene_id")?),
        );
        var.set("probe_ids", Column::strings(ids));
    } else {
        var.set("gene_ids", Column::strings(ids));
    }
    let types = h.strings(&f, "matrix/features", "feature_type")?;
    var.set("feature_types", Column::strings(types.clone()));
    let mut obs = Frame::new(barcodes);
    if g.link_exists("filtered_barcodes") {
        let ds = h.dataset(&g, "matrix", "filtered_barcodes")?;
        obs.set(
            "filtered_barcodes",
            Column::Bool(h.as_bool(&ds, "matrix/filtered_barcodes")?),
        );
    }
    let mut members = f
        .member_names()
        .map_err(|e| h.err("matrix/features", short(&e)))?;
    members.sort();
    for name in members {
        if ["name", "feature_type", "id", "gene_id", "_all_tag_keys"].contains(&name.as_str()) {
            continue;
        }
        if f.loc_type_by_name(&name).ok() != Some(LocationType::Dataset) {
            continue;
        }
        let element = format!("matrix/features/{name}");
        let ds = h.dataset(&f, "matrix/features", &name)?;
        let column = h.column(&ds, &element, n_vars as usize)?;
        var.set(&name, column);
    }
    obs.check(h.path, "obs")?;
    var.check(h.path, "matrix/features")?;
    let mut keep: Vec<bool> = vec![true; n_vars as usize];
    if let Some(genome) = genome {
        let Some(Column::Str(genomes)) = var.column("genome") else {
            return Err(h.err(
                "matrix/features/genome",
                format!("missing, so --genome {genome} selects nothing"),
            ));
        };
        // an h5 string dataset has no missing values
        let genomes: Vec<&str> = genomes.iter().flatten().map(String::as_str).collect();
        if !genomes.contains(&genome) {
            let mut seen: Vec<&str> = Vec::new();
            for &x in &genomes {
                if !seen.contains(&x) {
                    seen.push(x);
                }
            }
            return Err(h.err(
                "matrix/features/genome",
                format!("no data of genome {genome:?}; available genomes are: {seen:?}"),
            ));
        }
        for (k, x) in keep.iter_mut().zip(genomes) {
            *k &= x == genome;
        }
    }
    if gex_only {
        for (k, t) in keep.iter_mut().zip(&types) {
            *k &= t == "Gene Expression";
        }
    }
    let matrix = Cells::new(h.path, "matrix", Box::new(source), Some(&keep), true)?;
    let var = if keep.iter().all(|&k| k) {
        var
    } else {
        var.select(&keep)
    };
    Ok(Read {
        obs,
        var,
        matrix,
        kind: "Cell Ranger v3+ h5 (/matrix)".into(),
    })
}

fn read_legacy(h: &H5, file: &File, genome: Option<&str>) -> Result<Read> {
    let mut children = file.member_names().map_err(|e| h.err("/", short(&e)))?;
    children.sort();
    let genome = match genome {
        None if children.len() > 1 => {
            return Err(h.err(
                "/",
                format!(
                    "contains more than one genome; for legacy 10x h5 files choose one with \
                     --genome (scanpy requires genome= too). Available genomes are: {children:?}"
                ),
            ))
        }
        None => children
            .first()
            .cloned()
            .ok_or_else(|| h.err("/", "is empty: neither /matrix nor a genome group"))?,
        Some(g) if !children.iter().any(|c| c == g) => {
            return Err(h.err(
                "/",
                format!("has no genome {g:?}; available genomes are: {children:?}"),
            ))
        }
        Some(g) => g.to_string(),
    };
    let g = file
        .group(&genome)
        .map_err(|e| h.err(&genome, format!("not a group: {}", short(&e))))?;
    let (source, n_obs, n_vars) = h.matrix(&g, &genome)?;
    let barcodes = h.strings(&g, &genome, "barcodes")?;
    h.check_len(
        &format!("{genome}/barcodes"),
        barcodes.len(),
        n_obs,
        "barcodes",
    )?;
    let names = h.strings(&g, &genome, "gene_names")?;
    h.check_len(
        &format!("{genome}/gene_names"),
        names.len(),
        n_vars,
        "genes",
    )?;
    let mut var = Frame::new(names);
    var.set(
        "gene_ids",
        Column::strings(h.strings(&g, &genome, "genes")?),
    );
    var.check(h.path, &genome)?;
    let matrix = Cells::new(h.path, &genome, Box::new(source), None, true)?;
    Ok(Read {
        obs: Frame::new(barcodes),
        var,
        matrix,
        kind: format!("Cell Ranger legacy (v2) h5, genome {genome}"),
    })
}
