//! A readable tree of a `.zarr` store: encodings, shapes, dtypes, chunk and shard shapes,
//! codecs.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::input::ZarrInput;
use super::node::{self, NodeMeta};
use crate::error::{Error, Result};
use crate::options::ZarrFormat;
use crate::store::tree::{ElemType, NodeKind};

/// Children listed per group before the rest is summarized.
const MAX_CHILDREN: usize = 60;

/// Lists what is inside a `.zarr` store, one element a line, indented by depth.
pub fn inspect(path: &Path) -> Result<String> {
    let input = ZarrInput::open(path)?;
    let storage = input.storage();
    let format = input.zarr_format();
    let mut out = String::new();
    let size = zarrs::storage::StorePrefix::new("")
        .ok()
        .and_then(|p| storage.size_prefix(&p).ok());
    let version = match format {
        ZarrFormat::V2 => "zarr v2",
        ZarrFormat::V3 => "zarr v3",
    };
    let consolidated = match format {
        ZarrFormat::V2 => node::get(storage, "", ".zmetadata")
            .ok()
            .flatten()
            .is_some(),
        ZarrFormat::V3 => node::get_json(storage, "", "zarr.json")
            .ok()
            .flatten()
            .is_some_and(|d| d.contains_key("consolidated_metadata")),
    };
    let _ = writeln!(
        out,
        "{}  ({version}{}{})",
        path.display(),
        if consolidated {
            ", consolidated metadata"
        } else {
            ""
        },
        size.map(|s| format!(", {}", crate::params::format_bytes(s)))
            .unwrap_or_default()
    );
    let root = input
        .node("")?
        .ok_or_else(|| Error::input(path, "/", "no root group"))?;
    let _ = writeln!(out, "/{}", encoding_label(&root));
    list_group(&mut out, &input, "", 1)?;
    Ok(out)
}

fn encoding_label(meta: &NodeMeta) -> String {
    match (meta.encoding(), meta.str_attr("encoding-version")) {
        (Some(t), Some(v)) => format!("  {t} {v}"),
        (Some(t), None) => format!("  {t}"),
        _ => String::new(),
    }
}

fn fmt_shape(shape: &[u64]) -> String {
    match shape.len() {
        0 => "()".into(),
        1 => format!("({},)", shape[0]),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

fn list_group(out: &mut String, input: &ZarrInput, path: &str, depth: usize) -> Result<()> {
    let children = node::children(input.storage(), input.zarr_format(), path)
        .map_err(|p| p.into_input(crate::store::InputStore::path(input)))?;
    let indent = "  ".repeat(depth);
    for (i, (name, meta)) in children.iter().enumerate() {
        if i == MAX_CHILDREN {
            let _ = writeln!(out, "{indent}... {} more", children.len() - MAX_CHILDREN);
            break;
        }
        let child = crate::store::tree::join(path, name);
        match meta.kind {
            NodeKind::Group => {
                let _ = writeln!(out, "{indent}{name}/{}", group_details(input, &child, meta));
                list_group(out, input, &child, depth + 1)?;
            }
            NodeKind::Array => {
                let _ = writeln!(out, "{indent}{name}{}", array_details(input, &child, meta));
            }
        }
    }
    Ok(())
}

fn group_details(input: &ZarrInput, path: &str, meta: &NodeMeta) -> String {
    let mut s = encoding_label(meta);
    match meta.encoding() {
        Some("csr_matrix") | Some("csc_matrix") => {
            if let Some(Value::Array(shape)) = meta.attrs.get("shape") {
                let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
                let _ = write!(s, "  shape ({})", dims.join(", "));
            }
            if let Ok(Some(data)) = input.node(&format!("{path}/data")) {
                if let Some([nnz]) = data.shape().as_deref() {
                    let _ = write!(s, "  nnz {nnz}");
                }
            }
        }
        Some("dataframe") => {
            let columns: Vec<&str> = match meta.attrs.get("column-order") {
                Some(Value::Array(v)) => v.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if let Some(index) = meta.str_attr("_index") {
                let _ = write!(s, "  index '{index}'");
            }
            let _ = write!(s, "  {} column(s)", columns.len());
            if !columns.is_empty() {
                let shown: Vec<&str> = columns.iter().take(12).copied().collect();
                let more = if columns.len() > 12 { ", ..." } else { "" };
                let _ = write!(s, ": {}{more}", shown.join(", "));
            }
        }
        Some("categorical") => {
            if let Some(v) = meta.attrs.get("ordered") {
                let _ = write!(s, "  ordered={v}");
            }
        }
        _ => {}
    }
    s
}

fn array_details(input: &ZarrInput, path: &str, meta: &NodeMeta) -> String {
    let mut s = encoding_label(meta);
    let dtype = match meta.elem_type() {
        Ok(ElemType::Num(t)) => t.numpy_name().to_string(),
        Ok(ElemType::Bool) => "bool".into(),
        Ok(ElemType::String | ElemType::Bytes) => "str (variable-length UTF-8)".into(),
        Err(what) => format!("unsupported {what}"),
    };
    let _ = write!(s, "  {dtype}");
    let shape = meta.shape().unwrap_or_default();
    let _ = write!(s, "  {}", fmt_shape(&shape));
    if shape.is_empty() {
        if meta.encoding() == Some("null") {
            s.push_str("  = None");
        } else if let Some(v) = scalar_value(input, path, meta) {
            let _ = write!(s, "  = {v}");
        }
        return s;
    }
    match (meta.chunk_shape(), meta.inner_chunk_shape()) {
        (Some(shard), Some(inner)) => {
            let _ = write!(
                s,
                "  shards {}  chunks {}",
                fmt_shape(&shard),
                fmt_shape(&inner)
            );
        }
        (Some(chunks), None) => {
            let _ = write!(s, "  chunks {}", fmt_shape(&chunks));
        }
        _ => {}
    }
    let codecs = meta.codec_words();
    if !codecs.is_empty() {
        let _ = write!(s, "  {}", codecs.join("+"));
    }
    s
}

fn scalar_value(input: &ZarrInput, path: &str, meta: &NodeMeta) -> Option<String> {
    let a = input.array(path, meta).ok()?;
    match a.elem {
        ElemType::Num(t) => {
            let v = a.read_num(0..1).ok()?;
            Some(if t.is_float() {
                v.to_f64().first()?.to_string()
            } else {
                v.to_i64()?.first()?.to_string()
            })
        }
        ElemType::Bool => Some(a.read_bools(0..1).ok()?.first()?.to_string()),
        ElemType::String | ElemType::Bytes => {
            let text = a.read_strings(0..1).ok()?.into_iter().next()?;
            let short: String = text.chars().take(60).collect();
            Some(if short.len() < text.len() {
                format!("{short:?}...")
            } else {
                format!("{short:?}")
            })
        }
    }
}
