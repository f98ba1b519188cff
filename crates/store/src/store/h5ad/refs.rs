//! HDF5 references in an output copied from an .h5ad input.
//!
//! anndata 0.7 links each categorical column `obs/<col>` to its categories
//! `obs/__categories/<col>` with an object-reference attribute `categories`, and h5py users
//! keep object and region references anywhere (attributes and datasets of `uns`, ...). A
//! reference is a position in *its own* file: `H5Ocopy` into another file zeroes it (unless
//! `H5O_COPY_EXPAND_REFERENCE_FLAG`, which copies each target again as an unnamed duplicate
//! whenever it lies outside the copied element: obs -> var, uns -> obsm), and copying an
//! attribute's bytes keeps the input's addresses, which mean nothing (or something else) in
//! the output.
//!
//! So the output is copied without references (`copy_attrs` leaves reference attributes out,
//! `H5Ocopy` zeroes them), and [`relink`], once the output is complete, re-creates every one:
//! it walks the output, and for each attribute or dataset whose type is a reference (old
//! style `H5T_STD_REF_OBJ` / `H5T_STD_REF_DSETREG`, or new style `H5T_STD_REF`: object,
//! region or attribute) reads the input's value at the same path, resolves each reference to
//! its target's path (and region selection) in the input, and writes a reference to the object
//! at that path in the output, in the same style.
//!
//! What a reference points at in the output: **the object at the same path**. Every copied
//! element keeps its path, so a reference into obs, var, uns, obsm, ... points at the copy.
//! A reference into the normalized element (X or `layers/NAME`) points at the normalized
//! object of that path (e.g. `/X/data` now holds normalized values); a *region* reference
//! there keeps its selection only when the target dataset has the same shape and the element
//! the same encoding in the output (a CSC matrix becomes CSR: the same positions hold other
//! values), otherwise the run fails with a message saying so. A null reference stays null; a
//! new-style reference into another file is kept as it is. A reference to an object that has
//! no path in the input (unnamed), to a path the output does not have, or a reference nested
//! inside a compound, array or variable-length type, fails the run with one message naming
//! the element.

use std::collections::HashSet;
use std::ffi::{c_char, c_void, CString};
use std::path::Path;

use hdf5::{File, Group, Location, LocationType};
use hdf5_sys::h5a::{H5Acreate2, H5Aget_space, H5Aget_type, H5Aread, H5Awrite};
use hdf5_sys::h5d::{H5Dget_space, H5Dget_type, H5Dread, H5Dwrite};
use hdf5_sys::h5f::H5Fget_name;
use hdf5_sys::h5i::hid_t;
use hdf5_sys::h5l::{H5L_info2_t, H5L_type_t, H5Lget_info2};
use hdf5_sys::h5p::H5P_DEFAULT;
use hdf5_sys::h5r::{
    hobj_ref_t, H5R_ref_t, H5R_type_t, H5Rcopy, H5Rcreate, H5Rcreate_attr, H5Rcreate_object,
    H5Rcreate_region, H5Rdestroy, H5Rget_attr_name, H5Rget_file_name, H5Rget_name, H5Rget_obj_name,
    H5Rget_region, H5Rget_type, H5Ropen_region,
};
use hdf5_sys::h5s::{
    H5Sclose, H5Sget_simple_extent_dims, H5Sget_simple_extent_ndims, H5Sget_simple_extent_npoints,
    H5S_ALL,
};
use hdf5_sys::h5t::{H5T_class_t, H5Tclose, H5Tdetect_class, H5Tequal, H5Tget_class};

use super::encoding::{node, Node};
use super::file::{short, str_attr};
use crate::error::{Error, Result};

/// Old-style region reference (`hdset_reg_ref_t`): a global-heap id.
type RegionRef1 = [u8; 12];

/// The three stored forms of a reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// `H5T_STD_REF_OBJ` (h5py's `ref_dtype`).
    Object1,
    /// `H5T_STD_REF_DSETREG` (h5py's `regionref_dtype`).
    Region1,
    /// `H5T_STD_REF` (HDF5 1.12+): object, region or attribute.
    Any2,
}

