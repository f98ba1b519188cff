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
//! * **anndata < 0.8 categoricals** (integer codes `obs/<col>` whose attribute `categories`
//!   names `obs/__categories/<col>`: a relative path in zarr, an HDF5 object reference in
//!   .h5ad, which the .h5ad reader presents as the same path) are written the way anndata
//!   0.13 writes them after reading the old form: a `categorical` group with `codes` and
//!   `categories`, and no `__categories` group (a name zarr v3 reserves).

use std::ops::Range;

use super::categorize::Categorical;
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
    /// Strings anndata reads as Python `bytes`: an un-encoded variable-length ASCII column of
    /// an anndata 0.7 dataframe (h5py reads it without `asstr`). anndata's round trip writes
    /// them as a UTF-8 `string-array` (so they read back as `str`), never as a categorical
    /// (pandas infers `bytes`, not `string`) nor as a `nullable-string-array`. Stored and
    /// copied like [`ElemType::String`].
    Bytes,
}

impl ElemType {
    /// Bytes one element takes in memory while it is copied (strings: an estimate).
    pub fn approx_size(self) -> usize {
        match self {
            ElemType::Num(d) => d.size(),
            ElemType::Bool => 1,
            ElemType::String | ElemType::Bytes => 32,
        }
    }

    /// Whether the elements are strings ([`ElemType::String`] or [`ElemType::Bytes`]).
    pub fn is_string(self) -> bool {
        matches!(self, ElemType::String | ElemType::Bytes)
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
    /// Whether the array's numbers are stored big-endian on this little-endian machine (or
    /// the other way round): numpy then reads it as `>f4`, ... which scipy.sparse cannot hold.
    /// The default: never (formats whose readers hand out native numbers).
    ///
    /// # Errors
    /// When the array cannot be opened.
    fn foreign_byte_order(&self, _array: &str) -> Result<bool> {
        Ok(false)
    }
}

/// Builds an AnnData tree. Parents are created before their children; an array's rows are
/// written in order, each row range exactly once (an array without elements gets none).
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

/// The direct members of `group` among path-keyed nodes (`""` the root, `a`, `a/b`, ...), as
/// `(name, node)` in the map's order: [`TreeReader::children`] of a tree held in a map.
pub fn members_in<'a, V: 'a>(
    nodes: impl IntoIterator<Item = (&'a String, &'a V)>,
    group: &str,
) -> Vec<(&'a str, &'a V)> {
    let prefix = if group.is_empty() {
        String::new()
    } else {
        format!("{group}/")
    };
    nodes
        .into_iter()
        .filter(|(p, _)| !p.is_empty() && p.starts_with(&prefix))
        .map(|(p, v)| (&p[prefix.len()..], v))
        .filter(|(name, _)| !name.contains('/'))
        .collect()
}

/// Whether `path` is `skip` or lies inside it.
fn is_skipped(path: &str, skip: &[&str]) -> bool {
    skip.iter().any(|s| {
        let s = s.trim_matches('/');
        path == s
            || (path.len() > s.len() && path.starts_with(s) && path.as_bytes()[s.len()] == b'/')
    })
}

/// Rows of an array that fit in `budget` bytes while copied (at least one row).
pub fn rows_per_block(info: &ArrayInfo, budget: u64) -> u64 {
    let row_bytes = info.row_len().max(1) * info.elem.approx_size() as u64;
    (budget / row_bytes).max(1)
}

/// Copies the array `src` of `reader` to `dst` of `writer` (whose parent group exists), in
/// row blocks of at most `budget` bytes (at least one row); a `null` element becomes the
/// writer's own `null`.
pub fn copy_array(
    reader: &dyn TreeReader,
    writer: &mut dyn TreeWriter,
    src: &str,
    dst: &str,
    budget: u64,
) -> Result<()> {
    let info = reader.array_info(src)?;
    if is_null(&info.attrs) {
        return writer.create_null(dst, &info.attrs);
    }
    copy_rows(reader, writer, src, dst, &info, budget)
}

/// Creates `dst` as described by `info` and copies the rows of `src` into it.
fn copy_rows(
    reader: &dyn TreeReader,
    writer: &mut dyn TreeWriter,
    src: &str,
    dst: &str,
    info: &ArrayInfo,
    budget: u64,
) -> Result<()> {
    writer.create_array(dst, info)?;
    if info.row_len() == 0 {
        return Ok(());
    }
    let n_rows = info.n_rows();
    let step = rows_per_block(info, budget);
    let mut row = 0;
    while row < n_rows {
        let end = (row + step).min(n_rows);
        let data = reader.read_rows(src, row..end)?;
        writer.write_rows(dst, row, &data)?;
        row = end;
    }
    Ok(())
}

/// Copies the whole tree of `reader` into `writer`, except the elements at the paths in
/// `skip` (e.g. `X` or `layers/counts`, the matrix being normalized) and everything under
/// them.
///
/// The walk is depth first from the root in the reader's (sorted) member order: the root's
/// attributes first (`create_group("")`), every group before its members. Arrays move in row
/// blocks of at most `budget` bytes (estimated with [`ElemType::approx_size`]; at least one
/// row per block), so elements of any size copy in bounded memory. Arrays marked
/// `encoding-type: null` go to [`TreeWriter::create_null`].
pub fn copy_tree(
    reader: &dyn TreeReader,
    writer: &mut dyn TreeWriter,
    skip: &[&str],
    budget: u64,
) -> Result<()> {
    copy_tree_categorizing(reader, writer, skip, &[], budget)
}

/// [`copy_tree`], writing the columns of `categorize` as those categoricals instead of
/// copying them (anndata's `strings_to_categoricals`, see [`super::categorize`]).
fn copy_tree_categorizing(
    reader: &dyn TreeReader,
    writer: &mut dyn TreeWriter,
    skip: &[&str],
    categorize: &[Categorical],
    budget: u64,
) -> Result<()> {
    writer.create_group("", &reader.group_attrs("")?)?;
    let mut walk = Walk {
        reader,
        writer,
        skip,
        categorize,
        budget,
    };
    copy_members(&mut walk, "")
}

/// One copy of a tree: what it reads, where it writes, what it leaves out or rewrites.
struct Walk<'a> {
    reader: &'a dyn TreeReader,
    writer: &'a mut dyn TreeWriter,
    skip: &'a [&'a str],
    categorize: &'a [Categorical],
    budget: u64,
}

