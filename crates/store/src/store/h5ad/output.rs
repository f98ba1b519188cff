//! The output file: a copy of the input (raw chunks, via `H5Ocopy`) minus the normalized
//! element, written under a temporary name and renamed on commit.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use hdf5::{File, Group};
use hdf5_sys::h5d::{H5Dclose, H5Dcreate2};
use hdf5_sys::h5p::H5P_DEFAULT;
use hdf5_sys::h5s::{H5S_class_t, H5Sclose, H5Screate};

use super::encoding::{self, node, MatrixElem, Node};
use super::file::{
    attr_strings, copy_attrs, create_write, has_attr, set_encoding, set_i64_array_attr,
    set_str_array_attr, short, str_attr,
};
use super::layout::{
    create_dataset, create_dataset_preallocated, foreign_datatype, foreign_order, guess_chunk,
    Storage,
};
use super::rawcopy;
use super::sink::{Appender, CsrSink, DenseSink};
use super::tree::H5adTreeWriter;
use super::H5adInput;
use crate::array::{DType, NumVec};
use crate::error::{Error, Result};
use crate::store::anndata;
use crate::store::temp::TempFile;
use crate::store::tree::{copy_all_but_matrix, TreeReader};
use crate::store::{
    ElementPath, MatrixLayout, MatrixSink, OutputLayout, OutputMatrixSpec, OutputStore,
    SparseStructure, UnsValue,
};

/// Bytes of strings held at a time while `uns` strings are rewritten ([`super::upgrade`]).
const UPGRADE_BUDGET: u64 = 64 << 20;

/// An .h5ad output under construction.
pub struct H5adOutput {
    // Field order matters: the file is closed before the temporary file is removed.
    file: Option<File>,
    tmp: TempFile,
    target: PathBuf,
    /// The .h5ad input (`None` when built from a [`TreeReader`]: the normalized element's
    /// `indices`/`indptr`, when CSR, were then copied into the output in advance).
    input: Option<File>,
    input_path: PathBuf,
    normalized: ElementPath,
    /// Output paths written here rather than copied (`obs/KEY`, `uns/log1p`): the
    /// reference pass ([`super::refs::relink`]) leaves them alone.
    written: Vec<String>,
}

impl H5adOutput {
    /// Starts `output` as a copy of `input` without `normalized`.
    pub fn create(input: &H5adInput, output: &Path, normalized: &ElementPath) -> Result<Self> {
        let tmp = TempFile::next_to(output)?;
        let fail =
            |what: &str, e: hdf5::Error| Error::output(output, format!("{what}: {}", short(&e)));
        let file = tmp.create(create_write).map_err(|e| {
            Error::output(
                output,
                format!(
                    "cannot create the temporary file {}: {}",
                    tmp.path.display(),
                    short(&e)
                ),
            )
        })?;
        let src: &Group = input.file();
        copy_attrs(src, &file).map_err(|e| fail("cannot copy the root attributes", e))?;
        let skip_layer = match normalized {
            ElementPath::X => None,
            ElementPath::Layer(name) => Some(name.as_str()),
        };
        let members = src
            .member_names()
            .map_err(|e| fail("cannot list the input's elements", e))?;
        for name in &members {
            match (name.as_str(), skip_layer) {
                ("X", None) => continue,
                ("layers", Some(layer)) => {
                    let layers = src
                        .group("layers")
                        .map_err(|e| fail("cannot open layers", e))?;
                    let out = file
                        .create_group("layers")
                        .map_err(|e| fail("cannot create layers", e))?;
                    copy_attrs(&layers, &out).map_err(|e| fail("cannot copy layers", e))?;
                    for child in layers
                        .member_names()
                        .map_err(|e| fail("cannot list layers", e))?
                    {
                        if child != layer {
                            copy_object(&layers, &child, &out, &child).map_err(|e| {
                                let element = format!("layers/{child}");
                                super::file::copy_error(&input.path, output, &element, &e)
                            })?;
                        }
                    }
                }
                _ => copy_object(src, name, &file, name)
                    .map_err(|e| super::file::copy_error(&input.path, output, name, &e))?,
            }
        }
        // anndata 0.7's un-encoded uns elements, as anndata 0.13's read + write leaves them.
        super::upgrade::upgrade_uns(input, &file, output, UPGRADE_BUDGET)?;
        super::upgrade::upgrade_frames(input, &file, output, UPGRADE_BUDGET)?;
        let written = categorize_copied_frames(input, &file, output)?;
        if skip_layer.is_some() && !file.link_exists("layers") {
            let g = file
                .create_group("layers")
                .map_err(|e| fail("cannot create layers", e))?;
            set_encoding(&g, "dict", "0.1.0").map_err(|e| fail("cannot create layers", e))?;
        }
        Ok(H5adOutput {
            file: Some(file),
            tmp,
            target: output.to_path_buf(),
            input: Some(input.file().clone()),
            input_path: input.path_buf(),
            normalized: normalized.clone(),
            written,
        })
    }

