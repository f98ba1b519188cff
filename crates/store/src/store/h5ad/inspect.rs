//! A readable tree of an .h5ad file: encodings, shapes, dtypes, chunking, filters.

use std::fmt::Write as _;
use std::path::Path;

use hdf5::filters::Filter;
use hdf5::types::TypeDescriptor;
use hdf5::{Dataset, Group};

use super::encoding::{self, describe_type, node, numeric_dtype, Node};
use super::file::{attr_strings, dims, has_attr, int_array_attr, open_read, str_attr};
use crate::error::{Error, Result};

/// Children listed per group before the rest is summarized.
const MAX_CHILDREN: usize = 60;

/// Lists what is inside an .h5ad file, one element a line, indented by depth.
pub fn inspect(path: &Path) -> Result<String> {
    let file = open_read(path).map_err(|p| Error::input(path, "/", p))?;
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  (HDF5, {})",
        path.display(),
        crate::params::format_bytes(size)
    );
    let root: &Group = &file;
    let _ = writeln!(out, "/{}", encoding_label(root));
    if let Err(p) = encoding::check_anndata(&file) {
        let _ = writeln!(out, "  note: {}", p.problem);
    }
    list_group(&mut out, root, "", 1);
    Ok(out)
}

fn encoding_label(loc: &hdf5::Location) -> String {
    match (
        str_attr(loc, "encoding-type"),
        str_attr(loc, "encoding-version"),
    ) {
        (Some(t), Some(v)) => format!("  {t} {v}"),
        (Some(t), None) => format!("  {t}"),
        _ => String::new(),
    }
}

fn list_group(out: &mut String, group: &Group, prefix: &str, depth: usize) {
    let names = group.member_names().unwrap_or_default();
    let indent = "  ".repeat(depth);
    for (i, name) in names.iter().enumerate() {
        if i == MAX_CHILDREN {
            let _ = writeln!(out, "{indent}... {} more", names.len() - MAX_CHILDREN);
            break;
        }
        let path = format!("{prefix}{name}");
        match node(group, name) {
            Some(Node::Group(g)) => {
                let _ = writeln!(out, "{indent}{name}/{}", group_details(&g));
                list_group(out, &g, &format!("{path}/"), depth + 1);
            }
            Some(Node::Dataset(ds)) => {
                let _ = writeln!(out, "{indent}{name}{}", dataset_details(&ds));
            }
            None => {
                let _ = writeln!(
                    out,
                    "{indent}{name}  (link to a missing or unsupported object)"
                );
            }
        }
    }
}