fn copy_members(walk: &mut Walk<'_>, group: &str) -> Result<()> {
    let (reader, budget) = (walk.reader, walk.budget);
    let legacy = legacy_categoricals(reader, group)?;
    for (name, kind) in reader.children(group)? {
        let path = join(group, &name);
        if is_skipped(&path, walk.skip) {
            continue;
        }
        if let Some(c) = walk.categorize.iter().find(|c| c.path == path) {
            super::categorize::write(walk.writer, c)?;
            continue;
        }
        if !legacy.is_empty() {
            if name == LEGACY_CATEGORIES {
                continue;
            }
            if let Some((_, categories)) = legacy.iter().find(|(c, _)| *c == name) {
                upgrade_categorical(reader, walk.writer, &path, categories, budget)?;
                continue;
            }
        }
        match kind {
            NodeKind::Group => {
                walk.writer
                    .create_group(&path, &reader.group_attrs(&path)?)?;
                copy_members(walk, &path)?;
            }
            NodeKind::Array => copy_array(reader, walk.writer, &path, &path, budget)?,
        }
    }
    Ok(())
}

/// The group of an anndata < 0.8 dataframe that holds the categories of its categorical
/// columns (`obs/__categories/<col>`).
const LEGACY_CATEGORIES: &str = "__categories";

/// The categorical columns of an anndata < 0.8 dataframe at `group`: `(column, categories
/// array path)` for each integer-code column whose attribute `categories` names an array in
/// the dataframe's `__categories` group (zarr stores the relative path
/// `"__categories/<col>"`; the .h5ad reader turns the HDF5 object reference anndata 0.7 wrote
/// there into the same string). Empty for anything else.
fn legacy_categoricals(reader: &dyn TreeReader, group: &str) -> Result<Vec<(String, String)>> {
    if !group.is_empty() {
        let attrs = reader.group_attrs(group)?;
        if attrs.get("encoding-type").and_then(|v| v.as_str()) != Some("dataframe") {
            return Ok(Vec::new());
        }
    } else {
        return Ok(Vec::new());
    }
    let children = reader.children(group)?;
    if !children
        .iter()
        .any(|(n, k)| n == LEGACY_CATEGORIES && *k == NodeKind::Group)
    {
        return Ok(Vec::new());
    }
    let cat_group = join(group, LEGACY_CATEGORIES);
    let cats = reader.children(&cat_group)?;
    let mut out = Vec::new();
    for (name, kind) in &children {
        if *kind != NodeKind::Array {
            continue;
        }
        let info = reader.array_info(&join(group, name))?;
        let Some(target) = info.attrs.get("categories").and_then(|v| v.as_str()) else {
            continue;
        };
        let target = target.trim_start_matches('/');
        let leaf = target
            .strip_prefix(&format!("{group}/{LEGACY_CATEGORIES}/"))
            .or_else(|| target.strip_prefix(&format!("{LEGACY_CATEGORIES}/")));
        if let Some(leaf) = leaf {
            if cats.iter().any(|(n, k)| n == leaf && *k == NodeKind::Array) {
                out.push((name.clone(), join(&cat_group, leaf)));
            }
        }
    }
    Ok(out)
}

