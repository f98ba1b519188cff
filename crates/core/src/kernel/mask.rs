//! `exclude_highly_expressed` (SPEC-scanpy.md §1.2): a gene is excluded when in at least one cell
//! its value is strictly greater than `max_fraction` times that cell's first-pass total.
//!
//! Both functions only ever set flags, so running them block by block in any order and OR-ing
//! (or sharing) the `excluded` slice gives the same mask as one pass over the whole matrix.

use super::real::Real;

/// CSR rule (scanpy's numba loop): `f64(value) > max_fraction * f64(total)`, all in f64.
/// Sets `excluded[indices[j]] = true`; never clears. NaN compares false (never excludes).
pub fn csr_mark_highly_expressed<T: Real>(
    data: &[T],
    indices: &[u32],
    offsets: &[usize],
    totals: &[T],
    max_fraction: f64,
    excluded: &mut [bool],
) {
    assert_eq!(
        offsets.len(),
        totals.len() + 1,
        "offsets must have rows + 1 entries"
    );
    for (i, &total) in totals.iter().enumerate() {
        let thr = max_fraction * total.to_f64();
        let (a, b) = (offsets[i], offsets[i + 1]);
        for (&v, &g) in data[a..b].iter().zip(&indices[a..b]) {
            // `|=` rather than `if`: no data-dependent branch, and a flag is never cleared.
            excluded[g as usize] |= v.to_f64() > thr;
        }
    }
}

/// Dense rule (scanpy: `x > counts_per_cell[:, None] * max_fraction`). Under NEP 50 the Python
/// float is weak, so the product is computed in T: `thr = fl_T(total * fl_T(max_fraction))`, and
/// compared in T (checked against numpy 2.5.5 in the test vectors, including totals where the
/// f64 product would round differently).
pub fn dense_mark_highly_expressed<T: Real>(
    data: &[T],
    n_cols: usize,
    totals: &[T],
    max_fraction: f64,
    excluded: &mut [bool],
) {
    assert_eq!(
        data.len(),
        n_cols * totals.len(),
        "data must hold rows * n_cols values"
    );
    assert_eq!(excluded.len(), n_cols, "one flag per column");
    if n_cols == 0 {
        return;
    }
    let mf = T::from_f64(max_fraction);
    for (row, &total) in data.chunks_exact(n_cols).zip(totals) {
        let thr = total * mf;
        for (e, &v) in excluded.iter_mut().zip(row) {
            *e |= v > thr;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::testdata::f32s;
    use crate::kernel::testdata::mask_median::*;
    use crate::kernel::testdata::sums;
    use crate::kernel::totals::{csr_row_totals, dense_row_totals};

    const NCOLS: usize = 3;

    #[test]
    fn dense_rule_matches_scanpy_and_differs_from_csr_rule() {
        let x = f32s(MASK_X);
        let mut totals = vec![0f32; x.len() / NCOLS];
        dense_row_totals(&x, NCOLS, &mut totals);
        let mut excl = vec![false; NCOLS];
        dense_mark_highly_expressed(&x, NCOLS, &totals, MASK_MAX_FRACTION, &mut excl);
        assert_eq!(excl, MASK_DENSE_EXCLUDED);
        assert_ne!(
            MASK_DENSE_EXCLUDED, MASK_CSR_EXCLUDED,
            "vectors must tell the rules apart"
        );
    }

    #[test]
    fn csr_rule_matches_scanpy_on_the_same_matrix() {
        // The dense matrix as scipy stores it (zeros dropped).
        let x = f32s(MASK_X);
        let (mut data, mut idx, mut offs) = (vec![], vec![], vec![0usize]);
        for row in x.chunks(NCOLS) {
            for (c, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    data.push(v);
                    idx.push(c as u32);
                }
            }
            offs.push(data.len());
        }
        let mut totals = vec![0f32; offs.len() - 1];
        csr_row_totals(&data, &offs, &mut totals);
        let mut excl = vec![false; NCOLS];
        csr_mark_highly_expressed(&data, &idx, &offs, &totals, MASK_MAX_FRACTION, &mut excl);
        assert_eq!(excl, MASK_CSR_EXCLUDED);
    }

    #[test]
    fn csr_mask_matches_scanpy_and_is_block_independent() {
        let data = f32s(sums::CSR_DATA);
        let totals = f32s(sums::CSR_TOTALS);
        let offs = sums::CSR_INDPTR;
        let mut whole = vec![false; sums::CSR_NCOLS];
        csr_mark_highly_expressed(
            &data,
            sums::CSR_INDICES,
            offs,
            &totals,
            sums::CSR_MAX_FRACTION,
            &mut whole,
        );
        assert_eq!(whole, sums::CSR_EXCLUDED);
        // Blocks in reverse order, sharing one mask.
        let mut blocks = vec![false; sums::CSR_NCOLS];
        for (a, b) in [(25usize, 40usize), (10, 25), (0, 10)] {
            let rebased: Vec<usize> = offs[a..=b].iter().map(|o| o - offs[a]).collect();
            let (s, e) = (offs[a], offs[b]);
            csr_mark_highly_expressed(
                &data[s..e],
                &sums::CSR_INDICES[s..e],
                &rebased,
                &totals[a..b],
                sums::CSR_MAX_FRACTION,
                &mut blocks,
            );
        }
        assert_eq!(blocks, whole);
    }
}
