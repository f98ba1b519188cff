//! The .h5ad side of the format-neutral tree ([`crate::store::tree`]): [`TreeReader`] for an
//! opened [`H5adInput`] and [`H5adTreeWriter`], which builds an AnnData tree in a new HDF5
//! file with the conventions h5py/anndata 0.13 use:
//!
//! * attributes: strings as variable-length UTF-8 scalars, string lists as variable-length
//!   UTF-8 arrays, integer lists (`shape`) as int64 arrays, booleans (`ordered`) as h5py's
//!   enum bool, **an empty list as an empty float64 array**;
//! * datasets: numeric, bool (h5py's enum of int8 `FALSE`/`TRUE`), variable-length UTF-8
//!   strings, 0-d scalars; `null` as an empty-dataspace (`H5S_NULL`) float32 dataset;
//! * storage: the `data`/`indices`/`indptr` members of a `csr_matrix`/`csc_matrix` group are
//!   chunked (h5py's guessed chunk, `maxshape=(None,)`), every other dataset is contiguous;
//!   no compression (anndata's default).
//!
//! zarr writes an absent `raw` as a root-level `null` element; anndata writes nothing in an
//! .h5ad file, so the writer drops that one.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ops::Range;
use std::path::{Path, PathBuf};

use hdf5::types::{TypeDescriptor, VarLenUnicode};
use hdf5::{Attribute, Dataset, Datatype, File, Group, H5Type, Location, LocationType};
use hdf5_sys::h5d::{H5Dget_space, H5Dget_type, H5Dread, H5Dwrite};
use hdf5_sys::h5i::hid_t;
use hdf5_sys::h5p::H5P_DEFAULT;
use hdf5_sys::h5s::{
    H5S_seloper_t, H5Sclose, H5Screate_simple, H5Sget_simple_extent_ndims, H5Sselect_hyperslab,
    H5S_ALL,
};
use hdf5_sys::h5t::{
    H5T_cset_t, H5T_direction_t, H5Tclose, H5Tget_cset, H5Tget_native_type, H5Tget_size,
    H5Tis_variable_str,
};
use serde_json::Value;

use super::encoding::{node, numeric_dtype, Node};
use super::file::{attr_strings, set_str_array_attr, set_str_attr, short};
use super::layout::{datatype, guess_chunk};
use super::output::write_null;
use super::H5adInput;
use crate::array::{as_bytes_mut, DType, NumVec, Plain};
use crate::error::{Error, Result};
use crate::store::tree::{ArrayData, ArrayInfo, Attrs, ElemType, NodeKind, TreeReader, TreeWriter};

fn hdf5_err(e: hdf5::Error) -> String {
    short(&e)
}

fn last_error() -> hdf5::Error {
    hdf5::Error::query().unwrap_or_else(|e| e)
}

impl H5adInput {
    fn tree_err(&self, element: &str, problem: impl Into<String>) -> Error {
        Error::input(
            &self.path,
            if element.is_empty() { "/" } else { element },
            problem,
        )
    }

    fn tree_group(&self, path: &str) -> Result<Group> {
        match node(self.root(), path) {
            Some(Node::Group(g)) => Ok(g),
            Some(Node::Dataset(_)) => Err(self.tree_err(path, "a dataset, not a group")),
            None => Err(self.tree_err(path, "no such element")),
        }
    }

    fn tree_dataset(&self, path: &str) -> Result<Dataset> {
        match node(self.root(), path) {
            Some(Node::Dataset(d)) if !path.is_empty() => Ok(d),
            Some(_) => Err(self.tree_err(path, "a group, not an array")),
            None => Err(self.tree_err(path, "no such element")),
        }
    }
}

