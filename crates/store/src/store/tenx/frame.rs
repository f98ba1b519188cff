//! obs and var as scanpy's 10x readers build them and anndata 0.13 writes them, held in memory
//! (O(n_obs + n_vars) strings) and served as a [`TreeReader`] tree.
//!
//! anndata's `write_h5ad`/`write_zarr` first calls `strings_to_categoricals`: a string column
//! with fewer distinct values than rows becomes a categorical (categories in `natsort` order,
//! int8/int16/int32 codes as pandas picks them); other string columns and the index are
//! pandas 3 strings, written as `nullable-string-array` (a `values` string array and an
//! all-false `mask`).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use crate::array::NumVec;
use crate::error::{Error, Result};
use crate::store::categorize;
use crate::store::tree::{ArrayData, ArrayInfo, Attrs, ElemType, NodeKind, TreeReader};

/// One column of a frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    /// Strings; `None` is a missing value (NaN), e.g. an "NA" pandas' `read_csv` read.
    Str(Vec<Option<String>>),
    Bool(Vec<bool>),
    /// int64 (what pandas' `read_csv` infers for a column of integers, e.g. numeric gene ids).
    Int(Vec<i64>),
    /// uint64 (`read_csv`'s integers past int64).
    UInt(Vec<u64>),
    /// float64 (`read_csv`'s decimals, or integers with a missing value among them).
    Float(Vec<f64>),
}

impl Column {
    /// A string column with no missing values.
    pub fn strings(values: Vec<String>) -> Column {
        Column::Str(values.into_iter().map(Some).collect())
    }

    fn len(&self) -> usize {
        match self {
            Column::Str(v) => v.len(),
            Column::Bool(v) => v.len(),
            Column::Int(v) => v.len(),
            Column::UInt(v) => v.len(),
            Column::Float(v) => v.len(),
        }
    }

    /// The rows where `keep` is true.
    fn select(&self, keep: &[bool]) -> Column {
        match self {
            Column::Str(v) => Column::Str(pick(v, keep)),
            Column::Bool(v) => Column::Bool(pick(v, keep)),
            Column::Int(v) => Column::Int(pick(v, keep)),
            Column::UInt(v) => Column::UInt(pick(v, keep)),
            Column::Float(v) => Column::Float(pick(v, keep)),
        }
    }
}

fn pick<T: Clone>(v: &[T], keep: &[bool]) -> Vec<T> {
    v.iter()
        .zip(keep)
        .filter(|(_, &k)| k)
        .map(|(x, _)| x.clone())
        .collect()
}

/// A data frame: an index (`None` = a missing name, NaN) and columns in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Frame {
    pub index: Vec<Option<String>>,
    pub columns: Vec<(String, Column)>,
}

impl Frame {
    pub fn new(index: Vec<String>) -> Self {
        Self::with_missing(index.into_iter().map(Some).collect())
    }

    /// A frame whose index may have missing names.
    pub fn with_missing(index: Vec<Option<String>>) -> Self {
        Frame {
            index,
            columns: Vec::new(),
        }
    }

    /// Sets a column as a Python dict update does: a new name goes last, a known one keeps
    /// its place.
    pub fn set(&mut self, name: &str, column: Column) {
        match self.columns.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => *c = column,
            None => self.columns.push((name.to_string(), column)),
        }
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// The rows where `keep` is true (`adata[:, mask]`).
    pub fn select(&self, keep: &[bool]) -> Frame {
        Frame {
            index: pick(&self.index, keep),
            columns: self
                .columns
                .iter()
                .map(|(n, c)| (n.clone(), c.select(keep)))
                .collect(),
        }
    }

