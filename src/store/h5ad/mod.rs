//! The .h5ad (HDF5) backend. (Being written: see the h5ad worktree.)

use std::path::{Path, PathBuf};

use crate::array::NumVec;
use crate::error::{Error, Result};
use crate::store::{
    ElementPath, InputStore, MatrixSink, MatrixSource, OutputMatrixSpec, OutputStore,
};

pub struct H5adInput {
    path: PathBuf,
}

impl H5adInput {
    pub fn open(path: &Path) -> Result<Self> {
        Err(Error::input(path, "/", "h5ad backend not written yet"))
    }
}

impl InputStore for H5adInput {
    fn path(&self) -> &Path {
        &self.path
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn open_matrix(&self, _element: &ElementPath) -> Result<Box<dyn MatrixSource + '_>> {
        unimplemented!()
    }
    fn has_uns_log1p(&self) -> Result<bool> {
        unimplemented!()
    }
    fn var_names(&self, _positions: &[u64]) -> Result<Vec<String>> {
        unimplemented!()
    }
}

pub struct H5adOutput;

impl H5adOutput {
    pub fn create(_input: &H5adInput, output: &Path, _normalized: &ElementPath) -> Result<Self> {
        Err(Error::output(output, "h5ad backend not written yet"))
    }
}

impl OutputStore for H5adOutput {
    fn create_matrix(
        &mut self,
        _e: &ElementPath,
        _s: &OutputMatrixSpec,
    ) -> Result<Box<dyn MatrixSink + '_>> {
        unimplemented!()
    }
    fn write_obs_column(&mut self, _name: &str, _values: &NumVec) -> Result<()> {
        unimplemented!()
    }
    fn write_uns_log1p(&mut self, _base: Option<f64>) -> Result<()> {
        unimplemented!()
    }
    fn commit(self: Box<Self>) -> Result<()> {
        unimplemented!()
    }
}

pub fn inspect(path: &Path) -> Result<String> {
    Err(Error::input(path, "/", "not written yet"))
}

pub fn write_synthetic(
    args: &crate::synth::SynthArgs,
    _cells: u64,
    _genes: u64,
    _g: &crate::synth::Generator,
) -> Result<crate::synth::Stats> {
    Err(Error::output(&args.output, "not written yet"))
}
