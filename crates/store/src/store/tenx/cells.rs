//! The 10x matrix as the engine reads it: CSR of cells, with scanpy's column selection
//! (`gex_only`, `genome`) applied on the fly and the index dtypes scipy gives it.
//!
//! Cell Ranger's features × barcodes CSC is, read as is, a CSR of cells. scanpy builds it with
//! `csr_matrix((data, indices, indptr))`, which narrows int64 index arrays to int32 when they
//! fit, and subsets columns with `adata[:, mask]` (entries of dropped features removed, the
//! others renumbered, storage order kept). Here the selected matrix is never materialized: its
//! indptr (8 bytes a cell) is computed once at open, and a range of its entries is served by
//! reading the rows around it from the stored matrix and dropping what the mask drops.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::array::{DType, NumVec};
use crate::error::{Error, Result};
use crate::store::{MatrixLayout, MatrixMeta, SparseSource, StoredMatrix};

/// Rows read at once while the selected indptr is computed, at most.
const COUNT_VALUES: u64 = 1 << 22;

/// A column selection: for every stored column its new position, or `-1` when dropped.
struct Selection {
    new_position: Vec<i64>,
    /// The stored matrix's indptr, and the selected one.
    stored_indptr: Vec<i64>,
    indptr: Vec<i64>,
}

/// The matrix served to the engine (see the module doc).
pub struct Cells {
    file: PathBuf,
    element: String,
    stored: Box<dyn SparseSource>,
    meta: MatrixMeta,
    selection: Option<Selection>,
    /// Stored int32 values served as float32 (scanpy's h5 readers convert them on read).
    int32_as_f32: bool,
}

/// scipy's index dtype for a matrix of this size (`get_index_dtype(check_contents=True)`).
fn scipy_index_dtype(n_obs: u64, n_vars: u64, nnz: u64) -> DType {
    if n_obs.max(n_vars).max(nnz) <= i32::MAX as u64 {
        DType::I32
    } else {
        DType::I64
    }
}

impl Cells {
    /// `stored` is a CSR of cells over all stored features; `keep` (one flag per stored
    /// feature) selects columns, `None` keeps all. `element` names the stored matrix in
    /// messages (`matrix`, `GRCh38`, `matrix.mtx`). `int32_as_f32`: serve int32 values as
    /// float32 (`read_10x_h5`'s `data.view("float32")[:] = data`), so that the matrix is float
    /// data for `normalize_total` (no sorting of indices, unlike integer data).
    pub fn new(
        file: &Path,
        element: &str,
        stored: Box<dyn SparseSource>,
        keep: Option<&[bool]>,
        int32_as_f32: bool,
    ) -> Result<Cells> {
        let m = stored.meta().clone();
        let fail = |problem: String| Error::input(file, element, problem);
        let selection = match keep {
            Some(keep) if keep.iter().any(|&k| !k) => {
                Some(select(stored.as_ref(), &m, keep).map_err(fail)?)
            }
            _ => None,
        };
        let (n_vars, nnz) = match &selection {
            Some(s) => (
                s.new_position.iter().filter(|&&p| p >= 0).count() as u64,
                *s.indptr.last().unwrap_or(&0) as u64,
            ),
            None => (m.n_vars, m.nnz),
        };
        let index = scipy_index_dtype(m.n_obs, n_vars, nnz);
        let int32_as_f32 = int32_as_f32 && m.data_dtype == DType::I32;
        Ok(Cells {
            file: file.to_path_buf(),
            element: element.to_string(),
            meta: MatrixMeta {
                layout: MatrixLayout::Csr,
                n_obs: m.n_obs,
                n_vars,
                data_dtype: if int32_as_f32 {
                    DType::F32
                } else {
                    m.data_dtype
                },
                nnz,
                indices_dtype: Some(index),
                indptr_dtype: Some(index),
            },
            stored,
            selection,
            int32_as_f32,
        })
    }

    fn fail(&self, problem: impl Into<String>) -> Error {
        Error::input(&self.file, &self.element, problem)
    }

    /// The stored entries behind selected entries `range`: (stored range, offset of the
    /// first selected entry of that stored range within `range`'s numbering).
    fn stored_range(s: &Selection, range: &Range<u64>) -> (Range<u64>, u64) {
        let (start, end) = (range.start as i64, range.end as i64);
        let r0 = s.indptr.partition_point(|&p| p <= start).saturating_sub(1);
        let r1 = s
            .indptr
            .partition_point(|&p| p < end)
            .min(s.indptr.len() - 1);
        let r1 = r1.max(r0);
        (
            s.stored_indptr[r0] as u64..s.stored_indptr[r1] as u64,
            s.indptr[r0] as u64,
        )
    }

    /// The selected entries `range`: their stored indices and which stored entries they are.
    /// An error unless `range` lies within the served values.
    fn within(&self, range: &Range<u64>) -> Result<()> {
        if range.start > range.end || range.end > self.meta.nnz {
            return Err(self.fail(format!(
                "values {}..{} requested, but it has {}",
                range.start, range.end, self.meta.nnz
            )));
        }
        Ok(())
    }

