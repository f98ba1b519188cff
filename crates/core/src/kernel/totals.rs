//! Per-cell totals (SPEC-scanpy.md §1.1, §1.5): the order of additions is part of the result.
//!
//! * CSR (scanpy's numba loop): f64 accumulator starting at `0.0`, each stored value widened,
//!   added in storage order, rounded once to `T`.
//! * dense C-order rows (`np.sum(X, axis=1)`): numpy's pairwise summation in `T`.
//! * dense rows over kept genes (`np.sum(X[:, mask], axis=1)`): numpy returns the masked copy in
//!   **Fortran** order, so the sum is sequential in `T` along the row — unless the matrix has a
//!   single row (then the copy is also C-contiguous and numpy sums pairwise).

use super::real::Real;

/// Sum of `row` as scanpy's CSR loop computes it, in f64 (not yet rounded to `T`).
///
/// Fast path: when every value is an integer small enough that all partial sums are exact
/// (checked branch-free in the same pass, [`Real::exact_integer_sum`]), the f64 sum is the
/// same whatever the order, so independent accumulators (which vectorize) give the sequential
/// result bit for bit. Otherwise — fractions, NaN, inf, huge values, rows over 2^20 values —
/// the row is summed again strictly in order. Neither path can produce -0.0 (the accumulator
/// starts at +0.0), matching numba's `count = 0.0`.
#[inline(always)]
pub fn csr_row_sum_f64<T: Real>(row: &[T]) -> f64 {
    integer_sum(row).unwrap_or_else(|| sequential_sum(row))
}

/// Strict storage-order f64 sum, starting from +0.0.
#[inline(always)]
pub fn sequential_sum<T: Real>(row: &[T]) -> f64 {
    let mut acc = 0.0f64;
    for &v in row {
        acc += v.to_f64();
    }
    acc
}

/// Reordered f64 sum of a row of at most [`MAX_FAST_ROW`] values if every value is a small
/// integer (|x| <= 2^22 for f32, 2^32 for f64), else `None`.
#[inline(always)]
pub fn integer_sum<T: Real>(row: &[T]) -> Option<f64> {
    if row.len() > MAX_FAST_ROW {
        return None;
    }
    T::exact_integer_sum(row)
}

/// Rows longer than this always take the sequential path (keeps the integer shortcut's bound).
const MAX_FAST_ROW: usize = 1 << 20;

/// Defines the integer shortcut for one float type. The test is done in the type itself, so
/// a vector holds as many values as the type allows: `r = (x + M) - M` with `M` = 1.5 *
/// 2^mantissa rounds x to an integer for |x| <= `limit` (`x + M` then lies where every
/// integer, and only integers, can be represented), so `r - x` is +0.0 exactly when x is an
/// integer (and NaN for NaN or inf, whose bits are not zero). The bits of `r - x` are OR-ed
/// and the largest |x| kept: no branch, no floating-point reduction in the loop. With
/// |x| <= 2^32 and at most 2^20 values, every partial sum is an integer below 2^52, so the f64
/// additions are exact in any order.
macro_rules! exact_integer_sum {
    ($name:ident, $t:ty, $magic:expr, $limit:expr) => {
        /// See [`integer_sum`].
        #[inline(always)]
        pub fn $name(row: &[$t]) -> Option<f64> {
            const LANES: usize = 16;
            const MAGIC: $t = $magic;
            const LIMIT: $t = $limit;
            #[inline(always)]
            fn lane(x: $t, acc: &mut f64, dev: &mut <$t as BitsOf>::Bits, top: &mut $t) {
                *acc += f64::from(x);
                *dev |= (((x + MAGIC) - MAGIC) - x).to_bits();
                let a = x.abs();
                *top = if a > *top { a } else { *top };
            }
            let mut acc = [0.0f64; LANES];
            let mut dev = [0; LANES];
            let mut top = [0.0; LANES];
            let mut chunks = row.chunks_exact(LANES);
            for c in &mut chunks {
                for k in 0..LANES {
                    lane(c[k], &mut acc[k], &mut dev[k], &mut top[k]);
                }
            }
            for (k, &x) in chunks.remainder().iter().enumerate() {
                lane(x, &mut acc[k], &mut dev[k], &mut top[k]);
            }
            let exact = dev.iter().all(|&d| d == 0) && top.iter().all(|&t| t <= LIMIT);
            exact.then(|| acc.iter().sum())
        }
    };
}