impl TreeReader for H5adInput {
    fn children(&self, group: &str) -> Result<Vec<(String, NodeKind)>> {
        let g = self.tree_group(group)?;
        let mut names = g
            .member_names()
            .map_err(|e| self.tree_err(group, format!("cannot list members: {}", short(&e))))?;
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let kind = match g.loc_type_by_name(&name) {
                Ok(LocationType::Group) => NodeKind::Group,
                Ok(LocationType::Dataset) => NodeKind::Array,
                // Named datatypes are not AnnData elements.
                Ok(LocationType::NamedDatatype) => continue,
                Ok(_) | Err(_) => {
                    return Err(self.tree_err(
                        &crate::store::tree::join(group, &name),
                        "cannot open (a dangling link or an unsupported object)",
                    ))
                }
            };
            out.push((name, kind));
        }
        Ok(out)
    }

    fn group_attrs(&self, group: &str) -> Result<Attrs> {
        let g = self.tree_group(group)?;
        let mut attrs = read_attrs(&g).map_err(|p| self.tree_err(group, p))?;
        // anndata 0.7's elements, as anndata 0.13's read + write leaves them
        super::upgrade::upgrade_group_attrs(group, &mut attrs);
        Ok(attrs)
    }

    fn foreign_byte_order(&self, array: &str) -> Result<bool> {
        Ok(super::layout::foreign_order(&self.tree_dataset(array)?))
    }

    fn array_info(&self, array: &str) -> Result<ArrayInfo> {
        let ds = self.tree_dataset(array)?;
        let attrs = read_attrs(&ds).map_err(|p| self.tree_err(array, p))?;
        let space = ds
            .space()
            .map_err(|e| self.tree_err(array, format!("cannot read the shape: {}", short(&e))))?;
        if space.is_null() {
            // anndata's None; only its attributes matter.
            return Ok(ArrayInfo {
                elem: ElemType::Num(DType::F32),
                shape: Vec::new(),
                attrs,
            });
        }
        let shape = space.shape().iter().map(|&d| d as u64).collect();
        let elem = elem_type(&ds).map_err(|p| self.tree_err(array, p))?;
        let mut info = ArrayInfo { elem, shape, attrs };
        // anndata 0.7's elements, as anndata 0.13's read + write leaves them
        super::upgrade::upgrade_info(self, array, &ds, &mut info);
        Ok(info)
    }

    fn read_rows(&self, array: &str, rows: Range<u64>) -> Result<ArrayData> {
        let ds = self.tree_dataset(array)?;
        // Shape and type only (no attributes: this runs once a block).
        let space = ds
            .space()
            .map_err(|e| self.tree_err(array, format!("cannot read the shape: {}", short(&e))))?;
        if space.is_null() {
            return Err(self.tree_err(array, "an empty (null) dataset has no rows"));
        }
        let info = ArrayInfo {
            elem: elem_type(&ds).map_err(|p| self.tree_err(array, p))?,
            shape: space.shape().iter().map(|&d| d as u64).collect(),
            attrs: Attrs::new(),
        };
        if rows.start > rows.end || rows.end > info.n_rows() {
            return Err(self.tree_err(
                array,
                format!(
                    "rows {}..{} requested, but it has {}",
                    rows.start,
                    rows.end,
                    info.n_rows()
                ),
            ));
        }
        read_block(&ds, &self.path, &info, rows.clone()).map_err(|e| {
            self.tree_err(
                array,
                super::file::read_problem(&ds, &format!("rows {}..{}", rows.start, rows.end), &e),
            )
        })
    }
}

/// The tree element type of a dataset.
fn elem_type(ds: &Dataset) -> std::result::Result<ElemType, String> {
    let desc = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| format!("unsupported data type: {}", short(&e)))?;
    if let Some(d) = numeric_dtype(&desc) {
        return Ok(ElemType::Num(d));
    }
    match desc {
        TypeDescriptor::Boolean => Ok(ElemType::Bool),
        TypeDescriptor::VarLenUnicode
        | TypeDescriptor::VarLenAscii
        | TypeDescriptor::FixedAscii(_)
        | TypeDescriptor::FixedUnicode(_) => Ok(ElemType::String),
        other => Err(format!(
            "cannot carry {} to another format",
            super::encoding::describe_type(&other)
        )),
    }
}

