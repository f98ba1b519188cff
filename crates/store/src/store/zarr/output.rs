//! A `.zarr` output: a copy of the input (encoded objects copied as they are) minus the
//! normalized element, written in a staging area and made visible on commit, with the
//! consolidated metadata written last.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use zarrs::storage::{StoreKey, StorePrefix};

use super::consolidated::{self, read_json};
use super::copy;
use super::layout::{self, ArraySpec, LayoutHint};
use super::sink::{put, ChunkedWriter, CsrSink, DenseSink};
use super::staging::Staging;
use super::{key_in, Storage};
use crate::array::{DType, NumVec};
use crate::error::{Error, Result};
use crate::options::{Options, ZarrFormat, ZarrOutputOptions};
use crate::store::anndata;
use crate::store::tree::{Attrs, ElemType, TreeReader};
use crate::store::{
    ElementPath, MatrixSink, OutputLayout, OutputMatrixSpec, OutputStore, SparseStructure, UnsValue,
};

/// A `.zarr` output under construction.
pub struct ZarrOutput {
    // Field order: writers hold the storage; they go before the staging area is removed.
    pub(super) writers: HashMap<String, ChunkedWriter>,
    pub(super) storage: Storage,
    staging: Option<Staging>,
    pub(super) format: ZarrFormat,
    pub(super) zarr: ZarrOutputOptions,
    /// The zarr input whose arrays the normalized matrix's arrays mirror (codec, chunks).
    input: Option<(Storage, ZarrFormat)>,
    /// Built through the [`TreeWriter`](crate::store::tree::TreeWriter) (another format or
    /// zarr version) rather than copied raw from `input`.
    tree_built: bool,
    /// Keys of `input` still to be copied as they are, when the copies are left to others
    /// (the Dask tasks of [`crate::distributed`]); `None`: copied here, as they are met.
    deferred: Option<Vec<StoreKey>>,
    /// Tree-built from an `.h5ad`: dataframe groups seen so far (see `tree_write.rs`).
    pub(super) frames: std::collections::HashSet<String>,
    /// String columns being written as `nullable-string-array` (`<col>/values` + `<col>/mask`).
    pub(super) nullable_columns: std::collections::HashSet<String>,
    /// Store path of the normalized matrix (its carried-over arrays get its layout).
    pub(super) normalized: String,
    pub(super) target: PathBuf,
    pub(super) memory: u64,
}

impl ZarrOutput {
    /// Starts `output`: with an input zarr store, a copy of everything in it except
    /// `normalized` (same zarr format only); without, an empty store (build it with the
    /// [`TreeWriter`](crate::store::tree::TreeWriter) implementation, root group first).
    pub fn create(
        input: Option<(&Storage, ZarrFormat)>,
        output: &Path,
        normalized: &ElementPath,
        opts: &Options,
    ) -> Result<Self> {
        Self::create_with(input, output, normalized, opts, false)
    }

    /// As [`ZarrOutput::create`], but the objects copied from `input` as they are (every
    /// element but `normalized`, and its `indices`/`indptr`) are only listed: the caller
    /// copies them ([`ZarrOutput::take_deferred_copies`]) before the commit.
    pub fn create_deferring_copies(
        input: (&Storage, ZarrFormat),
        output: &Path,
        normalized: &ElementPath,
        opts: &Options,
    ) -> Result<Self> {
        Self::create_with(Some(input), output, normalized, opts, true)
    }

    /// The keys of the input not yet copied (see [`ZarrOutput::create_deferring_copies`]).
    pub fn take_deferred_copies(&mut self) -> Vec<String> {
        let keys = self
            .deferred
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        keys.iter().map(|k| k.as_str().to_string()).collect()
    }

