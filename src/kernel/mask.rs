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
