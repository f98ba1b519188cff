//! Recognizing AnnData elements in an HDF5 file: sparse and dense matrices, dataframes and
//! their string indexes.

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
use hdf5::{Dataset, File, Group, LocationType};

use super::file::{dataset_strings, dims, int_array_attr, str_attr};
use super::layout::foreign_order;
use crate::array::DType;
use crate::store::anndata::{self, Member, ShapeAttr};
use crate::store::labels;
use crate::store::MatrixLayout;

pub(crate) use crate::store::anndata::Problem;

/// A node of the file: a group or a dataset.
pub(crate) enum Node {
    Group(Group),
    Dataset(Dataset),
}

/// Opens the node at `path` (e.g. `layers/counts`); `None` when any part of it is missing.
pub(crate) fn node(root: &Group, path: &str) -> Option<Node> {
    let mut current = root.clone();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        if !current.link_exists(part) {
            return None;
        }
        let last = i + 1 == parts.len();
        match current.loc_type_by_name(part).ok()? {
            LocationType::Group => {
                let g = current.group(part).ok()?;
                if last {
                    return Some(Node::Group(g));
                }
                current = g;
            }
            LocationType::Dataset if last => return current.dataset(part).ok().map(Node::Dataset),
            _ => return None,
        }
    }
    Some(Node::Group(current))
}

/// The numeric dtype of a dataset, or a description of what it holds instead.
pub(crate) fn dtype_of(ds: &Dataset) -> Result<DType, String> {
    let desc = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|_| "an unsupported data type".to_string())?;
    numeric_dtype(&desc).ok_or_else(|| describe_type(&desc))
}

pub(crate) fn numeric_dtype(desc: &TypeDescriptor) -> Option<DType> {
    Some(match desc {
        TypeDescriptor::Integer(IntSize::U1) => DType::I8,
        TypeDescriptor::Integer(IntSize::U2) => DType::I16,
        TypeDescriptor::Integer(IntSize::U4) => DType::I32,
        TypeDescriptor::Integer(IntSize::U8) => DType::I64,
        TypeDescriptor::Unsigned(IntSize::U1) => DType::U8,
        TypeDescriptor::Unsigned(IntSize::U2) => DType::U16,
        TypeDescriptor::Unsigned(IntSize::U4) => DType::U32,
        TypeDescriptor::Unsigned(IntSize::U8) => DType::U64,
        TypeDescriptor::Float(FloatSize::U4) => DType::F32,
        TypeDescriptor::Float(FloatSize::U8) => DType::F64,
        _ => return None,
    })
}

/// numpy-like words for a non-numeric HDF5 type.
pub(crate) fn describe_type(desc: &TypeDescriptor) -> String {
    match desc {
        TypeDescriptor::Boolean => "boolean data".into(),
        TypeDescriptor::VarLenUnicode
        | TypeDescriptor::VarLenAscii
        | TypeDescriptor::FixedAscii(_)
        | TypeDescriptor::FixedUnicode(_) => "string data".into(),
        TypeDescriptor::Compound(_) => "compound (record) data".into(),
        TypeDescriptor::Enum(_) => "enum data".into(),
        other => format!("data of type {other}"),
    }
}

/// A sparse matrix group (`csr_matrix` / `csc_matrix`, or legacy `h5sparse_format`).
pub(crate) struct SparseElem {
    pub layout: MatrixLayout,
    pub shape: (u64, u64),
    pub data: Dataset,
    pub indices: Dataset,
    pub indptr: Dataset,
    pub data_dtype: DType,
    pub indices_dtype: DType,
    pub indptr_dtype: DType,
    pub nnz: u64,
}

/// A dense 2-D dataset (`array`, or a legacy dataset without attributes).
pub(crate) struct DenseElem {
    pub ds: Dataset,
    pub shape: (u64, u64),
    pub dtype: DType,
}

pub(crate) enum MatrixElem {
    Sparse(SparseElem),
    Dense(DenseElem),
}

impl MatrixElem {
    pub fn shape(&self) -> (u64, u64) {
        match self {
            MatrixElem::Sparse(s) => s.shape,
            MatrixElem::Dense(d) => d.shape,
        }
    }
}