    fn create_with(
        input: Option<(&Storage, ZarrFormat)>,
        output: &Path,
        normalized: &ElementPath,
        opts: &Options,
        defer: bool,
    ) -> Result<Self> {
        opts.zarr.validate()?;
        let format = opts
            .zarr
            .format
            .or(input.map(|(_, f)| f))
            .unwrap_or(ZarrFormat::V3);
        if let Some((_, in_format)) = input {
            if in_format != format {
                return Err(Error::output(
                    output,
                    format!(
                        "converting a zarr v{} store to zarr v{} is not supported yet",
                        version(in_format),
                        version(format)
                    ),
                ));
            }
        }
        let staging = Staging::for_target(output, &opts.s3, opts.force)?;
        let storage = staging.storage().clone();
        let mut out = ZarrOutput {
            writers: HashMap::new(),
            storage,
            staging: Some(staging),
            format,
            zarr: opts.zarr.clone(),
            input: input.map(|(s, f)| (s.clone(), f)),
            tree_built: false,
            deferred: None,
            frames: Default::default(),
            nullable_columns: Default::default(),
            normalized: normalized.store_path(),
            target: output.to_path_buf(),
            memory: opts.params.memory,
        };
        if let Some((input, _)) = input {
            let skip = [normalized.store_path()];
            if defer {
                // The root metadata is copied here, through the staging area's storage (on
                // object storage it holds the root back until the commit); tasks writing to
                // the bucket directly must not publish it early.
                let (root, rest): (Vec<_>, Vec<_>) = copy::keys_except(input, &skip)
                    .map_err(|e| out.wrap(e))?
                    .into_iter()
                    .partition(super::defer::is_root_metadata);
                copy::copy_keys(input, &out.storage, &root, out.memory / 2)
                    .map_err(|e| out.wrap(e))?;
                out.deferred = Some(rest);
            } else {
                copy::copy_except(input, &out.storage, &skip, out.memory / 2)
                    .map_err(|e| out.wrap(e))?;
            }
        }
        Ok(out)
    }

    /// Rewrites the string columns of the copied obs, var and raw.var (`input` is the store
    /// they were copied from) that anndata's write makes categoricals (see
    /// [`crate::store::categorize`]); their input keys are no longer copied later either.
    ///
    /// # Errors
    /// When a column cannot be read or written.
    pub fn categorize_copied_frames(&mut self, input: &dyn TreeReader) -> Result<()> {
        for c in crate::store::categorize::plan(input)? {
            let prefix = format!("{}/", c.path);
            if let Some(keys) = self.deferred.as_mut() {
                keys.retain(|k| !k.as_str().starts_with(&prefix));
            }
            self.erase(&c.path).map_err(|e| self.wrap(e))?;
            crate::store::categorize::write(self, &c)?;
        }
        Ok(())
    }

    /// An empty output (no input to copy), e.g. for `.h5ad` → `.zarr`.
    pub fn create_empty(output: &Path, opts: &Options) -> Result<Self> {
        Self::create(None, output, &ElementPath::X, opts)
    }

    /// An empty output to be filled through the tree writer (`.h5ad` → `.zarr`, or zarr v2
    /// ↔ v3), whose normalized matrix mirrors the layout of `layout_from`'s (a zarr input
    /// of the other version) where there is one.
    pub fn create_for_tree(
        layout_from: Option<(&Storage, ZarrFormat)>,
        output: &Path,
        normalized: &ElementPath,
        opts: &Options,
    ) -> Result<Self> {
        let mut plain = opts.clone();
        // The user's format, else the zarr input's, else (from .h5ad) anndata's default.
        plain.zarr.format = Some(
            opts.zarr
                .format
                .or(layout_from.map(|(_, f)| f))
                .unwrap_or(ZarrFormat::V3),
        );
        let mut out = Self::create(None, output, normalized, &plain)?;
        out.input = layout_from.map(|(s, f)| (s.clone(), f));
        out.tree_built = true;
        Ok(out)
    }

    /// Whether the tree comes from an `.h5ad` (no zarr input behind it).
    pub(super) fn tree_from_h5ad(&self) -> bool {
        self.tree_built && self.input.is_none()
    }