    /// Starts `output` as a copy of the AnnData tree `reader` (any format, e.g. a `.zarr`
    /// store at `input_path`) without `normalized`, re-encoded the way anndata writes .h5ad
    /// (see [`H5adTreeWriter`]), copying arrays in blocks of at most `budget` bytes.
    ///
    /// When `normalized` is a CSR matrix its `indices` and `indptr` are copied right away
    /// (into the output's group of that name), so that [`OutputStore::create_matrix`] with
    /// [`SparseStructure::CopyFromInput`] only adds `data`.
    pub fn create_from_tree(
        reader: &dyn TreeReader,
        input_path: &Path,
        output: &Path,
        normalized: &ElementPath,
        budget: u64,
    ) -> Result<Self> {
        let tmp = TempFile::next_to(output)?;
        let file = tmp.create(create_write).map_err(|e| {
            Error::output(
                output,
                format!(
                    "cannot create the temporary file {}: {}",
                    tmp.path.display(),
                    short(&e)
                ),
            )
        })?;
        let mut writer = H5adTreeWriter::new(file.clone(), output);
        copy_all_but_matrix(reader, &mut writer, &normalized.store_path(), budget)?;
        writer.check_complete()?;
        Ok(H5adOutput {
            file: Some(file),
            tmp,
            target: output.to_path_buf(),
            input: None,
            input_path: input_path.to_path_buf(),
            normalized: normalized.clone(),
            written: Vec::new(),
        })
    }

    /// Where the output is being written (the temporary file).
    pub fn temp_path(&self) -> &Path {
        &self.tmp.path
    }

    fn file(&self) -> &File {
        self.file.as_ref().expect("open until commit")
    }

    fn fail(&self, problem: impl Into<String>) -> Error {
        Error::output(&self.target, problem)
    }

    fn h5fail(&self, what: &str) -> impl Fn(hdf5::Error) -> Error + '_ {
        let what = what.to_string();
        move |e| self.fail(format!("{what}: {}", short(&e)))
    }
}

/// `H5Ocopy` of `src/name` to `dst/dst_name`: chunks are copied raw, without decoding.
pub(crate) fn copy_object(
    src: &Group,
    name: &str,
    dst: &Group,
    dst_name: &str,
) -> hdf5::Result<()> {
    let c_src = CString::new(name).map_err(|_| hdf5::Error::from("NUL in a name"))?;
    let c_dst = CString::new(dst_name).map_err(|_| hdf5::Error::from("NUL in a name"))?;
    // SAFETY: both locations are open; the names are NUL-terminated CStrings alive for the
    // call. (Not for datasets the input holds open with cached chunks: see `rawcopy`.)
    let status = hdf5::sync::sync(|| unsafe {
        hdf5_sys::h5o::H5Ocopy(
            src.id(),
            c_src.as_ptr(),
            dst.id(),
            c_dst.as_ptr(),
            H5P_DEFAULT,
            H5P_DEFAULT,
        )
    });
    if status < 0 {
        return Err(hdf5::Error::query().unwrap_or_else(|e| e));
    }
    Ok(())
}

