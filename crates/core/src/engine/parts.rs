//! The engine's passes one at a time over a part of a matrix, for schedulers that run the
//! passes of one matrix as separate tasks on other processes or machines (Dask): totals of
//! whole rows (and their gene mask), totals over the kept genes, then the scaling of any range
//! of stored values.
//!
//! Each function runs the very pass code of [`normalize_stores`](super::normalize_stores) on a
//! [`SparsePart`] or [`DensePart`], a view of the part as a matrix of its own, so a matrix split into parts
//! gives the bits of one run: totals are per row, the mask an OR over rows, the target comes
//! from all totals ([`factors`]), and scaling is per value. CSR and dense only: a CSC matrix's
//! totals run along columns and need the whole matrix in one pass.

use std::ops::Range;
use std::path::Path;

use super::csr::{self, Scaling};
use super::dense;
use super::{DenseJob, Job, Origin};
use crate::array::NumVec;
use crate::error::{Error, Result};
use crate::fit;
use crate::kernel::Real;
use crate::params::Params;
use crate::report::Silent;
use crate::store::{
    DenseSource, ElementPath, MatrixLayout, MatrixMeta, MatrixRef, MatrixSink, SparseSource,
    StoredMatrix,
};

/// The matrix a task works on and how: what every pass over a part needs.
pub struct PartOf<'a> {
    /// The input, for messages.
    pub input: &'a Path,
    /// X or the layer.
    pub element: &'a ElementPath,
    /// The whole stored matrix.
    pub source: MatrixRef<'a>,
    /// What to compute.
    pub params: &'a Params,
}

/// Rows `rows` of a CSR matrix and only the stored values `values` of those rows, seen as a
/// whole matrix (the first and last row may then be partial: a range of values cut where an
/// output chunk ends). Indices into the view are relative to the part.
pub struct SparsePart<'a> {
    inner: &'a dyn SparseSource,
    meta: MatrixMeta,
    origin: Origin,
    /// The part's indptr, starting at 0.
    indptr: Vec<i64>,
}

/// Rows `rows` of a dense matrix, seen as a whole matrix.
pub struct DensePart<'a> {
    inner: &'a dyn DenseSource,
    meta: MatrixMeta,
    origin: Origin,
}

/// The part's meta: `rows` of `whole`, checked to lie within it.
fn part_meta(whole: &MatrixMeta, rows: &Range<u64>) -> Result<MatrixMeta> {
    if rows.start > rows.end || rows.end > whole.n_obs {
        return Err(Error::Internal(format!(
            "rows {}..{} of a matrix of {} rows",
            rows.start, rows.end, whole.n_obs
        )));
    }
    let mut meta = whole.clone();
    meta.n_obs = rows.end - rows.start;
    Ok(meta)
}

impl<'a> SparsePart<'a> {
    /// The view of `rows` of `inner` with their stored values `values`, which must lie within
    /// the rows' values (`None`: all of them).
    ///
    /// # Errors
    /// [`Error::Internal`] when the part is out of the matrix's bounds, or for CSC;
    /// [`Error::Input`] when `indptr` cannot be read.
    pub fn new(
        inner: &'a dyn SparseSource,
        rows: Range<u64>,
        values: Option<Range<u64>>,
    ) -> Result<Self> {
        let mut meta = part_meta(inner.meta(), &rows)?;
        if meta.layout != MatrixLayout::Csr {
            return Err(Error::Internal(
                "a CSC matrix cannot be split into row parts (its totals run along columns)".into(),
            ));
        }
        let stored = inner.read_indptr(rows.start..rows.end + 1)?;
        let (first, last) = (stored[0], stored[stored.len() - 1]);
        let values = values.unwrap_or(first.max(0) as u64..last.max(0) as u64);
        if (values.start as i64) < first || (values.end as i64) > last || values.start > values.end
        {
            return Err(Error::Internal(format!(
                "values {}..{} outside rows {}..{} (values {first}..{last})",
                values.start, values.end, rows.start, rows.end
            )));
        }
        let (lo, hi) = (values.start as i64, values.end as i64);
        let indptr = stored.iter().map(|&p| p.clamp(lo, hi) - lo).collect();
        meta.nnz = values.end - values.start;
        Ok(SparsePart {
            inner,
            meta,
            origin: Origin {
                rows: rows.start,
                values: values.start,
            },
            indptr,
        })
    }

    fn shifted(&self, range: &Range<u64>) -> Range<u64> {
        range.start + self.origin.values..range.end + self.origin.values
    }
}

