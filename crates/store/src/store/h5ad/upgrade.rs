//! anndata 0.7's un-encoded elements, upgraded in an `.h5ad` output as anndata 0.13.4's
//! read + write leaves them (the rules: [`crate::store::upgrade`]).
//!
//! * [`upgrade_uns`]: `.h5ad` → `.h5ad`. `uns` is copied raw (`H5Ocopy`); then, in the
//!   output, every dict-like group of `uns` without `encoding-type` gets `dict` 0.1.0, every
//!   numeric/boolean dataset `numeric-scalar` (0-d) or `array`, every variable-length UTF-8
//!   one `string` / `string-array`. String datasets anndata reads otherwise than it writes
//!   them back are rewritten as variable-length UTF-8: fixed-length strings (read as numpy
//!   `<U`, a one-element 1-d one as a `str` scalar) and variable-length ASCII ones (read as
//!   `bytes`). Record arrays, references and anything else are left as they are.
//!   obs/var (0.7 dataframes with `__categories`) stay as stored: anndata reads them the
//!   same as its rewrite, and references into them must keep their targets.
//! * [`upgrade_frames`]: `.h5ad` → `.h5ad`, obs/var/raw.var: only what anndata reads as
//!   `bytes` (un-encoded variable-length ASCII columns and 0.7 categories) is rewritten as
//!   UTF-8.
//! * [`upgrade_info`]: the `.h5ad` tree reader's view (`.h5ad` → `.zarr`): the same rules
//!   on the attributes it presents, plus 0.7 dataframes (0.1.0 → 0.2.0, columns encoded).

use std::path::Path;

use hdf5::types::TypeDescriptor;
use hdf5::{Dataset, File, Group, LocationType};
use hdf5_sys::h5p::H5P_DEFAULT;

use super::encoding::{node, Node};
use super::file::{copy_attrs, has_attr, set_encoding, short, str_attr};
use super::tree::H5adTreeWriter;
use super::H5adInput;
use crate::error::{Error, Result};
use crate::store::tree::{
    join, rows_per_block, ArrayInfo, Attrs, ElemType, TreeReader, TreeWriter,
};
use crate::store::upgrade;

/// What anndata's round trip makes of a stored dataset without `encoding-type`.
enum Stored {
    /// Numbers or booleans (also complex, float16): only the encoding is missing.
    Numeric,
    /// Variable-length UTF-8 strings: only the encoding is missing.
    Utf8,
    /// Fixed-length strings: read as numpy `<U` (a 1-element 1-d one as a `str`), written
    /// back as variable-length UTF-8.
    Fixed,
    /// Variable-length ASCII: read as `bytes`, written back as UTF-8 `str`.
    VlenAscii,
    /// A record array with fixed-length string fields (how anndata 0.7 stored e.g.
    /// `rank_genes_groups/names`): read with numpy `<U` fields, written back as `rec-array`
    /// with variable-length UTF-8 fields.
    Records,
    /// A record array of numbers and booleans: only the encoding (`rec-array`) is missing.
    NumericRecords,
    /// Anything else (references, enums, other records...): left as stored.
    Other,
}

fn stored(desc: &TypeDescriptor) -> Stored {
    match desc {
        TypeDescriptor::Integer(_)
        | TypeDescriptor::Unsigned(_)
        | TypeDescriptor::Float(_)
        | TypeDescriptor::Boolean => Stored::Numeric,
        // h5py's complex numbers: a compound of two floats `r`, `i`.
        TypeDescriptor::Compound(c)
            if c.fields.len() == 2
                && c.fields[0].name == "r"
                && c.fields[1].name == "i"
                && c.fields
                    .iter()
                    .all(|f| matches!(f.ty, TypeDescriptor::Float(_))) =>
        {
            Stored::Numeric
        }
        TypeDescriptor::Compound(c)
            if c.fields.iter().any(|f| {
                matches!(
                    f.ty,
                    TypeDescriptor::FixedAscii(_) | TypeDescriptor::FixedUnicode(_)
                )
            }) && c.fields.iter().all(|f| {
                matches!(
                    f.ty,
                    TypeDescriptor::FixedAscii(_)
                        | TypeDescriptor::FixedUnicode(_)
                        | TypeDescriptor::Integer(_)
                        | TypeDescriptor::Unsigned(_)
                        | TypeDescriptor::Float(_)
                        | TypeDescriptor::Boolean
                )
            }) =>
        {
            Stored::Records
        }
        TypeDescriptor::Compound(c)
            if c.fields.iter().all(|f| {
                matches!(
                    f.ty,
                    TypeDescriptor::Integer(_)
                        | TypeDescriptor::Unsigned(_)
                        | TypeDescriptor::Float(_)
                        | TypeDescriptor::Boolean
                )
            }) =>
        {
            Stored::NumericRecords
        }
        TypeDescriptor::VarLenUnicode => Stored::Utf8,
        TypeDescriptor::FixedAscii(_) | TypeDescriptor::FixedUnicode(_) => Stored::Fixed,
        TypeDescriptor::VarLenAscii => Stored::VlenAscii,
        _ => Stored::Other,
    }
}

