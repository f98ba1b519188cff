//! Hyperslab reads of a stored matrix ([`SparseSource`] and [`DenseSource`]).

use std::ops::Range;
use std::path::PathBuf;

use hdf5::{Dataset, H5Type};

use super::chunks::{ChunkMap, NotRaw, RawChunks};
use super::encoding::MatrixElem;
use super::file::read_problem;
use crate::array::by_dtype;
use crate::array::{as_bytes_mut, DType, NumVec, Plain};
use crate::error::{Error, Result};
use crate::store::{DenseSource, MatrixLayout, MatrixMeta, SparseSource, StoredMatrix};

enum Arrays {
    Sparse {
        data: Dataset,
        indices: Dataset,
        indptr: Dataset,
    },
    Dense(Dataset),
}

/// Raw-chunk plans of the arrays (`None`: read through HDF5's pipeline).
#[derive(Default)]
struct Raw {
    data: Option<RawChunks>,
    indices: Option<RawChunks>,
    indptr: Option<RawChunks>,
    /// Where the chunks of data and indices lie in the file (read with `pread`, outside
    /// HDF5's lock).
    data_map: Option<ChunkMap>,
    indices_map: Option<ChunkMap>,
}

impl Raw {
    fn mapped(mut self, file: &std::path::Path, data: &Dataset, indices: Option<&Dataset>) -> Self {
        self.data_map = self.data.as_ref().and_then(|r| ChunkMap::of(data, r, file));
        if let Some(ds) = indices {
            self.indices_map = self
                .indices
                .as_ref()
                .and_then(|r| ChunkMap::of(ds, r, file));
        }
        self
    }
}

/// A matrix of an .h5ad file, opened for reading.
pub struct H5adSource {
    file: PathBuf,
    element: String,
    meta: MatrixMeta,
    arrays: Arrays,
    raw: Raw,
}

impl H5adSource {
    pub(crate) fn new(file: PathBuf, element: String, elem: MatrixElem) -> Self {
        match elem {
            MatrixElem::Sparse(s) => H5adSource {
                raw: Raw {
                    data: RawChunks::of(&s.data, s.data_dtype),
                    indices: RawChunks::of(&s.indices, s.indices_dtype),
                    indptr: RawChunks::of(&s.indptr, s.indptr_dtype),
                    ..Raw::default()
                }
                .mapped(&file, &s.data, Some(&s.indices)),
                file,
                element,
                meta: MatrixMeta {
                    layout: s.layout,
                    n_obs: s.shape.0,
                    n_vars: s.shape.1,
                    data_dtype: s.data_dtype,
                    nnz: s.nnz,
                    indices_dtype: Some(s.indices_dtype),
                    indptr_dtype: Some(s.indptr_dtype),
                },
                arrays: Arrays::Sparse {
                    data: s.data,
                    indices: s.indices,
                    indptr: s.indptr,
                },
            },
            MatrixElem::Dense(d) => H5adSource {
                raw: Raw {
                    data: RawChunks::of(&d.ds, d.dtype),
                    ..Raw::default()
                }
                .mapped(&file, &d.ds, None),
                file,
                element,
                meta: MatrixMeta {
                    layout: MatrixLayout::Dense,
                    n_obs: d.shape.0,
                    n_vars: d.shape.1,
                    data_dtype: d.dtype,
                    nnz: d.shape.0 * d.shape.1,
                    indices_dtype: None,
                    indptr_dtype: None,
                },
                arrays: Arrays::Dense(d.ds),
            },
        }
    }

    fn fail(&self, member: &str, problem: impl Into<String>) -> Error {
        let element = if member.is_empty() {
            self.element.clone()
        } else {
            format!("{}/{member}", self.element)
        };
        Error::input(&self.file, element, problem)
    }

    fn sparse(&self, what: &str) -> Result<(&Dataset, &Dataset, &Dataset)> {
        match &self.arrays {
            Arrays::Sparse {
                data,
                indices,
                indptr,
            } => Ok((data, indices, indptr)),
            Arrays::Dense(_) => Err(self.fail("", format!("is dense: it has no {what}"))),
        }
    }

    /// Reads `range` of a 1-D member after checking it is inside the array.
    #[allow(clippy::too_many_arguments)]
    fn read_member_into(
        &self,
        ds: &Dataset,
        raw: Option<&RawChunks>,
        map: Option<&ChunkMap>,
        member: &str,
        dtype: DType,
        len: u64,
        range: Range<u64>,
        out: &mut NumVec,
    ) -> Result<()> {
        self.check_range(member, len, &range)?;
        if let Some(r) = raw {
            if read_raw_into(r, ds, map, dtype, range.clone(), out).is_ok() {
                return Ok(());
            }
        }
        *out = self.read_member(ds, None, member, dtype, len, range)?;
        Ok(())
    }