    fn selected(&self, s: &Selection, range: &Range<u64>) -> Result<(Vec<i64>, Vec<bool>, u64)> {
        let (stored, first) = Self::stored_range(s, range);
        let indices = self
            .stored
            .read_indices(stored.clone())?
            .to_i64()
            .ok_or_else(|| self.fail("indices are not integers"))?;
        let keep: Vec<bool> = indices
            .iter()
            .map(|&i| s.new_position.get(i as usize).is_some_and(|&p| p >= 0))
            .collect();
        Ok((indices, keep, range.start - first))
    }
}

/// Computes the selected indptr, checking the stored one and the stored indices' range.
fn select(
    stored: &dyn SparseSource,
    m: &MatrixMeta,
    keep: &[bool],
) -> std::result::Result<Selection, String> {
    if keep.len() as u64 != m.n_vars {
        return Err(format!(
            "{} features listed but the matrix has {} rows of features",
            keep.len(),
            m.n_vars
        ));
    }
    let mut new_position = Vec::with_capacity(keep.len());
    let mut next = 0i64;
    for &k in keep {
        new_position.push(if k { next } else { -1 });
        next += k as i64;
    }
    let stored_indptr = stored
        .read_indptr(0..m.n_obs + 1)
        .map_err(|e| e.to_string())?;
    if stored_indptr.first() != Some(&0)
        || stored_indptr.windows(2).any(|w| w[1] < w[0])
        || *stored_indptr.last().unwrap_or(&0) as u64 != m.nnz
    {
        return Err(format!(
            "indptr does not run from 0 up to the {} stored values",
            m.nnz
        ));
    }
    let mut indptr = Vec::with_capacity(stored_indptr.len());
    indptr.push(0i64);
    let mut row = 0usize;
    let n_obs = m.n_obs as usize;
    while row < n_obs {
        // A block of rows of at most COUNT_VALUES entries (at least one row).
        let mut end = row + 1;
        while end < n_obs && (stored_indptr[end + 1] - stored_indptr[row]) as u64 <= COUNT_VALUES {
            end += 1;
        }
        let base = stored_indptr[row];
        let indices = stored
            .read_indices(base as u64..stored_indptr[end] as u64)
            .map_err(|e| e.to_string())?
            .to_i64()
            .ok_or("indices are not integers")?;
        for r in row..end {
            let mut kept = 0i64;
            for &i in
                &indices[(stored_indptr[r] - base) as usize..(stored_indptr[r + 1] - base) as usize]
            {
                match new_position.get(i as usize) {
                    Some(&p) => kept += (p >= 0) as i64,
                    None => {
                        return Err(format!(
                            "feature index {i} out of range: there are {} features",
                            m.n_vars
                        ))
                    }
                }
            }
            indptr.push(indptr[r] + kept);
        }
        row = end;
    }
    Ok(Selection {
        new_position,
        stored_indptr,
        indptr,
    })
}

impl Cells {
    /// Values as served: int32 as float32 when asked (numpy's exact int → float rounding).
    fn as_served(&self, values: NumVec) -> NumVec {
        match values {
            NumVec::I32(v) if self.int32_as_f32 => {
                NumVec::F32(v.into_iter().map(|x| x as f32).collect())
            }
            other => other,
        }
    }
}

/// `values` at the positions where `keep` is true.
fn keep_values(values: NumVec, keep: &[bool]) -> NumVec {
    fn k<T: Copy>(v: Vec<T>, keep: &[bool]) -> Vec<T> {
        v.into_iter()
            .zip(keep)
            .filter(|(_, &k)| k)
            .map(|(x, _)| x)
            .collect()
    }
    match values {
        NumVec::I8(v) => NumVec::I8(k(v, keep)),
        NumVec::I16(v) => NumVec::I16(k(v, keep)),
        NumVec::I32(v) => NumVec::I32(k(v, keep)),
        NumVec::I64(v) => NumVec::I64(k(v, keep)),
        NumVec::U8(v) => NumVec::U8(k(v, keep)),
        NumVec::U16(v) => NumVec::U16(k(v, keep)),
        NumVec::U32(v) => NumVec::U32(k(v, keep)),
        NumVec::U64(v) => NumVec::U64(k(v, keep)),
        NumVec::F32(v) => NumVec::F32(k(v, keep)),
        NumVec::F64(v) => NumVec::F64(k(v, keep)),
    }
}

/// Indices in the presented dtype.
fn index_vec(values: Vec<i64>, dtype: DType) -> NumVec {
    match dtype {
        DType::I32 => NumVec::I32(values.into_iter().map(|i| i as i32).collect()),
        _ => NumVec::I64(values),
    }
}

impl StoredMatrix for Cells {
    fn meta(&self) -> &MatrixMeta {
        &self.meta
    }
}

impl SparseSource for Cells {
    fn read_indptr(&self, range: Range<u64>) -> Result<Vec<i64>> {
        match &self.selection {
            None => self.stored.read_indptr(range),
            Some(s) => s
                .indptr
                .get(range.start as usize..range.end as usize)
                .map(<[i64]>::to_vec)
                .ok_or_else(|| self.fail(format!("indptr {range:?} out of range"))),
        }
    }