/// Whether an HDF5 type is an integer or floating-point number of any width.
fn is_number_class(dtype: &hdf5::Datatype) -> bool {
    // SAFETY: `dtype` is an open datatype for the duration of the call.
    let class = hdf5::sync::sync(|| unsafe { hdf5_sys::h5t::H5Tget_class(dtype.id()) });
    matches!(
        class,
        hdf5_sys::h5t::H5T_class_t::H5T_INTEGER | hdf5_sys::h5t::H5T_class_t::H5T_FLOAT
    )
}

/// Whether a group is a plain mapping (anndata's `dict`, or no encoding at all).
fn dict_like(attrs_kind: Option<&str>) -> bool {
    matches!(attrs_kind, None | Some("dict"))
}

/// Upgrades the output's `uns` (copied raw from `input`) in place; see the module
/// documentation. `target` names the output in messages; strings are rewritten in blocks of
/// at most `budget` bytes.
pub(crate) fn upgrade_uns(input: &H5adInput, out: &File, target: &Path, budget: u64) -> Result<()> {
    let Some(Node::Group(uns)) = node(out, "uns") else {
        return Ok(());
    };
    if !dict_like(str_attr(&uns, "encoding-type").as_deref()) {
        return Ok(());
    }
    let mut writer = H5adTreeWriter::new(out.clone(), target);
    walk(input, &uns, "uns", target, &mut writer, budget)?;
    writer.check_complete()
}

/// The dataframes anndata's `read_h5ad` reads (and `write_h5ad` writes back).
const FRAMES: &[&str] = &["obs", "var", "raw/var"];

/// Upgrades the output's obs, var and raw.var (copied raw from `input`) in place: every
/// un-encoded variable-length ASCII column (not the index) and every such categories dataset
/// of an anndata 0.7 categorical (`<frame>/__categories/<col>`) is rewritten as variable-length
/// UTF-8. anndata reads them as `bytes` and writes them back as `str`; the rest of a 0.7
/// frame stays as stored (anndata reads it as its rewrite). `target` names the output in
/// messages; strings move in blocks of at most `budget` bytes.
pub(crate) fn upgrade_frames(
    input: &H5adInput,
    out: &File,
    target: &Path,
    budget: u64,
) -> Result<()> {
    let mut writer = H5adTreeWriter::new(out.clone(), target);
    for frame in FRAMES {
        let Some(Node::Group(g)) = node(out, frame) else {
            continue;
        };
        if str_attr(&g, "encoding-type").as_deref() != Some("dataframe") {
            continue;
        }
        let index = str_attr(&g, "_index");
        rewrite_ascii_members(
            input,
            &g,
            frame,
            index.as_deref(),
            target,
            &mut writer,
            budget,
        )?;
        if let Some(Node::Group(cats)) = node(out, &join(frame, "__categories")) {
            let path = join(frame, "__categories");
            rewrite_ascii_members(input, &cats, &path, None, target, &mut writer, budget)?;
        }
    }
    writer.check_complete()
}