    /// The zarr format being written.
    pub fn format(&self) -> ZarrFormat {
        self.format
    }

    /// The store being written (the staging area).
    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Where the store is being written until commit.
    pub fn temp_path(&self) -> Option<&Path> {
        self.staging.as_ref().and_then(|s| s.temp_path())
    }

    /// Turns internal errors into errors naming the output.
    pub(super) fn wrap(&self, e: Error) -> Error {
        match e {
            Error::Internal(p) => Error::output(&self.target, p),
            other => other,
        }
    }

    pub(super) fn fail(&self, problem: impl Into<String>) -> Error {
        Error::output(&self.target, problem)
    }

    /// Bytes of values one array writer may hold back.
    pub(super) fn writer_budget(&self) -> u64 {
        (self.memory / 4).max(1 << 20)
    }

    /// The user's layout choices (they win over what the input suggests).
    pub(super) fn user_hint(&self) -> LayoutHint {
        LayoutHint {
            codec: self.zarr.codec,
            chunk: self.zarr.chunk,
            shard: self.zarr.shard,
            inherited_chunk: false,
        }
    }

    /// Layout of an output array mirroring the input array at `path` (when the input is
    /// zarr and has it), with the user's choices on top.
    pub(super) fn hint_for(&self, input_path: Option<&str>) -> LayoutHint {
        let mut hint = match (&self.input, input_path) {
            (Some((storage, format)), Some(p)) => {
                let doc = match format {
                    ZarrFormat::V3 => read_json(storage, &key_in(p, "zarr.json")),
                    ZarrFormat::V2 => read_json(storage, &key_in(p, ".zarray")),
                };
                match doc {
                    Ok(Some(d)) => layout::hint_from_metadata(&d),
                    _ => LayoutHint::default(),
                }
            }
            _ => LayoutHint::default(),
        };
        let user = self.user_hint();
        hint.inherited_chunk = hint.chunk.is_some() && user.chunk.is_none();
        if user.codec.is_some() {
            hint.codec = user.codec;
        }
        if user.chunk.is_some() {
            hint.chunk = user.chunk;
        }
        if user.shard.is_some() {
            hint.shard = user.shard;
        } else if user.chunk.is_some() && hint.shard.is_some_and(|s| s > 0) {
            // New chunks: let the shard follow anndata's rule for them.
            hint.shard = None;
        }
        hint
    }

    /// Metadata document of the node at `path`: (is a group, attributes).
    pub(super) fn node_attrs(&self, path: &str) -> Result<Option<(bool, Attrs)>> {
        let attrs_of = |v: &Value| v.as_object().cloned().unwrap_or_default();
        match self.format {
            ZarrFormat::V3 => Ok(
                read_json(&self.storage, &key_in(path, "zarr.json"))?.map(|d| {
                    let group = d.get("node_type").and_then(|v| v.as_str()) == Some("group");
                    let attrs = d.get("attributes").map(attrs_of).unwrap_or_default();
                    (group, attrs)
                }),
            ),
            ZarrFormat::V2 => {
                let group = if read_json(&self.storage, &key_in(path, ".zgroup"))?.is_some() {
                    true
                } else if read_json(&self.storage, &key_in(path, ".zarray"))?.is_some() {
                    false
                } else {
                    return Ok(None);
                };
                let attrs = read_json(&self.storage, &key_in(path, ".zattrs"))?
                    .map(|v| attrs_of(&v))
                    .unwrap_or_default();
                Ok(Some((group, attrs)))
            }
        }
    }

    /// Writes the metadata documents of a group.
    pub(super) fn put_group(&self, path: &str, attrs: &Attrs) -> Result<()> {
        for (name, doc) in layout::group_documents(self.format, attrs) {
            put(&self.storage, &key_in(path, name), layout::to_bytes(&doc))?;
        }
        Ok(())
    }