    fn check_range(&self, member: &str, len: u64, range: &Range<u64>) -> Result<()> {
        if range.start > range.end || range.end > len {
            return Err(self.fail(
                member,
                format!(
                    "elements {}..{} requested, but it has {len}",
                    range.start, range.end
                ),
            ));
        }
        Ok(())
    }

    /// Reads `range` of a 1-D member after checking it is inside the array.
    fn read_member(
        &self,
        ds: &Dataset,
        raw: Option<&RawChunks>,
        member: &str,
        dtype: DType,
        len: u64,
        range: Range<u64>,
    ) -> Result<NumVec> {
        self.check_range(member, len, &range)?;
        if let Some(v) = raw.and_then(|r| read_raw(r, ds, dtype, range.clone())) {
            return Ok(v);
        }
        read_1d(ds, dtype, range.clone()).map_err(|e| {
            self.fail(
                member,
                read_problem(ds, &format!("elements {}..{}", range.start, range.end), &e),
            )
        })
    }
}

fn slice_1d<T: H5Type>(ds: &Dataset, r: Range<u64>) -> hdf5::Result<Vec<T>> {
    if r.is_empty() {
        return Ok(Vec::new());
    }
    let a = ds.read_slice_1d::<T, _>(r.start as usize..r.end as usize)?;
    Ok(a.into_raw_vec_and_offset().0)
}

fn rows_2d<T: H5Type + Copy>(ds: &Dataset, r: Range<u64>, n_cols: u64) -> hdf5::Result<Vec<T>> {
    if r.is_empty() || n_cols == 0 {
        return Ok(Vec::new());
    }
    let a = ds.read_slice_2d::<T, _>((r.start as usize..r.end as usize, ..))?;
    Ok(if a.is_standard_layout() {
        a.into_raw_vec_and_offset().0
    } else {
        a.iter().copied().collect()
    })
}

/// Elements `range` through raw chunks, decoded in parallel; `None` when that path cannot
/// deliver them (the caller reads through HDF5, which also describes any damage).
pub(crate) fn read_raw(
    raw: &RawChunks,
    ds: &Dataset,
    dtype: DType,
    range: Range<u64>,
) -> Option<NumVec> {
    fn typed<T: Plain>(
        raw: &RawChunks,
        ds: &Dataset,
        range: Range<u64>,
    ) -> std::result::Result<Vec<T>, NotRaw> {
        let mut v = vec![T::default(); (range.end - range.start) as usize];
        raw.read(ds, None, range, as_bytes_mut(&mut v))?;
        Ok(v)
    }
    by_dtype!(dtype, typed(raw, ds, range)).ok()
}

/// Elements `range` through raw chunks into `out`, reusing its allocation when it already
/// holds `dtype` (its contents are replaced; on `Err` they are unspecified).
pub(crate) fn read_raw_into(
    raw: &RawChunks,
    ds: &Dataset,
    map: Option<&ChunkMap>,
    dtype: DType,
    range: Range<u64>,
    out: &mut NumVec,
) -> std::result::Result<(), NotRaw> {
    fn typed<T: Plain>(
        raw: &RawChunks,
        ds: &Dataset,
        map: Option<&ChunkMap>,
        range: Range<u64>,
        v: &mut Vec<T>,
    ) -> std::result::Result<(), NotRaw> {
        let n = (range.end - range.start) as usize;
        // Only growth is zeroed, once per buffer: reused blocks are overwritten as they are.
        v.resize(n, T::default());
        raw.read(ds, map, range, as_bytes_mut(v))
    }
    if out.dtype() != dtype {
        *out = empty_of(dtype);
    }
    match out {
        NumVec::I8(v) => typed(raw, ds, map, range, v),
        NumVec::I16(v) => typed(raw, ds, map, range, v),
        NumVec::I32(v) => typed(raw, ds, map, range, v),
        NumVec::I64(v) => typed(raw, ds, map, range, v),
        NumVec::U8(v) => typed(raw, ds, map, range, v),
        NumVec::U16(v) => typed(raw, ds, map, range, v),
        NumVec::U32(v) => typed(raw, ds, map, range, v),
        NumVec::U64(v) => typed(raw, ds, map, range, v),
        NumVec::F32(v) => typed(raw, ds, map, range, v),
        NumVec::F64(v) => typed(raw, ds, map, range, v),
    }
}