/// Copies `indices` or `indptr` of the matrix being normalized. Those datasets are open in
/// the matrix source and read through HDF5 concurrently, so their chunks may sit in HDF5's
/// chunk cache, where `H5Ocopy` of a filtered dataset overflows a heap buffer (see
/// [`rawcopy`]): chunked ones are copied stored chunk by stored chunk instead. Contiguous
/// and compact datasets have no chunk cache, and `H5Ocopy` is then safe.
/// A chunk index HDF5's lookups disagree with is copied as HDF5 (and anndata) reads it.
fn copy_structure(src: &Group, name: &str, dst: &Group) -> hdf5::Result<()> {
    let ds = src.dataset(name)?;
    if ds.is_chunked() {
        match rawcopy::copy_chunked(&ds, dst, name)? {
            rawcopy::Copied::Done => return Ok(()),
            rawcopy::Copied::IndexDamaged => return copy_native(&ds, dst, name),
            rawcopy::Copied::Declined => {}
        }
    }
    copy_object(src, name, dst, name)
}

/// Copies the 1-D integer dataset `src` to `dst/name` in native byte order, with the same
/// chunking and filters, in blocks (HDF5 converts on read).
fn copy_native(src: &hdf5::Dataset, dst: &Group, name: &str) -> hdf5::Result<()> {
    const BLOCK: usize = 1 << 20;
    let dtype = encoding::dtype_of(src).map_err(|e| hdf5::Error::from(e.as_str()))?;
    let len = src.shape().first().copied().unwrap_or(0);
    let out = create_dataset(dst, name, dtype, &[len as u64], &Storage::of(src))?;
    let mem = super::layout::datatype(dtype)?;
    let mut start = 0usize;
    while start < len {
        let end = (start + BLOCK).min(len);
        let mut buf = vec![0u8; (end - start) * dtype.size()];
        let fspace = src.space()?.select(start..end)?;
        let ospace = out.space()?.select(start..end)?;
        let mspace = hdf5::Dataspace::try_new(end - start)?;
        // SAFETY: `buf` holds `end - start` elements of `mem`; the spaces select as many.
        let status = hdf5::sync::sync(|| unsafe {
            let r = hdf5_sys::h5d::H5Dread(
                src.id(),
                mem.id(),
                mspace.id(),
                fspace.id(),
                H5P_DEFAULT,
                buf.as_mut_ptr().cast(),
            );
            if r < 0 {
                return r;
            }
            hdf5_sys::h5d::H5Dwrite(
                out.id(),
                mem.id(),
                mspace.id(),
                ospace.id(),
                H5P_DEFAULT,
                buf.as_ptr().cast(),
            )
        });
        if status < 0 {
            return Err(hdf5::Error::query().unwrap_or_else(|e| e));
        }
        start = end;
    }
    Ok(())
}

/// Rewrites the string columns of the copied obs, var and raw.var that anndata's write makes
/// categoricals (see [`crate::store::categorize`]); the paths rewritten.
fn categorize_copied_frames(input: &H5adInput, file: &File, output: &Path) -> Result<Vec<String>> {
    let columns = crate::store::categorize::plan(input)?;
    if columns.is_empty() {
        return Ok(Vec::new());
    }
    let mut writer = H5adTreeWriter::new(file.clone(), output);
    for c in &columns {
        let (frame, name) = c.path.rsplit_once('/').unwrap_or(("", &c.path));
        file.group(frame)
            .and_then(|g| unlink_if_present(&g, name))
            .map_err(|e| {
                Error::output(output, format!("{}: cannot replace: {}", c.path, short(&e)))
            })?;
        crate::store::categorize::write(&mut writer, c)?;
    }
    writer.check_complete()?;
    Ok(columns.into_iter().map(|c| c.path).collect())
}