/// Selects rows `rows` (all of every further axis) of a dataset's file space; the whole
/// space for a scalar. Returns the file space (to close) and the number of elements.
fn select_rows(ds_id: hid_t, shape: &[u64], rows: &Range<u64>) -> hdf5::Result<(hid_t, u64)> {
    // SAFETY: ds_id is an open dataset (the caller's `Dataset`); the id returned is checked
    // and closed by the caller or below.
    let space = hdf5::sync::sync(|| unsafe { H5Dget_space(ds_id) });
    if space < 0 {
        return Err(last_error());
    }
    // SAFETY: `space` is the open dataspace obtained above.
    let rank = hdf5::sync::sync(|| unsafe { H5Sget_simple_extent_ndims(space) });
    if rank < 0 || rank as usize != shape.len() {
        // SAFETY: as above; closed exactly once.
        hdf5::sync::sync(|| unsafe { H5Sclose(space) });
        return Err(format!(
            "a dataset of rank {rank} read or written as rank {}",
            shape.len()
        )
        .into());
    }
    if shape.is_empty() {
        return Ok((space, 1));
    }
    let mut start = vec![0u64; shape.len()];
    let mut count = shape.to_vec();
    start[0] = rows.start;
    count[0] = rows.end - rows.start;
    // SAFETY: `space` has rank shape.len() (checked above), so HDF5 reads exactly that many
    // entries of `start` and `count`; null stride/block mean 1.
    let status = hdf5::sync::sync(|| unsafe {
        H5Sselect_hyperslab(
            space,
            H5S_seloper_t::H5S_SELECT_SET,
            start.as_ptr(),
            std::ptr::null(),
            count.as_ptr(),
            std::ptr::null(),
        )
    });
    if status < 0 {
        // SAFETY: `space` is open; closed exactly once.
        hdf5::sync::sync(|| unsafe { H5Sclose(space) });
        return Err(last_error());
    }
    Ok((space, count.iter().product()))
}

/// `H5Dread` or `H5Dwrite` of rows `rows` with memory type `mem_type` from/to `buf`, which
/// must hold `buf_bytes` bytes: refused unless that is exactly the selected elements.
pub(super) fn transfer(
    ds: &Dataset,
    shape: &[u64],
    rows: &Range<u64>,
    mem_type: hid_t,
    (buf, buf_bytes): (*mut c_void, usize),
    write: bool,
) -> hdf5::Result<()> {
    let (fspace, n) = select_rows(ds.id(), shape, rows)?;
    // SAFETY: mem_type is an open datatype id of the caller's.
    let elem = hdf5::sync::sync(|| unsafe { H5Tget_size(mem_type) });
    if elem == 0 || (n as usize).checked_mul(elem) != Some(buf_bytes) {
        // SAFETY: `fspace` is open; closed exactly once.
        hdf5::sync::sync(|| unsafe { H5Sclose(fspace) });
        return Err(
            format!("{n} elements of {elem} bytes do not fill a buffer of {buf_bytes}").into(),
        );
    }
    // SAFETY: `buf` holds buf_bytes = n * size(mem_type) bytes (checked above), exactly the
    // n elements selected in `fspace` and in the n-element memory space (the whole scalar
    // for rank 0), so HDF5 reads or writes only inside it; every id created is closed once.
    let status = hdf5::sync::sync(|| unsafe {
        let mspace = if shape.is_empty() {
            H5S_ALL
        } else {
            let dims = [n];
            H5Screate_simple(1, dims.as_ptr(), std::ptr::null())
        };
        let status = if mspace < 0 {
            -1
        } else if write {
            H5Dwrite(ds.id(), mem_type, mspace, fspace, H5P_DEFAULT, buf)
        } else {
            H5Dread(ds.id(), mem_type, mspace, fspace, H5P_DEFAULT, buf)
        };
        if mspace > 0 && mspace != H5S_ALL {
            H5Sclose(mspace);
        }
        H5Sclose(fspace);
        status
    });
    if status < 0 {
        return Err(last_error());
    }
    Ok(())
}

fn typed_read<T: Plain>(
    ds: &Dataset,
    shape: &[u64],
    rows: &Range<u64>,
    n: usize,
    mem_type: &Datatype,
) -> hdf5::Result<Vec<T>> {
    let mut v = vec![T::default(); n];
    if n > 0 {
        let bytes = as_bytes_mut(&mut v);
        let buf = (bytes.as_mut_ptr().cast(), bytes.len());
        transfer(ds, shape, rows, mem_type.id(), buf, false)?;
    }
    Ok(v)
}

macro_rules! num_read {
    ($dtype:expr, $ds:expr, $shape:expr, $rows:expr, $n:expr, $mt:expr) => {
        match $dtype {
            DType::I8 => NumVec::I8(typed_read($ds, $shape, $rows, $n, $mt)?),
            DType::I16 => NumVec::I16(typed_read($ds, $shape, $rows, $n, $mt)?),
            DType::I32 => NumVec::I32(typed_read($ds, $shape, $rows, $n, $mt)?),
            DType::I64 => NumVec::I64(typed_read($ds, $shape, $rows, $n, $mt)?),
            DType::U8 => NumVec::U8(typed_read($ds, $shape, $rows, $n, $mt)?),
            DType::U16 => NumVec::U16(typed_read($ds, $shape, $rows, $n, $mt)?),
            DType::U32 => NumVec::U32(typed_read($ds, $shape, $rows, $n, $mt)?),
            DType::U64 => NumVec::U64(typed_read($ds, $shape, $rows, $n, $mt)?),
            DType::F32 => NumVec::F32(typed_read($ds, $shape, $rows, $n, $mt)?),
            DType::F64 => NumVec::F64(typed_read($ds, $shape, $rows, $n, $mt)?),
        }
    };
}

