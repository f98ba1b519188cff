//! Storage backends behind small traits.
//!
//! A backend knows AnnData's on-disk encodings and how to move bytes; it knows nothing of
//! normalization. The engine reads a [`MatrixSource`] in row blocks and writes a
//! [`MatrixSink`] in order; an [`OutputStore`] is a complete copy of the input in the making
//! (every element but the normalized one already carried over) that only becomes visible
//! under the output's name on [`OutputStore::commit`].

pub(crate) mod anndata;
pub mod categorize;
pub mod check;
pub mod h5ad;
mod labels;
pub mod temp;
pub mod tenx;
pub mod tree;
pub mod upgrade;
pub mod zarr;

use std::path::Path;

use crate::error::Result;
pub use atlasnorm_core::store::*;

/// An opened input, by backend. The engine reads it as an [`InputStore`]; the checks and the
/// output read its whole tree ([`Input::tree`]), and an output of the same backend copies
/// from it as encoded bytes.
pub enum Input {
    /// An `.h5ad` file.
    H5ad(h5ad::H5adInput),
    /// A `.zarr` store, local or on object storage.
    Zarr(zarr::ZarrInput),
    /// A Cell Ranger `.h5` or matrix directory, as scanpy's reader builds the `AnnData`.
    Tenx(tenx::TenxInput),
}

impl Input {
    /// The input as the engine reads it.
    pub fn store(&self) -> &dyn InputStore {
        match self {
            Input::H5ad(i) => i,
            Input::Zarr(i) => i,
            Input::Tenx(i) => i,
        }
    }

    /// Every element of the input, as a tree.
    pub fn tree(&self) -> &dyn tree::TreeReader {
        match self {
            Input::H5ad(i) => i,
            Input::Zarr(i) => i,
            Input::Tenx(i) => i,
        }
    }
}

impl InputStore for Input {
    fn path(&self) -> &Path {
        self.store().path()
    }
    fn open_matrix(&self, element: &ElementPath) -> Result<MatrixSource<'_>> {
        self.store().open_matrix(element)
    }
    fn has_uns(&self, key: &str) -> Result<bool> {
        self.store().has_uns(key)
    }
    fn var_names(&self, positions: &[u64]) -> Result<Vec<String>> {
        self.store().var_names(positions)
    }
}

/// Opens an AnnData input, choosing the backend by the path's form.
pub fn open_input(path: &Path) -> Result<Input> {
    open_input_with(path, &zarr::s3::S3Config::default())
}

/// [`open_input`], reaching `s3://` stores with `s3` (environment plus overrides).
pub fn open_input_with(path: &Path, s3: &zarr::s3::S3Config) -> Result<Input> {
    match backend_of(path) {
        Backend::H5ad => Ok(Input::H5ad(h5ad::H5adInput::open(path)?)),
        Backend::Zarr => Ok(Input::Zarr(zarr::ZarrInput::open_with(path, s3)?)),
    }
}

/// Opens INPUT for `atlasnorm normalize`: a 10x input (Cell Ranger `.h5`, matrix
/// directory) as scanpy's reader would build it, else an AnnData store by the path's form.
/// `output`: a 10x matrix.mtx is sorted next to it (in the system's temporary directory
/// when it is on object storage).
pub fn open_input_for(path: &Path, output: &Path, options: &crate::Options) -> Result<Input> {
    if tenx::detect(path).is_some() {
        // A matrix.mtx is sorted next to a local OUTPUT; for object storage, locally.
        let scratch = match is_object_storage(output) {
            false => output.to_path_buf(),
            true => std::env::temp_dir().join(format!("atlasnorm-{}", std::process::id())),
        };
        return Ok(Input::Tenx(tenx::TenxInput::open(
            path,
            &options.tenx,
            &scratch,
            options.params.memory,
        )?));
    }
    if options.tenx != tenx::TenxOptions::default() {
        return Err(crate::error::Error::Options(format!(
            "--genome and --all-features apply to 10x inputs; {} is not one",
            path.display()
        )));
    }
    open_input_with(path, &options.s3)
}

/// True when `path` names a directory store (`.zarr`, or object storage), false for an
/// `.h5ad` file.
pub fn is_directory_store(path: &Path) -> bool {
    matches!(backend_of(path), Backend::Zarr)
}

/// True for `s3://...` (object storage).
pub fn is_object_storage(path: &Path) -> bool {
    path.to_string_lossy().starts_with("s3://")
}

/// Starts an output at a temporary name next to `output`: a copy of everything in `input`
/// except `normalized`, which the engine then writes through [`OutputStore::create_matrix`].
/// `options` supplies the zarr output layout and the memory budget for copying.
pub fn create_output(
    input: &Input,
    output: &Path,
    normalized: &ElementPath,
    options: &crate::Options,
) -> Result<Box<dyn OutputStore>> {
    let element = normalized.store_path();
    let budget = options.params.memory / 2;
    match (backend_of(output), input) {
        (Backend::H5ad, Input::H5ad(h5ad_input)) => Ok(Box::new(h5ad::H5adOutput::create(
            h5ad_input, output, normalized,
        )?)),
        (Backend::H5ad, _) => Ok(Box::new(h5ad::H5adOutput::create_from_tree(
            input.tree(),
            input.path(),
            output,
            normalized,
            budget,
        )?)),
        (Backend::Zarr, _) => {
            let zarr_input = match input {
                Input::Zarr(i) => Some(i),
                _ => None,
            };
            if let Some(zarr_input) = zarr_input {
                // Same format and layout: untouched elements (and a CSR matrix's structure)
                // are copied as encoded bytes. A format, codec, chunk or shard choice means
                // re-encoding: through the tree below.
                let z = &options.zarr;
                let same_format = z.format.is_none_or(|f| f == zarr_input.zarr_format());
                let same_layout = z.codec.is_none() && z.chunk.is_none() && z.shard.is_none();
                // anndata 0.7's uns scalars are upgraded on the way, as anndata does.
                if same_format && same_layout && !zarr_input.has_legacy_uns_scalars()? {
                    let mut out = zarr::ZarrOutput::create(
                        zarr::input_storage(zarr_input),
                        output,
                        normalized,
                        options,
                    )?;
                    out.categorize_copied_frames(zarr_input)?;
                    return Ok(Box::new(out));
                }
            }
            // Another format, zarr version or layout: re-encode the tree.
            let layout_from = zarr_input.and_then(zarr::input_storage);
            let mut out =
                zarr::ZarrOutput::create_for_tree(layout_from, output, normalized, options)?;
            tree::copy_all_but_matrix(input.tree(), &mut out, &element, budget)?;
            Ok(Box::new(out))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    H5ad,
    Zarr,
}

fn backend_of(path: &Path) -> Backend {
    let text = path.to_string_lossy();
    let trimmed = text.trim_end_matches('/');
    if trimmed.ends_with(".zarr") || text.starts_with("s3://") {
        Backend::Zarr
    } else {
        Backend::H5ad
    }
}
