//! Checks of an input's elements the way anndata 0.13.4's reader judges them, before anything
//! is written.
//!
//! Everything but the normalized matrix is carried into the output unchanged (in .h5ad as an
//! HDF5 object copy, in zarr as encoded bytes): an element anndata cannot read would make an
//! output anndata cannot read, behind an exit status 0. So every element anndata's
//! `read_h5ad`/`read_zarr` visits is checked first, and one that anndata would refuse is
//! refused here, naming the INPUT file, the element and the problem:
//!
//! * `encoding-type`/`encoding-version` are strings (or both absent, which anndata reads as
//!   an old file) and form a pair anndata's read registry knows for that kind of node
//!   (group or array): `anndata/_io/specs/methods.py`, `_REGISTRY.register_read`;
//! * the members an encoding needs exist with the right kind: a dataframe's `_index` and
//!   every column of `column-order`, a categorical's `codes`/`categories`, a nullable array's
//!   `values`/`mask`, a sparse matrix's `data`/`indices`/`indptr` and `shape`;
//! * lengths agree: dataframe columns with the index, nullable values with their mask,
//!   categorical codes within the categories, sparse `indptr` with the shape, and the axes
//!   of the AnnData (obs, var, obsm, varm, obsp, varp, layers, raw) with the matrix;
//! * every stored value decodes: each array is read through once, in row blocks of a bounded
//!   size (corrupt or truncated chunks fail here, not in the copy).
//!
//! The normalized matrix itself is read (and checked) by the engine; here only its encoding
//! attributes are, as strictly as anndata does.

use crate::array::{DType, NumVec};
use crate::error::{Error, Result};
use crate::store::tree::{
    join, rows_per_block, ArrayData, ArrayInfo, Attrs, ElemType, NodeKind, TreeReader,
};
use crate::store::{ElementPath, InputStore, MatrixLayout, MatrixMeta};

/// The (encoding-type, encoding-version) pairs anndata 0.13.4 reads from a group.
const GROUP_SPECS: &[(&str, &str)] = &[
    ("", ""),
    ("anndata", "0.1.0"),
    ("raw", "0.1.0"),
    ("dict", "0.1.0"),
    ("dataframe", "0.1.0"),
    ("dataframe", "0.2.0"),
    ("categorical", "0.2.0"),
    ("csr_matrix", "0.1.0"),
    ("csc_matrix", "0.1.0"),
    ("nullable-integer", "0.1.0"),
    ("nullable-boolean", "0.1.0"),
    ("nullable-string-array", "0.1.0"),
    ("awkward-array", "0.1.0"),
];

/// The pairs anndata 0.13.4 reads from an array (HDF5 dataset, zarr array).
const ARRAY_SPECS: &[(&str, &str)] = &[
    ("", ""),
    ("array", "0.2.0"),
    ("string-array", "0.2.0"),
    ("rec-array", "0.2.0"),
    ("null", "0.1.0"),
    ("numeric-scalar", "0.2.0"),
    ("string", "0.2.0"),
    ("bytes", "0.2.0"),
];

/// The root members anndata passes to `AnnData(...)`.
const ROOT_KEYS: &[&str] = &[
    "X", "obs", "var", "obsm", "varm", "obsp", "varp", "layers", "uns", "raw",
];

/// Checks every element of `input` but the matrix `normalized` (whose shape `meta` gives)
/// as anndata's reader would, reading arrays in blocks of at most `budget` bytes. A 10x
/// input is built as scanpy's reader builds it: nothing to check.
pub fn check_input(
    input: &super::Input,
    normalized: &ElementPath,
    meta: &MatrixMeta,
    budget: u64,
) -> Result<()> {
    match input {
        super::Input::H5ad(i) => check_tree(i, true, normalized, meta, budget),
        super::Input::Zarr(i) => check_tree(i, false, normalized, meta, budget),
        super::Input::Tenx(_) => Ok(()),
    }
}

/// [`check_input`] over an AnnData tree, read from HDF5 (`hdf5`: its rules on strings) or
/// zarr; its path names it in errors.
pub fn check_tree<R: TreeReader + InputStore>(
    input: &R,
    hdf5: bool,
    normalized: &ElementPath,
    meta: &MatrixMeta,
    budget: u64,
) -> Result<()> {
    let mut c = Checker {
        reader: input,
        hdf5,
        file: input.path(),
        normalized: normalized.store_path(),
        budget: budget.clamp(1 << 16, 64 << 20),
        read: false,
    };
    c.matrix_spec(meta)?;
    // Structure and lengths first (metadata only), so that an element whose length is wrong
    // (a corrupt shape of 2^32 elements) is refused before anything is read; then the values.
    c.root(meta.n_obs, meta.n_vars)?;
    c.read = true;
    c.root(meta.n_obs, meta.n_vars)
}

struct Checker<'a> {
    reader: &'a dyn TreeReader,
    /// An `.h5ad` (anndata reads its string elements with h5py's `asstr()`).
    hdf5: bool,
    file: &'a std::path::Path,
    normalized: String,
    budget: u64,
    /// Whether this pass reads the values (the first pass checks metadata only).
    read: bool,
}

/// An element's encoding: `Ok((type, version))`, `""` for an absent attribute; `Err` with a
/// description when an attribute is not a string.
fn spec_of(attrs: &Attrs) -> std::result::Result<(String, String), String> {
    let get = |k: &str| match attrs.get(k) {
        None => Ok(String::new()),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "attribute {k} is {}, not a string: anndata cannot read this element",
            short_json(other)
        )),
    };
    Ok((get("encoding-type")?, get("encoding-version")?))
}