/// Reads rows `rows` of a (non-null) dataset described by `info`, stored in the file at
/// `path`.
fn read_block(
    ds: &Dataset,
    path: &Path,
    info: &ArrayInfo,
    rows: Range<u64>,
) -> hdf5::Result<ArrayData> {
    let n = ((rows.end - rows.start) * info.row_len()) as usize;
    let shape = &info.shape;
    Ok(match info.elem {
        ElemType::Num(d) => {
            let mt = datatype(d)?;
            ArrayData::Num(num_read!(d, ds, shape, &rows, n, &mt))
        }
        ElemType::Bool => {
            let mt = Datatype::from_type::<bool>()?;
            let v: Vec<u8> = typed_read(ds, shape, &rows, n, &mt)?;
            ArrayData::Bool(v.into_iter().map(|b| b != 0).collect())
        }
        ElemType::String => ArrayData::String(read_strings(ds, path, shape, &rows, n, true)?),
        ElemType::Bytes => ArrayData::String(read_strings(ds, path, shape, &rows, n, false)?),
    })
}

/// Reads `n` strings (variable- or fixed-length, ASCII or UTF-8) with the stored type as
/// memory type. `decode`: anndata decodes them (h5py's `asstr()`, strictly, in the type's
/// character set), so a string that is not valid ASCII or UTF-8 is an error here too; else
/// (an anndata 0.7 column it keeps as `bytes`) bytes outside UTF-8 are replaced.
fn read_strings(
    ds: &Dataset,
    path: &Path,
    shape: &[u64],
    rows: &Range<u64>,
    n: usize,
    decode: bool,
) -> hdf5::Result<Vec<String>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: ds.id() is an open dataset; the file type is closed once, the memory type is
    // returned to be closed below.
    let (mem_type, size, vlen, ascii) = hdf5::sync::sync(|| unsafe {
        let ftype = H5Dget_type(ds.id());
        if ftype < 0 {
            return (-1, 0, false, false);
        }
        let mtype = H5Tget_native_type(ftype, H5T_direction_t::H5T_DIR_ASCEND);
        H5Tclose(ftype);
        if mtype < 0 {
            return (-1, 0, false, false);
        }
        let ascii = H5Tget_cset(mtype) == H5T_cset_t::H5T_CSET_ASCII;
        (
            mtype,
            H5Tget_size(mtype),
            H5Tis_variable_str(mtype) > 0,
            ascii,
        )
    });
    if mem_type < 0 {
        return Err(last_error());
    }
    let first = rows.start * (n as u64 / (rows.end - rows.start).max(1));
    let text = |i: usize, bytes: &[u8]| -> hdf5::Result<String> {
        if decode {
            undecodable(bytes, ascii).map_or(Ok(()), |why| {
                Err(hdf5::Error::from(format!(
                    "element {} is {} ({}): anndata reads it with h5py's asstr(), which \
                     raises on it",
                    first + i as u64,
                    why,
                    shown_bytes(bytes)
                )))
            })?;
        }
        Ok(String::from_utf8_lossy(bytes).into_owned())
    };
    let fast = if vlen {
        super::vlen::read(ds, path, first, n)
    } else {
        None
    };
    let result = if let Some(strings) = fast {
        strings
            .iter()
            .enumerate()
            .map(|(i, s)| text(i, s))
            .collect()
    } else if vlen {
        hdf5_vlen(ds, shape, rows, mem_type, n).and_then(|strings| {
            strings
                .iter()
                .enumerate()
                .map(|(i, s)| text(i, s))
                .collect()
        })
    } else {
        let mut buf = vec![0u8; n * size.max(1)];
        let raw = (buf.as_mut_ptr().cast(), buf.len());
        transfer(ds, shape, rows, mem_type, raw, false).and_then(|()| {
            buf.chunks(size.max(1))
                .enumerate()
                .map(|(i, c)| {
                    let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
                    text(i, &c[..end])
                })
                .collect()
        })
    };
    // SAFETY: mem_type was created above and is closed once.
    hdf5::sync::sync(|| unsafe { H5Tclose(mem_type) });
    result
}

