//! Per-cell totals (SPEC-scanpy.md §1.1, §1.5): the order of additions is part of the result.
//!
//! * CSR (scanpy's numba loop): f64 accumulator starting at `0.0`, each stored value widened,
//!   added in storage order, rounded once to `T`.
//! * dense C-order rows (`np.sum(X, axis=1)`): numpy's pairwise summation in `T`.
//! * dense rows over kept genes (`np.sum(X[:, mask], axis=1)`): numpy returns the masked copy in
//!   **Fortran** order, so the sum is sequential in `T` along the row — unless the matrix has a
//!   single row (then the copy is also C-contiguous and numpy sums pairwise).

use super::real::Real;

/// Rows longer than this always take the sequential path (keeps the integer shortcut's bound).
const MAX_FAST_ROW: usize = 1 << 20;
/// Values with |x| <= 2^32 in a row of at most 2^20 values: every partial sum, in any order, is
/// an integer below 2^52 in magnitude, hence exact in f64.
const FAST_ABS_LIMIT: f64 = 4_294_967_296.0;
/// 1.5 * 2^52: `(w + R) - R` rounds w (|w| < 2^51) to an integer using two plain additions.
const ROUNDER: f64 = 6_755_399_441_055_744.0;

/// Sum of `row` as scanpy's CSR loop computes it, in f64 (not yet rounded to `T`).
///
/// Fast path: when every value is an integer of magnitude <= 2^32 (checked branch-free in the same
/// pass), the f64 sum is exact whatever the order, so eight independent accumulators (which
/// vectorize) give the sequential result bit for bit. Otherwise — fractions, NaN, inf, huge
/// values — the row is summed again strictly in order. Neither path can produce -0.0 (the
/// accumulator starts at +0.0), matching numba's `count = 0.0`.
#[inline]
pub fn csr_row_sum_f64<T: Real>(row: &[T]) -> f64 {
    if row.len() <= MAX_FAST_ROW {
        if let Some(s) = integer_sum(row) {
            return s;
        }
    }
    sequential_sum(row)
}

/// Strict storage-order f64 sum, starting from +0.0.
#[inline]
pub fn sequential_sum<T: Real>(row: &[T]) -> f64 {
    let mut acc = 0.0f64;
    for &v in row {
        acc += v.to_f64();
    }
    acc
}

/// Reordered f64 sum if every value is an integer with |x| <= 2^32, else `None`.
#[inline]
pub fn integer_sum<T: Real>(row: &[T]) -> Option<f64> {
    let mut acc = [0.0f64; 8];
    let mut ok = [true; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            let w = c[k].to_f64();
            acc[k] += w;
            ok[k] &= is_small_integer(w);
        }
    }
    let mut tail = 0.0f64;
    let mut tail_ok = true;
    for &v in chunks.remainder() {
        let w = v.to_f64();
        tail += w;
        tail_ok &= is_small_integer(w);
    }
    if ok.iter().all(|&b| b) && tail_ok {
        Some(
            ((acc[0] + acc[1]) + (acc[2] + acc[3]))
                + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
                + tail,
        )
    } else {
        None
    }
}

/// `w` is an integer with |w| <= 2^32 (false for NaN and inf). Two additions and compares only.
#[inline(always)]
fn is_small_integer(w: f64) -> bool {
    w.abs() <= FAST_ABS_LIMIT && (w + ROUNDER) - ROUNDER == w
}

/// CSR rows: f64 accumulator, each value widened, sequential in storage order, rounded once to T.
/// `offsets` has rows+1 entries, relative to `data` (`offsets[i]..offsets[i+1]` is row i).
pub fn csr_row_totals<T: Real>(data: &[T], offsets: &[usize], out: &mut [T]) {
    assert_eq!(
        offsets.len(),
        out.len() + 1,
        "offsets must have rows + 1 entries"
    );
    for (i, o) in out.iter_mut().enumerate() {
        *o = T::from_f64(csr_row_sum_f64(&data[offsets[i]..offsets[i + 1]]));
    }
}