/// What a node is, in words (for "unsupported encoding" messages).
pub(crate) fn describe_node(node: &Node) -> String {
    match node {
        Node::Group(g) => match str_attr(g, "encoding-type") {
            Some(t) => format!("encoding-type '{t}'"),
            None => "a group without encoding-type".into(),
        },
        Node::Dataset(ds) => {
            let shape = dims(ds);
            let kind = match &shape {
                None => "an empty (null) dataset".to_string(),
                Some(s) if s.is_empty() => "a scalar dataset".to_string(),
                Some(s) => format!("a {}-D dataset", s.len()),
            };
            match str_attr(ds, "encoding-type") {
                Some(t) => format!("encoding-type '{t}' ({kind})"),
                None => kind,
            }
        }
    }
}

/// Opens X or a layer as a matrix and checks its structure (by the rules of
/// [`crate::store::anndata`]).
pub(crate) fn open_matrix(
    root: &Group,
    path: &str,
    obs_len: Option<u64>,
    var_len: Option<u64>,
) -> Result<MatrixElem, Problem> {
    let Some(node) = node(root, path) else {
        return Err(anndata::missing_matrix(path, "file"));
    };
    let elem = match &node {
        Node::Group(g) => MatrixElem::Sparse(open_sparse(g, path, &node)?),
        Node::Dataset(ds) => MatrixElem::Dense(open_dense(ds, path, &node)?),
    };
    anndata::check_shape(path, elem.shape(), obs_len, var_len)?;
    Ok(elem)
}

fn unsupported(path: &str, node: &Node) -> Problem {
    anndata::unsupported(path, &describe_node(node))
}

fn open_sparse(g: &Group, path: &str, node: &Node) -> Result<SparseElem, Problem> {
    let encoding = anndata::sparse_encoding(
        path,
        str_attr(g, "encoding-type").as_deref(),
        str_attr(g, "h5sparse_format").as_deref(),
    )?
    .ok_or_else(|| unsupported(path, node))?;
    let shape = anndata::sparse_shape(
        path,
        encoding,
        match int_array_attr(g, encoding.shape_attr) {
            Some(s) if s.len() == 2 && s[0] >= 0 && s[1] >= 0 => {
                ShapeAttr::Pair(s[0] as u64, s[1] as u64)
            }
            Some(s) => ShapeAttr::Other(format!("{s:?}")),
            None => ShapeAttr::Missing,
        },
    )?;
    let member = |name: &str| -> Result<(Dataset, Member), Problem> {
        let Some(ds) = g.link_exists(name).then(|| g.dataset(name).ok()).flatten() else {
            return Err(anndata::missing_member(path, name));
        };
        let found = Member {
            dims: dims(&ds),
            dtype: dtype_of(&ds),
            big_endian: foreign_order(&ds),
        };
        Ok((ds, found))
    };
    let (data, data_found) = member("data")?;
    let (indices, indices_found) = member("indices")?;
    let (indptr, indptr_found) = member("indptr")?;
    let meta = anndata::sparse_meta(
        path,
        encoding.layout,
        shape,
        [&data_found, &indices_found, &indptr_found],
    )?;
    Ok(SparseElem {
        layout: meta.layout,
        shape,
        data,
        indices,
        indptr,
        data_dtype: meta.data_dtype,
        indices_dtype: meta.indices_dtype.unwrap_or(DType::I64),
        indptr_dtype: meta.indptr_dtype.unwrap_or(DType::I64),
        nnz: meta.nnz,
    })
}

fn open_dense(ds: &Dataset, path: &str, node: &Node) -> Result<DenseElem, Problem> {
    if !anndata::is_dense_encoding(str_attr(ds, "encoding-type").as_deref()) {
        return Err(unsupported(path, node));
    }
    let shape = match dims(ds) {
        Some(d) if d.len() == 2 => (d[0], d[1]),
        _ => return Err(unsupported(path, node)),
    };
    let meta = anndata::dense_meta(path, shape, dtype_of(ds))?;
    Ok(DenseElem {
        ds: ds.clone(),
        shape,
        dtype: meta.data_dtype,
    })
}