/// Removes the link `name` from `group` if it exists.
fn unlink_if_present(group: &Group, name: &str) -> hdf5::Result<()> {
    if group.link_exists(name) {
        group.unlink(name)?;
    }
    Ok(())
}

/// The group holding `element` in the output (`/` or `layers`), and the element's name.
fn parent_of<'a>(file: &File, element: &'a ElementPath) -> hdf5::Result<(Group, &'a str)> {
    match element {
        ElementPath::X => {
            let root: &Group = file;
            Ok((root.clone(), "X"))
        }
        ElementPath::Layer(name) => Ok((file.group("layers")?, name.as_str())),
    }
}

impl OutputStore for H5adOutput {
    fn create_matrix(
        &mut self,
        element: &ElementPath,
        spec: &OutputMatrixSpec,
    ) -> Result<Box<dyn MatrixSink + '_>> {
        let path = element.store_path();
        if !spec.data_dtype.is_float() {
            return Err(self.fail(format!(
                "{path}: the normalized matrix must be float32 or float64, not {}",
                spec.data_dtype
            )));
        }
        let (parent, name) = parent_of(self.file(), element).map_err(self.h5fail(&path))?;
        // From a tree, a CSR element's indices/indptr are already in the output.
        let staged = self.input.is_none()
            && spec.layout == OutputLayout::Csr
            && spec.structure == SparseStructure::CopyFromInput;
        if staged {
            self.check_staged(&parent, name, &path, spec)?;
        } else {
            unlink_if_present(&parent, name).map_err(self.h5fail(&path))?;
        }
        // The input element gives chunking and filters (and indices/indptr to copy).
        let input_elem = self
            .input
            .as_ref()
            .and_then(|f| encoding::open_matrix(f, &path, None, None).ok());
        let data_path = format!("{path}/data");
        match spec.layout {
            OutputLayout::Dense => {
                let storage = match &input_elem {
                    Some(MatrixElem::Dense(d)) => Storage::of(&d.ds),
                    _ => Storage::contiguous(),
                };
                // numpy keeps a big-endian float X big-endian through normalize_total and
                // log1p, and anndata writes it so (integer X becomes native float32).
                let big_endian = matches!(&input_elem, Some(MatrixElem::Dense(d))
                    if d.dtype == spec.data_dtype && foreign_order(&d.ds));
                let dt = if big_endian {
                    foreign_datatype(spec.data_dtype)
                } else {
                    super::layout::datatype(spec.data_dtype)
                }
                .map_err(self.h5fail(&format!("cannot create {path}")))?;
                let ds = create_dataset_preallocated(
                    &parent,
                    name,
                    &dt,
                    &[spec.n_obs, spec.n_vars],
                    &storage,
                )
                .map_err(self.h5fail(&format!("cannot create {path}")))?;
                set_encoding(&ds, "array", "0.2.0").map_err(self.h5fail(&path))?;
                let chunk_rows = storage.chunk_rows();
                let data = Appender::new(
                    ds,
                    path.clone(),
                    spec.data_dtype,
                    spec.n_vars,
                    chunk_rows,
                    Some(spec.n_obs * spec.n_vars),
                )
                .map_err(self.h5fail(&path))?;
                Ok(Box::new(DenseSink {
                    file: self.target.clone(),
                    data,
                }))
            }
            OutputLayout::Csr => {
                let group = if staged {
                    parent.group(name).map_err(self.h5fail(&path))?
                } else {
                    parent
                        .create_group(name)
                        .map_err(self.h5fail(&format!("cannot create {path}")))?
                };
                set_encoding(&group, "csr_matrix", "0.1.0").map_err(self.h5fail(&path))?;
                set_i64_array_attr(&group, "shape", &[spec.n_obs as i64, spec.n_vars as i64])
                    .map_err(self.h5fail(&path))?;
                let (data_from, indices_from, indptr_from) = match &input_elem {
                    Some(MatrixElem::Sparse(s)) => (
                        Some(Storage::of(&s.data)),
                        Some(Storage::of(&s.indices)),
                        Some(Storage::of(&s.indptr)),
                    ),
                    Some(MatrixElem::Dense(d)) => {
                        let filters = Storage::of(&d.ds).filters;
                        let s = Storage {
                            chunk: None,
                            filters,
                        };
                        (Some(s.clone()), Some(s.clone()), Some(s))
                    }
                    None => (None, None, None),
                };
                let data_storage = Storage::for_1d(
                    data_from.as_ref().filter(|_| spec.nnz > 0),
                    spec.nnz,
                    spec.data_dtype.size(),
                );
                let (indices, indptr) = match spec.structure {
                    SparseStructure::CopyFromInput if staged => (None, None),
                    SparseStructure::CopyFromInput => {
                        let Some(MatrixElem::Sparse(s)) = &input_elem else {
                            return Err(self.fail(format!(
                                "{path}: cannot copy indices and indptr: the input's {path} is not sparse"
                            )));
                        };
                        if s.layout != MatrixLayout::Csr
                            || s.shape != (spec.n_obs, spec.n_vars)
                            || s.nnz != spec.nnz
                        {
                            return Err(self.fail(format!(
                                "{path}: cannot copy indices and indptr: the input is not a CSR matrix of shape ({}, {}) with {} values",
                                spec.n_obs, spec.n_vars, spec.nnz
                            )));
                        }
                        let input = self.input.as_ref().expect("not staged: an .h5ad input");
                        let input_group = input.group(&path).map_err(self.h5fail(&path))?;
                        for (member, src) in [("indices", &s.indices), ("indptr", &s.indptr)] {
                            // A failed read is the input's damage, a failed write the output's.
                            let blame = |e: hdf5::Error| {
                                let element = format!("{path}/{member}");
                                super::file::copy_error(
                                    &self.input_path,
                                    &self.target,
                                    &element,
                                    &e,
                                )
                            };
                            if foreign_order(src) {
                                // Integer data: scipy rebuilds the matrix with native index
                                // arrays (float data with these was refused on opening).
                                copy_native(src, &group, member).map_err(blame)?;
                            } else {
                                copy_structure(&input_group, member, &group).map_err(blame)?;
                            }
                        }
                        (None, None)
                    }
                    SparseStructure::Write { indices, indptr } => {
                        if !indices.is_integer() || !indptr.is_integer() {
                            return Err(
                                self.fail(format!("{path}: indices and indptr must be integers"))
                            );
                        }
                        let ind_storage = Storage::for_1d(
                            indices_from.as_ref().filter(|_| spec.nnz > 0),
                            spec.nnz,
                            indices.size(),
                        );
                        let n_ptr = spec.n_obs + 1;
                        let ptr_storage = Storage {
                            chunk: match indptr_from.as_ref().map(|s| s.chunk.is_some()) {
                                Some(false) => None,
                                _ => Some(guess_chunk(&[n_ptr], indptr.size())),
                            },
                            filters: indptr_from.map(|s| s.filters).unwrap_or_default(),
                        };
                        let ind_ds =
                            create_dataset(&group, "indices", indices, &[spec.nnz], &ind_storage)
                                .map_err(self.h5fail(&format!("cannot create {path}/indices")))?;
                        let ptr_ds =
                            create_dataset(&group, "indptr", indptr, &[n_ptr], &ptr_storage)
                                .map_err(self.h5fail(&format!("cannot create {path}/indptr")))?;
                        let ind = Appender::new(
                            ind_ds,
                            format!("{path}/indices"),
                            indices,
                            1,
                            ind_storage.chunk_rows(),
                            Some(spec.nnz),
                        )
                        .map_err(self.h5fail(&path))?;
                        let ptr = Appender::new(
                            ptr_ds,
                            format!("{path}/indptr"),
                            indptr,
                            1,
                            ptr_storage.chunk_rows(),
                            Some(n_ptr),
                        )
                        .map_err(self.h5fail(&path))?;
                        (Some(ind), Some(ptr))
                    }
                };
                let data_ds = super::layout::datatype(spec.data_dtype)
                    .and_then(|dt| {
                        create_dataset_preallocated(&group, "data", &dt, &[spec.nnz], &data_storage)
                    })
                    .map_err(self.h5fail(&format!("cannot create {data_path}")))?;
                let data = Appender::new(
                    data_ds,
                    data_path,
                    spec.data_dtype,
                    1,
                    data_storage.chunk_rows(),
                    Some(spec.nnz),
                )
                .map_err(self.h5fail(&path))?;
                Ok(Box::new(CsrSink {
                    file: self.target.clone(),
                    data,
                    indices,
                    indptr,
                    indptr_len: Some(spec.n_obs + 1),
                    last_indptr: None,
                }))
            }
        }
    }

    fn write_obs_column(&mut self, name: &str, values: &NumVec) -> Result<()> {
        let elem = format!("obs/{name}");
        let obs = match node(self.file(), "obs") {
            Some(Node::Group(g)) => g,
            Some(Node::Dataset(_)) => {
                return Err(self.fail(
                    "obs is stored in the pre-0.7 AnnData format (a record array); \
                     cannot add a column to it",
                ))
            }
            None => return Err(self.fail("the output has no obs")),
        };
        anndata::check_new_column(
            "obs",
            name,
            str_attr(&obs, "_index").as_deref(),
            encoding::dataframe_len(self.file(), "obs"),
            values.len(),
        )
        .map_err(|p| self.fail(p))?;
        let order: Vec<String> = if has_attr(&obs, "column-order") {
            let attr = obs.attr("column-order").map_err(self.h5fail(&elem))?;
            // anndata writes an empty float64 array when there are no columns.
            attr_strings(&attr).unwrap_or_default()
        } else {
            Vec::new()
        };
        unlink_if_present(&obs, name).map_err(self.h5fail(&elem))?;
        let ds = create_dataset(
            &obs,
            name,
            values.dtype(),
            &[values.len() as u64],
            &Storage::contiguous(),
        )
        .map_err(self.h5fail(&format!("cannot create {elem}")))?;
        set_encoding(&ds, "array", "0.2.0").map_err(self.h5fail(&elem))?;
        let mut app = Appender::new(ds, elem.clone(), values.dtype(), 1, None, None)
            .map_err(self.h5fail(&elem))?;
        app.append(values).map_err(|p| self.fail(p))?;
        app.finish().map_err(|p| self.fail(p))?;
        let order = anndata::column_order_with(order, name);
        set_str_array_attr(&obs, "column-order", &order).map_err(self.h5fail(&elem))?;
        self.written.push(elem);
        Ok(())
    }

    fn write_uns(&mut self, key: &str, value: &UnsValue) -> Result<()> {
        let file = self.file().clone();
        let uns = match node(&file, "uns") {
            Some(Node::Group(g)) => g,
            Some(Node::Dataset(_)) => return Err(self.fail("uns is not a group")),
            None => {
                let g = file
                    .create_group("uns")
                    .map_err(self.h5fail("cannot create uns"))?;
                set_encoding(&g, "dict", "0.1.0").map_err(self.h5fail("uns"))?;
                g
            }
        };
        let elem = format!("uns/{key}");
        unlink_if_present(&uns, key).map_err(self.h5fail(&elem))?;
        self.written.push(elem.clone());
        write_uns_value(&uns, key, value).map_err(self.h5fail(&format!("cannot write {elem}")))
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        if let (Some(file), Some(input)) = (&self.file, &self.input) {
            // The output is complete: every reference target exists.
            super::refs::relink(
                input,
                &self.input_path,
                file,
                &self.target,
                &self.normalized.store_path(),
                &self.written,
            )?;
        }
        if let Some(file) = self.file.take() {
            file.close()
                .map_err(|e| self.fail(format!("cannot close the output: {}", short(&e))))?;
        }
        std::fs::rename(&self.tmp.path, &self.target).map_err(|e| {
            self.fail(format!(
                "cannot move {} to its final name: {e}",
                self.tmp.path.display()
            ))
        })?;
        self.tmp.keep();
        Ok(())
    }
}

