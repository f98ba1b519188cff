//! The in-memory driver: a whole matrix already in memory (the Python package's case), fit
//! and applied on the current rayon pool with no copy beyond the output values. The same
//! fit/apply functions as the streaming engine, so the same bits, whatever the thread count.
//!
//! Data must already be in the working dtype `T` (f32, or f64 for float64 data): scanpy casts
//! integer data to float32 first ([`NumVec::to_f32`](crate::array::NumVec::to_f32) rounds as
//! numpy does). CSR only among the sparse layouts: scanpy turns CSC into CSR itself.
//!
//! The per-chunk functions ([`chunk`]) split the same work by rows for tasks that each see
//! one chunk (Dask): totals and masks per chunk, one global [`finish_fit`], apply per chunk.

use std::path::Path;

use rayon::prelude::*;

use crate::engine::plan::balanced_row_ranges;
use crate::engine::scale::{csr_totals_parallel, dense_totals_parallel, split_rows_mut};
use crate::error::{Error, Result};
use crate::fit;
use crate::kernel::log1p::Log1p;
use crate::kernel::Real;
use crate::params::Params;

/// Column indices of a CSR matrix as numpy holds them.
#[derive(Clone, Copy, Debug)]
pub enum Indices<'a> {
    /// int32 indices.
    I32(&'a [i32]),
    /// int64 indices.
    I64(&'a [i64]),
}

impl Indices<'_> {
    fn len(&self) -> usize {
        match self {
            Indices::I32(v) => v.len(),
            Indices::I64(v) => v.len(),
        }
    }

    /// `self[range]` as u32, each checked against `n_vars`.
    fn to_u32(self, range: std::ops::Range<usize>, n_vars: usize) -> Result<Vec<u32>> {
        let bad = |i: i64| {
            memory_error(
                "X/indices",
                format!("index {i} is out of range for {n_vars} columns"),
            )
        };
        let check = |i: i64| {
            if i < 0 || i as u64 >= n_vars as u64 {
                Err(bad(i))
            } else {
                Ok(i as u32)
            }
        };
        match self {
            Indices::I32(v) => v[range].iter().map(|&i| check(i64::from(i))).collect(),
            Indices::I64(v) => v[range].iter().map(|&i| check(i)).collect(),
        }
    }
}

/// A CSR matrix borrowed from its three arrays.
#[derive(Clone, Copy, Debug)]
pub struct CsrRef<'a, T> {
    /// Number of columns (genes).
    pub n_vars: usize,
    /// Row offsets into `indices`/`data`: rows + 1 entries, from 0 to `data.len()`.
    pub indptr: &'a [i64],
    /// Column of each stored value.
    pub indices: Indices<'a>,
    /// The stored values, in the working dtype.
    pub data: &'a [T],
}

impl<T> CsrRef<'_, T> {
    /// Number of rows (cells).
    pub fn n_obs(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }
}

/// The outcome of the fit: what scanpy computes before it scales.
#[derive(Clone, Debug, PartialEq)]
pub struct Fitted<T> {
    /// Per-cell factors `total / target` (scanpy's `obs[key_added]`).
    pub factors: Vec<T>,
    /// The target sum used (the median of the positive totals when none was given).
    pub target: T,
    /// Genes left out of the totals (`exclude_highly_expressed`), ascending.
    pub excluded: Vec<u64>,
    /// Cells whose factor is not > 0 (scanpy's "Some cells have zero counts").
    pub zero_count_cells: u64,
}

/// What the apply step reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// NaN values written (scanpy leaves them; the caller may warn).
    pub nan_values: u64,
}

fn memory_error(element: &str, problem: impl Into<String>) -> Error {
    Error::input(Path::new("<in memory>"), element, problem)
}

