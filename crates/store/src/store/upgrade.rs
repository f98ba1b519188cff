//! How anndata 0.13.4 rewrites what anndata < 0.8 (0.7.x) stored without encoding
//! metadata, shared by every backend (the `.zarr` and `.h5ad` tree readers and the `.h5ad` →
//! `.h5ad` copy), so that an output equals `read(...)` + `write(...)` of anndata 0.13.4.
//!
//! Established by experiment with anndata 0.13.4 (a 0.7-style file read, written and read
//! again; see `tests/interop/test_legacy_upgrade.py`):
//!
//! * a **0-d array without `encoding-type`** (every uns scalar of anndata 0.7) is read as a
//!   numpy scalar (`np.int64`, `np.float32`, `np.bool_`, ...) and written as
//!   `numeric-scalar` 0.2.0 (same dtype), which anndata reads as a Python `int`/`float`/
//!   `bool`/`complex`; a string one as `string` 0.2.0. Left as it is, it reads back as the
//!   numpy scalar: not what anndata's round trip gives.
//! * an **n-d array without `encoding-type`** in `uns` or a dataframe becomes `array` 0.2.0
//!   (numbers, booleans) or `string-array` 0.2.0 (strings, written as variable-length UTF-8).
//! * a **dataframe `0.1.0`** (anndata 0.7) becomes `dataframe` 0.2.0, its columns encoded as
//!   above (categoricals: see [`crate::store::tree`]).
//! * a **group without `encoding-type`** in `uns` becomes `dict` 0.1.0.

use serde_json::Value;

use super::tree::{ArrayInfo, Attrs, ElemType};

/// The `(encoding-type, encoding-version)` anndata 0.13 writes for an array stored without
/// one, of element type `elem` and shape `shape`: `None` when `attrs` already name an
/// encoding, or carry either encoding attribute (anndata reads an element as an old one only
/// when both are absent; an `encoding-version` without `encoding-type` is an encoding it has
/// no reader for, which the checks refuse — upgraded, it would be copied as readable).
///
/// `scalars_only`: only 0-d arrays (scalars) are upgraded — what applies anywhere in the
/// tree; n-d arrays only in `uns` and dataframes (elsewhere, e.g. the members of a sparse
/// matrix group, anndata writes no encoding either).
pub fn legacy_encoding(
    elem: ElemType,
    shape: &[u64],
    attrs: &Attrs,
    scalars_only: bool,
) -> Option<(&'static str, &'static str)> {
    if has_encoding_attr(attrs) {
        return None;
    }
    let kind = match (shape.is_empty(), elem) {
        (true, ElemType::String | ElemType::Bytes) => "string",
        (true, _) => "numeric-scalar",
        (false, _) if scalars_only => return None,
        (false, ElemType::String | ElemType::Bytes) => "string-array",
        (false, _) => "array",
    };
    Some((kind, "0.2.0"))
}

/// [`legacy_encoding`] applied to `info` (its attributes gain the encoding); whether it did.
pub fn upgrade_array(info: &mut ArrayInfo, scalars_only: bool) -> bool {
    match legacy_encoding(info.elem, &info.shape, &info.attrs, scalars_only) {
        Some((kind, version)) => {
            set_encoding(&mut info.attrs, kind, version);
            true
        }
        None => false,
    }
}

/// Whether `attrs` are those of an anndata 0.7 dataframe (`dataframe` 0.1.0).
pub fn is_legacy_dataframe(attrs: &Attrs) -> bool {
    attrs.get("encoding-type").and_then(Value::as_str) == Some("dataframe")
        && attrs.get("encoding-version").and_then(Value::as_str) == Some("0.1.0")
}

/// A group's attributes as anndata 0.13 writes them back: a `dataframe` 0.1.0 becomes 0.2.0;
/// a group without `encoding-type` inside `uns` (`in_uns`) becomes `dict` 0.1.0.
pub fn upgrade_group(attrs: &mut Attrs, in_uns: bool) {
    if is_legacy_dataframe(attrs) {
        attrs.insert("encoding-version".into(), "0.2.0".into());
    } else if in_uns && !has_encoding_attr(attrs) {
        set_encoding(attrs, "dict", "0.1.0");
    }
}

/// Whether either encoding attribute is present.
fn has_encoding_attr(attrs: &Attrs) -> bool {
    attrs.contains_key("encoding-type") || attrs.contains_key("encoding-version")
}

/// Whether `path` (no leading `/`) is `uns` or lies inside it.
pub fn in_uns(path: &str) -> bool {
    let p = path.trim_start_matches('/');
    p == "uns" || p.starts_with("uns/")
}

fn set_encoding(attrs: &mut Attrs, kind: &str, version: &str) {
    attrs.insert("encoding-type".into(), kind.into());
    attrs.insert("encoding-version".into(), version.into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::DType;

    #[test]
    fn rules() {
        let none = Attrs::new();
        let f = ElemType::Num(DType::F64);
        assert_eq!(
            legacy_encoding(f, &[], &none, true),
            Some(("numeric-scalar", "0.2.0"))
        );
        assert_eq!(
            legacy_encoding(ElemType::Bool, &[], &none, true),
            Some(("numeric-scalar", "0.2.0"))
        );
        assert_eq!(
            legacy_encoding(ElemType::String, &[], &none, true),
            Some(("string", "0.2.0"))
        );
        assert_eq!(legacy_encoding(f, &[3], &none, true), None);
        assert_eq!(
            legacy_encoding(f, &[3], &none, false),
            Some(("array", "0.2.0"))
        );
        assert_eq!(
            legacy_encoding(ElemType::String, &[3, 2], &none, false),
            Some(("string-array", "0.2.0"))
        );
        let mut enc = Attrs::new();
        enc.insert("encoding-type".into(), "null".into());
        assert_eq!(legacy_encoding(f, &[], &enc, false), None);

        let mut df = Attrs::new();
        set_encoding(&mut df, "dataframe", "0.1.0");
        upgrade_group(&mut df, false);
        assert_eq!(df["encoding-version"], "0.2.0");
        let mut g = Attrs::new();
        upgrade_group(&mut g, false);
        assert!(g.is_empty());
        upgrade_group(&mut g, true);
        assert_eq!(g["encoding-type"], "dict");
        assert!(in_uns("uns") && in_uns("uns/a/b") && !in_uns("unsx") && !in_uns("obs"));

        // A version without a type is no old element: left for the checks to refuse
        // (anndata: "No read method registered for IOSpec(encoding_type='', ...)").
        let mut version_only = Attrs::new();
        version_only.insert("encoding-version".into(), "0.2.0".into());
        assert_eq!(legacy_encoding(f, &[3], &version_only, false), None);
        assert_eq!(legacy_encoding(f, &[], &version_only, true), None);
        upgrade_group(&mut version_only, true);
        assert!(!version_only.contains_key("encoding-type"));
    }
}
