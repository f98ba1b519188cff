//! AnnData's encoding of a matrix, decided once for both formats.
//!
//! A backend looks up what it stores (a group's `encoding-type` and `shape` attributes, the
//! dims, dtype and byte order of `data`/`indices`/`indptr`, or of a 2-D array) and hands it
//! here; the rules of the encoding — which layouts exist, what the members must be, how
//! their lengths relate to the shape, which byte orders anndata + scanpy can process, how
//! the shape relates to `obs`/`var` — and their messages live in this one place, so an
//! `.h5ad` and a `.zarr` holding the same matrix are opened, or refused, alike.

use crate::array::DType;
use crate::store::{MatrixLayout, MatrixMeta};

/// The backends' error before the file is known: something wrong with one element of an
/// input. The caller adds the file ([`Problem::into_input`]), which makes the message the
/// CLI shows (`FILE: ELEMENT: PROBLEM`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{element}: {problem}")]
pub(crate) struct Problem {
    pub element: String,
    pub problem: String,
}

impl Problem {
    pub fn new(element: impl Into<String>, problem: impl Into<String>) -> Self {
        Problem {
            element: element.into(),
            problem: problem.into(),
        }
    }

    pub fn into_input(self, file: &std::path::Path) -> crate::Error {
        crate::Error::input(file, self.element, self.problem)
    }
}

/// How a sparse matrix group names its layout and where its shape is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SparseEncoding {
    pub layout: MatrixLayout,
    /// The attribute that holds the shape: `shape`, or `h5sparse_shape` in the legacy form.
    pub shape_attr: &'static str,
}

/// The sparse encoding of a group from its `encoding-type` attribute, or, without one,
/// from the legacy `h5sparse_format` (anndata < 0.7 wrote it in `.h5ad` files; pass `None`
/// where a format never had it). `Ok(None)`: not a sparse matrix (the caller says what it
/// found).
pub(crate) fn sparse_encoding(
    path: &str,
    encoding_type: Option<&str>,
    h5sparse_format: Option<&str>,
) -> Result<Option<SparseEncoding>, Problem> {
    let (layout, shape_attr) = match (encoding_type, h5sparse_format) {
        (Some("csr_matrix"), _) => (MatrixLayout::Csr, "shape"),
        (Some("csc_matrix"), _) => (MatrixLayout::Csc, "shape"),
        (Some(_), _) | (None, None) => return Ok(None),
        (None, Some("csr")) => (MatrixLayout::Csr, "h5sparse_shape"),
        (None, Some("csc")) => (MatrixLayout::Csc, "h5sparse_shape"),
        (None, Some(other)) => {
            return Err(Problem::new(
                path,
                format!("unsupported legacy sparse format '{other}'"),
            ))
        }
    };
    Ok(Some(SparseEncoding { layout, shape_attr }))
}

/// A shape attribute as a backend found it.
pub(crate) enum ShapeAttr {
    Missing,
    /// Two non-negative integers.
    Pair(u64, u64),
    /// Anything else, as it reads in a message.
    Other(String),
}

/// The shape of a sparse matrix from its shape attribute.
pub(crate) fn sparse_shape(
    path: &str,
    encoding: SparseEncoding,
    found: ShapeAttr,
) -> Result<(u64, u64), Problem> {
    let attr = encoding.shape_attr;
    match found {
        ShapeAttr::Pair(a, b) => Ok((a, b)),
        ShapeAttr::Other(what) => Err(Problem::new(
            path,
            format!("attribute '{attr}' is {what}, expected two non-negative integers"),
        )),
        ShapeAttr::Missing => Err(Problem::new(
            path,
            format!("sparse matrix without a '{attr}' attribute"),
        )),
    }
}

/// One array of a sparse matrix (`data`, `indices` or `indptr`), as a backend found it.
pub(crate) struct Member {
    /// Its dims; `None` for an HDF5 null dataspace.
    pub dims: Option<Vec<u64>>,
    /// Its numeric dtype, or what it holds instead, in words ("boolean data", ...).
    pub dtype: Result<DType, String>,
    /// Whether it is stored big-endian.
    pub big_endian: bool,
}

/// The message for a sparse matrix group that lacks `name`.
pub(crate) fn missing_member(path: &str, name: &str) -> Problem {
    Problem::new(
        format!("{path}/{name}"),
        "missing (sparse matrices need data, indices and indptr)",
    )
}