fn encoding_attrs(kind: &str, version: &str) -> Attrs {
    let mut a = Attrs::new();
    a.insert("encoding-type".into(), kind.into());
    a.insert("encoding-version".into(), version.into());
    a
}

/// Writes the anndata < 0.8 categorical column `path` (integer codes, categories in the
/// array `categories`) as anndata 0.8+ writes one and anndata 0.13 writes it after reading
/// the old form: a group `categorical` 0.2.0 with `ordered` (the old categories' `ordered`
/// attribute, default false), `codes` (`array`) and `categories` (`string-array`, or
/// `array` for numeric categories).
fn upgrade_categorical(
    reader: &dyn TreeReader,
    writer: &mut dyn TreeWriter,
    path: &str,
    categories: &str,
    budget: u64,
) -> Result<()> {
    let mut codes = reader.array_info(path)?;
    let mut cats = reader.array_info(categories)?;
    let ordered = match cats.attrs.get("ordered") {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::Number(n)) => n.as_f64().is_some_and(|x| x != 0.0),
        _ => false,
    };
    let mut attrs = encoding_attrs("categorical", "0.2.0");
    attrs.insert("ordered".into(), ordered.into());
    writer.create_group(path, &attrs)?;
    codes.attrs = encoding_attrs("array", "0.2.0");
    copy_rows(reader, writer, path, &join(path, "codes"), &codes, budget)?;
    cats.attrs = if cats.elem.is_string() {
        encoding_attrs("string-array", "0.2.0")
    } else {
        encoding_attrs("array", "0.2.0")
    };
    copy_rows(
        reader,
        writer,
        categories,
        &join(path, "categories"),
        &cats,
        budget,
    )
}

/// Carries everything of `reader` except the matrix `normalized` into `writer`, plus that
/// matrix's sparsity structure when it is a CSR group: its group (attributes) with `indices`
/// and `indptr`, so that the engine only adds `data` (`SparseStructure::CopyFromInput`).
pub fn copy_all_but_matrix(
    reader: &dyn TreeReader,
    writer: &mut dyn TreeWriter,
    normalized: &str,
    budget: u64,
) -> Result<()> {
    // `copy_tree` creates every group on the way (e.g. `layers`), even when the skipped
    // matrix was its only member.
    let categorize = super::categorize::plan(reader)?;
    copy_tree_categorizing(reader, writer, &[normalized], &categorize, budget)?;
    if node_kind(reader, normalized)? != Some(NodeKind::Group) {
        return Ok(());
    }
    let attrs = reader.group_attrs(normalized)?;
    if attrs.get("encoding-type").and_then(|v| v.as_str()) != Some("csr_matrix") {
        return Ok(());
    }
    let members = reader.children(normalized)?;
    let has = |m: &str| members.iter().any(|(n, k)| n == m && *k == NodeKind::Array);
    if has("indices") && has("indptr") {
        writer.create_group(normalized, &attrs)?;
        for member in ["indices", "indptr"] {
            let path = format!("{normalized}/{member}");
            copy_array(reader, writer, &path, &path, budget)?;
        }
    }
    Ok(())
}

