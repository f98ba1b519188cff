//! Target, factors and the scaling pass (SPEC-scanpy.md §1.3–1.4), fused with log1p.
//!
//! `x_out = fl(x / divisor[row])` is a true IEEE division: `x * fl(1/divisor)` differs from it in
//! ~10% of values. Division is lane-wise, so results never depend on how rows are blocked.

use super::log1p::{Log1p, Log1pKernel};
use super::real::Real;

/// `fl_T(target_sum)`: scanpy divides the T totals by the Python float, which NEP 50 treats as
/// weak, i.e. rounds it to T first.
pub fn target_from_user<T: Real>(target_sum: f64) -> T {
    T::from_f64(target_sum)
}

/// `fl(total / target)`, the value scanpy stores in `obs[key_added]`.
#[inline(always)]
pub fn factor<T: Real>(total: T, target: T) -> T {
    total / target
}

/// scanpy's `factor + (factor == 0)`: 0 (either sign) -> 1, anything else (NaN too) unchanged.
#[inline(always)]
pub fn divisor<T: Real>(factor: T) -> T {
    if factor == T::ZERO {
        T::ONE
    } else {
        factor
    }
}

/// Size of the per-row small-integer log1p table (values 0, 1, ..., `TABLE_LEN` - 1).
pub const TABLE_LEN: usize = 32;
/// Rows shorter than this are not worth a table (building it costs `TABLE_LEN` log1p's).
pub const TABLE_MIN_ROW: usize = 2 * TABLE_LEN;

/// How [`normalize_csr_rows_with`] evaluates log1p.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TablePolicy {
    /// Divide every value, then log1p over the whole block (vectorized kernels win here).
    Never,
    /// Per-row small-integer table for rows of at least [`TABLE_MIN_ROW`] values.
    Always,
    /// What the bench found fastest for the kernel: the table for scalar kernels (glibc),
    /// plain vectorized evaluation for SVML with SIMD.
    Auto,
}

impl TablePolicy {
    fn use_table(self, l: &Log1p) -> bool {
        match self {
            TablePolicy::Never => false,
            TablePolicy::Always => true,
            TablePolicy::Auto => match l.kernel() {
                Log1pKernel::Libm => true,
                Log1pKernel::NumpySvml => !l.kernel().is_accelerated(),
            },
        }
    }
}

/// `x = fl(x / divisor[row])` for CSR rows, then, if `log1p` is Some, `x = log1p(x)` (with base).
/// `offsets` has rows + 1 entries relative to `data`.
pub fn normalize_csr_rows<T: Real>(
    data: &mut [T],
    offsets: &[usize],
    divisors: &[T],
    log1p: Option<&Log1p>,
) {
    normalize_csr_rows_with(data, offsets, divisors, log1p, TablePolicy::Auto);
}

/// [`normalize_csr_rows`] with an explicit table policy (all policies give the same bits).
pub fn normalize_csr_rows_with<T: Real>(
    data: &mut [T],
    offsets: &[usize],
    divisors: &[T],
    log1p: Option<&Log1p>,
    policy: TablePolicy,
) {
    assert_eq!(
        offsets.len(),
        divisors.len() + 1,
        "offsets must have rows + 1 entries"
    );
    let base = offsets[0];
    let end = offsets[divisors.len()];
    match log1p {
        Some(l) if policy.use_table(l) => {
            for (i, &d) in divisors.iter().enumerate() {
                let row = &mut data[offsets[i]..offsets[i + 1]];
                if row.len() >= TABLE_MIN_ROW {
                    table_row(row, d, l);
                } else {
                    divide(row, d);
                    l.apply(row);
                }
            }
        }
        _ => {
            super::simd::dispatch!(divide_rows(data, offsets, divisors));
            if let Some(l) = log1p {
                // One call over the whole block: the SIMD kernel runs on long contiguous runs.
                l.apply(&mut data[base..end]);
            }
        }
    }
}