impl<'a> DensePart<'a> {
    /// The view of `rows` of `inner`.
    ///
    /// # Errors
    /// [`Error::Internal`] when the part is out of the matrix's bounds.
    pub fn new(inner: &'a dyn DenseSource, rows: Range<u64>) -> Result<Self> {
        let mut meta = part_meta(inner.meta(), &rows)?;
        meta.nnz = meta.n_obs * meta.n_vars;
        Ok(DensePart {
            origin: Origin {
                rows: rows.start,
                values: rows.start * meta.n_vars,
            },
            inner,
            meta,
        })
    }

    fn shifted(&self, rows: &Range<u64>) -> Range<u64> {
        rows.start + self.origin.rows..rows.end + self.origin.rows
    }
}

impl StoredMatrix for SparsePart<'_> {
    fn meta(&self) -> &MatrixMeta {
        &self.meta
    }
}

impl SparseSource for SparsePart<'_> {
    fn read_indptr(&self, range: Range<u64>) -> Result<Vec<i64>> {
        Ok(self.indptr[range.start as usize..range.end as usize].to_vec())
    }

    fn read_indices(&self, range: Range<u64>) -> Result<NumVec> {
        self.inner.read_indices(self.shifted(&range))
    }

    fn read_data(&self, range: Range<u64>) -> Result<NumVec> {
        self.inner.read_data(self.shifted(&range))
    }

    fn read_data_into(&self, range: Range<u64>, out: &mut NumVec) -> Result<()> {
        self.inner.read_data_into(self.shifted(&range), out)
    }

    fn read_indices_into(&self, range: Range<u64>, out: &mut NumVec) -> Result<()> {
        self.inner.read_indices_into(self.shifted(&range), out)
    }
}

impl StoredMatrix for DensePart<'_> {
    fn meta(&self) -> &MatrixMeta {
        &self.meta
    }
}

impl DenseSource for DensePart<'_> {
    fn read_rows(&self, rows: Range<u64>) -> Result<NumVec> {
        self.inner.read_rows(self.shifted(&rows))
    }

    fn read_rows_into(&self, rows: Range<u64>, out: &mut NumVec) -> Result<()> {
        self.inner.read_rows_into(self.shifted(&rows), out)
    }
}

