//! The in-memory backend: a matrix held in vectors as input, and an output that records
//! what the engine wrote. The engine's contract with storage, without files — for tests, and
//! for callers whose data already sits in memory.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::array::NumVec;
use crate::store::{
    DenseSource, ElementPath, InputStore, MatrixLayout, MatrixMeta, MatrixSink, MatrixSource,
    OutputMatrixSpec, OutputStore, SparseSource, StoredMatrix, UnsValue,
};
use crate::Result;

/// A matrix held in memory: CSR/CSC (`indptr`, `indices`, `data`) or dense (`data`, row-major).
#[derive(Clone, Debug)]
pub struct MemoryMatrix {
    /// Layout, shape and dtypes.
    pub meta: MatrixMeta,
    /// Sparse: major-axis offsets (empty when dense).
    pub indptr: Vec<i64>,
    /// Sparse: minor-axis positions (empty when dense).
    pub indices: Vec<i64>,
    /// The stored values (dense: row-major).
    pub data: NumVec,
}

impl StoredMatrix for MemoryMatrix {
    fn meta(&self) -> &MatrixMeta {
        &self.meta
    }
}

/// `r` as indices into an array of `len` elements, or the error a file-backed source gives.
fn within(member: &str, r: &Range<u64>, len: usize) -> Result<Range<usize>> {
    if r.start > r.end || r.end > len as u64 {
        return Err(crate::Error::Internal(format!(
            "{member}: elements {}..{} requested, but it has {len}",
            r.start, r.end
        )));
    }
    Ok(r.start as usize..r.end as usize)
}

impl SparseSource for MemoryMatrix {
    fn read_indptr(&self, r: Range<u64>) -> Result<Vec<i64>> {
        Ok(self.indptr[within("indptr", &r, self.indptr.len())?].to_vec())
    }
    fn read_indices(&self, r: Range<u64>) -> Result<NumVec> {
        Ok(NumVec::I64(
            self.indices[within("indices", &r, self.indices.len())?].to_vec(),
        ))
    }
    fn read_data(&self, r: Range<u64>) -> Result<NumVec> {
        Ok(self.data.slice(within("data", &r, self.data.len())?))
    }
}

impl DenseSource for MemoryMatrix {
    fn read_rows(&self, rows: Range<u64>) -> Result<NumVec> {
        let n = self.meta.n_vars;
        let values = within("data", &(rows.start * n..rows.end * n), self.data.len())?;
        Ok(self.data.slice(values))
    }
}

/// An input holding one matrix, X.
pub struct MemoryInput {
    /// The name errors give as the file.
    pub path: PathBuf,
    /// The matrix.
    pub matrix: MemoryMatrix,
}

impl InputStore for MemoryInput {
    fn path(&self) -> &Path {
        &self.path
    }
    fn open_matrix(&self, element: &ElementPath) -> Result<MatrixSource<'_>> {
        match element {
            ElementPath::X => Ok(MatrixSource::by_layout(&self.matrix)),
            ElementPath::Layer(_) => Err(crate::Error::input(
                &self.path,
                element.store_path(),
                "no such element (an in-memory input holds X only)",
            )),
        }
    }
    fn has_uns(&self, _key: &str) -> Result<bool> {
        Ok(false)
    }
    fn var_names(&self, positions: &[u64]) -> Result<Vec<String>> {
        Ok(positions.iter().map(|p| format!("gene{p}")).collect())
    }
}

/// What the engine wrote.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct Written {
    /// The output matrix as created.
    pub spec: Option<OutputMatrixSpec>,
    /// Every `append_data`, in order.
    pub data: Vec<NumVec>,
    /// Appended CSR indices (when the structure is written).
    pub indices: Vec<i64>,
    /// Appended CSR indptr entries (when the structure is written).
    pub indptr: Vec<i64>,
    /// obs columns written, in order.
    pub obs: Vec<(String, NumVec)>,
    /// `uns` entries written, in order.
    pub uns: Vec<(String, UnsValue)>,
    /// Whether the output was committed.
    pub committed: bool,
}

/// Bit patterns of a float buffer, so NaN compares equal to the same NaN.
pub fn bits(v: &NumVec) -> Vec<u64> {
    match v {
        NumVec::F32(x) => x.iter().map(|f| f.to_bits() as u64).collect(),
        NumVec::F64(x) => x.iter().map(|f| f.to_bits()).collect(),
        _ => panic!("output must be float"),
    }
}

