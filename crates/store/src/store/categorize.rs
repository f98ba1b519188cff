//! What anndata 0.13.4's `write_h5ad`/`write_zarr` does to the dataframes before writing:
//! `AnnData.strings_to_categoricals` on obs, var and raw.var. Every backend's output goes
//! through it, so that a copied frame is what scanpy's `read` + `write` leaves.
//!
//! The rule (`anndata/_core/anndata.py`): a column pandas infers as strings (`infer_dtype ==
//! "string"`: a `string-array`, an un-encoded string array of an anndata 0.7 frame, or a
//! `nullable-string-array`, whose masked entries are missing) becomes a categorical when it
//! has fewer distinct non-missing values than rows (a missing entry counts as a row, not as a
//! category). The categories are in natsort's order ([`natural_cmp`]), missing entries get
//! code -1, and the codes take the smallest signed integer type pandas picks
//! (`coerce_indexer_dtype`). anndata writes the result as a `categorical` 0.2.0 group:
//! `ordered` false, `codes` (`array`) and `categories` (`string-array`).
//!
//! Memory: one column at a time, O(rows) strings; only the columns that change are kept.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::array::NumVec;
use crate::error::Result;
use crate::store::tree::TreeWriter;
use crate::store::tree::{join, ArrayData, ArrayInfo, Attrs, ElemType, NodeKind, TreeReader};

/// The dataframes `strings_to_categoricals` visits.
const FRAMES: &[&str] = &["obs", "var", "raw/var"];

/// A string column of the input that the output stores as a categorical.
#[derive(Clone, Debug, PartialEq)]
pub struct Categorical {
    /// The column's path, e.g. `obs/batch`.
    pub path: String,
    /// One code a row: an index into `categories`, -1 for a missing entry.
    pub codes: NumVec,
    pub categories: Vec<String>,
}

/// The codes and categories pandas builds for `values` (`None` = missing), when anndata's
/// rule turns them into a categorical: fewer distinct values than rows.
pub fn categorize<'a>(
    values: impl ExactSizeIterator<Item = Option<&'a str>> + Clone,
) -> Option<(NumVec, Vec<String>)> {
    let n = values.len();
    let mut distinct: Vec<&str> = values.clone().flatten().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() >= n {
        return None;
    }
    // pandas sorts the distinct values (code point order), natsort then sorts stably.
    distinct.sort_by(|a, b| natural_cmp(a, b));
    let code_of: HashMap<&str, i64> = distinct
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, i as i64))
        .collect();
    let codes = values.map(|v| v.map_or(-1, |v| code_of[v]));
    let codes = match distinct.len() {
        k if k < i8::MAX as usize => NumVec::I8(codes.map(|c| c as i8).collect()),
        k if k < i16::MAX as usize => NumVec::I16(codes.map(|c| c as i16).collect()),
        k if k < i32::MAX as usize => NumVec::I32(codes.map(|c| c as i32).collect()),
        _ => NumVec::I64(codes.collect()),
    };
    Some((codes, distinct.into_iter().map(String::from).collect()))
}

/// The string columns of `reader`'s obs, var and raw.var that anndata writes as categoricals.
///
/// # Errors
/// When a column cannot be read.
pub fn plan(reader: &dyn TreeReader) -> Result<Vec<Categorical>> {
    let mut out = Vec::new();
    for frame in FRAMES {
        if crate::store::tree::node_kind(reader, frame)? != Some(NodeKind::Group) {
            continue;
        }
        let attrs = reader.group_attrs(frame)?;
        if encoding(&attrs) != Some("dataframe") {
            continue;
        }
        for (name, kind) in reader.children(frame)? {
            if !in_column_order(&attrs, &name) {
                continue;
            }
            let path = join(frame, &name);
            let Some(values) = string_column(reader, &path, kind)? else {
                continue;
            };
            let iter = values.iter().map(|v| v.as_deref());
            if let Some((codes, categories)) = categorize(iter) {
                out.push(Categorical {
                    path,
                    codes,
                    categories,
                });
            }
        }
    }
    Ok(out)
}