/// Dense C-order rows of `n_cols` values: `x = fl(x / divisor[row])`, then optional log1p.
pub fn normalize_dense_rows<T: Real>(
    data: &mut [T],
    n_cols: usize,
    divisors: &[T],
    log1p: Option<&Log1p>,
) {
    assert_eq!(
        data.len(),
        n_cols * divisors.len(),
        "data must hold rows * n_cols values"
    );
    if n_cols == 0 {
        return;
    }
    super::simd::dispatch!(divide_dense_rows(data, n_cols, divisors));
    if let Some(l) = log1p {
        l.apply(data);
    }
}

#[inline(always)]
fn divide_rows<T: Real>(data: &mut [T], offsets: &[usize], divisors: &[T]) {
    for (i, &d) in divisors.iter().enumerate() {
        divide(&mut data[offsets[i]..offsets[i + 1]], d);
    }
}

#[inline(always)]
fn divide_dense_rows<T: Real>(data: &mut [T], n_cols: usize, divisors: &[T]) {
    for (row, &d) in data.chunks_exact_mut(n_cols).zip(divisors) {
        divide(row, d);
    }
}

/// `out[j] = data[j] / divisors[row of j]` for CSR rows (`offsets`: rows + 1 entries relative
/// to both slices), at the widest SIMD width the CPU has. Returns the number of NaN results.
pub fn divide_rows_into<T: Real>(
    data: &[T],
    out: &mut [T],
    offsets: &[usize],
    divisors: &[T],
) -> u64 {
    assert_eq!(
        data.len(),
        out.len(),
        "out must hold one value per stored value"
    );
    let mut nan = 0;
    super::simd::dispatch!(divide_rows_into_body(
        data, out, offsets, divisors, &mut nan
    ));
    nan
}

#[inline(always)]
fn divide_rows_into_body<T: Real>(
    data: &[T],
    out: &mut [T],
    offsets: &[usize],
    divisors: &[T],
    nan: &mut u64,
) {
    for (i, &d) in divisors.iter().enumerate() {
        let (a, b) = (offsets[i], offsets[i + 1]);
        *nan += divide_into_counting_nan(&data[a..b], &mut out[a..b], d);
    }
}

/// One pass for a fixed target: per CSR row, its total (scanpy's f64 sequential rule,
/// [`csr_row_sum_f64`](super::totals::csr_row_sum_f64)), its factor `total / target` into
/// `factors`, and `out = data / divisor` while the row is still in cache. The same operations
/// as the two-pass path, so the same bits; `data` is read from memory once instead of twice.
/// Returns the number of NaN results.
pub fn fit_divide_rows_into<T: Real>(
    data: &[T],
    out: &mut [T],
    offsets: &[usize],
    target: T,
    factors: &mut [T],
) -> u64 {
    assert_eq!(
        data.len(),
        out.len(),
        "out must hold one value per stored value"
    );
    assert_eq!(
        offsets.len(),
        factors.len() + 1,
        "offsets must have rows + 1 entries"
    );
    let mut nan = 0;
    super::simd::dispatch!(fit_divide_rows_into_body(
        data, out, offsets, target, factors, &mut nan
    ));
    nan
}

#[inline(always)]
fn fit_divide_rows_into_body<T: Real>(
    data: &[T],
    out: &mut [T],
    offsets: &[usize],
    target: T,
    factors: &mut [T],
    nan: &mut u64,
) {
    for (i, f) in factors.iter_mut().enumerate() {
        let (a, b) = (offsets[i], offsets[i + 1]);
        let row = &data[a..b];
        *f = factor(T::from_f64(super::totals::csr_row_sum_f64(row)), target);
        *nan += divide_into_counting_nan(row, &mut out[a..b], divisor(*f));
    }
}

/// How many of `values` are NaN, counted without branches at the CPU's SIMD width.
pub fn nan_count<T: Real>(values: &[T]) -> u64 {
    let mut nan = 0;
    super::simd::dispatch!(nan_count_body(values, &mut nan));
    nan
}

#[inline(always)]
#[allow(clippy::eq_op)] // `x != x` only for NaN
fn nan_count_body<T: Real>(values: &[T], nan: &mut u64) {
    // u32 lanes vectorize twice as wide as u64; a piece's count cannot overflow them.
    for piece in values.chunks(1 << 30) {
        let n: u32 = piece.iter().map(|&x| u32::from(x != x)).sum();
        *nan += u64::from(n);
    }
}

