//! Writing brand-new AnnData files (used by the synthetic data generator), laid out as
//! anndata 0.13 writes them.

use std::path::{Path, PathBuf};

use hdf5::filters::Filter;
use hdf5::types::VarLenUnicode;
use hdf5::{File, Group};

use super::file::{
    create_write, set_encoding, set_i64_array_attr, set_str_array_attr, set_str_attr, short,
};
use super::layout::{create_dataset, guess_chunk, Storage};
use super::sink::{Appender, CsrSink};
use crate::array::DType;
use crate::error::{Error, Result};
use crate::store::temp::TempFile;
use crate::store::MatrixSink;

/// Compression of the datasets of a new file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    /// Deflate at this level (anndata's `compression="gzip"` uses 4).
    Gzip(u8),
    /// h5py's LZF filter (32000).
    Lzf,
}

impl Compression {
    fn filters(self) -> Vec<Filter> {
        match self {
            Compression::None => Vec::new(),
            Compression::Gzip(level) => vec![Filter::Deflate(level.min(9))],
            Compression::Lzf => vec![Filter::LZF],
        }
    }
}

/// A new AnnData file: root attributes, empty `obsm`, `varm`, `obsp`, `varp`, `layers` and
/// `uns`, then the obs/var indexes and a CSR `X` written by the caller. It lives under a
/// temporary name until [`AnnDataWriter::finish`]; dropped before that, it is removed.
pub struct AnnDataWriter {
    file: Option<File>,
    tmp: TempFile,
    target: PathBuf,
    n_obs: u64,
    n_vars: u64,
    compression: Compression,
    chunk_len: u64,
    has_obs: bool,
    has_var: bool,
    has_x: bool,
}

impl AnnDataWriter {
    /// Starts `path` (written as `.NAME.atlasnorm-PID.tmp` next to it). `chunk_len`: elements
    /// per chunk of X's arrays.
    pub fn create(
        path: &Path,
        n_obs: u64,
        n_vars: u64,
        compression: Compression,
        chunk_len: u64,
    ) -> Result<Self> {
        let tmp = TempFile::next_to(path)?;
        let fail = |e: hdf5::Error| Error::output(path, short(&e));
        let file = tmp.create(create_write).map_err(|e| {
            Error::output(
                path,
                format!("cannot create {}: {}", tmp.path.display(), short(&e)),
            )
        })?;
        set_encoding(&file, "anndata", "0.1.0").map_err(fail)?;
        for name in ["layers", "obsm", "obsp", "uns", "varm", "varp"] {
            let g = file.create_group(name).map_err(fail)?;
            set_encoding(&g, "dict", "0.1.0").map_err(fail)?;
        }
        Ok(AnnDataWriter {
            file: Some(file),
            tmp,
            target: path.to_path_buf(),
            n_obs,
            n_vars,
            compression,
            chunk_len: chunk_len.max(1),
            has_obs: false,
            has_var: false,
            has_x: false,
        })
    }

    fn file(&self) -> &File {
        self.file.as_ref().expect("open until finish")
    }