fn group_details(g: &Group) -> String {
    let mut s = encoding_label(g);
    let kind = str_attr(g, "encoding-type");
    match kind.as_deref() {
        Some("csr_matrix") | Some("csc_matrix") => {
            if let Some(shape) = int_array_attr(g, "shape") {
                let _ = write!(s, "  shape {}", fmt_shape_i(&shape));
            }
            if let Some(nnz) = sparse_nnz(g) {
                let _ = write!(s, "  nnz {nnz}");
            }
        }
        Some("dataframe") => {
            let columns = if has_attr(g, "column-order") {
                g.attr("column-order")
                    .ok()
                    .and_then(|a| attr_strings(&a).ok())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            if let Some(index) = str_attr(g, "_index") {
                let _ = write!(s, "  index '{index}'");
            }
            let _ = write!(s, "  {} column(s)", columns.len());
            if !columns.is_empty() {
                let shown: Vec<&str> = columns.iter().take(12).map(String::as_str).collect();
                let more = if columns.len() > 12 { ", ..." } else { "" };
                let _ = write!(s, ": {}{more}", shown.join(", "));
            }
        }
        Some("categorical") => {
            if let Ok(a) = g.attr("ordered") {
                if let Ok(v) = a.read_scalar::<bool>() {
                    let _ = write!(s, "  ordered={v}");
                }
            }
        }
        None => {
            if let Some(fmt) = str_attr(g, "h5sparse_format") {
                let _ = write!(s, "  legacy sparse (h5sparse_format '{fmt}')");
                if let Some(shape) = int_array_attr(g, "h5sparse_shape") {
                    let _ = write!(s, "  shape {}", fmt_shape_i(&shape));
                }
                if let Some(nnz) = sparse_nnz(g) {
                    let _ = write!(s, "  nnz {nnz}");
                }
            }
        }
        _ => {}
    }
    s
}

fn sparse_nnz(g: &Group) -> Option<u64> {
    let ds = g.dataset("data").ok()?;
    dims(&ds).and_then(|d| d.first().copied())
}

fn fmt_shape_i(shape: &[i64]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("({})", parts.join(", "))
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

fn dtype_words(ds: &Dataset) -> String {
    match ds.dtype().and_then(|t| t.to_descriptor()) {
        Ok(desc) => match numeric_dtype(&desc) {
            Some(t) => t.numpy_name().to_string(),
            None => match desc {
                TypeDescriptor::Boolean => "bool".into(),
                TypeDescriptor::VarLenUnicode => "str (variable-length UTF-8)".into(),
                TypeDescriptor::VarLenAscii => "str (variable-length ASCII)".into(),
                TypeDescriptor::FixedAscii(n) => format!("bytes (fixed {n})"),
                TypeDescriptor::FixedUnicode(n) => format!("str (fixed {n}, UTF-8)"),
                other => describe_type(&other),
            },
        },
        Err(_) => "unknown type".into(),
    }
}

fn filter_words(filters: &[Filter]) -> Vec<String> {
    filters
        .iter()
        .map(|f| match f {
            Filter::Deflate(level) => format!("gzip {level}"),
            Filter::Shuffle => "shuffle".into(),
            Filter::Fletcher32 => "fletcher32".into(),
            Filter::LZF => "lzf".into(),
            Filter::SZip(..) => "szip".into(),
            Filter::NBit => "nbit".into(),
            Filter::ScaleOffset(_) => "scaleoffset".into(),
            Filter::User(id, cd) => match super::filters::Codec::of(*id, cd) {
                Ok(Some(codec)) => codec.describe(),
                _ => match super::filters::first_unsupported(std::slice::from_ref(f)) {
                    Some(_) => format!("{} (not supported)", super::filters::filter_label(*id)),
                    None => super::filters::filter_label(*id),
                },
            },
        })
        .collect()
}

fn dataset_details(ds: &Dataset) -> String {
    let mut s = encoding_label(ds);
    let shape = dims(ds);
    let _ = write!(s, "  {}", dtype_words(ds));
    match &shape {
        None => {
            s.push_str("  empty (null dataspace)");
            return s;
        }
        Some(d) => {
            let _ = write!(s, "  {}", fmt_shape(d));
            if d.is_empty() {
                if let Some(v) = scalar_value(ds) {
                    let _ = write!(s, "  = {v}");
                }
                return s;
            }
        }
    }
    match ds.chunk() {
        Some(c) => {
            let c: Vec<u64> = c.into_iter().map(|x| x as u64).collect();
            let _ = write!(s, "  chunks {}", fmt_shape(&c));
        }
        None => s.push_str("  contiguous"),
    }
    let filters = filter_words(&ds.filters());
    if !filters.is_empty() {
        let _ = write!(s, "  {}", filters.join("+"));
    }
    s
}

fn scalar_value(ds: &Dataset) -> Option<String> {
    let desc = ds.dtype().ok()?.to_descriptor().ok()?;
    if let Some(t) = numeric_dtype(&desc) {
        return Some(if t.is_float() {
            ds.read_scalar::<f64>().ok()?.to_string()
        } else {
            ds.read_scalar::<i64>().ok()?.to_string()
        });
    }
    if desc == TypeDescriptor::Boolean {
        return ds.read_scalar::<bool>().ok().map(|b| b.to_string());
    }
    let v = super::file::dataset_strings(ds).ok()?;
    let text = v.into_iter().next()?;
    let short: String = text.chars().take(60).collect();
    Some(if short.len() < text.len() {
        format!("{short:?}...")
    } else {
        format!("{short:?}")
    })
}