/// Writes `c` as anndata writes a categorical column.
///
/// # Errors
/// The writer's.
pub fn write(writer: &mut dyn TreeWriter, c: &Categorical) -> Result<()> {
    let mut attrs = encoding_attrs("categorical", "0.2.0");
    attrs.insert("ordered".into(), false.into());
    writer.create_group(&c.path, &attrs)?;
    let codes = join(&c.path, "codes");
    writer.create_array(
        &codes,
        &ArrayInfo {
            elem: ElemType::Num(c.codes.dtype()),
            shape: vec![c.codes.len() as u64],
            attrs: encoding_attrs("array", "0.2.0"),
        },
    )?;
    if !c.codes.is_empty() {
        writer.write_rows(&codes, 0, &ArrayData::Num(c.codes.clone()))?;
    }
    let categories = join(&c.path, "categories");
    writer.create_array(
        &categories,
        &ArrayInfo {
            elem: ElemType::String,
            shape: vec![c.categories.len() as u64],
            attrs: encoding_attrs("string-array", "0.2.0"),
        },
    )?;
    if !c.categories.is_empty() {
        writer.write_rows(&categories, 0, &ArrayData::String(c.categories.clone()))?;
    }
    Ok(())
}

fn encoding(attrs: &Attrs) -> Option<&str> {
    attrs.get("encoding-type").and_then(|v| v.as_str())
}

fn encoding_attrs(kind: &str, version: &str) -> Attrs {
    let mut a = Attrs::new();
    a.insert("encoding-type".into(), kind.into());
    a.insert("encoding-version".into(), version.into());
    a
}

/// Whether `name` is one of the frame's columns (`column-order`; the index is not one).
fn in_column_order(attrs: &Attrs, name: &str) -> bool {
    match attrs.get("column-order") {
        Some(serde_json::Value::Array(a)) => a.iter().any(|c| c.as_str() == Some(name)),
        Some(serde_json::Value::String(s)) => s == name,
        _ => false,
    }
}

/// The entries of a column pandas infers as strings (`None` = masked), or `None` for any
/// other column.
fn string_column(
    reader: &dyn TreeReader,
    path: &str,
    kind: NodeKind,
) -> Result<Option<Vec<Option<String>>>> {
    match kind {
        NodeKind::Array => {
            let info = reader.array_info(path)?;
            let plain = matches!(encoding(&info.attrs), None | Some("string-array"));
            if info.elem != ElemType::String || info.shape.len() != 1 || !plain {
                return Ok(None);
            }
            Ok(Some(
                read_strings(reader, path, info.shape[0])?
                    .into_iter()
                    .map(Some)
                    .collect(),
            ))
        }
        NodeKind::Group => {
            if encoding(&reader.group_attrs(path)?) != Some("nullable-string-array") {
                return Ok(None);
            }
            let values_path = join(path, "values");
            let info = reader.array_info(&values_path)?;
            if info.elem != ElemType::String || info.shape.len() != 1 {
                return Ok(None);
            }
            let values = read_strings(reader, &values_path, info.shape[0])?;
            let mask = match reader.read_rows(&join(path, "mask"), 0..info.shape[0])? {
                ArrayData::Bool(m) => m,
                ArrayData::Num(m) => m.to_f64().into_iter().map(|x| x != 0.0).collect(),
                ArrayData::String(_) => return Ok(None),
            };
            if mask.len() != values.len() {
                return Ok(None);
            }
            Ok(Some(
                values
                    .into_iter()
                    .zip(mask)
                    .map(|(v, masked)| (!masked).then_some(v))
                    .collect(),
            ))
        }
    }
}

fn read_strings(reader: &dyn TreeReader, path: &str, n: u64) -> Result<Vec<String>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    match reader.read_rows(path, 0..n)? {
        ArrayData::String(v) => Ok(v),
        _ => Ok(Vec::new()),
    }
}