    /// Removes the node at `path` and everything below it.
    pub(super) fn erase(&self, path: &str) -> Result<()> {
        let prefix = StorePrefix::new(format!("{path}/"))
            .map_err(|e| Error::Internal(format!("{path}: {e}")))?;
        self.storage
            .erase_prefix(&prefix)
            .map_err(|e| Error::Internal(format!("cannot remove {path}: {e}")))
    }

    /// Creates the group at `path` with `attrs` unless it exists.
    fn ensure_group(&self, path: &str, attrs: Attrs) -> Result<()> {
        match self.node_attrs(path)? {
            Some((true, _)) => Ok(()),
            Some((false, _)) => Err(self.fail(format!("{path} is an array, not a group"))),
            None => self.put_group(path, &attrs),
        }
    }

    /// Plans an array of the output's format and creates a writer for it.
    pub(super) fn new_array(
        &self,
        path: &str,
        elem: ElemType,
        shape: &[u64],
        hint: &LayoutHint,
        budget: u64,
        attrs: Attrs,
    ) -> Result<ChunkedWriter> {
        let spec: ArraySpec =
            layout::plan(self.format, elem, shape, hint, (budget / 2).max(1), attrs)?;
        ChunkedWriter::create(&self.storage, path, &spec, budget)
    }

    /// Number of observations according to the obs index, when it can be read.
    fn n_obs(&self, index: &str) -> Option<u64> {
        for p in [format!("obs/{index}"), format!("obs/{index}/values")] {
            let doc = match self.format {
                ZarrFormat::V3 => read_json(&self.storage, &key_in(&p, "zarr.json")),
                ZarrFormat::V2 => read_json(&self.storage, &key_in(&p, ".zarray")),
            };
            if let Ok(Some(d)) = doc {
                if let Some(n) = d.pointer("/shape/0").and_then(|v| v.as_u64()) {
                    return Some(n);
                }
            }
        }
        None
    }
}

fn version(f: ZarrFormat) -> u32 {
    match f {
        ZarrFormat::V2 => 2,
        ZarrFormat::V3 => 3,
    }
}

pub(super) fn encoding(kind: &str, version: &str) -> Attrs {
    let mut a = Attrs::new();
    a.insert("encoding-type".into(), json!(kind));
    a.insert("encoding-version".into(), json!(version));
    a
}