/// `out = row / d`, returning how many results are NaN (counted branch-free, in cache).
#[inline(always)]
#[allow(clippy::eq_op)]
fn divide_into_counting_nan<T: Real>(row: &[T], out: &mut [T], d: T) -> u64 {
    let mut nan = 0u32;
    for (o, &x) in out.iter_mut().zip(row) {
        let q = x / d;
        *o = q;
        nan += u32::from(q != q);
    }
    u64::from(nan)
}

/// Plain division by one divisor (vectorizes to `vdivps`/`vdivpd`).
#[inline(always)]
fn divide<T: Real>(row: &mut [T], d: T) {
    for x in row.iter_mut() {
        *x = *x / d;
    }
}

/// Capacity of the stack buffer of values the table does not cover.
const MISS_BUF: usize = 64;

/// One row through the small-integer table.
///
/// Every stored value whose bits are exactly those of `k` in `0..TABLE_LEN` gets `table[k]`,
/// which is `log1p(fl(k / d))` computed by the very same kernel — the same bits as computing it
/// in place, since log1p is element-wise. Other values (fractions, -0.0, large counts) are
/// divided and gathered into a small stack buffer, evaluated in batches and scattered back.
fn table_row<T: Real>(row: &mut [T], d: T, l: &Log1p) {
    let mut table = [T::ZERO; TABLE_LEN];
    for (k, t) in table.iter_mut().enumerate() {
        *t = T::from_f64(k as f64) / d;
    }
    l.apply(&mut table);

    let mut vals = [T::ZERO; MISS_BUF];
    let mut pos = [0u32; MISS_BUF];
    let mut n = 0usize;
    for j in 0..row.len() {
        let x = row[j];
        match x.small_index(TABLE_LEN as u32) {
            Some(k) => row[j] = table[k],
            None => {
                vals[n] = x / d;
                pos[n] = j as u32;
                n += 1;
                if n == MISS_BUF {
                    flush(row, &mut vals, &pos, n, l);
                    n = 0;
                }
            }
        }
    }
    flush(row, &mut vals, &pos, n, l);
}

