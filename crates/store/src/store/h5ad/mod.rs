//! The .h5ad (HDF5) backend.
//!
//! * [`H5adInput`]: an AnnData file opened read-only (no HDF5 file locking), with
//!   [`MatrixSource`]s (sparse or dense) for X and layers (`csr_matrix`, `csc_matrix`, dense `array`, legacy
//!   `h5sparse_format`), any numeric dtype, chunked or contiguous, gzip/lzf/shuffle.
//! * [`H5adOutput`]: the output, a raw (`H5Ocopy`) copy of everything but the normalized
//!   element, under a temporary name until [`OutputStore::commit`].
//! * [`AnnDataWriter`]: brand-new AnnData files (the synthetic data generator).
//! * [`inspect`]: a readable listing of a file.

mod chunks;
pub(crate) mod encoding;
pub(crate) mod file;
mod filters;
mod inspect;
mod layout;
mod legacy;
mod output;
mod rawcopy;
mod refs;
mod sink;
mod source;
mod tree;
mod upgrade;
mod vlen;
mod writer;

use std::path::{Path, PathBuf};

use hdf5::{File, Group};

pub use inspect::inspect;
pub use output::H5adOutput;
pub use source::H5adSource;
pub use tree::H5adTreeWriter;
pub use writer::{AnnDataWriter, Compression};

use crate::error::{Error, Result};
use crate::store::{ElementPath, InputStore, MatrixSource};

/// An AnnData .h5ad file opened for reading.
pub struct H5adInput {
    path: PathBuf,
    file: File,
    obs_len: Option<u64>,
    var_len: Option<u64>,
}

impl H5adInput {
    /// Opens `path` read-only (HDF5 file locking off) and checks that it is AnnData
    /// (`obs` and `var` at the top level).
    pub fn open(path: &Path) -> Result<Self> {
        let file = file::open_read(path).map_err(|problem| Error::input(path, "/", problem))?;
        encoding::check_anndata(&file).map_err(|p| p.into_input(path))?;
        let obs_len = encoding::dataframe_len(&file, "obs");
        let var_len = encoding::dataframe_len(&file, "var");
        Ok(H5adInput {
            path: path.to_path_buf(),
            file,
            obs_len,
            var_len,
        })
    }

    /// Number of observations (rows of obs) when the obs index can be read.
    pub fn n_obs(&self) -> Option<u64> {
        self.obs_len
    }

    /// Number of variables (rows of var) when the var index can be read.
    pub fn n_vars(&self) -> Option<u64> {
        self.var_len
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn path_buf(&self) -> PathBuf {
        self.path.clone()
    }

    fn root(&self) -> &Group {
        &self.file
    }
}

impl InputStore for H5adInput {
    fn path(&self) -> &Path {
        &self.path
    }

    fn open_matrix(&self, element: &ElementPath) -> Result<MatrixSource<'_>> {
        let path = element.store_path();
        let elem = encoding::open_matrix(self.root(), &path, self.obs_len, self.var_len)
            .map_err(|p| p.into_input(&self.path))?;
        Ok(MatrixSource::by_layout(H5adSource::new(
            self.path.clone(),
            path,
            elem,
        )))
    }

    fn has_uns(&self, key: &str) -> Result<bool> {
        Ok(encoding::node(self.root(), &format!("uns/{key}")).is_some())
    }

    fn var_names(&self, positions: &[u64]) -> Result<Vec<String>> {
        if encoding::node(self.root(), "var").is_none() {
            // No var (anndata-rs): anndata names the variables "0", "1", ...
            return Ok(positions.iter().map(u64::to_string).collect());
        }
        let names =
            encoding::dataframe_index(self.root(), "var").map_err(|p| p.into_input(&self.path))?;
        positions
            .iter()
            .map(|&i| {
                names.get(i as usize).cloned().ok_or_else(|| {
                    Error::input(
                        &self.path,
                        "var",
                        format!("variable {i} requested, but var has {}", names.len()),
                    )
                })
            })
            .collect()
    }
}