/// Same, counting only values whose gene is kept (`excluded[indices[j]] == false`).
///
/// An excluded value is replaced by +0.0 rather than skipped: the accumulator starts at +0.0 and
/// can never become -0.0, so adding +0.0 leaves it (and any NaN payload) unchanged — the same
/// bits as scanpy's `if counts_per_cols[...] == 0: count += x`, without a branch.
pub fn csr_row_totals_kept<T: Real>(
    data: &[T],
    indices: &[u32],
    offsets: &[usize],
    excluded: &[bool],
    out: &mut [T],
) {
    assert_eq!(
        offsets.len(),
        out.len() + 1,
        "offsets must have rows + 1 entries"
    );
    for (i, o) in out.iter_mut().enumerate() {
        let (a, b) = (offsets[i], offsets[i + 1]);
        let mut acc = 0.0f64;
        for (&v, &g) in data[a..b].iter().zip(&indices[a..b]) {
            acc += if excluded[g as usize] {
                0.0
            } else {
                v.to_f64()
            };
        }
        *o = T::from_f64(acc);
    }
}

/// numpy's pairwise summation in T (SPEC §1.5), returning `0.0 + pw(a)` exactly as numpy's row
/// sum does (the `0.0 +` only matters for an all-(-0.0) row, which sums to +0.0).
pub fn pairwise_sum<T: Real>(a: &[T]) -> T {
    T::ZERO + pw(a)
}

/// numpy `@TYPE@_pairwise_sum` (loops_utils.h.src), block size 128, 8 accumulators.
fn pw<T: Real>(a: &[T]) -> T {
    let n = a.len();
    if n < 8 {
        let mut res = T::NEG_ZERO;
        for &v in a {
            res = res + v;
        }
        res
    } else if n <= 128 {
        let mut r = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]];
        let whole = n - n % 8;
        let mut i = 8;
        while i < whole {
            for k in 0..8 {
                r[k] = r[k] + a[i + k];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[whole..] {
            res = res + v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pw(&a[..n2]) + pw(&a[n2..])
    }
}

/// Dense C-order rows of `n_cols` values: numpy's `X.sum(axis=1)` in T.
pub fn dense_row_totals<T: Real>(data: &[T], n_cols: usize, out: &mut [T]) {
    assert_eq!(
        data.len(),
        n_cols * out.len(),
        "data must hold rows * n_cols values"
    );
    if n_cols == 0 {
        out.fill(T::ZERO);
        return;
    }
    for (row, o) in data.chunks_exact(n_cols).zip(out.iter_mut()) {
        *o = pairwise_sum(row);
    }
}

/// How numpy sums `X[:, gene_subset]` along rows; depends on the whole matrix's row count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeptSumOrder {
    /// n_obs >= 2: the masked copy is Fortran-ordered; each row is `0.0 + x0 + x1 + ...` in T.
    Sequential,
    /// n_obs == 1: the copy is C-contiguous too, and numpy sums it pairwise.
    Pairwise,
}

impl KeptSumOrder {
    /// The order numpy uses for a matrix with `n_obs` rows in total (not per block).
    pub fn for_n_obs(n_obs: usize) -> Self {
        if n_obs == 1 {
            KeptSumOrder::Pairwise
        } else {
            KeptSumOrder::Sequential
        }
    }
}

/// Dense rows over the kept columns only, exactly as scanpy's `stats.sum(x[:, gene_subset],
/// axis=1)` on a matrix with **at least two rows** ([`KeptSumOrder::Sequential`]; for a one-row
/// matrix use [`dense_row_totals_kept_ordered`] with [`KeptSumOrder::for_n_obs`]).
/// `kept_cols` must be ascending (numpy keeps column order). `scratch` is reusable space.
pub fn dense_row_totals_kept<T: Real>(
    data: &[T],
    n_cols: usize,
    kept_cols: &[usize],
    scratch: &mut Vec<T>,
    out: &mut [T],
) {
    dense_row_totals_kept_ordered(
        data,
        n_cols,
        kept_cols,
        KeptSumOrder::Sequential,
        scratch,
        out,
    )
}

/// [`dense_row_totals_kept`] with the summation order given explicitly.
pub fn dense_row_totals_kept_ordered<T: Real>(
    data: &[T],
    n_cols: usize,
    kept_cols: &[usize],
    order: KeptSumOrder,
    scratch: &mut Vec<T>,
    out: &mut [T],
) {
    assert_eq!(
        data.len(),
        n_cols * out.len(),
        "data must hold rows * n_cols values"
    );
    for (i, o) in out.iter_mut().enumerate() {
        let row = &data[i * n_cols..(i + 1) * n_cols];
        *o = match order {
            KeptSumOrder::Sequential => {
                let mut acc = T::ZERO;
                for &c in kept_cols {
                    acc = acc + row[c];
                }
                acc
            }
            KeptSumOrder::Pairwise => {
                scratch.clear();
                scratch.extend(kept_cols.iter().map(|&c| row[c]));
                pairwise_sum(scratch)
            }
        };
    }
}