#[inline]
fn flush<T: Real>(
    row: &mut [T],
    vals: &mut [T; MISS_BUF],
    pos: &[u32; MISS_BUF],
    n: usize,
    l: &Log1p,
) {
    if n == 0 {
        return;
    }
    l.apply(&mut vals[..n]);
    for (&v, &p) in vals[..n].iter().zip(&pos[..n]) {
        row[p as usize] = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::median::median_of_positive;
    use crate::kernel::testdata::{bits, f32s, f64s, mask_median, runs};
    use crate::kernel::totals::{
        csr_row_totals, csr_row_totals_kept, dense_row_totals, dense_row_totals_kept,
    };
    use crate::kernel::{mask, Real};
    use proptest::prelude::*;

    const POLICIES: [TablePolicy; 3] = [TablePolicy::Never, TablePolicy::Always, TablePolicy::Auto];
    const KERNELS: [Log1pKernel; 2] = [Log1pKernel::NumpySvml, Log1pKernel::Libm];

    #[test]
    fn nan_count_counts_every_nan_payload_and_nothing_else() {
        let quiet_negative = f32::from_bits(0xffc0_0001);
        let signalling = f32::from_bits(0x7f80_0001);
        let mut v = vec![1.0f32; 1000];
        for (i, x) in [f32::NAN, quiet_negative, signalling]
            .into_iter()
            .enumerate()
        {
            v[i * 333] = x;
        }
        v[7] = f32::INFINITY;
        v[8] = -0.0;
        assert_eq!(nan_count(&v), 3);
        let w: Vec<f64> = v.iter().map(|&x| f64::from(x)).collect();
        assert_eq!(nan_count(&w), 3);
        assert_eq!(nan_count::<f32>(&[]), 0);
    }

    /// The engine's sequence of kernel calls on one CSR matrix held in memory.
    fn run<T: Real>(
        data: &[T],
        indices: &[u32],
        indptr: &[usize],
        n_cols: usize,
        target_sum: Option<f64>,
        exclude: bool,
    ) -> (Vec<T>, Vec<T>) {
        let rows = indptr.len() - 1;
        let mut totals = vec![T::ZERO; rows];
        csr_row_totals(data, indptr, &mut totals);
        if exclude {
            let mut excl = vec![false; n_cols];
            mask::csr_mark_highly_expressed(data, indices, indptr, &totals, 0.05, &mut excl);
            let first = totals.clone();
            csr_row_totals_kept(data, indices, indptr, &excl, &mut totals);
            assert_ne!(
                bits(&first),
                bits(&totals),
                "exclusion should change totals here"
            );
        }
        let target = target_sum.map_or_else(|| median_of_positive(&totals), target_from_user);
        let factors: Vec<T> = totals.iter().map(|&t| factor(t, target)).collect();
        let divisors: Vec<T> = factors.iter().map(|&f| divisor(f)).collect();
        (factors, divisors)
    }

    macro_rules! check_run {
        ($m:ident, $conv:ident, $t:ty) => {{
            use runs::$m as r;
            let data: Vec<$t> = $conv(r::DATA);
            let (factors, divisors) = run(
                &data,
                r::INDICES,
                r::INDPTR,
                r::N_COLS,
                r::TARGET_SUM,
                r::EXCLUDE,
            );
            assert_eq!(bits(&factors), bits(&$conv(r::FACTORS)), "factors");
            let mut norm = data.clone();
            normalize_csr_rows(&mut norm, r::INDPTR, &divisors, None);
            assert_eq!(bits(&norm), bits(&$conv(r::NORMALIZED)), "normalized");
            // Fused normalize + log1p, every table policy, same bits as scanpy's two steps.
            let l = Log1p::new(Log1pKernel::NumpySvml, r::BASE);
            for p in POLICIES {
                let mut y = data.clone();
                normalize_csr_rows_with(&mut y, r::INDPTR, &divisors, Some(&l), p);
                assert_eq!(bits(&y), bits(&$conv(r::LOGGED)), "logged, {p:?}");
            }
        }};
    }

    #[test]
    fn scanpy_runs_umi_median() {
        check_run!(umi_median, f32s, f32);
    }
    #[test]
    fn scanpy_runs_umi_fixed_target_base2() {
        check_run!(umi_1e4_base2, f32s, f32);
    }
    #[test]
    fn scanpy_runs_fractional_with_exclusion() {
        check_run!(frac_median_excl, f32s, f32);
    }
    #[test]
    fn scanpy_runs_fractional_base10() {
        check_run!(frac_1e4_base10, f32s, f32);
    }
    #[test]
    fn scanpy_runs_f64() {
        check_run!(f64_median, f64s, f64);
    }

    #[test]
    fn division_is_not_a_reciprocal_multiply() {
        // In scanpy's output there are values where x * fl(1/d) would be off by one ULP.
        use runs::frac_median_excl as r;
        let data = f32s(r::DATA);
        let (_, divisors) = run(
            &data,
            r::INDICES,
            r::INDPTR,
            r::N_COLS,
            r::TARGET_SUM,
            r::EXCLUDE,
        );
        let want = f32s(r::NORMALIZED);
        let mut differ = 0;
        for (i, &d) in divisors.iter().enumerate() {
            for j in r::INDPTR[i]..r::INDPTR[i + 1] {
                differ += ((data[j] * (1.0 / d)).to_bits() != want[j].to_bits()) as usize;
            }
        }
        assert!(
            differ > 0,
            "no value tells division from reciprocal multiplication"
        );
    }

    #[test]
    fn zero_and_nan_factors() {
        assert_eq!(divisor(0.0f32), 1.0);
        assert_eq!(divisor(-0.0f32), 1.0);
        assert!(divisor(f32::NAN).is_nan());
        assert_eq!(divisor(0.25f64), 0.25);
        // The zero row of the UMI run has factor 0 in scanpy's obs and is left unchanged.
        assert!(runs::umi_median::FACTORS.contains(&0));
    }

    #[test]
    fn dense_pipeline_with_exclusion_matches_scanpy() {
        let x = f32s(mask_median::MASK_X);
        let n_cols = 3;
        let rows = x.len() / n_cols;
        let mut totals = vec![0f32; rows];
        dense_row_totals(&x, n_cols, &mut totals);
        let mut excl = vec![false; n_cols];
        mask::dense_mark_highly_expressed(
            &x,
            n_cols,
            &totals,
            mask_median::MASK_MAX_FRACTION,
            &mut excl,
        );
        let kept: Vec<usize> = (0..n_cols).filter(|&c| !excl[c]).collect();
        let mut scratch = Vec::new();
        dense_row_totals_kept(&x, n_cols, &kept, &mut scratch, &mut totals);
        let target = median_of_positive(&totals);
        let divisors: Vec<f32> = totals.iter().map(|&t| divisor(factor(t, target))).collect();
        let mut y = x.clone();
        normalize_dense_rows(&mut y, n_cols, &divisors, None);
        assert_eq!(bits(&y), bits(&f32s(mask_median::MASK_DENSE_NORMALIZED)));
    }

    fn row_value() -> impl Strategy<Value = f32> {
        prop_oneof![
            8 => (1u32..4).prop_map(|k| k as f32),
            3 => (0u32..40).prop_map(|k| k as f32),
            1 => 0.0f32..1e5,
            1 => Just(-0.0f32),
            1 => (40u32..100_000).prop_map(|k| k as f32),
        ]
    }

    fn csr_rows() -> impl Strategy<Value = (Vec<f32>, Vec<usize>, Vec<f32>)> {
        prop::collection::vec(0usize..200, 1..12).prop_flat_map(|lens| {
            let nnz: usize = lens.iter().sum();
            let mut offs = vec![0usize];
            for l in &lens {
                offs.push(offs.last().unwrap() + l);
            }
            let div = prop_oneof![8 => 0.01f32..50.0, 1 => Just(1.0f32), 1 => Just(f32::NAN), 1 => Just(1e-30f32)];
            (prop::collection::vec(row_value(), nnz), Just(offs), prop::collection::vec(div, lens.len()))
        })
    }

    proptest! {
        #[test]
        fn table_path_equals_plain_path((data, offs, divs) in csr_rows(), base in prop_oneof![Just(None), Just(Some(2.0)), Just(Some(10.0))]) {
            for k in KERNELS {
                let l = Log1p::new(k, base);
                let mut plain = data.clone();
                normalize_csr_rows_with(&mut plain, &offs, &divs, Some(&l), TablePolicy::Never);
                let mut table = data.clone();
                normalize_csr_rows_with(&mut table, &offs, &divs, Some(&l), TablePolicy::Always);
                prop_assert_eq!(bits(&plain), bits(&table));
                // f64 too.
                let d64: Vec<f64> = data.iter().map(|&v| v as f64).collect();
                let v64: Vec<f64> = divs.iter().map(|&v| v as f64).collect();
                let mut p64 = d64.clone();
                normalize_csr_rows_with(&mut p64, &offs, &v64, Some(&l), TablePolicy::Never);
                let mut t64 = d64;
                normalize_csr_rows_with(&mut t64, &offs, &v64, Some(&l), TablePolicy::Always);
                prop_assert_eq!(bits(&p64), bits(&t64));
            }
        }

        #[test]
        fn normalize_is_block_independent((data, offs, divs) in csr_rows(), cut in any::<prop::sample::Index>(), log in any::<bool>()) {
            let l = Log1p::new(Log1pKernel::NumpySvml, None);
            let l = log.then_some(&l);
            let rows = divs.len();
            let mut whole = data.clone();
            normalize_csr_rows(&mut whole, &offs, &divs, l);
            let c = cut.index(rows + 1);
            let mut parts = data.clone();
            let (lo, hi) = parts.split_at_mut(offs[c]);
            normalize_csr_rows(lo, &offs[..=c], &divs[..c], l);
            let rebased: Vec<usize> = offs[c..].iter().map(|o| o - offs[c]).collect();
            normalize_csr_rows(hi, &rebased, &divs[c..], l);
            prop_assert_eq!(bits(&parts), bits(&whole));
            // And element by element: x / d then log1p, with no block structure at all.
            for i in 0..rows {
                for j in offs[i]..offs[i + 1] {
                    let q = data[j] / divs[i];
                    let want = l.map_or(q, |l| l.apply_one(q));
                    prop_assert_eq!(whole[j].to_bits(), want.to_bits());
                }
            }
        }
    }
}
