//! The *fit* step over row blocks: per-cell totals in scanpy's sum order for each layout,
//! the highly-expressed gene mask, the target (a fixed one or the median), and the per-cell
//! factors and divisors. Everything here is a pure function of slices; any driver (the
//! streaming engine, the in-memory driver, per-chunk tasks) calls the same functions and so
//! gets the same bits (SPEC-scanpy.md §1).
//!
//! A fit over row blocks, in order:
//! 1. [`csr_totals`] / [`dense_totals`] for every block (rows are independent, so any split
//!    gives the same totals);
//! 2. with `exclude_highly_expressed`: [`csr_mark_highly_expressed`] /
//!    [`dense_mark_highly_expressed`] per block (the masks of blocks combine with OR), then
//!    [`csr_totals_kept`] / [`dense_totals_kept`] per block, replacing the totals;
//! 3. [`target`] over all totals, then [`into_factors`]; [`apply`](crate::apply) divides by
//!    [`divisor`]s of those factors.

use crate::kernel::mask;
use crate::kernel::median::median_of_positive;
use crate::kernel::scale::{divisor as divisor_of, factor, target_from_user};
use crate::kernel::totals;
use crate::kernel::Real;

pub use crate::kernel::totals::KeptSumOrder;

/// Totals of CSR rows: `offsets` (rows + 1 entries, relative to `data`) delimit the rows of
/// `data`; `out` gets one total a row. scanpy sums a CSR row in f64 in storage order for
/// non-integer values (`np.add.reduce` on the row's slice), exactly for integer values.
pub fn csr_totals<T: Real>(data: &[T], offsets: &[usize], out: &mut [T]) {
    totals::csr_row_totals(data, offsets, out);
}

/// Totals of CSR rows as scipy's `csr.sum(axis=1)` computes them (`np.add.reduceat` in T):
/// the order scanpy's dask path sums in, which is not its in-memory order ([`csr_totals`]).
pub fn csr_totals_reduceat<T: Real>(data: &[T], offsets: &[usize], out: &mut [T]) {
    totals::csr_row_totals_reduceat(data, offsets, out);
}

/// Totals of CSR rows over the genes not `excluded` (scanpy's second totals pass with
/// `exclude_highly_expressed`); `indices` are the rows' column positions as u32.
pub fn csr_totals_kept<T: Real>(
    data: &[T],
    indices: &[u32],
    offsets: &[usize],
    excluded: &[bool],
    out: &mut [T],
) {
    totals::csr_row_totals_kept(data, indices, offsets, excluded, out);
}

/// Marks in `excluded` every gene that holds more than `max_fraction` of some row's total
/// (`totals`: the rows' first totals). Blocks of rows mark into one mask, in any order.
pub fn csr_mark_highly_expressed<T: Real>(
    data: &[T],
    indices: &[u32],
    offsets: &[usize],
    totals: &[T],
    max_fraction: f64,
    excluded: &mut [bool],
) {
    mask::csr_mark_highly_expressed(data, indices, offsets, totals, max_fraction, excluded);
}

/// Totals of dense C-order rows of `n_cols` values (numpy's pairwise `sum(axis=1)`).
pub fn dense_totals<T: Real>(data: &[T], n_cols: usize, out: &mut [T]) {
    totals::dense_row_totals(data, n_cols, out);
}

/// Totals of dense rows over the kept columns (`kept_cols`, ascending). numpy's summation
/// order for `x[:, kept].sum(axis=1)` depends on the row count of the *whole* matrix:
/// pass [`KeptSumOrder::for_n_obs`] of the whole matrix, whatever the block. `scratch` is
/// reused between calls.
pub fn dense_totals_kept<T: Real>(
    data: &[T],
    n_cols: usize,
    kept_cols: &[usize],
    order: KeptSumOrder,
    scratch: &mut Vec<T>,
    out: &mut [T],
) {
    totals::dense_row_totals_kept_ordered(data, n_cols, kept_cols, order, scratch, out);
}

/// [`csr_mark_highly_expressed`] for dense rows.
pub fn dense_mark_highly_expressed<T: Real>(
    data: &[T],
    n_cols: usize,
    totals: &[T],
    max_fraction: f64,
    excluded: &mut [bool],
) {
    mask::dense_mark_highly_expressed(data, n_cols, totals, max_fraction, excluded);
}

/// The columns a mask keeps, ascending (for [`dense_totals_kept`]).
pub fn kept_columns(excluded: &[bool]) -> Vec<usize> {
    (0..excluded.len()).filter(|&c| !excluded[c]).collect()
}

/// Positions of the excluded genes, ascending.
pub fn excluded_positions(excluded: &[bool]) -> Vec<u64> {
    excluded
        .iter()
        .enumerate()
        .filter_map(|(i, &e)| e.then_some(i as u64))
        .collect()
}

/// The target: the user's `target_sum` rounded to T (NEP 50: the Python float is weak), or
/// the median of the positive totals (scanpy's `np.median(counts[counts > 0])`) when `None`.
pub fn target<T: Real>(target_sum: Option<f64>, totals: &[T]) -> T {
    match target_sum {
        Some(t) => target_from_user(t),
        None => median_of_positive(totals),
    }
}

/// Turns totals into factors `fl(total / target)` in place: the values scanpy stores in
/// `obs[key_added]`.
pub fn into_factors<T: Real>(totals: &mut [T], target: T) {
    for t in totals.iter_mut() {
        *t = factor(*t, target);
    }
}

/// What a row is divided by: scanpy's `factor + (factor == 0)` (a zero factor divides by 1).
pub fn divisor<T: Real>(factor: T) -> T {
    divisor_of(factor)
}

/// Cells whose factor is not > 0: scanpy then warns "Some cells have zero counts".
pub fn zero_count_cells<T: Real>(factors: &[T]) -> u64 {
    factors
        .iter()
        .filter(|&&f| f.partial_cmp(&T::default()) != Some(std::cmp::Ordering::Greater))
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_target_rounds_to_the_working_dtype_and_a_zero_factor_divides_by_one() {
        let t: f32 = target(Some(0.1), &[]);
        assert_eq!(t, 0.1f32);
        let mut totals = vec![0.0f32, 2.0, 4.0];
        let median: f32 = target(None, &totals);
        assert_eq!(median, 3.0);
        into_factors(&mut totals, median);
        assert_eq!(totals, vec![0.0, 2.0 / 3.0, 4.0 / 3.0]);
        assert_eq!(divisor(0.0f32), 1.0);
        assert_eq!(divisor(-0.0f32), 1.0);
        assert_eq!(zero_count_cells(&totals), 1);
        assert_eq!(kept_columns(&[true, false, true, false]), vec![1, 3]);
        assert_eq!(excluded_positions(&[true, false, true]), vec![0, 2]);
    }
}