/// natsort's default order (`natsorted`, `ns.INT`, natsort 8.4): a string is split into
/// numbers and the text between them. A number is a run of decimal digits (Unicode `Nd`, as
/// Python's `\d`) or one digit character that is not decimal (`²`, `①`: natsort's
/// `digits_no_decimals`); numbers compare as unsigned integers, text by code point. An empty
/// text run goes before a leading number and between two adjacent numbers, so numbers sort
/// before text. Equal keys (`"a01"`, `"a1"`) compare equal: a stable sort keeps their
/// incoming order.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (ka, kb) = (natural_key(a), natural_key(b));
    for (x, y) in ka.iter().zip(&kb) {
        let o = match (x, y) {
            (Run::Number(xs), Run::Number(ys)) => {
                let (xs, ys) = (xs.trim_start_matches('0'), ys.trim_start_matches('0'));
                xs.len().cmp(&ys.len()).then_with(|| xs.cmp(ys))
            }
            (Run::Text(xs), Run::Text(ys)) => xs.cmp(ys),
            // Runs alternate from the same start (text), so kinds always match.
            (Run::Text(_), Run::Number(_)) => Ordering::Greater,
            (Run::Number(_), Run::Text(_)) => Ordering::Less,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ka.len().cmp(&kb.len())
}

#[derive(Debug, PartialEq)]
enum Run {
    Text(String),
    /// The number's value in ASCII digits.
    Number(String),
}

fn natural_key(s: &str) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    // Whether the last run is a number that another decimal digit may extend.
    let mut open_number = false;
    for ch in s.chars() {
        match digit(ch) {
            Some((d, decimal)) => {
                if decimal && open_number {
                    if let Some(Run::Number(run)) = out.last_mut() {
                        run.push(d);
                        continue;
                    }
                }
                if matches!(out.last(), None | Some(Run::Number(_))) {
                    out.push(Run::Text(String::new()));
                }
                out.push(Run::Number(d.to_string()));
                open_number = decimal;
            }
            None => {
                open_number = false;
                match out.last_mut() {
                    Some(Run::Text(run)) => run.push(ch),
                    _ => out.push(Run::Text(ch.to_string())),
                }
            }
        }
    }
    out
}

/// The first code point of each block of ten Unicode `Nd` digits (0-9) outside ASCII,
/// Unicode 15.0 (Python 3.12's `unicodedata`): every `Nd` character is in one such block.
const ND_BLOCKS: &[u32] = &[
    0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66, 0xce6, 0xd66, 0xde6,
    0xe50, 0xed0, 0xf20, 0x1040, 0x1090, 0x17e0, 0x1810, 0x1946, 0x19d0, 0x1a80, 0x1a90, 0x1b50,
    0x1bb0, 0x1c40, 0x1c50, 0xa620, 0xa8d0, 0xa900, 0xa9d0, 0xa9f0, 0xaa50, 0xabf0, 0xff10,
    0x104a0, 0x10d30, 0x11066, 0x110f0, 0x11136, 0x111d0, 0x112f0, 0x11450, 0x114d0, 0x11650,
    0x116c0, 0x11730, 0x118e0, 0x11950, 0x11c50, 0x11d50, 0x11da0, 0x11f50, 0x16a60, 0x16ac0,
    0x16b50, 0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0, 0x1e4f0, 0x1e950,
    0x1fbf0,
];

/// The characters with a digit value that are not decimal digits (`unicodedata.digit` but
/// not `unicodedata.decimal`, Unicode 15.0), as runs `(first code point, its value, length)`
/// of consecutive code points with consecutive values.
const OTHER_DIGITS: &[(u32, u8, u32)] = &[
    (0xb2, 2, 2),
    (0xb9, 1, 1),
    (0x1369, 1, 9),
    (0x19da, 1, 1),
    (0x2070, 0, 1),
    (0x2074, 4, 6),
    (0x2080, 0, 10),
    (0x2460, 1, 9),
    (0x2474, 1, 9),
    (0x2488, 1, 9),
    (0x24ea, 0, 1),
    (0x24f5, 1, 9),
    (0x24ff, 0, 1),
    (0x2776, 1, 9),
    (0x2780, 1, 9),
    (0x278a, 1, 9),
    (0x10a40, 1, 4),
    (0x10e60, 1, 9),
    (0x11052, 1, 9),
    (0x1f100, 0, 1),
    (0x1f101, 0, 10),
];