/// Checks the three arrays of a sparse matrix against each other and the shape, and refuses
/// byte orders anndata + scanpy cannot process; the matrix's [`MatrixMeta`].
pub(crate) fn sparse_meta(
    path: &str,
    layout: MatrixLayout,
    shape: (u64, u64),
    [data, indices, indptr]: [&Member; 3],
) -> Result<MatrixMeta, Problem> {
    let checked = |m: &Member, name: &str, integer: bool| -> Result<(DType, u64), Problem> {
        let elem = format!("{path}/{name}");
        let len = match m.dims.as_deref() {
            Some([n]) => *n,
            Some(d) => {
                return Err(Problem::new(
                    elem,
                    format!("is {}-D, expected a 1-D array", d.len()),
                ))
            }
            None => {
                return Err(Problem::new(
                    elem,
                    "is an empty (null) dataset, expected a 1-D array",
                ))
            }
        };
        match &m.dtype {
            Ok(t) if integer && !t.is_integer() => {
                Err(Problem::new(elem, format!("holds {t}, expected integers")))
            }
            Ok(t) => Ok((*t, len)),
            Err(what) => Err(Problem::new(elem, format!("unsupported: holds {what}"))),
        }
    };
    let (data_dtype, n_data) = checked(data, "data", false)?;
    let (indices_dtype, n_indices) = checked(indices, "indices", true)?;
    let (indptr_dtype, n_indptr) = checked(indptr, "indptr", true)?;
    check_byte_order(
        path,
        layout,
        [
            (data, data_dtype),
            (indices, indices_dtype),
            (indptr, indptr_dtype),
        ],
    )?;
    let (major, axis) = match layout {
        MatrixLayout::Csc => (shape.1, "columns"),
        _ => (shape.0, "rows"),
    };
    if n_indptr != major + 1 {
        return Err(Problem::new(
            format!("{path}/indptr"),
            format!(
                "has {n_indptr} entries, expected {} ({major} {axis} + 1) for shape ({}, {})",
                major + 1,
                shape.0,
                shape.1
            ),
        ));
    }
    if n_indices != n_data {
        return Err(Problem::new(
            format!("{path}/indices"),
            format!("has {n_indices} entries but data has {n_data}"),
        ));
    }
    Ok(MatrixMeta {
        layout,
        n_obs: shape.0,
        n_vars: shape.1,
        data_dtype,
        nnz: n_data,
        indices_dtype: Some(indices_dtype),
        indptr_dtype: Some(indptr_dtype),
    })
}