/// The kind of the node at `path`, or `None` when it does not exist.
pub fn node_kind(reader: &dyn TreeReader, path: &str) -> Result<Option<NodeKind>> {
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Ok(Some(NodeKind::Group));
    }
    let (parent, name) = match path.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", path),
    };
    match node_kind(reader, parent)? {
        Some(NodeKind::Group) => {}
        _ => return Ok(None),
    }
    Ok(reader
        .children(parent)?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, k)| k))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;
    use crate::error::Error;

    #[derive(Clone, Debug, PartialEq)]
    enum Mem {
        Group(Attrs),
        Array(ArrayInfo, ArrayData),
        Null(Attrs),
    }

    /// A tree in memory; as a writer it also logs every call.
    #[derive(Default)]
    struct MemTree {
        nodes: BTreeMap<String, Mem>,
        log: Vec<String>,
        reads: RefCell<Vec<(String, Range<u64>)>>,
    }

    fn err(p: &str) -> Error {
        Error::Internal(format!("{p}: missing"))
    }

    fn attrs(kind: &str) -> Attrs {
        let mut a = Attrs::new();
        a.insert("encoding-type".into(), kind.into());
        a
    }

    fn slice(d: &ArrayData, r: Range<usize>) -> ArrayData {
        match d {
            ArrayData::Num(NumVec::I32(v)) => ArrayData::Num(NumVec::I32(v[r].to_vec())),
            ArrayData::Num(NumVec::F64(v)) => ArrayData::Num(NumVec::F64(v[r].to_vec())),
            ArrayData::Bool(v) => ArrayData::Bool(v[r].to_vec()),
            ArrayData::String(v) => ArrayData::String(v[r].to_vec()),
            other => panic!("not in this test: {other:?}"),
        }
    }

    fn append(to: &mut ArrayData, d: &ArrayData) {
        match (to, d) {
            (ArrayData::Num(NumVec::I32(a)), ArrayData::Num(NumVec::I32(b))) => {
                a.extend_from_slice(b)
            }
            (ArrayData::Num(NumVec::F64(a)), ArrayData::Num(NumVec::F64(b))) => {
                a.extend_from_slice(b)
            }
            (ArrayData::Bool(a), ArrayData::Bool(b)) => a.extend_from_slice(b),
            (ArrayData::String(a), ArrayData::String(b)) => a.extend_from_slice(b),
            other => panic!("type mismatch: {other:?}"),
        }
    }

    fn empty_like(elem: ElemType) -> ArrayData {
        match elem {
            ElemType::Num(DType::I32) => ArrayData::Num(NumVec::I32(vec![])),
            ElemType::Num(DType::F64) => ArrayData::Num(NumVec::F64(vec![])),
            ElemType::Bool => ArrayData::Bool(vec![]),
            ElemType::String | ElemType::Bytes => ArrayData::String(vec![]),
            other => panic!("not in this test: {other:?}"),
        }
    }

    impl TreeReader for MemTree {
        fn children(&self, group: &str) -> Result<Vec<(String, NodeKind)>> {
            Ok(members_in(&self.nodes, group)
                .into_iter()
                .map(|(name, n)| {
                    let kind = match n {
                        Mem::Group(_) => NodeKind::Group,
                        _ => NodeKind::Array,
                    };
                    (name.to_string(), kind)
                })
                .collect())
        }
        fn group_attrs(&self, group: &str) -> Result<Attrs> {
            match self.nodes.get(group) {
                Some(Mem::Group(a)) => Ok(a.clone()),
                _ => Err(err(group)),
            }
        }
        fn array_info(&self, array: &str) -> Result<ArrayInfo> {
            match self.nodes.get(array) {
                Some(Mem::Array(i, _)) => Ok(i.clone()),
                Some(Mem::Null(a)) => Ok(ArrayInfo {
                    elem: ElemType::Bool,
                    shape: vec![],
                    attrs: a.clone(),
                }),
                _ => Err(err(array)),
            }
        }
        fn read_rows(&self, array: &str, rows: Range<u64>) -> Result<ArrayData> {
            self.reads
                .borrow_mut()
                .push((array.to_string(), rows.clone()));
            match self.nodes.get(array) {
                Some(Mem::Array(i, d)) => {
                    let rl = i.row_len();
                    Ok(slice(
                        d,
                        (rows.start * rl) as usize..(rows.end * rl) as usize,
                    ))
                }
                _ => Err(err(array)),
            }
        }
    }

    impl TreeWriter for MemTree {
        fn create_group(&mut self, group: &str, attrs: &Attrs) -> Result<()> {
            self.log.push(format!("group {group}"));
            self.nodes.insert(group.into(), Mem::Group(attrs.clone()));
            Ok(())
        }
        fn create_array(&mut self, array: &str, info: &ArrayInfo) -> Result<()> {
            self.log.push(format!("array {array}"));
            let parent = array.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            assert!(
                matches!(self.nodes.get(parent), Some(Mem::Group(_))),
                "{array} before its parent"
            );
            self.nodes.insert(
                array.into(),
                Mem::Array(info.clone(), empty_like(info.elem)),
            );
            Ok(())
        }
        fn write_rows(&mut self, array: &str, first_row: u64, data: &ArrayData) -> Result<()> {
            self.log.push(format!("rows {array} {first_row}"));
            match self.nodes.get_mut(array) {
                Some(Mem::Array(_, d)) => append(d, data),
                _ => return Err(err(array)),
            }
            Ok(())
        }
        fn create_null(&mut self, path: &str, attrs: &Attrs) -> Result<()> {
            self.log.push(format!("null {path}"));
            self.nodes.insert(path.into(), Mem::Null(attrs.clone()));
            Ok(())
        }
    }

    fn sample() -> MemTree {
        let mut t = MemTree::default();
        let mut add = |p: &str, n: Mem| {
            t.nodes.insert(p.to_string(), n);
        };
        add("", Mem::Group(attrs("anndata")));
        add("X", Mem::Group(attrs("csr_matrix")));
        add(
            "X/data",
            Mem::Array(
                ArrayInfo {
                    elem: ElemType::Num(DType::F64),
                    shape: vec![3],
                    attrs: Attrs::new(),
                },
                ArrayData::Num(NumVec::F64(vec![1.0, 2.0, 3.0])),
            ),
        );
        add("layers", Mem::Group(attrs("dict")));
        add(
            "layers/big",
            Mem::Array(
                ArrayInfo {
                    elem: ElemType::Num(DType::I32),
                    shape: vec![10, 3],
                    attrs: attrs("array"),
                },
                ArrayData::Num(NumVec::I32((0..30).collect())),
            ),
        );
        add("layers/counts", Mem::Group(attrs("csr_matrix")));
        add(
            "layers/counts/indptr",
            Mem::Array(
                ArrayInfo {
                    elem: ElemType::Num(DType::I32),
                    shape: vec![2],
                    attrs: Attrs::new(),
                },
                ArrayData::Num(NumVec::I32(vec![0, 0])),
            ),
        );
        add("layers2", Mem::Group(attrs("dict")));
        add("uns", Mem::Group(attrs("dict")));
        add("uns/none", Mem::Null(attrs("null")));
        add(
            "uns/s",
            Mem::Array(
                ArrayInfo {
                    elem: ElemType::String,
                    shape: vec![],
                    attrs: attrs("string"),
                },
                ArrayData::String(vec!["hello".into()]),
            ),
        );
        add(
            "uns/flags",
            Mem::Array(
                ArrayInfo {
                    elem: ElemType::Bool,
                    shape: vec![0],
                    attrs: attrs("array"),
                },
                ArrayData::Bool(vec![]),
            ),
        );
        t
    }

    #[test]
    fn copies_everything_but_the_skipped_element_parents_first() {
        let src = sample();
        let mut dst = MemTree::default();
        // 3 i32 columns = 12 bytes a row (budget 25: two rows a block); X/data (3 f64) fits.
        copy_tree(&src, &mut dst, &["layers/counts"], 25).unwrap();
        let mut expected = src.nodes.clone();
        expected.remove("layers/counts");
        expected.remove("layers/counts/indptr");
        assert_eq!(dst.nodes, expected);
        assert_eq!(
            dst.log,
            [
                "group ",
                "group X",
                "array X/data",
                "rows X/data 0",
                "group layers",
                "array layers/big",
                "rows layers/big 0",
                "rows layers/big 2",
                "rows layers/big 4",
                "rows layers/big 6",
                "rows layers/big 8",
                "group layers2",
                "group uns",
                "array uns/flags",
                "null uns/none",
                "array uns/s",
                "rows uns/s 0",
            ]
        );
        // Nothing is read of a skipped element, a null or an empty array.
        let reads = src.reads.borrow();
        assert!(reads
            .iter()
            .all(|(p, _)| p != "uns/none" && p != "uns/flags" && !p.starts_with("layers/counts")));
        assert!(reads.contains(&("uns/s".to_string(), 0..1)));
    }

    #[test]
    fn skipping_x_leaves_layers_and_similar_names() {
        let src = sample();
        let mut dst = MemTree::default();
        copy_tree(&src, &mut dst, &["X"], 1 << 20).unwrap();
        assert!(!dst.nodes.contains_key("X") && !dst.nodes.contains_key("X/data"));
        assert!(dst.nodes.contains_key("layers/counts/indptr"));
        // A big budget copies each array in one block.
        assert!(dst.log.contains(&"rows layers/big 0".to_string()));
        assert!(!dst.log.contains(&"rows layers/big 2".to_string()));
        assert!(!is_skipped("layers2", &["layers"]));
        assert!(is_skipped("layers/x", &["layers"]));
        assert!(is_skipped("X", &["/X"]));
    }

    #[test]
    fn node_kinds() {
        let src = sample();
        assert_eq!(node_kind(&src, "").unwrap(), Some(NodeKind::Group));
        assert_eq!(
            node_kind(&src, "layers/counts").unwrap(),
            Some(NodeKind::Group)
        );
        assert_eq!(node_kind(&src, "X/data").unwrap(), Some(NodeKind::Array));
        assert_eq!(node_kind(&src, "X/data/nope").unwrap(), None);
        assert_eq!(node_kind(&src, "layers/nope").unwrap(), None);
    }
}