impl OutputStore for ZarrOutput {
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
        if let ElementPath::Layer(_) = element {
            self.ensure_group("layers", encoding("dict", "0.1.0"))
                .map_err(|e| self.wrap(e))?;
        }
        // A tree-built output already holds the structure (`tree::copy_all_but_matrix`).
        let keep_structure = self.tree_built
            && spec.layout == OutputLayout::Csr
            && spec.structure == SparseStructure::CopyFromInput;
        let stale = if keep_structure {
            format!("{path}/data")
        } else {
            path.clone()
        };
        self.erase(&stale).map_err(|e| self.wrap(e))?;
        let budget = self.writer_budget();
        match spec.layout {
            OutputLayout::Dense => {
                let hint = self.hint_for(Some(&path));
                let data = self
                    .new_array(
                        &path,
                        ElemType::Num(spec.data_dtype),
                        &[spec.n_obs, spec.n_vars],
                        &hint,
                        budget,
                        encoding("array", "0.2.0"),
                    )
                    .map_err(|e| self.wrap(e))?;
                Ok(Box::new(DenseSink {
                    file: self.target.clone(),
                    data,
                }))
            }
            OutputLayout::Csr => {
                let mut attrs = Attrs::new();
                attrs.insert("shape".into(), json!([spec.n_obs, spec.n_vars]));
                attrs.extend(encoding("csr_matrix", "0.1.0"));
                self.put_group(&path, &attrs).map_err(|e| self.wrap(e))?;
                let data_path = format!("{path}/data");
                let (indices, indptr) = match spec.structure {
                    SparseStructure::CopyFromInput => {
                        self.copy_structure(&path, spec)?;
                        (None, None)
                    }
                    SparseStructure::Write { indices, indptr } => {
                        if !indices.is_integer() || !indptr.is_integer() {
                            return Err(
                                self.fail(format!("{path}: indices and indptr must be integers"))
                            );
                        }
                        let ind_path = format!("{path}/indices");
                        let ptr_path = format!("{path}/indptr");
                        let ind = self
                            .new_array(
                                &ind_path,
                                ElemType::Num(indices),
                                &[spec.nnz],
                                &self.hint_for(Some(&ind_path)),
                                budget / 2,
                                Attrs::new(),
                            )
                            .map_err(|e| self.wrap(e))?;
                        let ptr = self
                            .new_array(
                                &ptr_path,
                                ElemType::Num(indptr),
                                &[spec.n_obs + 1],
                                &self.hint_for(Some(&ptr_path)),
                                budget / 4,
                                Attrs::new(),
                            )
                            .map_err(|e| self.wrap(e))?;
                        (Some(ind), Some(ptr))
                    }
                };
                let data = self
                    .new_array(
                        &data_path,
                        ElemType::Num(spec.data_dtype),
                        &[spec.nnz],
                        &self.hint_for(Some(&data_path)),
                        budget,
                        Attrs::new(),
                    )
                    .map_err(|e| self.wrap(e))?;
                Ok(Box::new(CsrSink {
                    file: self.target.clone(),
                    data,
                    indices,
                    indptr,
                    last_indptr: None,
                }))
            }
        }
    }

    fn write_obs_column(&mut self, name: &str, values: &NumVec) -> Result<()> {
        let elem = format!("obs/{name}");
        let mut attrs = match self.node_attrs("obs").map_err(|e| self.wrap(e))? {
            Some((true, attrs)) => attrs,
            Some((false, _)) => {
                return Err(self.fail("obs is an array, not a dataframe group; cannot add a column"))
            }
            None => return Err(self.fail("the output has no obs")),
        };
        let index = attrs
            .get("_index")
            .and_then(|v| v.as_str())
            .unwrap_or("_index")
            .to_string();
        anndata::check_new_column("obs", name, Some(&index), self.n_obs(&index), values.len())
            .map_err(|p| self.fail(p))?;
        self.erase(&elem).map_err(|e| self.wrap(e))?;
        let mut w = self
            .new_array(
                &elem,
                ElemType::Num(values.dtype()),
                &[values.len() as u64],
                &LayoutHint {
                    codec: self.zarr.codec,
                    chunk: None,
                    shard: self.zarr.shard.filter(|&s| s == 0),
                    inherited_chunk: false,
                },
                self.writer_budget(),
                encoding("array", "0.2.0"),
            )
            .map_err(|e| self.wrap(e))?;
        w.append_numvec(values).map_err(|e| self.wrap(e))?;
        w.finish().map_err(|e| self.wrap(e))?;
        // anndata writes an empty float64 array when there are no columns.
        let order: Vec<String> = attrs
            .get("column-order")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let order = anndata::column_order_with(order, name);
        attrs.insert("column-order".into(), json!(order));
        self.put_group("obs", &attrs).map_err(|e| self.wrap(e))
    }

    fn write_uns(&mut self, key: &str, value: &UnsValue) -> Result<()> {
        self.ensure_group("uns", encoding("dict", "0.1.0"))
            .map_err(|e| self.wrap(e))?;
        let path = format!("uns/{key}");
        self.erase(&path).map_err(|e| self.wrap(e))?;
        self.put_uns_value(&path, value)
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        if let Some(name) = self.writers.keys().next() {
            return Err(self.fail(format!("{name}: not all rows were written")));
        }
        consolidated::write(&self.storage, self.format).map_err(|e| self.wrap(e))?;
        let staging = self.staging.take().expect("staging lives until commit");
        staging.commit()
    }
}