    fn fail(&self, what: &str) -> impl Fn(hdf5::Error) -> Error + '_ {
        let what = what.to_string();
        move |e| Error::output(&self.target, format!("{what}: {}", short(&e)))
    }

    /// `obs` as a dataframe without columns whose index holds `names` (n_obs of them).
    pub fn write_obs_index(&mut self, names: &[String]) -> Result<()> {
        self.write_index("obs", names, self.n_obs)?;
        self.has_obs = true;
        Ok(())
    }

    /// `var` as a dataframe without columns whose index holds `names` (n_vars of them).
    pub fn write_var_index(&mut self, names: &[String]) -> Result<()> {
        self.write_index("var", names, self.n_vars)?;
        self.has_var = true;
        Ok(())
    }

    /// A dataframe index as anndata 0.13 writes pandas 3 string indexes: a
    /// `nullable-string-array` group with `values` (UTF-8 strings) and `mask` (bool).
    fn write_index(&self, name: &str, names: &[String], expected: u64) -> Result<()> {
        if names.len() as u64 != expected {
            return Err(Error::output(
                &self.target,
                format!("{name}: {} names for {expected} entries", names.len()),
            ));
        }
        let file = self.file();
        let fail = self.fail(name);
        if file.link_exists(name) {
            file.unlink(name).map_err(&fail)?;
        }
        let df = file.create_group(name).map_err(&fail)?;
        set_str_attr(&df, "_index", "_index").map_err(&fail)?;
        set_str_array_attr(&df, "column-order", &[]).map_err(&fail)?;
        set_encoding(&df, "dataframe", "0.2.0").map_err(&fail)?;
        let index = df.create_group("_index").map_err(&fail)?;
        set_encoding(&index, "nullable-string-array", "0.1.0").map_err(&fail)?;
        set_str_attr(&index, "na-value", "NaN").map_err(&fail)?;
        let values: Vec<VarLenUnicode> = names
            .iter()
            .map(|s| s.replace('\0', "").parse().expect("no NUL after replace"))
            .collect();
        let n = names.len();
        let filters = self.compression.filters();
        let chunk = (!filters.is_empty() && n > 0).then(|| guess_chunk(&[n as u64], 8)[0] as usize);
        let mut b = index.new_dataset::<VarLenUnicode>().shape(n);
        if let Some(c) = chunk {
            b = b.chunk(c).set_filters(&filters);
        }
        let ds = b.create("values").map_err(&fail)?;
        ds.write_raw(&values).map_err(&fail)?;
        set_encoding(&ds, "string-array", "0.2.0").map_err(&fail)?;
        let mask = vec![false; n];
        let mut b = index.new_dataset::<bool>().shape(n);
        if let Some(c) = chunk {
            b = b.chunk(c).set_filters(&filters);
        }
        let ds = b.create("mask").map_err(&fail)?;
        ds.write_raw(&mask).map_err(&fail)?;
        set_encoding(&ds, "array", "0.2.0").map_err(&fail)?;
        Ok(())
    }

    /// Starts X as a CSR matrix (`csr_matrix` 0.1.0). Append `indptr` (n_obs + 1 entries in
    /// all), `indices` and `data` in order; the number of values need not be known ahead.
    /// `data` may be any numeric dtype (float32 or integer counts), `indices` and `indptr`
    /// any integer dtype (anndata writes int32 indices, int32 or int64 indptr).
    pub fn csr_x(
        &mut self,
        data: DType,
        indices: DType,
        indptr: DType,
    ) -> Result<Box<dyn MatrixSink + '_>> {
        if !indices.is_integer() || !indptr.is_integer() {
            return Err(Error::output(
                &self.target,
                "X: indices and indptr must be integers",
            ));
        }
        let file = self.file().clone();
        let target = self.target.clone();
        let fail = move |e: hdf5::Error| Error::output(&target, format!("X: {}", short(&e)));
        if file.link_exists("X") {
            file.unlink("X").map_err(&fail)?;
        }
        let x = file.create_group("X").map_err(&fail)?;
        set_encoding(&x, "csr_matrix", "0.1.0").map_err(&fail)?;
        set_i64_array_attr(&x, "shape", &[self.n_obs as i64, self.n_vars as i64]).map_err(&fail)?;
        let storage = Storage {
            chunk: Some(vec![self.chunk_len]),
            filters: self.compression.filters(),
        };
        let appender = |x: &Group, name: &str, dtype: DType, expected: Option<u64>| {
            let ds = create_dataset(x, name, dtype, &[0], &storage)?;
            Appender::new(
                ds,
                format!("X/{name}"),
                dtype,
                1,
                Some(self.chunk_len),
                expected,
            )
        };
        let data = appender(&x, "data", data, None).map_err(&fail)?;
        let indices = appender(&x, "indices", indices, None).map_err(&fail)?;
        let indptr = appender(&x, "indptr", indptr, Some(self.n_obs + 1)).map_err(&fail)?;
        self.has_x = true;
        Ok(Box::new(CsrSink {
            file: self.target.clone(),
            data,
            indices: Some(indices),
            indptr: Some(indptr),
            indptr_len: Some(self.n_obs + 1),
            last_indptr: None,
        }))
    }

    /// X's arrays agree: indptr has n_obs + 1 entries ending at len(data) == len(indices)
    /// (catches a sink dropped without `finish`).
    fn check_x(&self) -> Result<()> {
        let x = self.file().group("X").map_err(self.fail("X"))?;
        let len = |name: &str| -> Result<u64> {
            Ok(x.dataset(name).map_err(self.fail("X"))?.shape()[0] as u64)
        };
        let (n_data, n_indices, n_indptr) = (len("data")?, len("indices")?, len("indptr")?);
        let last = if n_indptr > 0 {
            let ds = x.dataset("indptr").map_err(self.fail("X/indptr"))?;
            super::source::read_1d(&ds, DType::I64, n_indptr - 1..n_indptr)
                .map_err(self.fail("X/indptr"))?
                .to_i64()
                .and_then(|v| v.first().copied())
        } else {
            None
        };
        if n_indptr != self.n_obs + 1 || n_indices != n_data || last != Some(n_data as i64) {
            return Err(Error::output(
                &self.target,
                format!(
                    "X is incomplete (was its sink finished?): indptr has {n_indptr} of {} entries \
                     ending at {last:?}, data {n_data}, indices {n_indices}",
                    self.n_obs + 1
                ),
            ));
        }
        Ok(())
    }

    /// Writes default indexes ("0", "1", ...) if none were given, closes the file and moves
    /// it to its final name. X must have been written (and its sink finished).
    pub fn finish(mut self) -> Result<()> {
        if !self.has_x {
            return Err(Error::output(&self.target, "X was not written"));
        }
        if !self.has_obs {
            let names: Vec<String> = (0..self.n_obs).map(|i| i.to_string()).collect();
            self.write_obs_index(&names)?;
        }
        if !self.has_var {
            let names: Vec<String> = (0..self.n_vars).map(|i| i.to_string()).collect();
            self.write_var_index(&names)?;
        }
        self.check_x()?;
        if let Some(file) = self.file.take() {
            file.close()
                .map_err(|e| Error::output(&self.target, format!("cannot close: {}", short(&e))))?;
        }
        std::fs::rename(&self.tmp.path, &self.target).map_err(|e| {
            Error::output(
                &self.target,
                format!(
                    "cannot move {} to its final name: {e}",
                    self.tmp.path.display()
                ),
            )
        })?;
        self.tmp.keep();
        Ok(())
    }
}