impl H5adOutput {
    /// Checks the `indices`/`indptr` copied by [`H5adOutput::create_from_tree`] for a CSR
    /// output of `spec` and removes a `data` member if there is one.
    fn check_staged(
        &self,
        parent: &Group,
        name: &str,
        path: &str,
        spec: &OutputMatrixSpec,
    ) -> Result<()> {
        let cannot = || {
            self.fail(format!(
                "{path}: cannot copy indices and indptr: the input is not a CSR matrix of shape ({}, {}) with {} values",
                spec.n_obs, spec.n_vars, spec.nnz
            ))
        };
        let Ok(group) = parent.group(name) else {
            return Err(cannot());
        };
        let len = |m: &str| {
            group
                .dataset(m)
                .ok()
                .and_then(|d| super::file::dims(&d))
                .filter(|d| d.len() == 1)
                .map(|d| d[0])
        };
        if len("indices") != Some(spec.nnz) || len("indptr") != Some(spec.n_obs + 1) {
            return Err(cannot());
        }
        unlink_if_present(&group, "data").map_err(self.h5fail(path))
    }

    /// The input file this output copies from.
    pub fn input_path(&self) -> &Path {
        &self.input_path
    }

    /// The element being normalized.
    pub fn normalized(&self) -> &ElementPath {
        &self.normalized
    }
}