/// The row offsets of `indptr` as usize, checked: they start at 0, never decrease and end at
/// `nnz`.
///
/// # Errors
/// [`Error::Input`] naming `X/indptr` when they do not.
pub fn checked_offsets(indptr: &[i64], nnz: usize) -> Result<Vec<usize>> {
    if indptr.is_empty() {
        return Err(memory_error(
            "X/indptr",
            "is empty (it needs rows + 1 entries)",
        ));
    }
    if indptr[0] != 0 {
        return Err(memory_error(
            "X/indptr",
            format!("starts at {}, not 0", indptr[0]),
        ));
    }
    if let Some(w) = indptr.windows(2).position(|w| w[1] < w[0]) {
        return Err(memory_error(
            "X/indptr",
            format!(
                "decreases at row {w} ({} then {})",
                indptr[w],
                indptr[w + 1]
            ),
        ));
    }
    let last = indptr[indptr.len() - 1];
    if last as u64 != nnz as u64 {
        return Err(memory_error(
            "X/indptr",
            format!("ends at {last} but there are {nnz} stored values"),
        ));
    }
    Ok(indptr.iter().map(|&p| p as usize).collect())
}

fn parts() -> usize {
    rayon::current_num_threads() * 4
}

/// The values of the rows `rows` (`offsets[rows.start]..offsets[rows.end]`) and those rows'
/// offsets rebased to that range.
fn rows_part(
    offsets: &[usize],
    rows: &std::ops::Range<usize>,
) -> (std::ops::Range<usize>, Vec<usize>) {
    let lo = offsets[rows.start];
    let local = offsets[rows.start..=rows.end]
        .iter()
        .map(|o| o - lo)
        .collect();
    (lo..offsets[rows.end], local)
}

/// The per-chunk steps: each function sees the rows of one chunk only. Combining them as
/// [`fit_csr`] does gives the same bits as a fit over the whole matrix.
pub mod chunk {
    use super::*;

    /// Totals of one chunk of CSR rows.
    ///
    /// # Errors
    /// [`Error::Input`] when the chunk's `indptr` is malformed.
    pub fn csr_totals<T: Real>(m: &CsrRef<'_, T>) -> Result<Vec<T>> {
        let offsets = checked_offsets(m.indptr, m.data.len())?;
        let mut out = vec![T::ZERO; m.n_obs()];
        csr_totals_parallel(m.data, &offsets, &mut out, parts());
        Ok(out)
    }

    /// The genes one chunk marks as highly expressed (`totals`: that chunk's
    /// [`csr_totals`]); chunks' masks combine with OR ([`merge_masks`]).
    ///
    /// # Errors
    /// [`Error::Input`] when `indptr` is malformed or an index is out of range.
    pub fn csr_mask<T: Real>(
        m: &CsrRef<'_, T>,
        totals: &[T],
        max_fraction: f64,
    ) -> Result<Vec<bool>> {
        let offsets = checked_offsets(m.indptr, m.data.len())?;
        let ranges = balanced_row_ranges(&offsets, parts());
        let masks: Vec<Result<Vec<bool>>> = ranges
            .par_iter()
            .map(|rows| {
                let (values, local) = rows_part(&offsets, rows);
                let idx = m.indices.to_u32(values.clone(), m.n_vars)?;
                let mut mask = vec![false; m.n_vars];
                fit::csr_mark_highly_expressed(
                    &m.data[values],
                    &idx,
                    &local,
                    &totals[rows.clone()],
                    max_fraction,
                    &mut mask,
                );
                Ok(mask)
            })
            .collect();
        let mut out = vec![false; m.n_vars];
        for mask in masks {
            merge_masks(&mut out, &mask?);
        }
        Ok(out)
    }

    /// `into |= mask`.
    pub fn merge_masks(into: &mut [bool], mask: &[bool]) {
        for (a, &b) in into.iter_mut().zip(mask) {
            *a |= b;
        }
    }

    /// Totals of one chunk of CSR rows over the genes `excluded` leaves.
    ///
    /// # Errors
    /// [`Error::Input`] when `indptr` is malformed or an index is out of range.
    pub fn csr_totals_kept<T: Real>(m: &CsrRef<'_, T>, excluded: &[bool]) -> Result<Vec<T>> {
        let offsets = checked_offsets(m.indptr, m.data.len())?;
        let mut out = vec![T::ZERO; m.n_obs()];
        let ranges = balanced_row_ranges(&offsets, parts());
        let pieces = split_rows_mut(&mut out, &ranges);
        ranges
            .par_iter()
            .zip(pieces)
            .try_for_each(|(rows, piece)| {
                let (values, local) = rows_part(&offsets, rows);
                let idx = m.indices.to_u32(values.clone(), m.n_vars)?;
                fit::csr_totals_kept(&m.data[values], &idx, &local, excluded, piece);
                Ok::<(), Error>(())
            })?;
        Ok(out)
    }

