//! Opening an AnnData `.zarr` store for reading.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::{ElementPath, InputStore, MatrixSource};

/// An AnnData `.zarr` store opened for reading.
pub struct ZarrInput {
    path: PathBuf,
}

impl ZarrInput {
    pub fn open(path: &Path) -> Result<Self> {
        Err(Error::input(path, "/", ".zarr input is not supported yet"))
    }
}

impl InputStore for ZarrInput {
    fn path(&self) -> &Path {
        &self.path
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn open_matrix(&self, _element: &ElementPath) -> Result<Box<dyn MatrixSource + '_>> {
        unreachable!()
    }
    fn has_uns_log1p(&self) -> Result<bool> {
        unreachable!()
    }
    fn var_names(&self, _positions: &[u64]) -> Result<Vec<String>> {
        unreachable!()
    }
}