/// Number of rows of a dataframe (`obs` or `var`), from its index; `None` when it cannot
/// be told (then shape checks against it are skipped).
pub(crate) fn dataframe_len(root: &Group, name: &str) -> Option<u64> {
    match node(root, name)? {
        Node::Dataset(ds) => dims(&ds).and_then(|d| d.first().copied()),
        Node::Group(g) => {
            let index = str_attr(&g, "_index")?;
            match node(&g, &index)? {
                Node::Dataset(ds) => dims(&ds).and_then(|d| d.first().copied()),
                Node::Group(ig) => {
                    let member = if ig.link_exists("values") {
                        "values"
                    } else {
                        "codes"
                    };
                    let ds = ig.dataset(member).ok()?;
                    dims(&ds).and_then(|d| d.first().copied())
                }
            }
        }
    }
}

/// The index (names) of a dataframe: a `string-array` dataset, a `nullable-string-array`
/// group or a `categorical` group named by the `_index` attribute.
pub(crate) fn dataframe_index(root: &Group, name: &str) -> Result<Vec<String>, Problem> {
    let fail = |elem: &str, what: String| Problem::new(elem, format!("cannot read names: {what}"));
    let Some(node) = node(root, name) else {
        return Err(fail(name, "missing".into()));
    };
    match node {
        Node::Dataset(ds) => super::legacy::compound_first_field(&ds).map_err(|e| fail(name, e)),
        Node::Group(g) => {
            let index =
                str_attr(&g, "_index").ok_or_else(|| fail(name, "no _index attribute".into()))?;
            let elem = format!("{name}/{index}");
            match self::node(&g, &index) {
                None => Err(fail(&elem, "missing".into())),
                Some(Node::Dataset(ds)) => {
                    dataset_strings(&ds).map_err(|e| fail(&elem, e.to_string()))
                }
                Some(Node::Group(ig)) => match str_attr(&ig, "encoding-type").as_deref() {
                    Some("nullable-string-array") => {
                        let values = ig
                            .dataset("values")
                            .and_then(|d| dataset_strings(&d))
                            .map_err(|e| fail(&elem, e.to_string()))?;
                        let mask: Option<Vec<bool>> = ig
                            .dataset("mask")
                            .ok()
                            .and_then(|m| m.read_raw::<bool>().ok());
                        Ok(labels::masked(values, mask))
                    }
                    Some("categorical") => {
                        let categories = ig
                            .dataset("categories")
                            .and_then(|d| dataset_strings(&d))
                            .map_err(|e| fail(&elem, e.to_string()))?;
                        let codes = ig
                            .dataset("codes")
                            .and_then(|d| d.read_raw::<i64>())
                            .map_err(|e| fail(&elem, e.to_string()))?;
                        Ok(labels::decode_categorical(&categories, codes))
                    }
                    other => Err(fail(
                        &elem,
                        format!("unsupported index encoding {:?}", other.unwrap_or("none")),
                    )),
                },
            }
        }
    }
}

/// Root-level check that a file is AnnData: `obs` present (anndata 0.13 cannot read a file
/// without it). `var` may be missing: anndata-rs (SnapATAC2, anndataoom) leaves out a frame
/// without columns, and anndata reads such a file with var names "0", "1", ... (the output
/// then has no `var` either, which anndata reads back the same way).
pub(crate) fn check_anndata(file: &File) -> Result<(), Problem> {
    let root: &Group = file;
    let missing: Vec<&str> = ["obs", "var"]
        .into_iter()
        .filter(|n| !root.link_exists(n))
        .collect();
    if root.link_exists("obs") {
        return Ok(());
    }
    let found = root.member_names().unwrap_or_default();
    Err(Problem::new(
        "/",
        format!(
            "not an AnnData file: no {} (top-level members: {})",
            missing.join(" or "),
            if found.is_empty() {
                "none".to_string()
            } else {
                found.join(", ")
            }
        ),
    ))
}