/// Big-endian arrays of a sparse matrix that scanpy 1.12.4 + anndata 0.13.4 cannot process
/// (checked with both, for both formats): `data` (scipy.sparse refuses the dtype, so anndata
/// cannot read the matrix), and `indices`/`indptr` of a CSR matrix with float data (scanpy's
/// numba kernels raise "Unsupported array dtype"; with two different index dtypes scanpy
/// raises its own TypeError first). CSC matrices and integer data are rebuilt by scipy with
/// native index arrays and are fine; so are dense big-endian matrices.
fn check_byte_order(
    path: &str,
    layout: MatrixLayout,
    [(data, data_dtype), indices, indptr]: [(&Member, DType); 3],
) -> Result<(), Problem> {
    use crate::store::check::{big_endian_name, big_endian_sparse_data};
    if data.big_endian {
        return Err(Problem::new(
            format!("{path}/data"),
            big_endian_sparse_data(data_dtype),
        ));
    }
    if layout == MatrixLayout::Csr && data_dtype.is_float() {
        for (name, (m, t)) in [("indices", indices), ("indptr", indptr)] {
            if m.big_endian {
                let code = big_endian_name(t);
                return Err(Problem::new(
                    format!("{path}/{name}"),
                    format!(
                        "stored big-endian ({code}): scanpy's normalize_total raises on a CSR \
                         matrix with big-endian index arrays (\"Unsupported array dtype: {code}\", \
                         or \"indptr and indices must have the same dtype\"), so atlasnorm \
                         refuses too; rewrite it little-endian first"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Whether an array's `encoding-type` allows it to be a dense matrix (`array`, or none: a
/// legacy dataset written before anndata 0.8).
pub(crate) fn is_dense_encoding(encoding_type: Option<&str>) -> bool {
    matches!(encoding_type, None | Some("array"))
}

/// The [`MatrixMeta`] of a dense 2-D array of `dtype` (or what it holds instead, in words).
pub(crate) fn dense_meta(
    path: &str,
    (n_obs, n_vars): (u64, u64),
    dtype: Result<DType, String>,
) -> Result<MatrixMeta, Problem> {
    let dtype = dtype.map_err(|what| {
        Problem::new(
            path,
            format!("unsupported: a 2-D array of {what}, expected numbers"),
        )
    })?;
    Ok(MatrixMeta {
        layout: MatrixLayout::Dense,
        n_obs,
        n_vars,
        data_dtype: dtype,
        nnz: n_obs.saturating_mul(n_vars),
        indices_dtype: None,
        indptr_dtype: None,
    })
}

/// The message for a node that is neither encoding of a matrix; `found` describes it
/// ("encoding-type 'dataframe'", "a 1-D array", ...).
pub(crate) fn unsupported(path: &str, found: &str) -> Problem {
    Problem::new(
        path,
        format!(
            "unsupported encoding: found {found}, expected csr_matrix, csc_matrix or a 2-D numeric array"
        ),
    )
}

/// The message for a missing X or layer (`container`: "file", "store").
pub(crate) fn missing_matrix(path: &str, container: &str) -> Problem {
    let what = if path == "X" {
        format!("this {container} has no X matrix")
    } else {
        format!("no layer named '{}'", path.trim_start_matches("layers/"))
    };
    Problem::new(path, what)
}

/// Checks a matrix's shape against the lengths of `obs` and `var` (where they could be
/// told).
pub(crate) fn check_shape(
    path: &str,
    (n_obs, n_vars): (u64, u64),
    obs_len: Option<u64>,
    var_len: Option<u64>,
) -> Result<(), Problem> {
    for (axis, len, n) in [("obs", obs_len, n_obs), ("var", var_len, n_vars)] {
        if let Some(len) = len {
            if len != n {
                return Err(Problem::new(
                    path,
                    format!("shape ({n_obs}, {n_vars}) does not match the {len} entries of {axis}"),
                ));
            }
        }
    }
    Ok(())
}

/// Whether a numeric column `name` can be set in the dataframe `frame` (`obs`) whose index
/// column is `index` and which has `n_rows` rows (where they could be told): the message
/// naming `frame/name` when not.
pub(crate) fn check_new_column(
    frame: &str,
    name: &str,
    index: Option<&str>,
    n_rows: Option<u64>,
    n_values: usize,
) -> Result<(), String> {
    let elem = format!("{frame}/{name}");
    if name.is_empty() || name.contains('/') {
        return Err(format!("{elem}: not a valid column name"));
    }
    if index == Some(name) {
        return Err(format!("{elem}: this is the name of the {frame} index"));
    }
    match n_rows {
        Some(n) if n != n_values as u64 => {
            Err(format!("{elem}: {n_values} values for {n} observations"))
        }
        _ => Ok(()),
    }
}

/// A dataframe's `column-order` after setting column `name`: a column that exists keeps its
/// position, a new one comes last.
pub(crate) fn column_order_with(mut order: Vec<String>, name: &str) -> Vec<String> {
    if !order.iter().any(|c| c == name) {
        order.push(name.to_string());
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(len: u64, dtype: DType) -> Member {
        Member {
            dims: Some(vec![len]),
            dtype: Ok(dtype),
            big_endian: false,
        }
    }

    #[test]
    fn layouts_and_legacy_form() {
        let enc = |t, l| sparse_encoding("X", t, l).unwrap().map(|e| e.layout);
        assert_eq!(enc(Some("csr_matrix"), None), Some(MatrixLayout::Csr));
        assert_eq!(
            enc(Some("csc_matrix"), Some("csr")),
            Some(MatrixLayout::Csc)
        );
        assert_eq!(enc(None, Some("csc")), Some(MatrixLayout::Csc));
        assert_eq!(enc(Some("dataframe"), None), None);
        assert_eq!(enc(None, None), None);
        let legacy = sparse_encoding("X", None, Some("csr")).unwrap().unwrap();
        assert_eq!(legacy.shape_attr, "h5sparse_shape");
        let bad = sparse_encoding("X", None, Some("coo")).unwrap_err();
        assert!(bad.problem.contains("legacy sparse format 'coo'"));
    }

    #[test]
    fn members_checked_against_each_other_and_the_shape() {
        let (d, i, p) = (
            member(5, DType::F32),
            member(5, DType::I32),
            member(4, DType::I64),
        );
        let meta = sparse_meta("X", MatrixLayout::Csr, (3, 7), [&d, &i, &p]).unwrap();
        assert_eq!((meta.nnz, meta.indptr_dtype), (5, Some(DType::I64)));
        // CSC: indptr follows the columns.
        let err = sparse_meta("X", MatrixLayout::Csc, (3, 7), [&d, &i, &p]).unwrap_err();
        assert_eq!(err.element, "X/indptr");
        assert!(
            err.problem.contains("expected 8 (7 columns + 1)"),
            "{}",
            err.problem
        );
        let short = member(4, DType::I32);
        let err = sparse_meta("X", MatrixLayout::Csr, (3, 7), [&d, &short, &p]).unwrap_err();
        assert_eq!(err.element, "X/indices");
        let float_idx = member(5, DType::F64);
        let err = sparse_meta("X", MatrixLayout::Csr, (3, 7), [&d, &float_idx, &p]).unwrap_err();
        assert!(err.problem.contains("expected integers"));
        let null = Member {
            dims: None,
            ..member(0, DType::F32)
        };
        let err = sparse_meta("X", MatrixLayout::Csr, (3, 7), [&null, &i, &p]).unwrap_err();
        assert_eq!(err.element, "X/data");
    }

    #[test]
    fn big_endian_rules() {
        let be = |m: Member| Member {
            big_endian: true,
            ..m
        };
        let (d, i, p) = (
            member(5, DType::F32),
            member(5, DType::I32),
            member(4, DType::I32),
        );
        let err = sparse_meta(
            "X",
            MatrixLayout::Csc,
            (3, 3),
            [&be(member(5, DType::F32)), &i, &p],
        )
        .unwrap_err();
        assert_eq!(err.element, "X/data");
        assert!(err.problem.contains(">f4"));
        // CSR with float data: index arrays must be native; CSC or integer data: fine.
        let be_i = be(member(5, DType::I32));
        let err = sparse_meta("X", MatrixLayout::Csr, (3, 3), [&d, &be_i, &p]).unwrap_err();
        assert_eq!(err.element, "X/indices");
        assert!(sparse_meta("X", MatrixLayout::Csc, (4, 3), [&d, &be_i, &p]).is_ok());
        let p4 = member(4, DType::I32);
        assert!(sparse_meta(
            "X",
            MatrixLayout::Csr,
            (3, 3),
            [&member(5, DType::I32), &be_i, &p4]
        )
        .is_ok());
    }

    #[test]
    fn new_columns() {
        assert!(check_new_column("obs", "size_factor", Some("_index"), Some(3), 3).is_ok());
        assert!(check_new_column("obs", "a/b", None, None, 3).is_err());
        assert!(check_new_column("obs", "", None, None, 3).is_err());
        let clash = check_new_column("obs", "cell", Some("cell"), None, 3).unwrap_err();
        assert!(clash.contains("name of the obs index"), "{clash}");
        let short = check_new_column("obs", "f", None, Some(4), 3).unwrap_err();
        assert_eq!(short, "obs/f: 3 values for 4 observations");
        let order = vec!["a".to_string(), "f".to_string(), "b".to_string()];
        assert_eq!(column_order_with(order.clone(), "f"), order);
        assert_eq!(
            column_order_with(order, "g").last().map(String::as_str),
            Some("g")
        );
    }

    #[test]
    fn shape_against_obs_and_var() {
        let meta = dense_meta("X", (3, 4), Ok(DType::F32)).unwrap();
        assert_eq!((meta.n_obs, meta.n_vars, meta.nnz), (3, 4, 12));
        assert!(check_shape("X", (3, 4), Some(3), Some(4)).is_ok());
        assert!(check_shape("X", (3, 4), None, None).is_ok());
        let err = check_shape("X", (3, 4), Some(3), Some(5)).unwrap_err();
        assert!(err.problem.contains("the 5 entries of var"));
        let err = dense_meta("X", (3, 4), Err("string data".into())).unwrap_err();
        assert!(err.problem.contains("a 2-D array of string data"));
    }
}