impl Written {
    /// obs columns written, as bit patterns.
    pub fn obs_bits(&self) -> Vec<(String, Vec<u64>)> {
        self.obs.iter().map(|(k, v)| (k.clone(), bits(v))).collect()
    }

    /// All data appends joined, as f64 bit patterns of the working dtype.
    pub fn data_bits(&self) -> Vec<u64> {
        self.data.iter().flat_map(bits).collect()
    }
}

/// An output recording what the engine wrote (clones share the record).
#[derive(Clone, Default)]
pub struct MemoryOutput(pub Arc<Mutex<Written>>);

struct MemorySink(Arc<Mutex<Written>>);

impl MatrixSink for MemorySink {
    fn append_data(&mut self, values: &NumVec) -> Result<()> {
        self.0.lock().unwrap().data.push(values.clone());
        Ok(())
    }
    fn append_indices(&mut self, indices: &[i64]) -> Result<()> {
        self.0.lock().unwrap().indices.extend_from_slice(indices);
        Ok(())
    }
    fn append_indptr(&mut self, indptr: &[i64]) -> Result<()> {
        self.0.lock().unwrap().indptr.extend_from_slice(indptr);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

impl OutputStore for MemoryOutput {
    fn create_matrix(
        &mut self,
        _e: &ElementPath,
        spec: &OutputMatrixSpec,
    ) -> Result<Box<dyn MatrixSink + '_>> {
        self.0.lock().unwrap().spec = Some(spec.clone());
        Ok(Box::new(MemorySink(self.0.clone())))
    }
    fn write_obs_column(&mut self, name: &str, values: &NumVec) -> Result<()> {
        self.0
            .lock()
            .unwrap()
            .obs
            .push((name.to_string(), values.clone()));
        Ok(())
    }
    fn write_uns(&mut self, key: &str, value: &UnsValue) -> Result<()> {
        let mut written = self.0.lock().unwrap();
        written.uns.retain(|(k, _)| k != key);
        written.uns.push((key.to_string(), value.clone()));
        Ok(())
    }
    fn commit(self: Box<Self>) -> Result<()> {
        self.0.lock().unwrap().committed = true;
        Ok(())
    }
}

/// CSR, CSC (same entries, transposed storage) or dense versions of one random count matrix.
pub fn layouts_of(
    n_obs: usize,
    n_vars: usize,
    entries: &[(usize, usize, f32)],
) -> (MemoryMatrix, MemoryMatrix, MemoryMatrix) {
    let meta = |layout, nnz| MatrixMeta {
        layout,
        n_obs: n_obs as u64,
        n_vars: n_vars as u64,
        data_dtype: crate::array::DType::F32,
        nnz,
        indices_dtype: Some(crate::array::DType::I64),
        indptr_dtype: Some(crate::array::DType::I64),
    };
    type Key<'a> = &'a dyn Fn(&(usize, usize, f32)) -> (usize, usize);
    let compress = |major: usize, key: Key| {
        let mut sorted: Vec<(usize, usize, f32)> = entries.to_vec();
        sorted.sort_by_key(|e| key(e));
        let mut indptr = vec![0i64; major + 1];
        for e in &sorted {
            indptr[key(e).0 + 1] += 1;
        }
        for i in 0..major {
            indptr[i + 1] += indptr[i];
        }
        let indices = sorted.iter().map(|e| key(e).1 as i64).collect();
        let data = NumVec::F32(sorted.iter().map(|e| e.2).collect());
        (indptr, indices, data)
    };
    let (p, i, d) = compress(n_obs, &|e| (e.0, e.1));
    let csr = MemoryMatrix {
        meta: meta(MatrixLayout::Csr, entries.len() as u64),
        indptr: p,
        indices: i,
        data: d,
    };
    let (p, i, d) = compress(n_vars, &|e| (e.1, e.0));
    let csc = MemoryMatrix {
        meta: meta(MatrixLayout::Csc, entries.len() as u64),
        indptr: p,
        indices: i,
        data: d,
    };
    let mut dense = vec![0f32; n_obs * n_vars];
    for &(r, c, v) in entries {
        dense[r * n_vars + c] += v;
    }
    let dense = MemoryMatrix {
        meta: meta(MatrixLayout::Dense, (n_obs * n_vars) as u64),
        indptr: Vec::new(),
        indices: Vec::new(),
        data: NumVec::F32(dense),
    };
    (csr, csc, dense)
}