    fn read_indices(&self, range: Range<u64>) -> Result<NumVec> {
        self.within(&range)?;
        let dtype = self.meta.indices_dtype.unwrap_or(DType::I64);
        let Some(s) = &self.selection else {
            let stored = self.stored.read_indices(range)?;
            if stored.dtype() == dtype {
                return Ok(stored);
            }
            let wide = stored
                .to_i64()
                .ok_or_else(|| self.fail("indices are not integers"))?;
            return Ok(index_vec(wide, dtype));
        };
        let (indices, keep, skip) = self.selected(s, &range)?;
        let n = (range.end - range.start) as usize;
        let out: Vec<i64> = indices
            .into_iter()
            .zip(&keep)
            .filter(|(_, &k)| k)
            .map(|(i, _)| s.new_position[i as usize])
            .skip(skip as usize)
            .take(n)
            .collect();
        Ok(index_vec(out, dtype))
    }

    fn read_data(&self, range: Range<u64>) -> Result<NumVec> {
        self.within(&range)?;
        let Some(s) = &self.selection else {
            return Ok(self.as_served(self.stored.read_data(range)?));
        };
        let (_, keep, skip) = self.selected(s, &range)?;
        let (stored, _) = Self::stored_range(s, &range);
        let kept = keep_values(self.stored.read_data(stored)?, &keep);
        let n = (range.end - range.start) as usize;
        Ok(self.as_served(kept.slice(skip as usize..skip as usize + n)))
    }

    fn read_data_into(&self, range: Range<u64>, out: &mut NumVec) -> Result<()> {
        match &self.selection {
            None if !self.int32_as_f32 => self.stored.read_data_into(range, out),
            _ => {
                *out = self.read_data(range)?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atlasnorm_core::memory::MemoryMatrix;

    fn csr(
        n_obs: u64,
        n_vars: u64,
        indptr: Vec<i64>,
        indices: Vec<i64>,
        data: NumVec,
    ) -> Box<dyn SparseSource> {
        Box::new(MemoryMatrix {
            meta: MatrixMeta {
                layout: MatrixLayout::Csr,
                n_obs,
                n_vars,
                data_dtype: data.dtype(),
                nnz: data.len() as u64,
                indices_dtype: Some(DType::I64),
                indptr_dtype: Some(DType::I64),
            },
            indptr,
            indices,
            data,
        })
    }

    // 3 cells × 4 features: rows [0:1, 2:2, 3:3], [], [1:4, 3:5]
    fn stored() -> Box<dyn SparseSource> {
        csr(
            3,
            4,
            vec![0, 3, 3, 5],
            vec![0, 2, 3, 1, 3],
            NumVec::I32(vec![1, 2, 3, 4, 5]),
        )
    }

    #[test]
    fn selected_columns_are_dropped_and_renumbered() {
        let keep = [true, false, true, true];
        let c = Cells::new(Path::new("f"), "matrix", stored(), Some(&keep), false).unwrap();
        assert_eq!(c.meta().n_vars, 3);
        assert_eq!(c.meta().nnz, 4);
        assert_eq!(c.read_indptr(0..4).unwrap(), [0, 3, 3, 4]);
        assert_eq!(c.read_indices(0..4).unwrap(), NumVec::I32(vec![0, 1, 2, 2]));
        assert_eq!(c.read_data(0..4).unwrap(), NumVec::I32(vec![1, 2, 3, 5]));
        // ranges that start and end inside rows
        assert_eq!(c.read_indices(1..4).unwrap(), NumVec::I32(vec![1, 2, 2]));
        assert_eq!(c.read_data(2..4).unwrap(), NumVec::I32(vec![3, 5]));
        assert_eq!(c.read_data(3..4).unwrap(), NumVec::I32(vec![5]));
    }

    #[test]
    fn all_kept_narrows_the_indices_only() {
        let c = Cells::new(Path::new("f"), "matrix", stored(), None, false).unwrap();
        assert_eq!(c.meta().indices_dtype, Some(DType::I32));
        assert_eq!(
            c.read_indices(0..5).unwrap(),
            NumVec::I32(vec![0, 2, 3, 1, 3])
        );
    }

    #[test]
    fn int32_values_are_served_as_float32() {
        let c = Cells::new(
            Path::new("f"),
            "matrix",
            stored(),
            Some(&[true, true, false, true]),
            true,
        )
        .unwrap();
        assert_eq!(c.meta().data_dtype, DType::F32);
        assert_eq!(
            c.read_data(0..4).unwrap(),
            NumVec::F32(vec![1.0, 3.0, 4.0, 5.0])
        );
    }

    #[test]
    fn an_index_out_of_range_is_refused() {
        let bad = csr(1, 2, vec![0, 1], vec![5], NumVec::I32(vec![1]));
        let err = Cells::new(
            Path::new("f.h5"),
            "matrix",
            bad,
            Some(&[true, false]),
            false,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("f.h5") && err.contains("out of range"),
            "{err}"
        );
    }
}