impl ZarrOutput {
    /// `value` as anndata writes it, at `path`.
    fn put_uns_value(&mut self, path: &str, value: &UnsValue) -> Result<()> {
        match value {
            UnsValue::None => self
                .put_null(path, &encoding("null", "0.1.0"))
                .map_err(|e| self.wrap(e)),
            UnsValue::Float(x) => {
                let mut w = self
                    .new_array(
                        path,
                        ElemType::Num(DType::F64),
                        &[],
                        &LayoutHint {
                            codec: self.zarr.codec,
                            ..LayoutHint::default()
                        },
                        self.writer_budget(),
                        encoding("numeric-scalar", "0.2.0"),
                    )
                    .map_err(|e| self.wrap(e))?;
                w.append_numvec(&NumVec::F64(vec![*x]))
                    .map_err(|e| self.wrap(e))?;
                w.finish().map(|_| ()).map_err(|e| self.wrap(e))
            }
            UnsValue::Dict(entries) => {
                self.put_group(path, &encoding("dict", "0.1.0"))
                    .map_err(|e| self.wrap(e))?;
                entries
                    .iter()
                    .try_for_each(|(k, v)| self.put_uns_value(&format!("{path}/{k}"), v))
            }
        }
    }

    /// anndata's `None` in zarr: a 0-d bool array (no chunk stored) with the given attributes.
    pub(super) fn put_null(&self, path: &str, attrs: &Attrs) -> Result<()> {
        let spec = layout::plan(
            self.format,
            ElemType::Bool,
            &[],
            &LayoutHint {
                codec: self.zarr.codec,
                ..LayoutHint::default()
            },
            1,
            attrs.clone(),
        )?;
        for (name, doc) in layout::array_documents(&spec) {
            put(&self.storage, &key_in(path, name), layout::to_bytes(&doc))?;
        }
        Ok(())
    }

    /// CSR in, CSR out: copies `indices` and `indptr` of the input's element as they are.
    fn copy_structure(&mut self, path: &str, spec: &OutputMatrixSpec) -> Result<()> {
        let (input, format) = match &self.input {
            Some((input, format)) if !self.tree_built => (input, format),
            _ => {
                // Built from a tree (another format): `tree::copy_all_but_matrix` carried them.
                for member in ["indices", "indptr"] {
                    if self.node_attrs(&key_in(path, member))?.is_none() {
                        return Err(self.fail(format!(
                            "{path}/{member}: missing; the sparsity structure was not carried over"
                        )));
                    }
                }
                return Ok(());
            }
        };
        let attrs = match format {
            ZarrFormat::V3 => read_json(input, &key_in(path, "zarr.json"))
                .ok()
                .flatten()
                .and_then(|d| d.get("attributes").cloned()),
            ZarrFormat::V2 => read_json(input, &key_in(path, ".zattrs")).ok().flatten(),
        }
        .unwrap_or(Value::Null);
        let is_csr = attrs.get("encoding-type").and_then(|v| v.as_str()) == Some("csr_matrix")
            || attrs.get("h5sparse_format").and_then(|v| v.as_str()) == Some("csr");
        let shape = attrs
            .get("shape")
            .or_else(|| attrs.get("h5sparse_shape"))
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_u64()).collect::<Vec<_>>());
        if !is_csr || shape != Some(vec![spec.n_obs, spec.n_vars]) {
            return Err(self.fail(format!(
                "{path}: cannot copy indices and indptr: the input is not a CSR matrix of shape ({}, {})",
                spec.n_obs, spec.n_vars
            )));
        }
        let budget = self.memory / 2;
        for member in ["indices", "indptr"] {
            let node = format!("{path}/{member}");
            let keys = copy::node_keys(input, &node).map_err(|e| self.wrap(e))?;
            match self.deferred.as_mut() {
                Some(deferred) => deferred.extend(keys),
                None => {
                    copy::copy_keys(input, &self.storage, &keys, budget)
                        .map_err(|e| self.wrap(e))?;
                }
            }
        }
        Ok(())
    }
}