impl PartOf<'_> {
    /// A job over a part's view: the view's own meta, where it sits in the whole.
    fn part_job<'s, S: StoredMatrix + ?Sized>(&'s self, view: &'s S, origin: Origin) -> Job<'s, S> {
        Job {
            origin,
            n_obs_total: self.source.meta().n_obs,
            ..Job::whole(self.input, self.element, view, self.params, &Silent)
        }
    }

    fn sparse_job<'s>(&'s self, view: &'s SparsePart<'s>) -> Job<'s> {
        self.part_job(view as &dyn SparseSource, view.origin)
    }

    fn dense_job<'s>(&'s self, view: &'s DensePart<'s>) -> DenseJob<'s> {
        self.part_job(view as &dyn DenseSource, view.origin)
    }

    /// The whole matrix, sparse: the parts of a CSC matrix or a dense one have no indptr.
    fn sparse(&self) -> Result<&dyn SparseSource> {
        match self.source {
            MatrixRef::Sparse(s) => Ok(s),
            MatrixRef::Dense(_) => Err(Error::Internal("a dense matrix has no indptr".into())),
        }
    }

    /// The whole matrix's `indptr`, read and checked as a whole run's first pass checks it
    /// (starts at 0, never decreases, ends at the number of stored values; CSR only).
    ///
    /// # Errors
    /// [`Error::Input`] naming `indptr` when it is malformed or cannot be read.
    pub fn indptr(&self) -> Result<Vec<i64>> {
        let source = self.sparse()?;
        let job = Job::whole(self.input, self.element, source, self.params, &Silent);
        csr::read_indptr(&job, source, job.meta.n_obs)
    }

    /// The totals of `rows` and, when genes are excluded, the genes these rows mark as highly
    /// expressed (parts' masks combine with OR). Checks the part as the whole run's pass 1
    /// does (indices in range, integer input's canonical format).
    ///
    /// # Errors
    /// [`Error::Input`] naming the element when the part cannot be read or is malformed.
    pub fn totals<T: Real>(&self, rows: Range<u64>) -> Result<(Vec<T>, Option<Vec<bool>>)> {
        let mut mask = self
            .params
            .exclude_highly_expressed
            .then(|| vec![false; self.source.meta().n_vars as usize]);
        let totals = match self.source {
            MatrixRef::Sparse(s) => {
                let view = SparsePart::new(s, rows, None)?;
                let job = self.sparse_job(&view);
                let mut totals = vec![T::default(); view.meta.n_obs as usize];
                let indptr = csr::read_indptr(&job, &view, view.meta.n_obs)?;
                let blocks = csr::totals_blocks::<T>(&job, &indptr);
                csr::totals_pass(&job, &indptr, &blocks, &mut totals, mask.as_mut())?;
                totals
            }
            MatrixRef::Dense(d) => {
                let view = DensePart::new(d, rows)?;
                let job = self.dense_job(&view);
                let mut totals = vec![T::default(); view.meta.n_obs as usize];
                let blocks = dense::blocks_of::<T>(&job);
                dense::totals_pass(&job, &blocks, &mut totals, mask.as_mut())?;
                totals
            }
        };
        Ok((totals, mask))
    }

    /// The totals of `rows` over the genes `mask` (all parts' masks, combined) leaves.
    ///
    /// # Errors
    /// [`Error::Input`] when the part cannot be read.
    pub fn kept_totals<T: Real>(&self, rows: Range<u64>, mask: &[bool]) -> Result<Vec<T>> {
        match self.source {
            MatrixRef::Sparse(s) => {
                let view = SparsePart::new(s, rows, None)?;
                let job = self.sparse_job(&view);
                let mut totals = vec![T::default(); view.meta.n_obs as usize];
                let indptr = csr::read_indptr(&job, &view, view.meta.n_obs)?;
                let blocks = csr::totals_blocks::<T>(&job, &indptr);
                csr::kept_totals_pass(&job, &indptr, blocks, mask, &mut totals)?;
                Ok(totals)
            }
            MatrixRef::Dense(d) => {
                let view = DensePart::new(d, rows)?;
                let job = self.dense_job(&view);
                let mut totals = vec![T::default(); view.meta.n_obs as usize];
                let blocks = dense::blocks_of::<T>(&job);
                dense::kept_totals_pass(&job, &blocks, mask, &mut totals)?;
                Ok(totals)
            }
        }
    }

    /// Scales the stored values `values` of `rows` (CSR; dense: all values of the rows) by
    /// their rows' `factors` (one per row of `rows`), applies log1p and appends them to
    /// `sink`, which is finished. Returns the number of NaN values written.
    ///
    /// # Errors
    /// [`Error::Input`] when the part cannot be read, or (with log1p, CSR) a normalized
    /// value is NaN or infinite; the sink's errors.
    pub fn scale<T: Real>(
        &self,
        rows: Range<u64>,
        values: Option<Range<u64>>,
        factors: &[T],
        sink: Box<dyn MatrixSink + '_>,
    ) -> Result<u64> {
        let check = |n_rows: u64| {
            if factors.len() as u64 == n_rows {
                Ok(factors.to_vec())
            } else {
                Err(Error::Internal(format!(
                    "{} factors for {n_rows} rows",
                    factors.len()
                )))
            }
        };
        match self.source {
            MatrixRef::Sparse(s) => {
                let view = SparsePart::new(s, rows, values)?;
                let mut factors = check(view.meta.n_obs)?;
                let job = self.sparse_job(&view);
                let scaling = Scaling {
                    job: &job,
                    indptr: &view.indptr,
                    rewrite: false,
                    fused_target: None,
                };
                scaling.run(
                    sink,
                    csr::scale_blocks::<T>(&job, &view.indptr, false),
                    &mut factors,
                )
            }
            MatrixRef::Dense(d) => {
                let view = DensePart::new(d, rows)?;
                let mut factors = check(view.meta.n_obs)?;
                let job = self.dense_job(&view);
                let blocks = dense::blocks_of::<T>(&job);
                dense::scale_pass(&job, sink, blocks, None, &mut factors)
            }
        }
    }
}

/// The target (the user's, or the median of all positive totals) and every cell's factor,
/// from the totals of all parts in row order: what a whole run computes between its passes.
pub fn factors<T: Real>(params: &Params, mut totals: Vec<T>) -> (Vec<T>, T) {
    let target = fit::target(params.target_sum, &totals);
    fit::into_factors(&mut totals, target);
    (totals, target)
}

impl PartOf<'_> {
    /// Where a CSR output's `indices` and `indptr` come from (scanpy's rules; see the whole
    /// run's CSR pass): parts write `data` only, so a rewritten structure is the caller's
    /// to handle.
    ///
    /// # Errors
    /// [`Error::Input`] when scanpy would refuse the matrix's index dtypes.
    pub fn output_structure(&self) -> Result<crate::store::SparseStructure> {
        let source = self.sparse()?;
        csr::output_structure(&Job::whole(
            self.input,
            self.element,
            source,
            self.params,
            &Silent,
        ))
    }
}