/// An empty buffer of `dtype`.
fn empty_of(dtype: DType) -> NumVec {
    match dtype {
        DType::I8 => NumVec::I8(Vec::new()),
        DType::I16 => NumVec::I16(Vec::new()),
        DType::I32 => NumVec::I32(Vec::new()),
        DType::I64 => NumVec::I64(Vec::new()),
        DType::U8 => NumVec::U8(Vec::new()),
        DType::U16 => NumVec::U16(Vec::new()),
        DType::U32 => NumVec::U32(Vec::new()),
        DType::U64 => NumVec::U64(Vec::new()),
        DType::F32 => NumVec::F32(Vec::new()),
        DType::F64 => NumVec::F64(Vec::new()),
    }
}

/// `range` of a 1-D dataset in its stored dtype.
pub(crate) fn read_1d(ds: &Dataset, dtype: DType, range: Range<u64>) -> hdf5::Result<NumVec> {
    by_dtype!(dtype, slice_1d(ds, range))
}

impl StoredMatrix for H5adSource {
    fn meta(&self) -> &MatrixMeta {
        &self.meta
    }
}

impl SparseSource for H5adSource {
    fn read_indptr(&self, range: Range<u64>) -> Result<Vec<i64>> {
        let (_, _, indptr) = self.sparse("indptr")?;
        let major = match self.meta.layout {
            MatrixLayout::Csc => self.meta.n_vars,
            _ => self.meta.n_obs,
        };
        let dtype = self.meta.indptr_dtype.unwrap_or(DType::I64);
        let v = self.read_member(
            indptr,
            self.raw.indptr.as_ref(),
            "indptr",
            dtype,
            major + 1,
            range.clone(),
        )?;
        v.to_i64().ok_or_else(|| {
            self.fail(
                "indptr",
                format!(
                    "elements {}..{} hold a value above 2^63",
                    range.start, range.end
                ),
            )
        })
    }

    fn read_indices(&self, range: Range<u64>) -> Result<NumVec> {
        let (_, indices, _) = self.sparse("indices")?;
        let dtype = self.meta.indices_dtype.unwrap_or(DType::I64);
        self.read_member(
            indices,
            self.raw.indices.as_ref(),
            "indices",
            dtype,
            self.meta.nnz,
            range,
        )
    }

    fn read_data(&self, range: Range<u64>) -> Result<NumVec> {
        let (data, _, _) = self.sparse("data")?;
        self.read_member(
            data,
            self.raw.data.as_ref(),
            "data",
            self.meta.data_dtype,
            self.meta.nnz,
            range,
        )
    }

    fn read_data_into(&self, range: Range<u64>, out: &mut NumVec) -> Result<()> {
        let (data, _, _) = self.sparse("data")?;
        self.read_member_into(
            data,
            self.raw.data.as_ref(),
            self.raw.data_map.as_ref(),
            "data",
            self.meta.data_dtype,
            self.meta.nnz,
            range,
            out,
        )
    }

    fn read_indices_into(&self, range: Range<u64>, out: &mut NumVec) -> Result<()> {
        let (_, indices, _) = self.sparse("indices")?;
        self.read_member_into(
            indices,
            self.raw.indices.as_ref(),
            self.raw.indices_map.as_ref(),
            "indices",
            self.meta.indices_dtype.unwrap_or(DType::I64),
            self.meta.nnz,
            range,
            out,
        )
    }
}

impl DenseSource for H5adSource {
    fn read_rows_into(&self, rows: Range<u64>, out: &mut NumVec) -> Result<()> {
        if let (Arrays::Dense(ds), Some(raw)) = (&self.arrays, &self.raw.data) {
            if rows.start <= rows.end && rows.end <= self.meta.n_obs {
                let n_cols = self.meta.n_vars;
                let r = rows.start * n_cols..rows.end * n_cols;
                let map = self.raw.data_map.as_ref();
                if read_raw_into(raw, ds, map, self.meta.data_dtype, r, out).is_ok() {
                    return Ok(());
                }
            }
        }
        *out = self.read_rows(rows)?;
        Ok(())
    }

    fn read_rows(&self, rows: Range<u64>) -> Result<NumVec> {
        let Arrays::Dense(ds) = &self.arrays else {
            return Err(self.fail("", "is sparse: read it with read_indptr/read_data"));
        };
        if rows.start > rows.end || rows.end > self.meta.n_obs {
            return Err(self.fail(
                "",
                format!(
                    "rows {}..{} requested, but it has {}",
                    rows.start, rows.end, self.meta.n_obs
                ),
            ));
        }
        let n_cols = self.meta.n_vars;
        if let Some(raw) = &self.raw.data {
            let r = rows.start * n_cols..rows.end * n_cols;
            if let Some(v) = read_raw(raw, ds, self.meta.data_dtype, r) {
                return Ok(v);
            }
        }
        by_dtype!(self.meta.data_dtype, rows_2d(ds, rows.clone(), n_cols)).map_err(|e| {
            self.fail(
                "",
                read_problem(ds, &format!("rows {}..{}", rows.start, rows.end), &e),
            )
        })
    }
}