/// The unsigned integer of a float's width (for OR-ing bit patterns).
trait BitsOf {
    type Bits: Copy + Default + Eq + std::ops::BitOrAssign;
}
impl BitsOf for f32 {
    type Bits = u32;
}
impl BitsOf for f64 {
    type Bits = u64;
}

exact_integer_sum!(integer_sum_f32, f32, 12_582_912.0, 4_194_304.0);
exact_integer_sum!(
    integer_sum_f64,
    f64,
    6_755_399_441_055_744.0,
    4_294_967_296.0
);

/// CSR rows: f64 accumulator, each value widened, sequential in storage order, rounded once to T.
/// `offsets` has rows+1 entries, relative to `data` (`offsets[i]..offsets[i+1]` is row i).
pub fn csr_row_totals<T: Real>(data: &[T], offsets: &[usize], out: &mut [T]) {
    assert_eq!(
        offsets.len(),
        out.len() + 1,
        "offsets must have rows + 1 entries"
    );
    // The same IEEE additions at every SIMD width: only the speed changes.
    super::simd::dispatch!(csr_row_totals_body(data, offsets, out));
}

#[inline(always)]
fn csr_row_totals_body<T: Real>(data: &[T], offsets: &[usize], out: &mut [T]) {
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

/// One segment of `np.add.reduceat(data, starts)` in T, as scipy's `csr.sum(axis=1)` sums a
/// non-empty row: numpy copies the segment's first value, then adds the rest to it in one
/// reduce call, which its float loops sum pairwise: `a[0] + pw(a[1..])`. An empty row is not a
/// segment (scipy leaves its total at `+0.0`). scanpy's dask path takes its totals from this.
pub fn reduceat_segment_sum<T: Real>(a: &[T]) -> T {
    match a.split_first() {
        None => T::ZERO,
        Some((&first, [])) => first,
        Some((&first, rest)) => first + pw(rest),
    }
}

/// scipy's `csr.sum(axis=1)` (np.add.reduceat order, in T) of CSR rows: `offsets` has rows + 1
/// entries relative to `data`; empty rows get `+0.0`.
pub fn csr_row_totals_reduceat<T: Real>(data: &[T], offsets: &[usize], out: &mut [T]) {
    assert_eq!(
        offsets.len(),
        out.len() + 1,
        "offsets must have rows + 1 entries"
    );
    for (i, o) in out.iter_mut().enumerate() {
        *o = reduceat_segment_sum(&data[offsets[i]..offsets[i + 1]]);
    }
}

/// numpy `@TYPE@_pairwise_sum` (`loops_utils.h.src`), block size 128, 8 accumulators.
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
    /// `n_obs` >= 2: the masked copy is Fortran-ordered; each row is `0.0 + x0 + x1 + ...` in T.
    Sequential,
    /// `n_obs` == 1: the copy is C-contiguous too, and numpy sums it pairwise.
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
    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::testdata::sums::*;
    use crate::kernel::testdata::{bits, f32s, f64s};
    use proptest::prelude::*;

    #[test]
    fn pairwise_matches_numpy() {
        for (row, want) in PAIRWISE_F32 {
            let a = f32s(row);
            assert_eq!(pairwise_sum(&a).to_bits(), *want, "f32 n={}", a.len());
        }
        for (row, want) in PAIRWISE_F64 {
            let a = f64s(row);
            assert_eq!(pairwise_sum(&a).to_bits(), *want, "f64 n={}", a.len());
        }
    }

    #[test]
    fn dense_totals_match_stats_sum() {
        let x = f32s(DENSE_X);
        let mut out = vec![0f32; x.len() / DENSE_NCOLS];
        dense_row_totals(&x, DENSE_NCOLS, &mut out);
        assert_eq!(bits(&out), bits(&f32s(DENSE_TOTALS)));
    }

    #[test]
    fn dense_kept_totals_match_stats_sum_of_masked_copy() {
        let x = f32s(DENSE_X);
        let kept: Vec<usize> = (0..DENSE_NCOLS).filter(|&c| DENSE_KEPT[c]).collect();
        let mut scratch = Vec::new();
        let mut out = vec![0f32; x.len() / DENSE_NCOLS];
        dense_row_totals_kept(&x, DENSE_NCOLS, &kept, &mut scratch, &mut out);
        assert_eq!(bits(&out), bits(&f32s(DENSE_KEPT_TOTALS)));
        // Each row as a one-row matrix sums pairwise, which gives other bits somewhere.
        let order = KeptSumOrder::for_n_obs(1);
        let mut one = vec![0f32; out.len()];
        for (i, o) in one.iter_mut().enumerate() {
            let row = &x[i * DENSE_NCOLS..(i + 1) * DENSE_NCOLS];
            dense_row_totals_kept_ordered(
                row,
                DENSE_NCOLS,
                &kept,
                order,
                &mut scratch,
                std::slice::from_mut(o),
            );
        }
        assert_eq!(bits(&one), bits(&f32s(DENSE_KEPT_TOTALS_ONE_ROW)));
        assert_ne!(
            DENSE_KEPT_TOTALS_ONE_ROW, DENSE_KEPT_TOTALS,
            "vectors should tell the orders apart"
        );
    }

    #[test]
    fn csr_totals_match_scanpy_numba() {
        let data = f32s(CSR_DATA);
        let rows = CSR_INDPTR.len() - 1;
        let mut out = vec![0f32; rows];
        csr_row_totals(&data, CSR_INDPTR, &mut out);
        assert_eq!(bits(&out), bits(&f32s(CSR_TOTALS)));
        // The same rows summed in f32 (another order/precision) give other bits on this data.
        let f32_sums: Vec<f32> = (0..rows)
            .map(|i| {
                data[CSR_INDPTR[i]..CSR_INDPTR[i + 1]]
                    .iter()
                    .fold(0f32, |a, &b| a + b)
            })
            .collect();
        assert_ne!(bits(&f32_sums), bits(&out));
    }

    #[test]
    fn reduceat_segments_match_scipy_csr_sum() {
        // Bits from `np.add.reduceat(np.float32(VALS), [0, 1, 3])` (numpy 2.5): the last
        // segment (9 values) sums to 0x41ff3333, a sequential f32 sum to 0x41ff3334.
        let vals: [f32; 12] = [0.1, 2.7, 3.3, 0.9, 1.1, 7.7, 5.5, 0.3, 9.1, 4.4, 0.7, 2.2];
        let mut out = [1.0f32; 4];
        csr_row_totals_reduceat(&vals, &[0, 1, 3, 3, 12], &mut out);
        let got: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, vec![0x3dcc_cccd, 0x40c0_0000, 0, 0x41ff_3333]);
        let sequential = vals[3..].iter().fold(0f32, |a, &b| a + b);
        assert_eq!(sequential.to_bits(), 0x41ff_3334);
        assert_eq!(
            reduceat_segment_sum(&[-0.0f32]).to_bits(),
            (-0.0f32).to_bits()
        );
    }

    #[test]
    fn csr_kept_totals_match_scanpy_second_pass() {
        let data = f32s(CSR_DATA);
        let mut out = vec![0f32; CSR_INDPTR.len() - 1];
        csr_row_totals_kept(&data, CSR_INDICES, CSR_INDPTR, CSR_EXCLUDED, &mut out);
        assert_eq!(bits(&out), bits(&f32s(CSR_KEPT_TOTALS)));
        assert!(CSR_EXCLUDED.iter().any(|&e| e) && CSR_EXCLUDED.iter().any(|&e| !e));
    }

    #[test]
    fn offsets_need_not_start_at_zero() {
        let data = f32s(CSR_DATA);
        let (a, b) = (CSR_INDPTR[3], CSR_INDPTR[9]);
        let offs: Vec<usize> = CSR_INDPTR[3..=9].iter().map(|o| o - a + 5).collect();
        let mut shifted = vec![0f32; 5];
        shifted.extend_from_slice(&data[a..b]);
        let mut out = vec![0f32; 6];
        csr_row_totals(&shifted, &offs, &mut out);
        assert_eq!(bits(&out), bits(&f32s(&CSR_TOTALS[3..9])));
    }

    /// SPEC §1.5 written out recursively, as plainly as possible, for the property test.
    fn pw_reference(a: &[f32]) -> f32 {
        let n = a.len();
        if n < 8 {
            a.iter().fold(-0.0f32, |s, &v| s + v)
        } else if n <= 128 {
            let mut r: Vec<f32> = a[..8].to_vec();
            let mut i = 8;
            while i < n - n % 8 {
                for k in 0..8 {
                    r[k] += a[i + k];
                }
                i += 8;
            }
            let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            while i < n {
                res += a[i];
                i += 1;
            }
            res
        } else {
            let n2 = n / 2 - (n / 2) % 8;
            pw_reference(&a[..n2]) + pw_reference(&a[n2..])
        }
    }

    fn csr_strategy() -> impl Strategy<Value = (Vec<f32>, Vec<usize>)> {
        prop::collection::vec(0usize..40, 1..30).prop_flat_map(|lens| {
            let nnz: usize = lens.iter().sum();
            let mut offs = vec![0usize];
            for l in &lens {
                offs.push(offs.last().unwrap() + l);
            }
            let val = prop_oneof![
                (0u32..50).prop_map(|k| k as f32),
                (-1e4f32..1e4f32),
                Just(-0.0f32),
                (0u32..(1 << 31)).prop_map(|k| k as f32),
            ];
            (prop::collection::vec(val, nnz), Just(offs))
        })
    }

    proptest! {
        #[test]
        fn pairwise_equals_recursive_reference(a in prop::collection::vec(-1e6f32..1e6f32, 0..2000)) {
            prop_assert_eq!(pairwise_sum(&a).to_bits(), (0.0f32 + pw_reference(&a)).to_bits());
        }

        #[test]
        fn fast_integer_sum_equals_sequential(
            ints in prop::collection::vec(-(1i64 << 32)..=(1i64 << 32), 0..3000),
            frac in any::<bool>(), at in any::<prop::sample::Index>(),
        ) {
            let mut row: Vec<f64> = ints.iter().map(|&i| i as f64).collect();
            if frac && !row.is_empty() {
                let j = at.index(row.len());
                row[j] += 0.5;
            }
            let fast = integer_sum(&row);
            prop_assert_eq!(fast.is_some(), !frac || row.is_empty());
            if let Some(f) = fast {
                prop_assert_eq!(f.to_bits(), sequential_sum(&row).to_bits());
            }
            prop_assert_eq!(csr_row_sum_f64(&row).to_bits(), sequential_sum(&row).to_bits());
        }

        #[test]
        fn fast_integer_sum_f32_equals_sequential(
            row in prop::collection::vec(prop_oneof![
                (0u32..50).prop_map(|k| k as f32),
                (-(1i32 << 22)..=(1 << 22)).prop_map(|k| k as f32),
                ((1u32 << 22)..(1 << 26)).prop_map(|k| k as f32),
                (-1e4f32..1e4f32),
                Just(-0.0f32), Just(0.5f32), Just(4_194_303.5f32), Just(-4_194_303.5f32),
                Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY),
            ], 0..200),
        ) {
            let sequential = sequential_sum(&row);
            let small_integers = row.iter().all(|&x| x.fract() == 0.0 && x.abs() <= 4_194_304.0);
            let fast = integer_sum(&row);
            prop_assert_eq!(fast.is_some(), small_integers);
            if let Some(f) = fast {
                prop_assert_eq!(f.to_bits(), sequential.to_bits());
            }
            prop_assert_eq!(csr_row_sum_f64(&row).to_bits(), sequential.to_bits());
        }

        #[test]
        fn csr_totals_are_block_independent((data, offs) in csr_strategy(), cut in any::<prop::sample::Index>()) {
            let rows = offs.len() - 1;
            let mut whole = vec![0f32; rows];
            csr_row_totals(&data, &offs, &mut whole);
            // Sequential reference.
            for i in 0..rows {
                let s = data[offs[i]..offs[i + 1]].iter().fold(0f64, |a, &v| a + v as f64) as f32;
                prop_assert_eq!(whole[i].to_bits(), s.to_bits());
            }
            let c = cut.index(rows + 1);
            let mut parts = vec![0f32; rows];
            let (lo, hi) = parts.split_at_mut(c);
            csr_row_totals(&data[..offs[c]], &offs[..=c], lo);
            let rebased: Vec<usize> = offs[c..].iter().map(|o| o - offs[c]).collect();
            csr_row_totals(&data[offs[c]..], &rebased, hi);
            prop_assert_eq!(bits(&parts), bits(&whole));
        }
    }
}