    /// Totals of one chunk of dense rows (`data`: C order, `n_vars` a row).
    pub fn dense_totals<T: Real>(data: &[T], n_vars: usize) -> Vec<T> {
        let n_obs = data.len().checked_div(n_vars).unwrap_or(0);
        let mut out = vec![T::ZERO; n_obs];
        dense_totals_parallel(data, n_vars, &mut out, parts());
        out
    }

    /// The genes one chunk of dense rows marks as highly expressed.
    pub fn dense_mask<T: Real>(
        data: &[T],
        n_vars: usize,
        totals: &[T],
        max_fraction: f64,
    ) -> Vec<bool> {
        let mut mask = vec![false; n_vars];
        fit::dense_mark_highly_expressed(data, n_vars, totals, max_fraction, &mut mask);
        mask
    }

    /// Totals of one chunk of dense rows over the kept genes. `n_obs_total` is the row count
    /// of the whole matrix (numpy's summation order depends on it).
    pub fn dense_totals_kept<T: Real>(
        data: &[T],
        n_vars: usize,
        excluded: &[bool],
        n_obs_total: usize,
    ) -> Vec<T> {
        let n_obs = data.len().checked_div(n_vars).unwrap_or(0);
        let kept = fit::kept_columns(excluded);
        let order = fit::KeptSumOrder::for_n_obs(n_obs_total);
        let mut out = vec![T::ZERO; n_obs];
        let per = n_obs.div_ceil(parts()).max(1);
        data.par_chunks(per * n_vars.max(1))
            .zip(out.par_chunks_mut(per))
            .for_each_init(Vec::new, |scratch, (d, o)| {
                fit::dense_totals_kept(d, n_vars, &kept, order, scratch, o);
            });
        out
    }

    /// Scales one chunk of CSR values in place by its rows' `factors` and applies log1p.
    ///
    /// # Errors
    /// [`Error::Input`] when `indptr` is malformed, or (with log1p) a normalized value is
    /// NaN or infinite, which scanpy's log1p refuses.
    pub fn csr_apply<T: Real>(
        indptr: &[i64],
        data: &mut [T],
        factors: &[T],
        params: &Params,
    ) -> Result<Applied> {
        let offsets = checked_offsets(indptr, data.len())?;
        let log1p = log1p_of(params);
        let nan_values = crate::apply::csr_block(data, &offsets, factors, log1p.as_ref(), parts())
            .map_err(|bad| {
                memory_error(
                    "X/data",
                    format!(
                        "{} normalized values are NaN or infinite; scanpy's log1p raises \
                         \"Input contains NaN\" here",
                        bad.count
                    ),
                )
            })?;
        Ok(Applied { nan_values })
    }

    /// Scales one chunk of dense rows in place and applies log1p.
    pub fn dense_apply<T: Real>(
        data: &mut [T],
        n_vars: usize,
        factors: &[T],
        params: &Params,
    ) -> Applied {
        let log1p = log1p_of(params);
        Applied {
            nan_values: crate::apply::dense_block(data, n_vars, factors, log1p.as_ref(), parts()),
        }
    }
}

/// The log1p of `params`, if it asks for one.
pub fn log1p_of(params: &Params) -> Option<Log1p> {
    params
        .log1p
        .then(|| Log1p::new(params.log1p_kernel, params.log1p_base))
}

/// The global step of a fit: target over all cells' totals (in row order), then factors.
pub fn finish_fit<T: Real>(
    mut totals: Vec<T>,
    excluded: Option<&[bool]>,
    params: &Params,
) -> Fitted<T> {
    let target = fit::target(params.target_sum, &totals);
    fit::into_factors(&mut totals, target);
    Fitted {
        zero_count_cells: fit::zero_count_cells(&totals),
        factors: totals,
        target,
        excluded: excluded.map(fit::excluded_positions).unwrap_or_default(),
    }
}

