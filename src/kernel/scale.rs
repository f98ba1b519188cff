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
#[inline]
pub fn factor<T: Real>(total: T, target: T) -> T {
    total / target
}

/// scanpy's `factor + (factor == 0)`: 0 (either sign) -> 1, anything else (NaN too) unchanged.
#[inline]
pub fn divisor<T: Real>(factor: T) -> T {
    if factor == T::ZERO {
        T::ONE
    } else {
        factor
    }
}

/// Size of the per-row small-integer log1p table (values 0, 1, ..., TABLE_LEN - 1).
pub const TABLE_LEN: usize = 32;
/// Rows shorter than this are not worth a table (building it costs TABLE_LEN log1p's).
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
    normalize_csr_rows_with(data, offsets, divisors, log1p, TablePolicy::Auto)
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
            for (i, &d) in divisors.iter().enumerate() {
                divide(&mut data[offsets[i]..offsets[i + 1]], d);
            }
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
    for (row, &d) in data.chunks_exact_mut(n_cols).zip(divisors) {
        divide(row, d);
    }
    if let Some(l) = log1p {
        l.apply(data);
    }
}

/// Plain division by one divisor (vectorizes to `vdivps`/`vdivpd`).
#[inline]
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