/// A digit character's value as an ASCII digit, and whether it is a decimal digit (`Nd`).
fn digit(ch: char) -> Option<(char, bool)> {
    if ch.is_ascii_digit() {
        return Some((ch, true));
    }
    let c = ch as u32;
    let ascii = |d: u32| char::from(b'0' + d as u8);
    let i = ND_BLOCKS.partition_point(|&start| start <= c);
    if let Some(&start) = i.checked_sub(1).and_then(|i| ND_BLOCKS.get(i)) {
        if c - start < 10 {
            return Some((ascii(c - start), true));
        }
    }
    OTHER_DIGITS
        .iter()
        .find(|&&(first, _, len)| (first..first + len).contains(&c))
        .map(|&(first, value, _)| (ascii(u32::from(value) + c - first), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn natsorted(v: &[&str]) -> Vec<String> {
        let mut v: Vec<&str> = v.to_vec();
        v.sort_unstable();
        v.sort_by(|a, b| natural_cmp(a, b));
        v.into_iter().map(String::from).collect()
    }

    #[test]
    fn orders_as_natsort() {
        // natsort 8.4's `natsorted` of the same strings, sorted first (Python 3.12).
        assert_eq!(
            natsorted(&["a٣", "a3", "a2", "a10", "a03", "x", "", "1", "B", "b", "a²"]),
            ["", "1", "B", "a2", "a²", "a03", "a3", "a٣", "a10", "b", "x"]
        );
        // natsort_keygen()(s): '2²' -> ('', 2, '', 2), 'a٣3' -> ('a', 33), '①' -> ('', 1).
        assert_eq!(
            natural_key("2²"),
            [
                Run::Text("".into()),
                Run::Number("2".into()),
                Run::Text("".into()),
                Run::Number("2".into())
            ]
        );
        assert_eq!(
            natural_key("a٣3"),
            [Run::Text("a".into()), Run::Number("33".into())]
        );
        assert_eq!(
            natural_key("①"),
            [Run::Text("".into()), Run::Number("1".into())]
        );
        assert_eq!(natural_key(""), []);
        assert_eq!(natural_key("a½"), [Run::Text("a½".into())]);
        assert_eq!(
            natsorted(&["10", "9", "x9", "x10", "x"]),
            ["9", "10", "x", "x9", "x10"]
        );
    }

    #[test]
    fn categorizes_as_pandas() {
        let v = ["b10", "b2", "b10", "a"];
        let (codes, cats) = categorize(v.iter().map(|s| Some(*s))).unwrap();
        assert_eq!(cats, ["a", "b2", "b10"]);
        assert_eq!(codes, NumVec::I8(vec![2, 1, 2, 0]));
        assert_eq!(categorize(["x", "y"].iter().map(|s| Some(*s))), None);
        // A missing entry is a row, not a category.
        let (codes, cats) = categorize([Some("x"), None].into_iter()).unwrap();
        assert_eq!(
            (codes, cats),
            (NumVec::I8(vec![0, -1]), vec!["x".to_string()])
        );
    }

    #[test]
    fn code_types_follow_pandas() {
        for (k, want) in [
            (126, "int8"),
            (127, "int16"),
            (32766, "int16"),
            (32767, "int32"),
        ] {
            let v: Vec<String> = (0..k).map(|i| i.to_string()).collect();
            let twice: Vec<&str> = v.iter().chain(&v).map(String::as_str).collect();
            let (codes, _) = categorize(twice.iter().map(|s| Some(*s))).unwrap();
            assert_eq!(codes.dtype().numpy_name(), want, "{k} categories");
        }
    }
}