/// How an HDF5 type holds references.
enum RefKind {
    None,
    Plain(Style),
    /// References inside a compound, array or variable-length type.
    Nested,
}

fn ref_kind(type_id: hid_t) -> RefKind {
    // SAFETY: `type_id` is an open datatype; the predefined types are library globals
    // initialized by the `h5t` accessors.
    let (class, has_ref, obj1, reg1, any2) = hdf5::sync::sync(|| unsafe {
        (
            H5Tget_class(type_id),
            H5Tdetect_class(type_id, H5T_class_t::H5T_REFERENCE),
            H5Tequal(type_id, *hdf5_sys::h5t::H5T_STD_REF_OBJ),
            H5Tequal(type_id, *hdf5_sys::h5t::H5T_STD_REF_DSETREG),
            H5Tequal(type_id, *hdf5_sys::h5t::H5T_STD_REF),
        )
    });
    if class != H5T_class_t::H5T_REFERENCE {
        return if has_ref > 0 {
            RefKind::Nested
        } else {
            RefKind::None
        };
    }
    if obj1 > 0 {
        RefKind::Plain(Style::Object1)
    } else if reg1 > 0 {
        RefKind::Plain(Style::Region1)
    } else if any2 > 0 {
        RefKind::Plain(Style::Any2)
    } else {
        RefKind::Nested
    }
}

/// Whether an attribute holds references (of any kind): `copy_attrs` leaves those to
/// [`relink`].
pub(crate) fn attr_has_refs(attr_id: hid_t) -> bool {
    // SAFETY: `attr_id` is an open attribute; the type id is closed before returning.
    let t = hdf5::sync::sync(|| unsafe { H5Aget_type(attr_id) });
    if t < 0 {
        return false;
    }
    let kind = ref_kind(t);
    // SAFETY: `t` was opened above.
    hdf5::sync::sync(|| unsafe { H5Tclose(t) });
    !matches!(kind, RefKind::None)
}

/// Re-creates in `output` every reference of `input` (see the module documentation).
///
/// `skip` are output paths (no leading `/`) that were not copied from the input and hold no
/// references: the normalized element and what was written into the output (`uns/log1p`,
/// `obs/KEY`); nothing under them is visited. `normalized` is the normalized element's path.
pub(crate) fn relink(
    input: &File,
    input_path: &Path,
    output: &File,
    output_path: &Path,
    normalized: &str,
    skip: &[String],
) -> Result<()> {
    let input_name = file_name(input.id());
    let ctx = Ctx {
        input,
        input_path,
        input_name,
        output,
        output_path,
        normalized: normalized.trim_matches('/').to_string(),
        skip: skip
            .iter()
            .map(|s| s.trim_matches('/').to_string())
            .collect(),
    };
    let mut seen = HashSet::new();
    let root: &Group = output;
    ctx.visit(root, "", &mut seen)
}

struct Ctx<'a> {
    input: &'a File,
    input_path: &'a Path,
    /// The input's file name as HDF5 knows it (new-style references name their file).
    input_name: Option<String>,
    output: &'a File,
    output_path: &'a Path,
    normalized: String,
    skip: Vec<String>,
}

fn within(path: &str, prefix: &str) -> bool {
    path == prefix
        || (path.len() > prefix.len()
            && path.starts_with(prefix)
            && path.as_bytes()[prefix.len()] == b'/')
}