/// Rewrites the un-encoded 1-d variable-length ASCII datasets of `group` (at `path`), except
/// `skip`, as variable-length UTF-8 (see [`upgrade_frames`]).
fn rewrite_ascii_members(
    input: &H5adInput,
    group: &Group,
    path: &str,
    skip: Option<&str>,
    target: &Path,
    writer: &mut H5adTreeWriter,
    budget: u64,
) -> Result<()> {
    let fail = |elem: &str, what: &str, e: hdf5::Error| output_error(target, elem, what, &e);
    let names = group
        .member_names()
        .map_err(|e| fail(path, "cannot list members", e))?;
    for name in names {
        if Some(name.as_str()) == skip
            || group.loc_type_by_name(&name).ok() != Some(LocationType::Dataset)
        {
            continue;
        }
        let child = join(path, &name);
        let ds = group
            .dataset(&name)
            .map_err(|e| fail(&child, "cannot open", e))?;
        if has_attr(&ds, "encoding-type") || !is_vlen_ascii(&ds) || ds.ndim() != 1 {
            continue;
        }
        let info = ArrayInfo {
            elem: ElemType::String,
            shape: vec![ds.shape()[0] as u64],
            attrs: Attrs::new(),
        };
        rewrite_strings(input, group, &name, &child, &info, writer, budget)
            .map_err(|e| e.at(target, &child))?;
    }
    Ok(())
}

fn walk(
    input: &H5adInput,
    group: &Group,
    path: &str,
    target: &Path,
    writer: &mut H5adTreeWriter,
    budget: u64,
) -> Result<()> {
    let fail = |elem: &str, what: &str, e: hdf5::Error| output_error(target, elem, what, &e);
    if !has_attr(group, "encoding-type") {
        set_encoding(group, "dict", "0.1.0").map_err(|e| fail(path, "cannot upgrade", e))?;
    }
    let links = group
        .links(hdf5::IndexType::Name, hdf5::IterationOrder::Increasing)
        .map_err(|e| fail(path, "cannot list members", e))?;
    for (name, link) in links {
        let child = join(path, &name);
        // Soft and external links stay links (their targets are upgraded where they live).
        if link.link_type != hdf5::LinkType::Hard {
            continue;
        }
        match group.loc_type_by_name(&name) {
            Ok(LocationType::Group) => {
                let g = group
                    .group(&name)
                    .map_err(|e| fail(&child, "cannot open", e))?;
                if dict_like(str_attr(&g, "encoding-type").as_deref()) {
                    walk(input, &g, &child, target, writer, budget)?;
                }
            }
            Ok(LocationType::Dataset) => {
                let ds = group
                    .dataset(&name)
                    .map_err(|e| fail(&child, "cannot open", e))?;
                upgrade_dataset(input, group, &ds, &name, &child, writer, budget)
                    .map_err(|e| e.at(target, &child))?;
            }
            _ => {}
        }
    }
    Ok(())
}