    /// Checks that every column has as many rows as the index (anndata refuses otherwise).
    pub fn check(&self, file: &std::path::Path, element: &str) -> Result<()> {
        for (name, c) in &self.columns {
            if c.len() != self.index.len() {
                return Err(Error::input(
                    file,
                    format!("{element}/{name}"),
                    format!(
                        "has {} values for {} rows (anndata refuses such a frame)",
                        c.len(),
                        self.index.len()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// anndata's `make_index_unique` (what `read_10x_mtx` applies to the gene symbols): the
/// second and later occurrences of a name get `-1`, `-2`, ... (skipping suffixes that would
/// collide with a name already present); missing names (`None`) are left as they are.
pub fn make_unique(names: &mut [Option<String>]) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut dup = vec![false; names.len()];
    for (i, n) in names.iter().enumerate() {
        let Some(n) = n else { continue };
        let c = seen.entry(n.as_str()).or_insert(0);
        if *c > 0 {
            dup[i] = true;
        }
        *c += 1;
    }
    if !dup.iter().any(|&d| d) {
        return;
    }
    let mut taken: std::collections::HashSet<String> = names.iter().flatten().cloned().collect();
    let mut next: HashMap<String, usize> = HashMap::new();
    for i in 0..names.len() {
        let Some(base) = names[i].clone().filter(|_| dup[i]) else {
            continue;
        };
        let k = next.entry(base.clone()).or_insert(1);
        let mut candidate = format!("{base}-{k}");
        while taken.contains(&candidate) {
            *k += 1;
            candidate = format!("{base}-{k}");
        }
        *k += 1;
        taken.insert(candidate.clone());
        names[i] = Some(candidate);
    }
}

fn attrs(kind: &str, version: &str) -> Attrs {
    let mut a = Attrs::new();
    a.insert("encoding-type".into(), kind.into());
    a.insert("encoding-version".into(), version.into());
    a
}

#[derive(Clone, Debug)]
enum Node {
    Group(Attrs),
    Array(ArrayInfo, ArrayData),
}

/// An AnnData tree in memory (everything but X, which [`super::TenxInput`] serves from the
/// matrix).
#[derive(Default)]
pub struct MemTree {
    nodes: BTreeMap<String, Node>,
}

impl MemTree {
    /// The tree anndata writes for `AnnData(X, obs=obs, var=var)`: root, obs, var and the
    /// empty dicts; `X` is added by the caller.
    pub fn anndata(obs: &Frame, var: &Frame) -> MemTree {
        let mut t = MemTree::default();
        t.group("", attrs("anndata", "0.1.0"));
        for g in ["layers", "obsm", "obsp", "uns", "varm", "varp"] {
            t.group(g, attrs("dict", "0.1.0"));
        }
        t.frame("obs", obs);
        t.frame("var", var);
        t
    }

    fn group(&mut self, path: &str, a: Attrs) {
        self.nodes.insert(path.to_string(), Node::Group(a));
    }

    fn array(&mut self, path: &str, elem: ElemType, a: Attrs, data: ArrayData, len: usize) {
        let info = ArrayInfo {
            elem,
            shape: vec![len as u64],
            attrs: a,
        };
        self.nodes.insert(path.to_string(), Node::Array(info, data));
    }

    /// A pandas string column or index: `values` with "" where `mask` marks a missing value.
    fn strings(&mut self, path: &str, values: &[Option<String>]) {
        let mut a = attrs("nullable-string-array", "0.1.0");
        a.insert("na-value".into(), "NaN".into());
        self.group(path, a);
        let n = values.len();
        self.array(
            &format!("{path}/mask"),
            ElemType::Bool,
            attrs("array", "0.2.0"),
            ArrayData::Bool(values.iter().map(Option::is_none).collect()),
            n,
        );
        self.array(
            &format!("{path}/values"),
            ElemType::String,
            attrs("string-array", "0.2.0"),
            ArrayData::String(
                values
                    .iter()
                    .map(|v| v.clone().unwrap_or_default())
                    .collect(),
            ),
            n,
        );
    }

    /// A `categorical` column as anndata writes it (see [`categorize`]).
    fn categorical(&mut self, path: &str, codes: NumVec, categories: Vec<String>) {
        let mut a = attrs("categorical", "0.2.0");
        a.insert("ordered".into(), false.into());
        self.group(path, a);
        let n = codes.len();
        self.array(
            &format!("{path}/codes"),
            ElemType::Num(codes.dtype()),
            attrs("array", "0.2.0"),
            ArrayData::Num(codes),
            n,
        );
        let n = categories.len();
        self.array(
            &format!("{path}/categories"),
            ElemType::String,
            attrs("string-array", "0.2.0"),
            ArrayData::String(categories),
            n,
        );
    }

    fn frame(&mut self, path: &str, frame: &Frame) {
        let mut a = attrs("dataframe", "0.2.0");
        a.insert("_index".into(), "_index".into());
        let order: Vec<serde_json::Value> = frame
            .columns
            .iter()
            .map(|(n, _)| n.clone().into())
            .collect();
        a.insert("column-order".into(), order.into());
        self.group(path, a);
        self.strings(&format!("{path}/_index"), &frame.index);
        for (name, column) in &frame.columns {
            let p = format!("{path}/{name}");
            match column {
                Column::Bool(v) => self.array(
                    &p,
                    ElemType::Bool,
                    attrs("array", "0.2.0"),
                    ArrayData::Bool(v.clone()),
                    v.len(),
                ),
                Column::Int(v) => self.numbers(&p, NumVec::I64(v.clone())),
                Column::UInt(v) => self.numbers(&p, NumVec::U64(v.clone())),
                Column::Float(v) => self.numbers(&p, NumVec::F64(v.clone())),
                Column::Str(v) => match categorize::categorize(v.iter().map(|s| s.as_deref())) {
                    Some((codes, categories)) => self.categorical(&p, codes, categories),
                    None => self.strings(&p, v),
                },
            }
        }
    }

    fn numbers(&mut self, path: &str, values: NumVec) {
        let n = values.len();
        let elem = ElemType::Num(values.dtype());
        self.array(
            path,
            elem,
            attrs("array", "0.2.0"),
            ArrayData::Num(values),
            n,
        );
    }

    fn missing(path: &str) -> Error {
        Error::Internal(format!("10x tree: no element {path}"))
    }
}

impl TreeReader for MemTree {
    fn children(&self, group: &str) -> Result<Vec<(String, NodeKind)>> {
        Ok(crate::store::tree::members_in(&self.nodes, group)
            .into_iter()
            .map(|(name, n)| {
                let kind = match n {
                    Node::Group(_) => NodeKind::Group,
                    Node::Array(..) => NodeKind::Array,
                };
                (name.to_string(), kind)
            })
            .collect())
    }

    fn group_attrs(&self, group: &str) -> Result<Attrs> {
        match self.nodes.get(group) {
            Some(Node::Group(a)) => Ok(a.clone()),
            _ => Err(Self::missing(group)),
        }
    }

    fn array_info(&self, array: &str) -> Result<ArrayInfo> {
        match self.nodes.get(array) {
            Some(Node::Array(i, _)) => Ok(i.clone()),
            _ => Err(Self::missing(array)),
        }
    }

    fn read_rows(&self, array: &str, rows: Range<u64>) -> Result<ArrayData> {
        let Some(Node::Array(_, data)) = self.nodes.get(array) else {
            return Err(Self::missing(array));
        };
        let r = rows.start as usize..rows.end as usize;
        Ok(match data {
            ArrayData::Bool(v) => ArrayData::Bool(v[r].to_vec()),
            ArrayData::String(v) => ArrayData::String(v[r].to_vec()),
            ArrayData::Num(NumVec::I8(v)) => ArrayData::Num(NumVec::I8(v[r].to_vec())),
            ArrayData::Num(NumVec::I16(v)) => ArrayData::Num(NumVec::I16(v[r].to_vec())),
            ArrayData::Num(NumVec::I32(v)) => ArrayData::Num(NumVec::I32(v[r].to_vec())),
            ArrayData::Num(NumVec::I64(v)) => ArrayData::Num(NumVec::I64(v[r].to_vec())),
            ArrayData::Num(NumVec::U64(v)) => ArrayData::Num(NumVec::U64(v[r].to_vec())),
            ArrayData::Num(NumVec::F64(v)) => ArrayData::Num(NumVec::F64(v[r].to_vec())),
            ArrayData::Num(_) => return Err(Error::Internal(format!("10x tree: {array}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_as_anndata_makes_them() {
        let some =
            |v: &[&str]| -> Vec<Option<String>> { v.iter().map(|s| Some(s.to_string())).collect() };
        let mut v = some(&["a", "b", "a", "a-1", "a"]);
        make_unique(&mut v);
        assert_eq!(v, some(&["a", "b", "a-2", "a-1", "a-3"]));
        // missing names stay missing, however many
        let mut v = vec![None, Some("a".into()), None, Some("a".into())];
        make_unique(&mut v);
        assert_eq!(v, [None, Some("a".into()), None, Some("a-1".into())]);
    }
}