/// Fits a whole CSR matrix: totals, the gene mask and second totals when asked, the target
/// and the factors.
///
/// # Errors
/// [`Error::Options`] for invalid `params`; [`Error::Input`] when `indptr` or `indices` are
/// malformed.
pub fn fit_csr<T: Real>(m: &CsrRef<'_, T>, params: &Params) -> Result<Fitted<T>> {
    params.validate()?;
    if m.indices.len() != m.data.len() {
        return Err(memory_error(
            "X/indices",
            format!(
                "has {} entries for {} values",
                m.indices.len(),
                m.data.len()
            ),
        ));
    }
    let mut totals = chunk::csr_totals(m)?;
    let mask = if params.exclude_highly_expressed {
        let mask = chunk::csr_mask(m, &totals, params.max_fraction)?;
        totals = chunk::csr_totals_kept(m, &mask)?;
        Some(mask)
    } else {
        None
    };
    Ok(finish_fit(totals, mask.as_deref(), params))
}

/// Fits a whole dense C-order matrix of `n_vars` columns.
///
/// # Errors
/// [`Error::Options`] for invalid `params`; [`Error::Input`] when `data` is not whole rows.
pub fn fit_dense<T: Real>(data: &[T], n_vars: usize, params: &Params) -> Result<Fitted<T>> {
    fit_dense_with(data, n_vars, params, |_| chunk::dense_totals(data, n_vars))
}

/// Fits a dense matrix held in **Fortran** order, given as a C-order copy `data`: numpy sums a
/// Fortran-ordered row sequentially in column order (`0.0 + x0 + x1 + ...` in T), not
/// pairwise as it does C-ordered rows; the gene mask and the kept-gene totals are as
/// [`fit_dense`]'s.
///
/// # Errors
/// As [`fit_dense`].
pub fn fit_dense_fortran<T: Real>(data: &[T], n_vars: usize, params: &Params) -> Result<Fitted<T>> {
    fit_dense_with(data, n_vars, params, |n_obs| {
        chunk::dense_totals_kept(data, n_vars, &vec![false; n_vars], n_obs)
    })
}

/// The dense fit with the first totals given by `totals(n_obs)` (their order is the layout's).
fn fit_dense_with<T: Real>(
    data: &[T],
    n_vars: usize,
    params: &Params,
    totals: impl FnOnce(usize) -> Vec<T>,
) -> Result<Fitted<T>> {
    params.validate()?;
    if n_vars == 0 && !data.is_empty() || n_vars > 0 && !data.len().is_multiple_of(n_vars) {
        return Err(memory_error(
            "X",
            format!("{} values are not whole rows of {n_vars}", data.len()),
        ));
    }
    let n_obs = data.len().checked_div(n_vars).unwrap_or(0);
    let mut totals = totals(n_obs);
    let mask = if params.exclude_highly_expressed {
        let mask = chunk::dense_mask(data, n_vars, &totals, params.max_fraction);
        totals = chunk::dense_totals_kept(data, n_vars, &mask, n_obs);
        Some(mask)
    } else {
        None
    };
    Ok(finish_fit(totals, mask.as_deref(), params))
}