/// `value` as anndata writes it, under `parent/name`.
fn write_uns_value(parent: &Group, name: &str, value: &UnsValue) -> hdf5::Result<()> {
    match value {
        UnsValue::None => write_null(parent, name),
        UnsValue::Float(x) => write_numeric_scalar(parent, name, *x),
        UnsValue::Dict(entries) => {
            let group = parent.create_group(name)?;
            set_encoding(&group, "dict", "0.1.0")?;
            entries
                .iter()
                .try_for_each(|(k, v)| write_uns_value(&group, k, v))
        }
    }
}

/// anndata's `None`: an empty-dataspace dataset (`h5py.Empty("f")`), encoding `null` 0.1.0.
pub(crate) fn write_null(group: &Group, name: &str) -> hdf5::Result<()> {
    let c = CString::new(name).map_err(|_| hdf5::Error::from("NUL in a name"))?;
    let f32_type = super::layout::datatype(DType::F32)?;
    // SAFETY: `group` and `f32_type` are open; `c` outlives the call; the dataspace created
    // here is closed once (H5Dcreate2 fails cleanly on an invalid one).
    let id = hdf5::sync::sync(|| unsafe {
        let space = H5Screate(H5S_class_t::H5S_NULL);
        let ds = H5Dcreate2(
            group.id(),
            c.as_ptr(),
            f32_type.id(),
            space,
            H5P_DEFAULT,
            H5P_DEFAULT,
            H5P_DEFAULT,
        );
        H5Sclose(space);
        ds
    });
    if id < 0 {
        return Err(hdf5::Error::query().unwrap_or_else(|e| e));
    }
    // SAFETY: `id` is the dataset created above (checked >= 0), closed once.
    hdf5::sync::sync(|| unsafe { H5Dclose(id) });
    let ds = group.dataset(name)?;
    set_encoding(&ds, "null", "0.1.0")
}

/// A number in `uns`: a 0-d float64 dataset, encoding `numeric-scalar` 0.2.0.
pub(crate) fn write_numeric_scalar(group: &Group, name: &str, value: f64) -> hdf5::Result<()> {
    let ds = group.new_dataset::<f64>().shape(()).create(name)?;
    ds.write_scalar(&value)?;
    set_encoding(&ds, "numeric-scalar", "0.2.0")
}