/// `n` variable-length strings read through HDF5 (with `mem_type`, a C-string type) as the
/// bytes a C caller gets: up to the first NUL, a null pointer as no bytes.
pub(super) fn hdf5_vlen(
    ds: &Dataset,
    shape: &[u64],
    rows: &Range<u64>,
    mem_type: hid_t,
    n: usize,
) -> hdf5::Result<Vec<Vec<u8>>> {
    let mut ptrs: Vec<*mut c_char> = vec![std::ptr::null_mut(); n];
    let buf = (ptrs.as_mut_ptr().cast(), std::mem::size_of_val(&ptrs[..]));
    transfer(ds, shape, rows, mem_type, buf, false)?;
    Ok(ptrs
        .into_iter()
        .map(|p| {
            if p.is_null() {
                return Vec::new();
            }
            // SAFETY: HDF5 wrote NUL-terminated strings it allocated.
            let s = unsafe { CStr::from_ptr(p) }.to_bytes().to_vec();
            // SAFETY: `p` was allocated by HDF5 for this read and is freed once.
            hdf5::sync::sync(|| unsafe { hdf5_sys::h5::H5free_memory(p.cast()) });
            s
        })
        .collect())
}

/// Why h5py cannot decode `bytes` in the character set of their type (`None`: it can).
fn undecodable(bytes: &[u8], ascii: bool) -> Option<&'static str> {
    if ascii && !bytes.is_ascii() {
        Some("not ASCII, the character set of its string type")
    } else if std::str::from_utf8(bytes).is_err() {
        Some("not valid UTF-8")
    } else {
        None
    }
}