/// Normalizes a CSR matrix into `out` (the new `data` array: scanpy gives CSR a new one),
/// which must hold `m.data.len()` values. Returns the fit; `out` holds the scaled (and
/// log-transformed) values.
///
/// # Errors
/// As [`fit_csr`] and [`chunk::csr_apply`]; `out` of the wrong length is an
/// [`Error::Input`].
pub fn normalize_csr<T: Real>(
    m: &CsrRef<'_, T>,
    out: &mut [T],
    params: &Params,
) -> Result<(Fitted<T>, Applied)> {
    if out.len() != m.data.len() {
        return Err(memory_error(
            "X/data",
            format!(
                "the output holds {} values, not {}",
                out.len(),
                m.data.len()
            ),
        ));
    }
    if let (Some(t), false, false) = (
        params.target_sum,
        params.exclude_highly_expressed,
        params.log1p,
    ) {
        return normalize_csr_fixed_target(m, out, params, T::from_f64(t));
    }
    let fitted = fit_csr(m, params)?;
    if params.log1p {
        out.par_chunks_mut(1 << 16)
            .zip(m.data.par_chunks(1 << 16))
            .for_each(|(o, d)| o.copy_from_slice(d));
        let applied = chunk::csr_apply(m.indptr, out, &fitted.factors, params)?;
        return Ok((fitted, applied));
    }
    // normalize_total alone: one pass reading `data` and writing `out`.
    let offsets = checked_offsets(m.indptr, m.data.len())?;
    let nan_values =
        crate::engine::scale::scale_sparse_into(m.data, out, &offsets, &fitted.factors, parts());
    Ok((fitted, Applied { nan_values }))
}

/// A fixed target without gene exclusion needs no global step: totals, factors and division
/// fuse into one pass over the rows (the same kernels, so the same bits as [`fit_csr`] then
/// the division).
fn normalize_csr_fixed_target<T: Real>(
    m: &CsrRef<'_, T>,
    out: &mut [T],
    params: &Params,
    target: T,
) -> Result<(Fitted<T>, Applied)> {
    params.validate()?;
    let offsets = checked_offsets(m.indptr, m.data.len())?;
    let mut factors = vec![T::ZERO; m.n_obs()];
    let ranges = balanced_row_ranges(&offsets, parts());
    let pieces = split_rows_mut(&mut factors, &ranges);
    let mut outs = Vec::with_capacity(ranges.len());
    let mut rest = &mut *out;
    for r in &ranges {
        let (head, tail) = rest.split_at_mut(offsets[r.end] - offsets[r.start]);
        outs.push(head);
        rest = tail;
    }
    let nan_values = ranges
        .par_iter()
        .zip(pieces)
        .zip(outs)
        .map(|((rows, f), o)| {
            let (values, local) = rows_part(&offsets, rows);
            crate::kernel::scale::fit_divide_rows_into(&m.data[values], o, &local, target, f)
        })
        .sum();
    let fitted = Fitted {
        zero_count_cells: fit::zero_count_cells(&factors),
        factors,
        target,
        excluded: Vec::new(),
    };
    Ok((fitted, Applied { nan_values }))
}

/// Normalizes a dense C-order matrix in place (scanpy divides dense arrays in place).
///
/// # Errors
/// As [`fit_dense`].
pub fn normalize_dense<T: Real>(
    data: &mut [T],
    n_vars: usize,
    params: &Params,
) -> Result<(Fitted<T>, Applied)> {
    let fitted = fit_dense(data, n_vars, params)?;
    let applied = chunk::dense_apply(data, n_vars, &fitted.factors, params);
    Ok((fitted, applied))
}

/// float32 data with float64 factors: what scanpy computes when `target_sum` is a numpy
/// float64 (or another numpy scalar that promotes float32 to float64, NEP 50). scanpy's
/// `counts / target_sum` then gives float64 factors, and the division by them runs in
/// float64: the CSR path makes a new **float64** `data` array (`x.data / np.repeat(...)`),
/// the dense path divides in place into the float32 array (`np.true_divide(x, d, out=x)`: the
/// quotient in float64, rounded once to float32). The factors themselves are the caller's
/// (numpy's own division of the float32 totals of [`fit_csr`] / [`fit_dense`] with target 1).
pub mod wide {
    use super::*;

    /// Results that overflow: a finite value whose quotient is infinite (numpy warns there;
    /// callers hand such calls back to scanpy). In float64 for [`csr_divide`], after the
    /// rounding to `T` for [`dense_divide`].
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Overflow {
        /// How many values overflowed.
        pub count: u64,
    }

    #[inline(always)]
    fn quotient<T: Real>(x: T, d: f64) -> f64 {
        x.to_f64() / d
    }