fn display(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// Whether `group/name` is a hard link (soft and external links are copied as links; their
/// targets are visited where they live).
fn is_hard_link(group: &Group, name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: `info` is a plain C struct HDF5 fills; `c` outlives the call.
    hdf5::sync::sync(|| unsafe {
        let mut info: H5L_info2_t = std::mem::zeroed();
        H5Lget_info2(group.id(), c.as_ptr(), &mut info, H5P_DEFAULT) >= 0
            && info.type_ == H5L_type_t::H5L_TYPE_HARD
    })
}

/// `H5Fget_name` of an open object's file.
fn file_name(id: hid_t) -> Option<String> {
    read_name(|buf, size| {
        // SAFETY: `buf` has room for `size` bytes (or is null with size 0).
        unsafe { H5Fget_name(id, buf, size) }
    })
}

/// Calls a `(buf, size) -> length` HDF5 name getter twice (size, then contents).
fn read_name(get: impl Fn(*mut c_char, usize) -> isize) -> Option<String> {
    let len = hdf5::sync::sync(|| get(std::ptr::null_mut(), 0));
    if len < 0 {
        return None;
    }
    let mut buf = vec![0u8; len as usize + 1];
    let got = hdf5::sync::sync(|| get(buf.as_mut_ptr().cast(), buf.len()));
    if got < 0 {
        return None;
    }
    buf.truncate(got as usize);
    String::from_utf8(buf).ok()
}

/// Where references are stored: an attribute or a dataset (whole-object transfers).
#[derive(Clone, Copy)]
enum Holder {
    Attr(hid_t),
    Dataset(hid_t),
}

impl Holder {
    fn npoints(self) -> i64 {
        // SAFETY: the id is an open attribute or dataset; the space is closed here.
        hdf5::sync::sync(|| unsafe {
            let space = match self {
                Holder::Attr(id) => H5Aget_space(id),
                Holder::Dataset(id) => H5Dget_space(id),
            };
            if space < 0 {
                return -1;
            }
            let n = H5Sget_simple_extent_npoints(space) as i64;
            H5Sclose(space);
            n
        })
    }

    fn file_type(self) -> hid_t {
        // SAFETY: the id is an open attribute or dataset; the caller closes the type.
        hdf5::sync::sync(|| unsafe {
            match self {
                Holder::Attr(id) => H5Aget_type(id),
                Holder::Dataset(id) => H5Dget_type(id),
            }
        })
    }

    /// Reads all elements as `mem_type` into `buf` (which has room for them).
    fn read(self, mem_type: hid_t, buf: *mut c_void) -> bool {
        // SAFETY: `buf` holds npoints elements of `mem_type` (checked by the callers).
        hdf5::sync::sync(|| unsafe {
            match self {
                Holder::Attr(id) => H5Aread(id, mem_type, buf),
                Holder::Dataset(id) => H5Dread(id, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf),
            }
        }) >= 0
    }

    fn write(self, mem_type: hid_t, buf: *const c_void) -> bool {
        // SAFETY: `buf` holds npoints elements of `mem_type` (checked by the callers).
        hdf5::sync::sync(|| unsafe {
            match self {
                Holder::Attr(id) => H5Awrite(id, mem_type, buf),
                Holder::Dataset(id) => H5Dwrite(id, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf),
            }
        }) >= 0
    }
}

/// Dimensions of a dataspace.
fn dims_of(space: hid_t) -> Option<Vec<u64>> {
    // SAFETY: `space` is an open dataspace; `dims` has `n` slots.
    hdf5::sync::sync(|| unsafe {
        let n = H5Sget_simple_extent_ndims(space);
        if n < 0 {
            return None;
        }
        let mut dims = vec![0u64; n as usize];
        if n > 0 && H5Sget_simple_extent_dims(space, dims.as_mut_ptr(), std::ptr::null_mut()) < 0 {
            return None;
        }
        Some(dims)
    })
}

impl Ctx<'_> {
    fn input_err(&self, element: &str, problem: impl Into<String>) -> Error {
        Error::input(self.input_path, display(element), problem)
    }

    fn output_err(&self, element: &str, problem: impl Into<String>) -> Error {
        Error::output(
            self.output_path,
            format!("{}: {}", display(element), problem.into()),
        )
    }

    fn skipped(&self, path: &str) -> bool {
        !path.is_empty()
            && (within(path, &self.normalized) || self.skip.iter().any(|s| within(path, s)))
    }

    fn visit(&self, group: &Group, path: &str, seen: &mut HashSet<String>) -> Result<()> {
        self.relink_object(group, path)?;
        let names = group
            .member_names()
            .map_err(|e| self.output_err(path, format!("cannot list members: {}", short(&e))))?;
        for name in names {
            let child = crate::store::tree::join(path, &name);
            if self.skipped(&child) || !is_hard_link(group, &name) {
                continue;
            }
            let Ok(info) = group.loc_info_by_name(&name) else {
                continue;
            };
            // A hard-linked object is visited once.
            if !seen.insert(format!("{:?}", info.token)) {
                continue;
            }
            match info.loc_type {
                LocationType::Group => {
                    let g = group.group(&name).map_err(|e| {
                        self.output_err(&child, format!("cannot open: {}", short(&e)))
                    })?;
                    self.visit(&g, &child, seen)?;
                }
                LocationType::Dataset => {
                    let ds = group.dataset(&name).map_err(|e| {
                        self.output_err(&child, format!("cannot open: {}", short(&e)))
                    })?;
                    self.relink_object(&ds, &child)?;
                    self.relink_dataset(&ds, &child)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The input object at `path` (`""`: the root).
    fn input_object(&self, path: &str) -> Option<Location> {
        if path.is_empty() {
            let root: &Group = self.input;
            return Some((**root).clone());
        }
        match node(self.input, path)? {
            Node::Group(g) => {
                let l: &Location = &g;
                Some(l.clone())
            }
            Node::Dataset(d) => {
                let l: &Location = &d;
                Some(l.clone())
            }
        }
    }

    /// The reference attributes of the input's object at `path`, re-created on `out`.
    fn relink_object(&self, out: &Location, path: &str) -> Result<()> {
        let Some(src) = self.input_object(path) else {
            return Ok(());
        };
        let names = src
            .attr_names()
            .map_err(|e| self.input_err(path, format!("cannot list attributes: {}", short(&e))))?;
        for name in names {
            let element = format!("{} (attribute {name})", display(path));
            let attr = src
                .attr(&name)
                .map_err(|e| self.input_err(&element, format!("cannot open: {}", short(&e))))?;
            let ftype = Holder::Attr(attr.id()).file_type();
            if ftype < 0 {
                return Err(self.input_err(&element, "cannot read the attribute's type"));
            }
            let kind = ref_kind(ftype);
            let result = match kind {
                RefKind::None => Ok(()),
                RefKind::Nested => Err(self.input_err(
                    &element,
                    "holds HDF5 references inside a compound, array or variable-length type, \
                     which atlasnorm cannot carry into the output",
                )),
                RefKind::Plain(style) => {
                    self.relink_attr(&attr, ftype, out, &name, &element, style)
                }
            };
            // SAFETY: `ftype` was opened above.
            hdf5::sync::sync(|| unsafe { H5Tclose(ftype) });
            result?;
        }
        Ok(())
    }

    fn relink_attr(
        &self,
        src: &hdf5::Attribute,
        ftype: hid_t,
        out: &Location,
        name: &str,
        element: &str,
        style: Style,
    ) -> Result<()> {
        if super::file::has_attr(out, name) {
            out.delete_attr(name)
                .map_err(|e| self.output_err(element, format!("cannot replace: {}", short(&e))))?;
        }
        let c = CString::new(name).map_err(|_| self.input_err(element, "NUL in the name"))?;
        // SAFETY: `src` is open; the space is closed after H5Acreate2 copied it.
        let new = hdf5::sync::sync(|| unsafe {
            let space = H5Aget_space(src.id());
            if space < 0 {
                return -1;
            }
            let a = H5Acreate2(out.id(), c.as_ptr(), ftype, space, H5P_DEFAULT, H5P_DEFAULT);
            H5Sclose(space);
            a
        });
        if new < 0 {
            return Err(self.output_err(element, "cannot create the attribute"));
        }
        let r = self.transfer(Holder::Attr(src.id()), Holder::Attr(new), element, style);
        // SAFETY: `new` was created above.
        hdf5::sync::sync(|| unsafe { hdf5_sys::h5a::H5Aclose(new) });
        r
    }

    /// A reference dataset: the input's values at `path`, relinked, written over the copy.
    fn relink_dataset(&self, out: &hdf5::Dataset, path: &str) -> Result<()> {
        let ftype = Holder::Dataset(out.id()).file_type();
        if ftype < 0 {
            return Err(self.output_err(path, "cannot read the dataset's type"));
        }
        let kind = ref_kind(ftype);
        // SAFETY: `ftype` was opened above.
        hdf5::sync::sync(|| unsafe { H5Tclose(ftype) });
        let style = match kind {
            RefKind::None => return Ok(()),
            RefKind::Nested => {
                return Err(self.input_err(
                    path,
                    "holds HDF5 references inside a compound, array or variable-length type, \
                     which atlasnorm cannot carry into the output",
                ))
            }
            RefKind::Plain(s) => s,
        };
        let Some(Node::Dataset(src)) = node(self.input, path) else {
            return Err(self.input_err(path, "the dataset copied into the output is gone"));
        };
        self.transfer(
            Holder::Dataset(src.id()),
            Holder::Dataset(out.id()),
            path,
            style,
        )
    }

    /// Reads every reference of `src`, maps it and writes the result to `dst`.
    fn transfer(&self, src: Holder, dst: Holder, element: &str, style: Style) -> Result<()> {
        let n = src.npoints();
        if n < 0 {
            return Err(self.input_err(element, "cannot read the shape"));
        }
        if dst.npoints() != n {
            return Err(self.output_err(element, "the copy has another shape than the input"));
        }
        let n = n as usize;
        if n == 0 {
            return Ok(());
        }
        let cannot_read = || self.input_err(element, "cannot read the references");
        let cannot_write = || self.output_err(element, "cannot write the references");
        match style {
            Style::Object1 => {
                let mt = *hdf5_sys::h5t::H5T_STD_REF_OBJ;
                let mut refs: Vec<hobj_ref_t> = vec![0; n];
                if !src.read(mt, refs.as_mut_ptr().cast()) {
                    return Err(cannot_read());
                }
                let mut out: Vec<hobj_ref_t> = vec![0; n];
                for (r, o) in refs.iter().zip(out.iter_mut()) {
                    *o = self.map_object1(r, element)?;
                }
                if !dst.write(mt, out.as_ptr().cast()) {
                    return Err(cannot_write());
                }
            }
            Style::Region1 => {
                let mt = *hdf5_sys::h5t::H5T_STD_REF_DSETREG;
                let mut refs: Vec<RegionRef1> = vec![[0; 12]; n];
                if !src.read(mt, refs.as_mut_ptr().cast()) {
                    return Err(cannot_read());
                }
                let mut out: Vec<RegionRef1> = vec![[0; 12]; n];
                for (r, o) in refs.iter().zip(out.iter_mut()) {
                    *o = self.map_region1(r, element)?;
                }
                if !dst.write(mt, out.as_ptr().cast()) {
                    return Err(cannot_write());
                }
            }
            Style::Any2 => {
                let mt = *hdf5_sys::h5t::H5T_STD_REF;
                let mut refs = Refs2(vec![H5R_ref_t::default(); n]);
                if !src.read(mt, refs.0.as_mut_ptr().cast()) {
                    // Nothing was allocated by a failed read.
                    std::mem::forget(refs);
                    return Err(cannot_read());
                }
                let mut out = Refs2(vec![H5R_ref_t::default(); n]);
                for (r, o) in refs.0.iter().zip(out.0.iter_mut()) {
                    self.map_ref2(r, o, element)?;
                }
                if !dst.write(mt, out.0.as_ptr().cast()) {
                    return Err(cannot_write());
                }
            }
        }
        Ok(())
    }

    /// The output path for a reference's target `target` (absolute, as HDF5 names it), after
    /// checking the output has it.
    fn target_in_output(&self, target: &str, element: &str) -> Result<CString> {
        let rel = target.trim_start_matches('/');
        let exists = rel.is_empty() || node(self.output, rel).is_some();
        if !exists {
            return Err(self.input_err(
                element,
                format!("an HDF5 reference points at {target}, which the output does not have"),
            ));
        }
        CString::new(target).map_err(|_| self.input_err(element, "NUL in a reference's target"))
    }

    /// A region reference's target must keep its meaning: outside the normalized element it
    /// is an unchanged copy; inside, the dataset must keep its shape and the element its
    /// encoding.
    fn check_region(&self, target: &str, space: hid_t, element: &str) -> Result<()> {
        let rel = target.trim_start_matches('/');
        if !within(rel, &self.normalized) {
            return Ok(());
        }
        let refuse = || {
            self.input_err(
                element,
                format!(
                    "an HDF5 region reference selects part of {target}, inside the normalized \
                     matrix {}, whose layout changes in the output; the selection would mean \
                     other values",
                    self.normalized
                ),
            )
        };
        let encoding = |f: &File| match node(f, &self.normalized) {
            Some(Node::Group(g)) => str_attr(&g, "encoding-type"),
            Some(Node::Dataset(d)) => str_attr(&d, "encoding-type"),
            None => None,
        };
        let out_dims = match node(self.output, rel) {
            Some(Node::Dataset(d)) => {
                // SAFETY: `d` is an open dataset; the dataspace returned is closed just below.
                let s = hdf5::sync::sync(|| unsafe { H5Dget_space(d.id()) });
                let dims = if s < 0 { None } else { dims_of(s) };
                // SAFETY: `s` was opened above (when valid).
                if s >= 0 {
                    // SAFETY: `s` is the valid dataspace opened above, closed once.
                    hdf5::sync::sync(|| unsafe { H5Sclose(s) });
                }
                dims
            }
            _ => None,
        };
        if encoding(self.input) != encoding(self.output)
            || out_dims.is_none()
            || out_dims != dims_of(space)
        {
            return Err(refuse());
        }
        Ok(())
    }

    fn unnamed(&self, element: &str) -> Error {
        self.input_err(
            element,
            "an HDF5 reference points at an object that has no path in the file (unnamed, or \
             no longer linked), which atlasnorm cannot carry into the output",
        )
    }

    fn map_object1(&self, r: &hobj_ref_t, element: &str) -> Result<hobj_ref_t> {
        if *r == 0 || *r == u64::MAX {
            return Ok(*r);
        }
        let target = read_name(|buf, size| {
            // SAFETY: `r` is a reference read from the input; `buf` has `size` bytes.
            unsafe {
                H5Rget_name(
                    self.input.id(),
                    H5R_type_t::H5R_OBJECT1,
                    (r as *const hobj_ref_t).cast(),
                    buf,
                    size,
                )
            }
        })
        .filter(|n| !n.is_empty())
        .ok_or_else(|| self.unnamed(element))?;
        let c = self.target_in_output(&target, element)?;
        let mut new: hobj_ref_t = 0;
        // SAFETY: `new` has room for one object reference; `c` names an existing object.
        let status = hdf5::sync::sync(|| unsafe {
            H5Rcreate(
                (&mut new as *mut hobj_ref_t).cast(),
                self.output.id(),
                c.as_ptr(),
                H5R_type_t::H5R_OBJECT1,
                -1,
            )
        });
        if status < 0 {
            return Err(self.output_err(element, format!("cannot create a reference to {target}")));
        }
        Ok(new)
    }

    fn map_region1(&self, r: &RegionRef1, element: &str) -> Result<RegionRef1> {
        if r.iter().all(|&b| b == 0) {
            return Ok(*r);
        }
        let ptr: *const c_void = r.as_ptr().cast();
        let target = read_name(|buf, size| {
            // SAFETY: `r` is a region reference read from the input; `buf` has `size` bytes.
            unsafe {
                H5Rget_name(
                    self.input.id(),
                    H5R_type_t::H5R_DATASET_REGION1,
                    ptr,
                    buf,
                    size,
                )
            }
        })
        .filter(|n| !n.is_empty())
        .ok_or_else(|| self.unnamed(element))?;
        let c = self.target_in_output(&target, element)?;
        // SAFETY: as above; the returned dataspace is closed below.
        let space = hdf5::sync::sync(|| unsafe {
            H5Rget_region(self.input.id(), H5R_type_t::H5R_DATASET_REGION1, ptr)
        });
        if space < 0 {
            return Err(self.input_err(element, format!("cannot read a region of {target}")));
        }
        let checked = self.check_region(&target, space, element);
        let mut new: RegionRef1 = [0; 12];
        let status = if checked.is_ok() {
            // SAFETY: `new` has room for one region reference; `space` is open.
            hdf5::sync::sync(|| unsafe {
                H5Rcreate(
                    new.as_mut_ptr().cast(),
                    self.output.id(),
                    c.as_ptr(),
                    H5R_type_t::H5R_DATASET_REGION1,
                    space,
                )
            })
        } else {
            0
        };
        // SAFETY: `space` was opened above.
        hdf5::sync::sync(|| unsafe { H5Sclose(space) });
        checked?;
        if status < 0 {
            return Err(self.output_err(
                element,
                format!("cannot create a region reference to {target}"),
            ));
        }
        Ok(new)
    }

    /// Maps one new-style reference `r` of the input into `out` (left null for a null `r`).
    fn map_ref2(&self, r: &H5R_ref_t, out: &mut H5R_ref_t, element: &str) -> Result<()> {
        if is_null2(r) {
            return Ok(());
        }
        // SAFETY: `r` was filled by H5Dread/H5Aread with H5T_STD_REF (not null).
        let kind = hdf5::sync::sync(|| unsafe { H5Rget_type(r) });
        let file = read_name(|buf, size| {
            // SAFETY: `buf` has `size` bytes.
            unsafe { H5Rget_file_name(r, buf, size) }
        });
        if file.is_some() && file != self.input_name {
            // Into another file: keep it as it is.
            // SAFETY: `out` is a fresh (zeroed) reference slot, destroyed with the others.
            let status = hdf5::sync::sync(|| unsafe { H5Rcopy(r, out) });
            if status < 0 {
                return Err(self.input_err(element, "cannot copy a reference into another file"));
            }
            return Ok(());
        }
        let target = read_name(|buf, size| {
            // SAFETY: `buf` has `size` bytes; the input file is open.
            unsafe { H5Rget_obj_name(r, H5P_DEFAULT, buf, size) }
        })
        .filter(|n| !n.is_empty())
        .ok_or_else(|| self.unnamed(element))?;
        let c = self.target_in_output(&target, element)?;
        let oid = self.output.id();
        let status = match kind {
            H5R_type_t::H5R_OBJECT2 | H5R_type_t::H5R_OBJECT1 => {
                // SAFETY: `out` is a reference slot; `c` names an existing object.
                hdf5::sync::sync(|| unsafe { H5Rcreate_object(oid, c.as_ptr(), H5P_DEFAULT, out) })
            }
            H5R_type_t::H5R_DATASET_REGION2 | H5R_type_t::H5R_DATASET_REGION1 => {
                // SAFETY: the returned dataspace is closed below.
                let space =
                    // SAFETY: `r` is a valid region reference read from the file; the dataspace is closed below.
                    hdf5::sync::sync(|| unsafe { H5Ropen_region(r, H5P_DEFAULT, H5P_DEFAULT) });
                if space < 0 {
                    return Err(
                        self.input_err(element, format!("cannot read a region of {target}"))
                    );
                }
                let checked = self.check_region(&target, space, element);
                let status = if checked.is_ok() {
                    // SAFETY: `space` is open; `out` is a reference slot.
                    hdf5::sync::sync(|| unsafe {
                        H5Rcreate_region(oid, c.as_ptr(), space, H5P_DEFAULT, out)
                    })
                } else {
                    0
                };
                // SAFETY: `space` was opened above.
                hdf5::sync::sync(|| unsafe { H5Sclose(space) });
                checked?;
                status
            }
            H5R_type_t::H5R_ATTR => {
                let attr = read_name(|buf, size| {
                    // SAFETY: `buf` has `size` bytes.
                    unsafe { H5Rget_attr_name(r, buf, size) }
                })
                .ok_or_else(|| self.input_err(element, "cannot read an attribute reference"))?;
                let ca = CString::new(attr)
                    .map_err(|_| self.input_err(element, "NUL in an attribute name"))?;
                // SAFETY: `out` is a reference slot; `c`/`ca` name an existing attribute.
                hdf5::sync::sync(|| unsafe {
                    H5Rcreate_attr(oid, c.as_ptr(), ca.as_ptr(), H5P_DEFAULT, out)
                })
            }
            _ => return Err(self.input_err(element, "an HDF5 reference of an unknown kind")),
        };
        if status < 0 {
            return Err(self.output_err(element, format!("cannot create a reference to {target}")));
        }
        Ok(())
    }
}

/// A null new-style reference: all bytes zero (how HDF5 reads one and how a slot starts).
fn is_null2(r: &H5R_ref_t) -> bool {
    // SAFETY: H5R_ref_t is a plain 64-byte buffer (`H5R_REF_BUF_SIZE`), every byte initialized.
    let bytes: &[u8; 64] = unsafe { &*(r as *const H5R_ref_t).cast::<[u8; 64]>() };
    bytes.iter().all(|&b| b == 0)
}

/// New-style references own resources (open file ids, region buffers): destroyed on drop.
struct Refs2(Vec<H5R_ref_t>);

impl Drop for Refs2 {
    fn drop(&mut self) {
        for r in &mut self.0 {
            if is_null2(r) {
                continue;
            }
            // SAFETY: a non-null slot was filled by HDF5 (read, H5Rcreate_* or H5Rcopy) and is
            // destroyed exactly once, here.
            hdf5::sync::sync(|| unsafe { H5Rdestroy(r) });
        }
    }
}

/// The attribute `categories` of an anndata < 0.8 categorical column `<df>/<col>`: a scalar
/// object reference to the dataset `<df>/__categories/<x>`, as the path relative to `<df>`
/// that anndata 0.7 writes in zarr (`"__categories/<x>"`); `None` for any other reference.
pub(crate) fn legacy_categories_path(
    holder: &Location,
    name: &str,
    attr: &hdf5::Attribute,
) -> Option<serde_json::Value> {
    if name != "categories" || !attr.shape().is_empty() {
        return None;
    }
    let ftype = Holder::Attr(attr.id()).file_type();
    if ftype < 0 {
        return None;
    }
    let kind = ref_kind(ftype);
    // SAFETY: `ftype` was opened above.
    hdf5::sync::sync(|| unsafe { H5Tclose(ftype) });
    if !matches!(kind, RefKind::Plain(Style::Object1)) {
        return None;
    }
    let mut r: hobj_ref_t = 0;
    if !Holder::Attr(attr.id()).read(
        *hdf5_sys::h5t::H5T_STD_REF_OBJ,
        (&mut r as *mut hobj_ref_t).cast(),
    ) || r == 0
    {
        return None;
    }
    let target = read_name(|buf, size| {
        // SAFETY: `r` was read from the holder's file; `buf` has `size` bytes.
        unsafe {
            H5Rget_name(
                holder.id(),
                H5R_type_t::H5R_OBJECT1,
                (&r as *const hobj_ref_t).cast(),
                buf,
                size,
            )
        }
    })?;
    let own = holder.name();
    let (df, _) = own.rsplit_once('/')?;
    let leaf = target.strip_prefix(&format!("{df}/__categories/"))?;
    if leaf.is_empty() || leaf.contains('/') {
        return None;
    }
    let file = holder.file().ok()?;
    let Some(Node::Dataset(_)) = node(&file, target.trim_start_matches('/')) else {
        return None;
    };
    Some(serde_json::Value::String(format!("__categories/{leaf}")))
}