/// `bytes` as Python shows a `bytes` value (at most 24 of them), for messages.
fn shown_bytes(bytes: &[u8]) -> String {
    let mut s = String::from("b'");
    for &b in bytes.iter().take(24) {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\'' => s.push_str("\\'"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > 24 {
        s.push_str("...");
    }
    s.push('\'');
    s
}

/// All attributes of an HDF5 object as JSON.
fn read_attrs(loc: &Location) -> std::result::Result<Attrs, String> {
    let mut attrs = Attrs::new();
    let mut names = loc
        .attr_names()
        .map_err(|e| format!("cannot list attributes: {}", short(&e)))?;
    names.sort();
    for name in names {
        let attr = loc
            .attr(&name)
            .map_err(|e| format!("cannot open attribute {name}: {}", short(&e)))?;
        let value = if super::refs::attr_has_refs(attr.id()) {
            // anndata < 0.8's categorical link is the one reference with a meaning outside
            // HDF5 (see `crate::store::tree`); any other cannot be carried.
            super::refs::legacy_categories_path(loc, &name, &attr).ok_or_else(|| {
                format!(
                    "attribute {name} holds HDF5 references, which have no equivalent outside \
                     HDF5 and cannot be carried to another format"
                )
            })?
        } else {
            attr_to_json(&attr).map_err(|p| format!("cannot read attribute {name}: {p}"))?
        };
        attrs.insert(name, value);
    }
    Ok(attrs)
}

fn json_f64(x: f64) -> Value {
    serde_json::Number::from_f64(x)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// One HDF5 attribute as JSON: scalars as JSON scalars, 1-D (or larger, flattened) arrays as
/// JSON arrays.
fn attr_to_json(attr: &Attribute) -> std::result::Result<Value, String> {
    let space = attr.space().map_err(hdf5_err)?;
    if space.is_null() {
        return Ok(Value::Null);
    }
    let scalar = attr.shape().is_empty();
    let desc = attr
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(hdf5_err)?;
    let values: Vec<Value> = match desc {
        TypeDescriptor::VarLenUnicode
        | TypeDescriptor::VarLenAscii
        | TypeDescriptor::FixedAscii(_)
        | TypeDescriptor::FixedUnicode(_) => attr_strings(attr)
            .map_err(hdf5_err)?
            .into_iter()
            .map(Value::String)
            .collect(),
        TypeDescriptor::Unsigned(_) => attr
            .read_raw::<u64>()
            .map_err(hdf5_err)?
            .into_iter()
            .map(Value::from)
            .collect(),
        TypeDescriptor::Integer(_) => attr
            .read_raw::<i64>()
            .map_err(hdf5_err)?
            .into_iter()
            .map(Value::from)
            .collect(),
        TypeDescriptor::Float(_) => attr
            .read_raw::<f64>()
            .map_err(hdf5_err)?
            .into_iter()
            .map(json_f64)
            .collect(),
        TypeDescriptor::Boolean => attr
            .read_raw::<bool>()
            .map_err(hdf5_err)?
            .into_iter()
            .map(Value::Bool)
            .collect(),
        other => {
            return Err(format!(
                "{} cannot be carried to another format",
                super::encoding::describe_type(&other)
            ))
        }
    };
    if scalar {
        Ok(values.into_iter().next().unwrap_or(Value::Null))
    } else {
        Ok(Value::Array(values))
    }
}

/// Writes a JSON attribute the way h5py/anndata store its Python equivalent.
fn write_attr(loc: &Location, name: &str, value: &Value) -> std::result::Result<(), String> {
    if super::file::has_attr(loc, name) {
        loc.delete_attr(name).map_err(hdf5_err)?;
    }
    let r = match value {
        Value::String(s) => set_str_attr(loc, name, s),
        Value::Bool(b) => loc
            .new_attr::<bool>()
            .shape(())
            .create(name)
            .and_then(|a| a.write_scalar(b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                scalar_attr(loc, name, i)
            } else if let Some(u) = n.as_u64() {
                scalar_attr(loc, name, u)
            } else {
                scalar_attr(loc, name, n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::Array(items) => {
            if items.is_empty() || items.iter().all(Value::is_string) {
                let v: Vec<String> = items
                    .iter()
                    .map(|s| s.as_str().unwrap_or_default().to_string())
                    .collect();
                set_str_array_attr(loc, name, &v)
            } else if items.iter().all(Value::is_boolean) {
                let v: Vec<bool> = items.iter().map(|b| b.as_bool() == Some(true)).collect();
                array_attr(loc, name, &v)
            } else if items.iter().all(|x| x.is_i64()) {
                let v: Vec<i64> = items.iter().filter_map(Value::as_i64).collect();
                array_attr(loc, name, &v)
            } else if items.iter().all(|x| x.is_u64()) {
                let v: Vec<u64> = items.iter().filter_map(Value::as_u64).collect();
                array_attr(loc, name, &v)
            } else if items.iter().all(Value::is_number) {
                let v: Vec<f64> = items.iter().filter_map(Value::as_f64).collect();
                array_attr(loc, name, &v)
            } else {
                return Err(format!(
                    "attribute {name}: a list of mixed values ({value}) has no HDF5 equivalent"
                ));
            }
        }
        Value::Null => {
            return Err(format!(
                "attribute {name}: null has no HDF5 attribute equivalent"
            ))
        }
        Value::Object(_) => {
            return Err(format!(
                "attribute {name}: a JSON object ({value}) has no HDF5 attribute equivalent"
            ))
        }
    };
    r.map_err(|e| format!("cannot write attribute {name}: {}", short(&e)))
}

fn scalar_attr<T: H5Type>(loc: &Location, name: &str, v: T) -> hdf5::Result<()> {
    loc.new_attr::<T>().shape(()).create(name)?.write_scalar(&v)
}

fn array_attr<T: H5Type>(loc: &Location, name: &str, v: &[T]) -> hdf5::Result<()> {
    loc.new_attr::<T>()
        .shape(v.len())
        .create(name)?
        .write_raw(v)
}

/// An array under construction.
struct OpenArray {
    ds: Dataset,
    info: ArrayInfo,
    /// Rows written so far (they arrive in order).
    next_row: u64,
}

/// Builds an AnnData tree in an HDF5 file (see the module documentation for the layout).
pub struct H5adTreeWriter {
    file: File,
    /// The output's final name, for messages.
    target: PathBuf,
    /// Groups whose encoding is a sparse matrix (their 1-D members are chunked).
    sparse_groups: std::collections::HashSet<String>,
    open: HashMap<String, OpenArray>,
}

impl H5adTreeWriter {
    /// Writes into `file` (already created, empty); `target` names the output in messages.
    pub fn new(file: File, target: &Path) -> Self {
        H5adTreeWriter {
            file,
            target: target.to_path_buf(),
            sparse_groups: Default::default(),
            open: HashMap::new(),
        }
    }

    /// Creates (truncating) `path` and writes into it.
    pub fn create(path: &Path) -> Result<Self> {
        let file = super::file::create_write(path)
            .map_err(|e| Error::output(path, format!("cannot create the file: {}", short(&e))))?;
        Ok(Self::new(file, path))
    }

    /// The file being written.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Fails when an array did not receive all its rows.
    pub fn check_complete(&self) -> Result<()> {
        let mut open: Vec<_> = self.open.iter().collect();
        open.sort_by(|a, b| a.0.cmp(b.0));
        if let Some((path, a)) = open.first() {
            return Err(self.fail(
                path,
                format!("{} of {} rows written", a.next_row, a.info.n_rows()),
            ));
        }
        Ok(())
    }

    /// Closes the file; every array must be complete.
    pub fn finish(self) -> Result<()> {
        self.check_complete()?;
        let target = self.target.clone();
        self.file
            .close()
            .map_err(|e| Error::output(&target, format!("cannot close: {}", short(&e))))
    }

    fn fail(&self, element: &str, problem: impl Into<String>) -> Error {
        Error::output(&self.target, format!("{element}: {}", problem.into()))
    }

    fn group(&self, path: &str) -> Result<Group> {
        if path.is_empty() {
            let root: &Group = &self.file;
            return Ok(root.clone());
        }
        self.file
            .group(path)
            .map_err(|e| self.fail(path, format!("cannot open the group: {}", short(&e))))
    }

    /// The parent group of `path` and the member name.
    fn parent(&self, path: &str) -> Result<(Group, String, String)> {
        let path = path.trim_matches('/');
        let (parent, name) = match path.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", path),
        };
        if name.is_empty() {
            return Err(self.fail(path, "not a valid element name"));
        }
        Ok((self.group(parent)?, parent.to_string(), name.to_string()))
    }

    fn set_attrs(&self, loc: &Location, path: &str, attrs: &Attrs) -> Result<()> {
        for (k, v) in attrs {
            write_attr(loc, k, v).map_err(|p| self.fail(path, p))?;
        }
        Ok(())
    }
}

fn h5_elem_type(elem: ElemType) -> hdf5::Result<Datatype> {
    match elem {
        ElemType::Num(d) => datatype(d),
        ElemType::Bool => Datatype::from_type::<bool>(),
        ElemType::String | ElemType::Bytes => Datatype::from_type::<VarLenUnicode>(),
    }
}

fn is_sparse_encoding(attrs: &Attrs) -> bool {
    matches!(
        attrs.get("encoding-type").and_then(Value::as_str),
        Some("csr_matrix") | Some("csc_matrix")
    ) || attrs.contains_key("h5sparse_format")
}

impl TreeWriter for H5adTreeWriter {
    fn create_group(&mut self, group: &str, attrs: &Attrs) -> Result<()> {
        let path = group.trim_matches('/');
        let g = if path.is_empty() {
            self.group("")?
        } else {
            let (parent, _, name) = self.parent(path)?;
            parent
                .create_group(&name)
                .map_err(|e| self.fail(path, format!("cannot create: {}", short(&e))))?
        };
        self.set_attrs(&g, path, attrs)?;
        if is_sparse_encoding(attrs) {
            self.sparse_groups.insert(path.to_string());
        }
        Ok(())
    }

    fn create_array(&mut self, array: &str, info: &ArrayInfo) -> Result<()> {
        let path = array.trim_matches('/').to_string();
        let (parent, parent_path, name) = self.parent(&path)?;
        let dt = h5_elem_type(info.elem).map_err(|e| self.fail(&path, short(&e)))?;
        let chunked = info.shape.len() == 1
            && self.sparse_groups.contains(&parent_path)
            && matches!(name.as_str(), "data" | "indices" | "indptr");
        let builder = parent.new_dataset_builder().empty_as(&dt);
        let dims: Vec<usize> = info.shape.iter().map(|&d| d as usize).collect();
        let created = if info.shape.is_empty() {
            builder.shape(()).create(name.as_str())
        } else if chunked {
            let size = match info.elem {
                ElemType::Num(d) => d.size(),
                ElemType::Bool => 1,
                ElemType::String | ElemType::Bytes => std::mem::size_of::<usize>() * 2,
            };
            let chunk = guess_chunk(&info.shape, size)[0] as usize;
            builder
                .shape(hdf5::SimpleExtents::resizable(dims))
                .chunk(chunk.max(1))
                .create(name.as_str())
        } else {
            builder
                .shape(hdf5::SimpleExtents::fixed(dims))
                .no_chunk()
                .create(name.as_str())
        };
        let ds = created.map_err(|e| self.fail(&path, format!("cannot create: {}", short(&e))))?;
        self.set_attrs(&ds, &path, &info.attrs)?;
        if info.n_rows() > 0 && info.row_len() > 0 {
            self.open.insert(
                path,
                OpenArray {
                    ds,
                    info: info.clone(),
                    next_row: 0,
                },
            );
        }
        Ok(())
    }

    fn write_rows(&mut self, array: &str, first_row: u64, data: &ArrayData) -> Result<()> {
        let path = array.trim_matches('/');
        let Some(a) = self.open.get(path) else {
            return Err(self.fail(path, "rows written to an array that is not open"));
        };
        let row_len = a.info.row_len().max(1);
        let len = match data {
            ArrayData::Num(v) => v.len(),
            ArrayData::Bool(v) => v.len(),
            ArrayData::String(v) => v.len(),
        } as u64;
        if !len.is_multiple_of(row_len) {
            return Err(self.fail(
                path,
                format!("{len} values are not whole rows of {row_len}"),
            ));
        }
        let rows = first_row..first_row + len / row_len;
        if first_row != a.next_row || rows.end > a.info.n_rows() {
            return Err(self.fail(
                path,
                format!(
                    "rows {}..{} written after {} of {}",
                    rows.start,
                    rows.end,
                    a.next_row,
                    a.info.n_rows()
                ),
            ));
        }
        let shape = a.info.shape.clone();
        let r = match (a.info.elem, data) {
            (ElemType::Num(d), ArrayData::Num(v)) if v.dtype() == d => {
                let mt = datatype(d).map_err(|e| self.fail(path, short(&e)))?;
                let bytes = v.as_bytes();
                // H5Dwrite only reads the buffer: the *mut is never written through.
                let buf = (bytes.as_ptr() as *mut c_void, bytes.len());
                transfer(&a.ds, &shape, &rows, mt.id(), buf, true)
            }
            (ElemType::Bool, ArrayData::Bool(v)) => {
                let mt = Datatype::from_type::<bool>().map_err(|e| self.fail(path, short(&e)))?;
                let bytes: Vec<u8> = v.iter().map(|&b| b as u8).collect();
                let buf = (bytes.as_ptr() as *mut c_void, bytes.len());
                transfer(&a.ds, &shape, &rows, mt.id(), buf, true)
            }
            (ElemType::String | ElemType::Bytes, ArrayData::String(v)) => {
                let owned: Vec<CString> = v
                    .iter()
                    .map(|s| CString::new(s.as_str()))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| self.fail(path, "a string with a NUL character"))?;
                let ptrs: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
                let mt = Datatype::from_type::<VarLenUnicode>()
                    .map_err(|e| self.fail(path, short(&e)))?;
                // `ptrs` point into `owned`, alive until the write has returned.
                let buf = (
                    ptrs.as_ptr() as *mut c_void,
                    std::mem::size_of_val(&ptrs[..]),
                );
                transfer(&a.ds, &shape, &rows, mt.id(), buf, true)
            }
            _ => {
                return Err(self.fail(
                    path,
                    format!("values of the wrong type for an array of {:?}", a.info.elem),
                ))
            }
        };
        r.map_err(|e| {
            self.fail(
                path,
                format!(
                    "cannot write rows {}..{}: {}",
                    rows.start,
                    rows.end,
                    short(&e)
                ),
            )
        })?;
        let done = {
            let a = self.open.get_mut(path).expect("checked above");
            a.next_row = rows.end;
            a.next_row == a.info.n_rows()
        };
        if done {
            self.open.remove(path);
        }
        Ok(())
    }

    fn create_null(&mut self, path: &str, attrs: &Attrs) -> Result<()> {
        let path = path.trim_matches('/');
        if path == "raw" {
            // zarr's way of saying "no raw"; anndata writes nothing in .h5ad.
            return Ok(());
        }
        let (parent, _, name) = self.parent(path)?;
        write_null(&parent, &name)
            .map_err(|e| self.fail(path, format!("cannot create: {}", short(&e))))?;
        let ds = parent
            .dataset(&name)
            .map_err(|e| self.fail(path, short(&e)))?;
        let extra: Attrs = attrs
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "encoding-type" | "encoding-version"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.set_attrs(&ds, path, &extra)
    }
}