    #[inline(always)]
    fn overflowed(x: f64, q: f64) -> u64 {
        u64::from(q.is_infinite() & x.is_finite())
    }

    /// `out[j] = f64(data[j]) / divisor(factors[row of j])` for CSR rows (`indptr`: rows + 1
    /// entries), on the current rayon pool. Returns the count of overflowed values (`out` is
    /// then fully written but the caller discards it).
    ///
    /// # Errors
    /// [`Error::Input`] when `indptr` is malformed or the lengths disagree.
    pub fn csr_divide<T: Real>(
        data: &[T],
        indptr: &[i64],
        factors: &[f64],
        out: &mut [f64],
    ) -> Result<Overflow> {
        let offsets = checked_offsets(indptr, data.len())?;
        if out.len() != data.len() || factors.len() + 1 != offsets.len() {
            return Err(memory_error(
                "X/data",
                format!(
                    "{} values, {} outputs and {} factors for {} rows",
                    data.len(),
                    out.len(),
                    factors.len(),
                    offsets.len() - 1
                ),
            ));
        }
        let divisors: Vec<f64> = factors.iter().map(|&f| fit::divisor(f)).collect();
        let count =
            crate::engine::scale::for_row_parts(out, &offsets, parts(), |o, local, rows| {
                let src = &data[offsets[rows.start]..offsets[rows.end]];
                let mut n = 0;
                for (i, &d) in divisors[rows].iter().enumerate() {
                    let (a, b) = (local[i], local[i + 1]);
                    for (y, &x) in o[a..b].iter_mut().zip(&src[a..b]) {
                        let q = quotient(x, d);
                        *y = q;
                        n += overflowed(x.to_f64(), q);
                    }
                }
                n
            });
        Ok(Overflow { count })
    }

    /// Dense rows in place: `x = T(f64(x) / divisor(factors[row]))`. `data` holds
    /// `factors.len()` rows of `n_vars` values in C order, or (with `fortran`) `n_vars`
    /// columns of `factors.len()` values. Nothing is written when a value would overflow
    /// (a read-only pass checks first); the count is returned.
    ///
    /// # Errors
    /// [`Error::Input`] when `data` is not `factors.len() * n_vars` values.
    pub fn dense_divide<T: Real>(
        data: &mut [T],
        n_vars: usize,
        factors: &[f64],
        fortran: bool,
    ) -> Result<Overflow> {
        let n_obs = factors.len();
        if data.len() != n_obs * n_vars {
            return Err(memory_error(
                "X",
                format!("{} values are not {n_obs} rows of {n_vars}", data.len()),
            ));
        }
        if data.is_empty() {
            return Ok(Overflow::default());
        }
        let divisors: Vec<f64> = factors.iter().map(|&f| fit::divisor(f)).collect();
        // Rows (C order) or columns (Fortran order) of the buffer, and each one's divisor.
        let line = if fortran { n_obs } else { n_vars };
        let d_of = |line_index: usize, j: usize| {
            if fortran {
                divisors[j]
            } else {
                divisors[line_index]
            }
        };
        let lines_per_task = (data.len() / line).div_ceil(parts()).max(1);
        let count: u64 = data
            .par_chunks(lines_per_task * line)
            .enumerate()
            .map(|(t, chunk)| {
                let mut n = 0;
                for (k, values) in chunk.chunks_exact(line).enumerate() {
                    let li = t * lines_per_task + k;
                    for (j, &x) in values.iter().enumerate() {
                        let y = T::from_f64(quotient(x, d_of(li, j)));
                        n += overflowed(x.to_f64(), y.to_f64());
                    }
                }
                n
            })
            .sum();
        if count > 0 {
            return Ok(Overflow { count });
        }
        data.par_chunks_mut(lines_per_task * line)
            .enumerate()
            .for_each(|(t, chunk)| {
                for (k, values) in chunk.chunks_exact_mut(line).enumerate() {
                    let li = t * lines_per_task + k;
                    for (j, x) in values.iter_mut().enumerate() {
                        *x = T::from_f64(quotient(*x, d_of(li, j)));
                    }
                }
            });
        Ok(Overflow::default())
    }
}