fn short_json(v: &serde_json::Value) -> String {
    let mut s = v.to_string();
    if s.len() > 60 {
        let mut cut = 57;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn describe(spec: &(String, String)) -> String {
    format!("encoding-type {:?}, encoding-version {:?}", spec.0, spec.1)
}

/// Where a problem of the reader (a TreeReader error) leaves the check: errors that only say
/// an element cannot be carried to *another* format (HDF5 references, compound types) are no
/// reason to refuse a same-format copy, so the element's deeper checks are skipped.
fn not_representable(e: &Error) -> bool {
    match e {
        Error::Input { problem, .. } => {
            problem.contains("cannot carry")
                || problem.contains("HDF5 references")
                || problem.contains("unsupported: holds")
                // float16, complex and other types the tree has no variant for
                || problem.contains("unsupported data type")
        }
        _ => false,
    }
}

/// The length of an element along axis 0 and, when known, axis 1.
#[derive(Clone, Copy, Debug)]
struct Extent {
    rows: u64,
    cols: Option<u64>,
}

impl Checker<'_> {
    fn fail(&self, element: &str, problem: impl Into<String>) -> Error {
        Error::input(
            self.file,
            if element.is_empty() { "/" } else { element },
            problem,
        )
    }

    fn is_normalized(&self, path: &str) -> bool {
        path == self.normalized
            || (path.len() > self.normalized.len()
                && path.starts_with(&self.normalized)
                && path.as_bytes()[self.normalized.len()] == b'/')
    }

    fn kind(&self, path: &str) -> Result<Option<NodeKind>> {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        Ok(self
            .reader
            .children(parent)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| k))
    }

    fn attrs(&self, path: &str, kind: NodeKind) -> Result<Option<Attrs>> {
        let r = match kind {
            NodeKind::Group => self.reader.group_attrs(path),
            NodeKind::Array => self.reader.array_info(path).map(|i| i.attrs),
        };
        match r {
            Ok(a) => Ok(Some(a)),
            Err(e) if not_representable(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The encoding of a node, refused unless anndata has a reader for it.
    fn spec(&self, path: &str, kind: NodeKind, attrs: &Attrs) -> Result<(String, String)> {
        let spec = spec_of(attrs).map_err(|p| self.fail(path, p))?;
        let known = match kind {
            NodeKind::Group => GROUP_SPECS,
            NodeKind::Array => ARRAY_SPECS,
        };
        if !known.iter().any(|(t, v)| *t == spec.0 && *v == spec.1) {
            let what = match kind {
                NodeKind::Group => "a group",
                NodeKind::Array => "an array",
            };
            let hint = if spec.0.is_empty() || spec.1.is_empty() {
                " (one of the two attributes is missing)"
            } else {
                ""
            };
            return Err(self.fail(
                path,
                format!(
                    "{} is not an encoding anndata 0.13 reads from {what}{hint}",
                    describe(&spec)
                ),
            ));
        }
        Ok(spec)
    }

    /// The normalized matrix's own encoding attributes, as strictly as anndata reads them.
    fn matrix_spec(&self, meta: &MatrixMeta) -> Result<()> {
        let path = self.normalized.clone();
        let kind = match meta.layout {
            MatrixLayout::Dense => NodeKind::Array,
            _ => NodeKind::Group,
        };
        let Some(attrs) = self.attrs(&path, kind)? else {
            return Ok(());
        };
        let spec = self.spec(&path, kind, &attrs)?;
        if kind == NodeKind::Group {
            let expected = match meta.layout {
                MatrixLayout::Csr => "csr_matrix",
                _ => "csc_matrix",
            };
            if attrs.contains_key("h5sparse_format") {
                // anndata < 0.7's attribute; where present, anndata reads the layout from it
                // (whatever encoding-type says).
                let csr = self.sparse_format(&path, &attrs)?;
                if csr != (meta.layout == MatrixLayout::Csr) {
                    return Err(self.fail(
                        &path,
                        format!(
                            "attribute h5sparse_format says {} but the matrix is stored as {}: \
                             anndata would read it transposed",
                            if csr { "csr" } else { "csc" },
                            expected
                        ),
                    ));
                }
            } else if spec.0.is_empty() {
                return Err(self.fail(
                    &path,
                    "a group without encoding attributes or h5sparse_format: anndata reads it \
                     as a dict, not a matrix",
                ));
            } else if spec.0 != expected {
                return Err(self.fail(
                    &path,
                    format!("{} is not a sparse matrix encoding", describe(&spec)),
                ));
            }
        } else if !(spec.0.is_empty() || spec.0 == "array") {
            return Err(self.fail(
                &path,
                format!(
                    "{}: anndata does not read this as a matrix",
                    describe(&spec)
                ),
            ));
        }
        Ok(())
    }

    fn root(&self, n_obs: u64, n_vars: u64) -> Result<()> {
        // Root attributes the tree cannot represent (a reference attribute of an old file)
        // leave its encoding unread: the same-format copy carries them as they are.
        let spec = match self.attrs("", NodeKind::Group)? {
            Some(attrs) => self.spec("", NodeKind::Group, &attrs)?,
            None => (String::new(), String::new()),
        };
        // h5py.File has readers for these three only (zarr's root group for every group
        // encoding, but anndata writes "anndata" there as well).
        if !matches!(spec.0.as_str(), "" | "anndata" | "raw") {
            return Err(self.fail(
                "",
                format!(
                    "{}: anndata reads a file's root only as an AnnData",
                    describe(&spec)
                ),
            ));
        }
        let children = self.reader.children("")?;
        // anndata reads the root as an AnnData whatever its encoding (the name "/" decides).
        let _ = spec;
        for (name, kind) in &children {
            if name.starts_with("raw.") {
                continue; // anndata < 0.7's raw (read by its own code path)
            }
            if !ROOT_KEYS.contains(&name.as_str()) {
                return Err(self.fail(
                    name,
                    "not an AnnData member (anndata passes every root member to AnnData(), \
                     which refuses this name)",
                ));
            }
            let want = match name.as_str() {
                "X" => Some(Extent {
                    rows: n_obs,
                    cols: Some(n_vars),
                }),
                "obs" => Some(Extent {
                    rows: n_obs,
                    cols: None,
                }),
                "var" => Some(Extent {
                    rows: n_vars,
                    cols: None,
                }),
                _ => None,
            };
            if (name == "obs" || name == "var") && *kind == NodeKind::Array {
                continue; // anndata < 0.7's record-array dataframe
            }
            if (name == "obs" || name == "var") && *kind == NodeKind::Group {
                self.frame_encoded(name)?;
            }
            match name.as_str() {
                "obsm" | "varm" | "obsp" | "varp" | "layers" if *kind == NodeKind::Group => {
                    self.mapping(name, n_obs, n_vars)?
                }
                "raw" if *kind == NodeKind::Group => self.raw(n_obs)?,
                _ => {
                    let got = self.element(name, *kind)?;
                    if let (Some(w), Some(g)) = (want, got) {
                        self.axes(name, w, g)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// In a zarr store, `obs`/`var` must say what they are: a group without encoding
    /// attributes is read by anndata as a dict of columns in the order zarr-python lists the
    /// store's directory — an order that depends on the filesystem, so no output can be
    /// known to match it. (An `.h5ad` group lists its members by name, which the copy keeps.)
    fn frame_encoded(&self, path: &str) -> Result<()> {
        if self.hdf5 {
            return Ok(());
        }
        let Some(attrs) = self.attrs(path, NodeKind::Group)? else {
            return Ok(());
        };
        let (kind, version) = spec_of(&attrs).map_err(|p| self.fail(path, p))?;
        if kind.is_empty() && version.is_empty() {
            return Err(self.fail(
                path,
                "a group without encoding attributes: anndata reads it as a dict of columns \
                 in the order the store's directory lists them (which depends on the \
                 filesystem), not as a dataframe, so atlasnorm refuses it (were its .zattrs \
                 lost? a consolidated .zmetadata may still hold them)",
            ));
        }
        Ok(())
    }

    fn axes(&self, path: &str, want: Extent, got: Extent) -> Result<()> {
        if got.rows != want.rows
            || (want.cols.is_some() && got.cols.is_some() && got.cols != want.cols)
        {
            let show = |e: Extent| match e.cols {
                Some(c) => format!("{} x {}", e.rows, c),
                None => format!("{}", e.rows),
            };
            return Err(self.fail(
                path,
                format!(
                    "has shape {}, but the AnnData's axes need {}: anndata refuses to build \
                     an AnnData from it",
                    show(got),
                    show(want)
                ),
            ));
        }
        Ok(())
    }

    /// obsm, varm, obsp, varp, layers: a dict whose members align with the axes.
    fn mapping(&self, name: &str, n_obs: u64, n_vars: u64) -> Result<()> {
        let Some(attrs) = self.attrs(name, NodeKind::Group)? else {
            return Ok(());
        };
        let spec = self.spec(name, NodeKind::Group, &attrs)?;
        if !matches!(spec.0.as_str(), "" | "dict") {
            // anndata reads it by its encoding (a nullable array, a dataframe, ...)
            self.element(name, NodeKind::Group)?;
            return Ok(());
        }
        for (member, kind) in self.reader.children(name)? {
            let path = join(name, &member);
            if self.is_normalized(&path) {
                continue;
            }
            let got = self.element(&path, kind)?;
            let want = match name {
                "obsm" => Extent {
                    rows: n_obs,
                    cols: None,
                },
                "varm" => Extent {
                    rows: n_vars,
                    cols: None,
                },
                "obsp" => Extent {
                    rows: n_obs,
                    cols: Some(n_obs),
                },
                "varp" => Extent {
                    rows: n_vars,
                    cols: Some(n_vars),
                },
                _ => Extent {
                    rows: n_obs,
                    cols: Some(n_vars),
                },
            };
            if let Some(g) = got {
                self.axes(&path, want, g)?;
            }
        }
        Ok(())
    }

    fn raw(&self, n_obs: u64) -> Result<()> {
        let Some(attrs) = self.attrs("raw", NodeKind::Group)? else {
            return Ok(());
        };
        self.spec("raw", NodeKind::Group, &attrs)?;
        let children = self.reader.children("raw")?;
        let mut raw_vars = None;
        if let Some((_, kind)) = children.iter().find(|(n, _)| n == "X") {
            if let Some(x) = self.element("raw/X", *kind)? {
                self.axes(
                    "raw/X",
                    Extent {
                        rows: n_obs,
                        cols: x.cols,
                    },
                    x,
                )?;
                raw_vars = x.cols;
            }
        }
        for (member, kind) in &children {
            let path = join("raw", member);
            match member.as_str() {
                "X" => {}
                "var" if *kind == NodeKind::Array => {}
                "varm" if *kind == NodeKind::Group => {
                    let Some(a) = self.attrs(&path, NodeKind::Group)? else {
                        continue;
                    };
                    self.spec(&path, NodeKind::Group, &a)?;
                    for (m, k) in self.reader.children(&path)? {
                        let p = join(&path, &m);
                        if let (Some(g), Some(v)) = (self.element(&p, k)?, raw_vars) {
                            self.axes(
                                &p,
                                Extent {
                                    rows: v,
                                    cols: None,
                                },
                                g,
                            )?;
                        }
                    }
                }
                _ => {
                    if member == "var" {
                        self.frame_encoded(&path)?;
                    }
                    let got = self.element(&path, *kind)?;
                    if let (true, Some(g), Some(v)) = (member == "var", got, raw_vars) {
                        self.axes(
                            &path,
                            Extent {
                                rows: v,
                                cols: None,
                            },
                            g,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks one element and everything under it; returns its extent when it has one.
    fn element(&self, path: &str, kind: NodeKind) -> Result<Option<Extent>> {
        if self.is_normalized(path) {
            return Ok(None);
        }
        let Some(attrs) = self.attrs(path, kind)? else {
            return Ok(None);
        };
        let spec = self.spec(path, kind, &attrs)?;
        if kind == NodeKind::Array {
            return self.array(path, &spec.0);
        }
        match spec.0.as_str() {
            "dataframe" => self.dataframe(path, &attrs, &spec.1),
            "categorical" => self.categorical(path),
            "csr_matrix" | "csc_matrix" => {
                let csr = match attrs.contains_key("h5sparse_format") {
                    true => self.sparse_format(path, &attrs)?,
                    false => spec.0 == "csr_matrix",
                };
                self.sparse(path, &attrs, csr)
            }
            "nullable-integer" | "nullable-boolean" | "nullable-string-array" => {
                self.nullable(path, &spec.0)
            }
            "" if attrs.contains_key("h5sparse_format") => {
                let csr = self.sparse_format(path, &attrs)?;
                self.sparse(path, &attrs, csr)
            }
            _ => {
                // dict, anndata, raw, awkward-array, an old file's plain group: every member
                for (member, k) in self.reader.children(path)? {
                    self.element(&join(path, &member), k)?;
                }
                Ok(None)
            }
        }
    }

    /// `h5sparse_format`: true for "csr", false for "csc"; anything else is refused.
    fn sparse_format(&self, path: &str, attrs: &Attrs) -> Result<bool> {
        match attrs.get("h5sparse_format") {
            Some(serde_json::Value::String(s)) if s == "csr" => Ok(true),
            Some(serde_json::Value::String(s)) if s == "csc" => Ok(false),
            other => Err(self.fail(
                path,
                format!(
                    "attribute h5sparse_format is {}, anndata reads only \"csr\" or \"csc\"",
                    other.map(short_json).unwrap_or_default()
                ),
            )),
        }
    }

    /// The member `name` of group `path`, which must exist as an array.
    fn member_array(&self, path: &str, name: &str, what: &str) -> Result<String> {
        let p = join(path, name);
        match self.kind(&p)? {
            Some(NodeKind::Array) => Ok(p),
            Some(NodeKind::Group) => {
                Err(self.fail(&p, format!("is a group; {what} needs an array here")))
            }
            None => Err(self.fail(path, format!("{what} without its member {name:?}"))),
        }
    }

    /// Reads the array through once (every chunk decoded) and returns its extent.
    fn array(&self, path: &str, encoding: &str) -> Result<Option<Extent>> {
        let info = match self.reader.array_info(path) {
            Ok(i) => i,
            Err(e) if not_representable(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        if encoding == "null" {
            return Ok(None);
        }
        if matches!(encoding, "numeric-scalar" | "string") && !info.shape.is_empty() {
            return Err(self.fail(
                path,
                format!(
                    "encoding-type {encoding} needs a 0-d array, this one has shape {:?}",
                    info.shape
                ),
            ));
        }
        self.string_encoding_fits(path, encoding, info.elem)?;
        self.read_all(path, |_| Ok(()))?;
        Ok(match info.shape.len() {
            0 => None,
            1 => Some(Extent {
                rows: info.shape[0],
                cols: None,
            }),
            _ => Some(Extent {
                rows: info.shape[0],
                cols: Some(info.shape[1]),
            }),
        })
    }

    /// In an `.h5ad`, an array encoded `string`/`string-array` must hold strings: anndata reads
    /// it with h5py's `asstr()`, which raises on any other type.
    fn string_encoding_fits(&self, path: &str, encoding: &str, elem: ElemType) -> Result<()> {
        if self.hdf5 && matches!(encoding, "string" | "string-array") && !elem.is_string() {
            return Err(self.fail(
                path,
                format!(
                    "encoding-type {encoding} on a dataset of {}: anndata reads it with h5py's \
                     asstr(), which needs an HDF5 string type",
                    elem_name(elem)
                ),
            ));
        }
        Ok(())
    }

    /// Reads every row of `path` in bounded blocks, handing each block to `f`.
    fn read_all(&self, path: &str, mut f: impl FnMut(&ArrayData) -> Result<()>) -> Result<u64> {
        let info = match self.reader.array_info(path) {
            Ok(i) => i,
            Err(e) if not_representable(&e) => return Ok(0),
            Err(e) => return Err(e),
        };
        if info.row_len() == 0 || !self.read {
            return Ok(info.n_rows());
        }
        let n = info.n_rows();
        let step = rows_per_block(&info, self.budget);
        let mut row = 0;
        while row < n {
            let end = (row + step).min(n);
            let block = self.reader.read_rows(path, row..end)?;
            f(&block)?;
            row = end;
        }
        Ok(n)
    }

    /// A 1-D array's length (a 0-d or 2-d array is refused where anndata needs 1-D).
    fn len_1d(&self, path: &str, what: &str) -> Result<u64> {
        let info = self.reader.array_info(path)?;
        if info.shape.len() != 1 {
            return Err(self.fail(
                path,
                format!(
                    "{what} must be 1-dimensional, this array has shape {:?}",
                    info.shape
                ),
            ));
        }
        Ok(info.shape[0])
    }

    fn dataframe(&self, path: &str, attrs: &Attrs, version: &str) -> Result<Option<Extent>> {
        let index = match attrs.get("_index") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(self.fail(
                    path,
                    format!(
                        "attribute _index is {}, not a member name",
                        short_json(other)
                    ),
                ))
            }
            None => return Err(self.fail(path, "a dataframe without the attribute _index")),
        };
        let columns: Vec<String> = match attrs.get("column-order") {
            Some(serde_json::Value::Array(a)) => {
                let mut out = Vec::with_capacity(a.len());
                for v in a {
                    match v {
                        serde_json::Value::String(s) => out.push(s.clone()),
                        other => {
                            return Err(self.fail(
                                path,
                                format!(
                                    "attribute column-order holds {}, not column names",
                                    short_json(other)
                                ),
                            ))
                        }
                    }
                }
                out
            }
            // One name is stored as a scalar string by some writers; anndata iterates it.
            Some(serde_json::Value::String(s)) => s.chars().map(|c| c.to_string()).collect(),
            Some(other) => {
                return Err(self.fail(
                    path,
                    format!(
                        "attribute column-order is {}, not a list of names",
                        short_json(other)
                    ),
                ))
            }
            None => return Err(self.fail(path, "a dataframe without the attribute column-order")),
        };
        // anndata reads such frames but its write (part of scanpy's pipeline) refuses them:
        // "Found repeated column names", "'_index' is a reserved name for dataframe columns"
        let mut seen = std::collections::HashSet::new();
        for c in &columns {
            if c == "_index" {
                return Err(self.fail(
                    path,
                    "column-order names a column \"_index\": anndata reads it but will not \
                     write it (a reserved name)",
                ));
            }
            if !seen.insert(c.as_str()) {
                return Err(self.fail(
                    path,
                    format!(
                        "column-order names {c:?} twice: anndata reads it but will not write \
                         it (column names must be unique)"
                    ),
                ));
            }
        }
        let idx_path = join(path, &index);
        let Some(idx_kind) = self.kind(&idx_path)? else {
            return Err(self.fail(
                path,
                format!("the index {index:?} (attribute _index) is missing"),
            ));
        };
        let Some(n) = self.column(&idx_path, idx_kind, "the index")? else {
            return Ok(None);
        };
        if version == "0.1.0" {
            // anndata 0.7's layout (categories in `__categories`): columns are read by the
            // legacy code path; each must still be there and decode.
            for c in &columns {
                let p = join(path, c);
                match self.kind(&p)? {
                    Some(k) => {
                        if self.column(&p, k, "a column")?.is_some_and(|m| m != n) {
                            return Err(self.length_mismatch(&p, n));
                        }
                    }
                    None => return Err(self.missing_column(path, c)),
                }
            }
            return Ok(Some(Extent {
                rows: n,
                cols: None,
            }));
        }
        for c in &columns {
            let p = join(path, c);
            let Some(k) = self.kind(&p)? else {
                return Err(self.missing_column(path, c));
            };
            if let Some(m) = self.column(&p, k, "a column")? {
                if m != n {
                    return Err(self.length_mismatch(&p, n));
                }
            }
        }
        Ok(Some(Extent {
            rows: n,
            cols: None,
        }))
    }

    fn missing_column(&self, path: &str, c: &str) -> Error {
        self.fail(
            path,
            format!("column {c:?} is listed in column-order but missing"),
        )
    }

    fn length_mismatch(&self, path: &str, n: u64) -> Error {
        self.fail(
            path,
            format!("its length differs from the dataframe's index ({n} rows)"),
        )
    }

    /// A dataframe column or index: its length (None when it cannot be told).
    fn column(&self, path: &str, kind: NodeKind, what: &str) -> Result<Option<u64>> {
        if kind == NodeKind::Group {
            // anndata reads any encoding here, but only these make a column it can write back
            if let Some(attrs) = self.attrs(path, kind)? {
                let (enc, _) = self.spec(path, kind, &attrs)?;
                let column_kinds = [
                    "categorical",
                    "nullable-integer",
                    "nullable-boolean",
                    "nullable-string-array",
                ];
                if !column_kinds.contains(&enc.as_str()) {
                    return Err(self.fail(
                        path,
                        format!(
                            "{what} of a dataframe is a group encoded {:?}: not a column \
                             anndata can write back (categorical or nullable arrays only)",
                            enc
                        ),
                    ));
                }
            }
        }
        let got = self.element(path, kind)?;
        if let (NodeKind::Array, Some(e)) = (kind, got) {
            if e.cols.is_some() {
                return Err(self.fail(path, format!("{what} of a dataframe must be 1-dimensional")));
            }
        }
        Ok(got.map(|e| e.rows))
    }

    /// A nullable array (`encoding`): pandas builds an `IntegerArray` only from integer
    /// values, a `BooleanArray` only from boolean ones, and either only with a boolean mask
    /// ("values should be integer numpy array", "mask should be boolean numpy array").
    fn nullable(&self, path: &str, encoding: &str) -> Result<Option<Extent>> {
        let values = self.member_array(path, "values", "a nullable array")?;
        let mask = self.member_array(path, "mask", "a nullable array")?;
        // Each member's element type (None: one the tree cannot represent, copied as stored).
        let mut elems = [None, None];
        for (p, elem) in [&values, &mask].into_iter().zip(&mut elems) {
            let attrs = self.attrs(p, NodeKind::Array)?.unwrap_or_default();
            let (member_encoding, _) = self.spec(p, NodeKind::Array, &attrs)?;
            *elem = match self.reader.array_info(p) {
                Ok(i) => Some(i.elem),
                Err(e) if not_representable(&e) => None,
                Err(e) => return Err(e),
            };
            if let Some(e) = *elem {
                self.string_encoding_fits(p, &member_encoding, e)?;
            }
        }
        let [values_elem, mask_elem] = elems;
        let wrong = |p: &str, want: &str, got: ElemType| {
            self.fail(
                p,
                format!(
                    "{encoding} needs {want} here, not {}: pandas refuses it",
                    elem_name(got)
                ),
            )
        };
        match (encoding, values_elem) {
            (
                "nullable-integer",
                Some(e @ (ElemType::Bool | ElemType::String | ElemType::Bytes)),
            ) => return Err(wrong(&values, "integer values", e)),
            ("nullable-integer", Some(e @ ElemType::Num(d))) if d.is_float() => {
                return Err(wrong(&values, "integer values", e))
            }
            ("nullable-boolean", Some(e)) if e != ElemType::Bool => {
                return Err(wrong(&values, "boolean values", e))
            }
            _ => {}
        }
        if let Some(e) = mask_elem {
            if e != ElemType::Bool {
                return Err(wrong(&mask, "a boolean mask", e));
            }
        }
        let n = self.len_1d(&values, "values")?;
        let m = self.len_1d(&mask, "a mask")?;
        if n != m {
            return Err(self.fail(path, format!("values has {n} elements but mask has {m}")));
        }
        self.read_all(&values, |_| Ok(()))?;
        self.read_all(&mask, |_| Ok(()))?;
        Ok(Some(Extent {
            rows: n,
            cols: None,
        }))
    }

    fn categorical(&self, path: &str) -> Result<Option<Extent>> {
        let codes = self.member_array(path, "codes", "a categorical")?;
        let cats = join(path, "categories");
        let cats_kind = match self.kind(&cats)? {
            Some(k) => k,
            None => return Err(self.fail(path, "a categorical without its member \"categories\"")),
        };
        let attrs = self.attrs(&codes, NodeKind::Array)?.unwrap_or_default();
        self.spec(&codes, NodeKind::Array, &attrs)?;
        let own = self.reader.group_attrs(path)?;
        match own.get("ordered") {
            Some(serde_json::Value::Bool(_)) | Some(serde_json::Value::Number(_)) => {}
            Some(serde_json::Value::Array(a)) if a.len() == 1 => {}
            Some(other) => {
                return Err(self.fail(
                    path,
                    format!(
                        "attribute ordered is {}, not a truth value",
                        short_json(other)
                    ),
                ))
            }
            None => return Err(self.fail(path, "a categorical without the attribute ordered")),
        }
        let n_cats = match self.element(&cats, cats_kind)? {
            Some(e) => e.rows,
            None => return Ok(None),
        };
        if cats_kind == NodeKind::Array {
            self.categories_valid(&cats)?;
        }
        let n = self.len_1d(&codes, "codes")?;
        let mut bad = None;
        self.read_all(&codes, |block| {
            if bad.is_none() {
                if let ArrayData::Num(v) = block {
                    bad = first_bad_code(v, n_cats);
                } else {
                    bad = Some("not integers".to_string());
                }
            }
            Ok(())
        })?;
        if let Some(b) = bad {
            return Err(self.fail(
                &codes,
                format!(
                    "codes {b}: pandas refuses codes outside -1..{} ({n_cats} categories)",
                    n_cats as i64 - 1
                ),
            ));
        }
        Ok(Some(Extent {
            rows: n,
            cols: None,
        }))
    }

    /// pandas builds a categorical's dtype only from unique, non-null categories
    /// (`CategoricalDtype.validate_categories`: "Categorical categories must be unique",
    /// "... cannot be null"). Holds every category once: O(categories) memory.
    fn categories_valid(&self, cats: &str) -> Result<()> {
        let mut seen = CategorySet::default();
        let mut problem = None;
        self.read_all(cats, |block| {
            if problem.is_none() {
                problem = seen.add(block);
            }
            Ok(())
        })?;
        match problem {
            Some(p) => Err(self.fail(cats, format!("{p}: pandas refuses such categories"))),
            None => Ok(()),
        }
    }

    fn sparse(&self, path: &str, attrs: &Attrs, csr: bool) -> Result<Option<Extent>> {
        let shape_key = if attrs.contains_key("shape") {
            "shape"
        } else {
            "h5sparse_shape"
        };
        let shape: Option<Vec<u64>> = match attrs.get(shape_key) {
            Some(serde_json::Value::Array(a)) if a.len() == 2 => {
                a.iter().map(|v| v.as_u64()).collect()
            }
            _ => None,
        };
        let Some(shape) = shape else {
            return Err(self.fail(
                path,
                format!(
                    "a sparse matrix whose attribute {shape_key} is not two non-negative \
                     integers"
                ),
            ));
        };
        let what = "a sparse matrix";
        let data = self.member_array(path, "data", what)?;
        let indices = self.member_array(path, "indices", what)?;
        let indptr = self.member_array(path, "indptr", what)?;
        if self.reader.foreign_byte_order(&data)? {
            if let Ok(ArrayInfo {
                elem: ElemType::Num(t),
                ..
            }) = self.reader.array_info(&data)
            {
                return Err(self.fail(&data, big_endian_sparse_data(t)));
            }
        }
        let nnz = self.len_1d(&data, "data")?;
        let n_ind = self.len_1d(&indices, "indices")?;
        let n_ptr = self.len_1d(&indptr, "indptr")?;
        let major = if csr { shape[0] } else { shape[1] };
        if n_ptr != major + 1 {
            return Err(self.fail(
                &indptr,
                format!(
                    "has {n_ptr} entries, but shape {} x {} needs {}",
                    shape[0],
                    shape[1],
                    major + 1
                ),
            ));
        }
        if n_ind != nnz {
            return Err(self.fail(
                path,
                format!("indices has {n_ind} entries but data has {nnz}"),
            ));
        }
        for p in [&indices, &indptr] {
            if let Ok(i) = self.reader.array_info(p) {
                if !matches!(i.elem, crate::store::tree::ElemType::Num(d) if d.is_integer()) {
                    return Err(
                        self.fail(p, "holds no integers; scipy needs an integer index array")
                    );
                }
            }
        }
        self.read_all(&data, |_| Ok(()))?;
        self.read_all(&indices, |_| Ok(()))?;
        let (mut first, mut last, mut seen) = (None, None, false);
        self.read_all(&indptr, |block| {
            if let ArrayData::Num(v) = block {
                if let Some(w) = v.clone().to_i64() {
                    if !seen {
                        first = w.first().copied();
                        seen = true;
                    }
                    if let Some(&l) = w.last() {
                        last = Some(l);
                    }
                }
            }
            Ok(())
        })?;
        if let (Some(f), Some(l)) = (first, last) {
            if f != 0 || l < 0 || l as u64 > nnz {
                return Err(self.fail(
                    &indptr,
                    format!(
                        "runs from {f} to {l}, but must start at 0 and end within the {nnz} \
                         stored values"
                    ),
                ));
            }
        }
        Ok(Some(Extent {
            rows: shape[0],
            cols: Some(shape[1]),
        }))
    }
}

/// The categories seen so far, by value as pandas hashes them: strings by their text,
/// integers by value, floats by value with `-0.0` equal to `0.0`.
#[derive(Default)]
struct CategorySet {
    strings: std::collections::HashSet<String>,
    ints: std::collections::HashSet<i128>,
    floats: std::collections::HashSet<u64>,
}

impl CategorySet {
    /// Adds a block of categories; the first duplicate or null one, described.
    fn add(&mut self, block: &ArrayData) -> Option<String> {
        match block {
            ArrayData::String(v) => v
                .iter()
                .find(|c| !self.strings.insert((*c).clone()))
                .map(|c| format!("holds the category {c:?} twice")),
            ArrayData::Bool(v) => {
                let ints = &mut self.ints;
                v.iter()
                    .find(|&&b| !ints.insert(i128::from(b)))
                    .map(|b| format!("holds the category {b} twice"))
            }
            ArrayData::Num(NumVec::F32(v)) => self.add_floats(v.iter().map(|&x| f64::from(x))),
            ArrayData::Num(NumVec::F64(v)) => self.add_floats(v.iter().copied()),
            ArrayData::Num(v) => {
                let ints = &mut self.ints;
                find_integer(v, |x| !ints.insert(x))
                    .flatten()
                    .map(|x| format!("holds the category {x} twice"))
            }
        }
    }

    fn add_floats(&mut self, values: impl Iterator<Item = f64>) -> Option<String> {
        for x in values {
            if x.is_nan() {
                return Some("holds a NaN category".to_string());
            }
            let key = if x == 0.0 {
                0.0f64.to_bits()
            } else {
                x.to_bits()
            };
            if !self.floats.insert(key) {
                return Some(format!("holds the category {x} twice"));
            }
        }
        None
    }
}

/// numpy's name of a big-endian dtype (`>f4`, `>i8`, ...).
pub(crate) fn big_endian_name(t: DType) -> String {
    let kind = if t.is_float() {
        'f'
    } else if t.numpy_name().starts_with('u') {
        'u'
    } else {
        'i'
    };
    format!(">{kind}{}", t.size())
}

/// Why a sparse matrix with big-endian `data` of type `t` is refused: scipy.sparse cannot
/// hold it, so anndata cannot read the matrix.
pub(crate) fn big_endian_sparse_data(t: DType) -> String {
    let code = big_endian_name(t);
    format!(
        "stored big-endian ({code}): anndata cannot read such a sparse matrix (\
         \"scipy.sparse does not support dtype {code}\"), so atlasnorm refuses too; \
         rewrite it little-endian first"
    )
}

/// An element type as numpy names it, for messages.
fn elem_name(e: ElemType) -> String {
    match e {
        ElemType::Num(d) => d.to_string(),
        ElemType::Bool => "bool".into(),
        ElemType::String | ElemType::Bytes => "strings".into(),
    }
}

/// The first categorical code outside `-1..n_cats`, described.
fn first_bad_code(v: &NumVec, n_cats: u64) -> Option<String> {
    match find_integer(v, |x| x < -1 || x >= n_cats as i128) {
        Some(found) => found.map(|x| format!("hold {x}")),
        None => Some("are floating point, not integers".to_string()),
    }
}

/// The first value of an integer array for which `hit` holds (`Some(None)`: none does);
/// `None` for a floating-point array.
fn find_integer(v: &NumVec, mut hit: impl FnMut(i128) -> bool) -> Option<Option<i128>> {
    macro_rules! scan {
        ($w:expr) => {
            Some($w.iter().map(|&x| x as i128).find(|&x| hit(x)))
        };
    }
    match v {
        NumVec::I8(w) => scan!(w),
        NumVec::I16(w) => scan!(w),
        NumVec::I32(w) => scan!(w),
        NumVec::I64(w) => scan!(w),
        NumVec::U8(w) => scan!(w),
        NumVec::U16(w) => scan!(w),
        NumVec::U32(w) => scan!(w),
        NumVec::U64(w) => scan!(w),
        NumVec::F32(_) | NumVec::F64(_) => None,
    }
}

/// Whether `data` decodes the way Python's `gzip` module (zarr-python's and numcodecs' gzip
/// codecs) decodes it: one or more gzip members, each with a valid header, a complete deflate
/// stream and a matching CRC-32 and length, separated and followed only by zero bytes. zarrs
/// decodes the first member and ignores what follows; zarr-python raises on it (`BadGzipFile`),
/// so anndata cannot read such a chunk. `Err` says what is wrong.
pub fn check_gzip_like_python(data: &[u8]) -> std::result::Result<(), String> {
    let mut rest = data;
    let mut at = 0usize;
    let mut members = 0;
    loop {
        if rest.is_empty() {
            return if members == 0 {
                Err("an empty gzip stream".into())
            } else {
                Ok(())
            };
        }
        if rest.len() < 10 || rest[0] != 0x1f || rest[1] != 0x8b {
            return Err(match members {
                0 => "not gzip data (no gzip header)".to_string(),
                _ => format!(
                    "{} bytes of garbage after the gzip data (at byte {at}); Python's gzip \
                     refuses them",
                    rest.len()
                ),
            });
        }
        if rest[2] != 8 {
            return Err(format!(
                "gzip compression method {} (only deflate exists)",
                rest[2]
            ));
        }
        let flags = rest[3];
        let mut pos = 10usize;
        let truncated = || "a truncated gzip header".to_string();
        if flags & 4 != 0 {
            let x = rest.get(pos..pos + 2).ok_or_else(truncated)?;
            pos += 2 + u16::from_le_bytes([x[0], x[1]]) as usize;
        }
        for bit in [8u8, 16] {
            if flags & bit != 0 {
                let end = rest
                    .get(pos..)
                    .and_then(|r| r.iter().position(|&b| b == 0))
                    .ok_or_else(truncated)?;
                pos += end + 1;
            }
        }
        if flags & 2 != 0 {
            pos += 2;
        }
        let body = rest.get(pos..).ok_or_else(truncated)?;
        let mut inflater = flate2::Decompress::new(false);
        let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(64 << 20));
        loop {
            if out.capacity() - out.len() < 1 << 16 {
                out.reserve(out.capacity().max(1 << 16));
            }
            let before = inflater.total_in() as usize;
            let status = inflater
                .decompress_vec(&body[before..], &mut out, flate2::FlushDecompress::None)
                .map_err(|e| format!("corrupt gzip data: {e}"))?;
            match status {
                flate2::Status::StreamEnd => break,
                _ if inflater.total_in() as usize >= body.len() && out.len() < out.capacity() => {
                    return Err("the gzip data end before the end of their deflate stream".into())
                }
                _ => {}
            }
        }
        let used = inflater.total_in() as usize;
        let trailer = body
            .get(used..used + 8)
            .ok_or_else(|| "the gzip data end before their CRC and length".to_string())?;
        let mut crc = flate2::Crc::new();
        crc.update(&out);
        let want_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let want_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        if crc.sum() != want_crc {
            return Err("gzip CRC-32 check failed (corrupt data)".into());
        }
        if out.len() as u32 != want_len {
            return Err("gzip length check failed (corrupt data)".into());
        }
        let next = pos + used + 8;
        let skip = rest[next..].iter().take_while(|&&b| b == 0).count();
        at += next + skip;
        rest = &rest[next + skip..];
        members += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::check_gzip_like_python;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_members_are_judged_as_python_does() {
        let a = gz(&[7u8; 1000]);
        assert!(check_gzip_like_python(&a).is_ok());
        let mut two = a.clone();
        two.extend_from_slice(&gz(b"more"));
        assert!(check_gzip_like_python(&two).is_ok());
        let mut padded = a.clone();
        padded.extend_from_slice(&[0; 17]);
        assert!(check_gzip_like_python(&padded).is_ok());
        let mut garbage = a.clone();
        garbage.extend_from_slice(&[0x88, 0x9f, 1, 2]);
        assert!(check_gzip_like_python(&garbage)
            .unwrap_err()
            .contains("garbage"));
        assert!(check_gzip_like_python(&a[..a.len() - 3]).is_err());
        assert!(check_gzip_like_python(&a[..a.len() / 2]).is_err());
        let mut bad_crc = a.clone();
        let n = bad_crc.len();
        bad_crc[n - 6] ^= 1;
        assert!(check_gzip_like_python(&bad_crc).is_err());
        assert!(check_gzip_like_python(b"").is_err());
        assert!(check_gzip_like_python(b"plain bytes").is_err());
    }
}