enum Upgrade {
    Hdf5(&'static str, hdf5::Error),
    Other(Error),
}

impl Upgrade {
    /// The error of a failed upgrade of the output's `elem` (`target` names the output).
    fn at(self, target: &Path, elem: &str) -> Error {
        match self {
            Upgrade::Hdf5(what, e) => output_error(target, elem, what, &e),
            Upgrade::Other(e) => e,
        }
    }
}

/// An HDF5 failure while upgrading the output's `elem`.
fn output_error(target: &Path, elem: &str, what: &str, e: &hdf5::Error) -> Error {
    Error::output(target, format!("{elem}: {what}: {}", short(e)))
}

impl From<Error> for Upgrade {
    fn from(e: Error) -> Self {
        Upgrade::Other(e)
    }
}

fn upgrade_dataset(
    input: &H5adInput,
    group: &Group,
    ds: &Dataset,
    name: &str,
    path: &str,
    writer: &mut H5adTreeWriter,
    budget: u64,
) -> std::result::Result<(), Upgrade> {
    let h = |what: &'static str| move |e: hdf5::Error| Upgrade::Hdf5(what, e);
    if has_attr(ds, "encoding-type") {
        return Ok(());
    }
    let space = ds.space().map_err(h("cannot read the shape"))?;
    if space.is_null() {
        return Ok(());
    }
    let shape: Vec<u64> = space.shape().iter().map(|&d| d as u64).collect();
    let dtype = ds.dtype().map_err(h("cannot read the data type"))?;
    let how = match dtype.to_descriptor() {
        Ok(desc) => stored(&desc),
        // e.g. float16, which the hdf5 crate has no descriptor for
        Err(_) if is_number_class(&dtype) => Stored::Numeric,
        Err(_) => return Ok(()),
    };
    let scalar = shape.is_empty();
    let kind = match how {
        Stored::Numeric if scalar => "numeric-scalar",
        Stored::Numeric => "array",
        Stored::Utf8 if scalar => "string",
        Stored::Utf8 => "string-array",
        // A 0-d fixed-length string anndata cannot read, and a 0-d ASCII one (read as
        // `bytes`) it cannot write: nothing to match.
        Stored::Fixed | Stored::VlenAscii if scalar => return Ok(()),
        Stored::Fixed | Stored::VlenAscii => {
            // anndata's legacy read: a 1-element 1-d fixed-length array is its string.
            let one = matches!(how, Stored::Fixed) && shape == [1];
            let mut info = ArrayInfo {
                elem: ElemType::String,
                shape: if one { Vec::new() } else { shape.clone() },
                attrs: Attrs::new(),
            };
            upgrade::upgrade_array(&mut info, false);
            return rewrite_strings(input, group, name, path, &info, writer, budget);
        }
        Stored::Records if shape.len() == 1 => {
            return rewrite_records(input, group, name, path, budget);
        }
        Stored::NumericRecords if shape.len() == 1 => "rec-array",
        Stored::Records | Stored::NumericRecords | Stored::Other => return Ok(()),
    };
    set_encoding(ds, kind, "0.2.0").map_err(h("cannot upgrade"))
}

/// Replaces the output's dataset `group/name` (at `path`, copied from the same path of
/// `input`) by the variable-length UTF-8 strings `info` describes, read from the input; its
/// other (non-reference) attributes are kept (references are re-created on commit).
fn rewrite_strings(
    input: &H5adInput,
    group: &Group,
    name: &str,
    path: &str,
    info: &ArrayInfo,
    writer: &mut H5adTreeWriter,
    budget: u64,
) -> std::result::Result<(), Upgrade> {
    let h = |what: &'static str| move |e: hdf5::Error| Upgrade::Hdf5(what, e);
    let Some(Node::Dataset(src)) = node(input.file(), path) else {
        return Ok(());
    };
    group.unlink(name).map_err(h("cannot replace"))?;
    writer.create_array(path, info)?;
    let n_rows = info.n_rows();
    let step = rows_per_block(info, budget);
    // A 0-d target reads the one element of the stored 1-element array as row 0..1.
    let mut row = 0;
    while row < n_rows {
        let end = (row + step).min(n_rows);
        let data = input.read_rows(path, row..end)?;
        writer.write_rows(path, row, &data)?;
        row = end;
    }
    let new = group.dataset(name).map_err(h("cannot reopen"))?;
    copy_attrs(&src, &new).map_err(h("cannot copy the attributes"))?;
    Ok(())
}

/// The `.h5ad` tree reader's attributes of the array at `path` (dataset `ds`), upgraded as
/// anndata's round trip writes them: 0-d anywhere; n-d in a dict of `uns` and in a dataframe
/// (except anndata 0.7's categorical codes, which the tree rewrites itself). A 1-element
/// fixed-length string array in `uns` becomes the string scalar anndata reads it as.
pub(super) fn upgrade_info(input: &H5adInput, path: &str, ds: &Dataset, info: &mut ArrayInfo) {
    let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
    let parent_kind = match node(input.file(), parent) {
        Some(Node::Group(g)) => Some(str_attr(&g, "encoding-type")),
        _ => None,
    };
    let in_uns_dict = upgrade::in_uns(parent)
        && parent_kind
            .as_ref()
            .is_some_and(|k| dict_like(k.as_deref()));
    let in_frame = parent_kind
        .as_ref()
        .is_some_and(|k| k.as_deref() == Some("dataframe"))
        && !info.attrs.contains_key("categories");
    if in_uns_dict
        && info.shape == [1]
        && !info.attrs.contains_key("encoding-type")
        && ds
            .dtype()
            .and_then(|t| t.to_descriptor())
            .is_ok_and(|d| matches!(stored(&d), Stored::Fixed))
    {
        info.shape = Vec::new();
    }
    if in_frame && !info.attrs.contains_key("encoding-type") && is_vlen_ascii(ds) {
        // anndata's legacy read gives `bytes` for such a column (not for the index, which
        // AnnData turns into `str`).
        let index = match node(input.file(), parent) {
            Some(Node::Group(g)) => str_attr(&g, "_index"),
            _ => None,
        };
        if index.as_deref() != path.rsplit_once('/').map(|(_, name)| name) {
            info.elem = ElemType::Bytes;
        }
    }
    upgrade::upgrade_array(info, !(in_uns_dict || in_frame));
}

/// Whether `ds` holds variable-length ASCII strings (which h5py reads as `bytes`).
fn is_vlen_ascii(ds: &Dataset) -> bool {
    ds.dtype()
        .and_then(|t| t.to_descriptor())
        .is_ok_and(|d| matches!(d, TypeDescriptor::VarLenAscii))
}

/// The `.h5ad` tree reader's attributes of the group at `path`, upgraded (see
/// [`upgrade::upgrade_group`]).
pub(super) fn upgrade_group_attrs(path: &str, attrs: &mut Attrs) {
    upgrade::upgrade_group(attrs, upgrade::in_uns(path));
}

/// One field of a record array being rewritten: where it sits in a row read with the stored
/// layout (`from`) and in a row written with variable-length strings (`to`).
struct Field {
    from: usize,
    to: usize,
    /// Bytes in the stored row: the fixed string's length, or the number's size.
    size: usize,
    string: bool,
}

/// Replaces the output's 1-d record array `group/name` (at `path`, copied from the same path
/// of `input`) by one whose fixed-length string fields are variable-length UTF-8 (numbers as
/// stored, native order), `encoding-type: rec-array` 0.2.0, as anndata 0.13 writes it back.
/// Rows move in blocks of at most `budget` bytes; the other (non-reference) attributes are
/// kept (references are re-created on commit).
fn rewrite_records(
    input: &H5adInput,
    group: &Group,
    name: &str,
    path: &str,
    budget: u64,
) -> std::result::Result<(), Upgrade> {
    use hdf5::types::VarLenUnicode;
    use hdf5_sys::h5t::{
        H5T_class_t, H5Tclose, H5Tcreate, H5Tget_class, H5Tget_member_name, H5Tget_member_type,
        H5Tget_nmembers, H5Tget_size, H5Tinsert,
    };
    let h = |what: &'static str| move |e: hdf5::Error| Upgrade::Hdf5(what, e);
    let bad = |what: &'static str| Upgrade::Hdf5(what, hdf5::Error::from(what));
    let Some(Node::Dataset(src)) = node(input.file(), path) else {
        return Ok(());
    };
    let n = src.shape().first().copied().unwrap_or(0) as u64;
    let vlen = hdf5::Datatype::from_type::<VarLenUnicode>().map_err(h("string type"))?;
    let ptr = std::mem::size_of::<*const std::ffi::c_char>();
    // SAFETY: every id obtained here is checked and closed exactly once (the two compound
    // types are returned to the caller, who closes them); member names HDF5 allocated are
    // copied, then freed once.
    let layout = hdf5::sync::sync(|| unsafe {
        let ftype = hdf5_sys::h5d::H5Dget_type(src.id());
        if ftype < 0 {
            return None;
        }
        let nm = H5Tget_nmembers(ftype).max(0) as u32;
        let mut members = Vec::new();
        let (mut from, mut to) = (0usize, 0usize);
        let mut ok = true;
        for i in 0..nm {
            let mtype = H5Tget_member_type(ftype, i);
            let mname = H5Tget_member_name(ftype, i);
            if mtype < 0 || mname.is_null() {
                ok = false;
                if mtype >= 0 {
                    H5Tclose(mtype);
                }
                break;
            }
            let string = H5Tget_class(mtype) == H5T_class_t::H5T_STRING;
            // numbers keep their stored type (byte order included), as numpy reads them
            let read_type = hdf5_sys::h5t::H5Tcopy(mtype);
            let size = H5Tget_size(read_type);
            let cname = std::ffi::CStr::from_ptr(mname).to_owned();
            hdf5_sys::h5::H5free_memory(mname.cast());
            H5Tclose(mtype);
            members.push((cname, read_type, size, string, from, to));
            from += size;
            to += if string { ptr } else { size };
        }
        H5Tclose(ftype);
        let rtype = if ok {
            H5Tcreate(H5T_class_t::H5T_COMPOUND, from.max(1))
        } else {
            -1
        };
        let wtype = if ok {
            H5Tcreate(H5T_class_t::H5T_COMPOUND, to.max(1))
        } else {
            -1
        };
        let mut fields = Vec::new();
        for (cname, read_type, size, string, f, t) in members {
            if rtype >= 0 && wtype >= 0 {
                ok &= H5Tinsert(rtype, cname.as_ptr(), f, read_type) >= 0;
                let w = if string { vlen.id() } else { read_type };
                ok &= H5Tinsert(wtype, cname.as_ptr(), t, w) >= 0;
            }
            H5Tclose(read_type);
            fields.push(Field {
                from: f,
                to: t,
                size,
                string,
            });
        }
        if !ok || rtype < 0 || wtype < 0 {
            for t in [rtype, wtype] {
                if t >= 0 {
                    H5Tclose(t);
                }
            }
            return None;
        }
        Some((rtype, wtype, from, to, fields))
    });
    let Some((rtype, wtype, rsize, wsize, fields)) = layout else {
        return Err(bad("cannot read the record type"));
    };
    let close = || {
        // SAFETY: both compound types were created above; each is closed once, whatever
        // happens (`close` runs once, below).
        hdf5::sync::sync(|| unsafe {
            H5Tclose(rtype);
            H5Tclose(wtype);
        })
    };
    let result = (|| {
        group.unlink(name).map_err(h("cannot replace"))?;
        let c = std::ffi::CString::new(name).map_err(|_| bad("NUL in the name"))?;
        // SAFETY: `group` and `wtype` are open, `c` outlives the call; the dataspace created
        // here is closed once; the dataset id is checked and closed once.
        let created = hdf5::sync::sync(|| unsafe {
            let dims = [n];
            let space = hdf5_sys::h5s::H5Screate_simple(1, dims.as_ptr(), std::ptr::null());
            let ds = hdf5_sys::h5d::H5Dcreate2(
                group.id(),
                c.as_ptr(),
                wtype,
                space,
                H5P_DEFAULT,
                H5P_DEFAULT,
                H5P_DEFAULT,
            );
            hdf5_sys::h5s::H5Sclose(space);
            if ds >= 0 {
                hdf5_sys::h5d::H5Dclose(ds);
            }
            ds >= 0
        });
        if !created {
            return Err(bad("cannot create the upgraded record array"));
        }
        let new = group.dataset(name).map_err(h("cannot reopen"))?;
        let step = (budget / (rsize + wsize * 4).max(1) as u64).max(1);
        let shape = [n];
        let mut row = 0u64;
        while row < n {
            let end = (row + step).min(n);
            let rows = (end - row) as usize;
            let mut rbuf = vec![0u8; rows * rsize];
            super::tree::transfer(
                &src,
                &shape,
                &(row..end),
                rtype,
                (rbuf.as_mut_ptr().cast(), rbuf.len()),
                false,
            )
            .map_err(h("cannot read rows"))?;
            let mut wbuf = vec![0u8; rows * wsize];
            let mut keep: Vec<std::ffi::CString> = Vec::new();
            for r in 0..rows {
                let (rrow, wrow) = (&rbuf[r * rsize..(r + 1) * rsize], r * wsize);
                for f in &fields {
                    let bytes = &rrow[f.from..f.from + f.size];
                    if f.string {
                        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                        let text = String::from_utf8_lossy(&bytes[..end]).into_owned();
                        let cs =
                            std::ffi::CString::new(text).map_err(|_| bad("NUL in a string"))?;
                        let p = cs.as_ptr() as usize;
                        wbuf[wrow + f.to..wrow + f.to + ptr].copy_from_slice(&p.to_ne_bytes());
                        keep.push(cs);
                    } else {
                        wbuf[wrow + f.to..wrow + f.to + f.size].copy_from_slice(bytes);
                    }
                }
            }
            // `wbuf`'s string pointers point into `keep`, alive until the write returned.
            super::tree::transfer(
                &new,
                &shape,
                &(row..end),
                wtype,
                (wbuf.as_mut_ptr().cast(), wbuf.len()),
                true,
            )
            .map_err(h("cannot write rows"))?;
            drop(keep);
            row = end;
        }
        set_encoding(&new, "rec-array", "0.2.0").map_err(h("cannot upgrade"))?;
        copy_attrs(&src, &new).map_err(h("cannot copy the attributes"))?;
        Ok(())
    })();
    close();
    result
}
