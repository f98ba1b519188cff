//! The *apply* step: each row of a block divided by its [`divisor`](crate::fit::divisor)
//! (a true IEEE division, as numpy's), then log1p with numpy's kernel and scanpy's base
//! rule, in place. Rows are independent: blocks and threads never change a bit.

use crate::kernel::log1p::Log1p;

pub use crate::engine::scale::NotFinite;

/// Scales the CSR rows of a block in place (`offsets`: rows + 1 entries relative to `data`;
/// `factors`: one a row) and applies `log1p`, on up to `parts` rayon tasks. Returns the
/// number of NaN values written.
///
/// # Errors
/// [`NotFinite`] when `log1p` is given and a normalized value is NaN or infinite: scanpy's
/// sparse log1p refuses such input (sklearn's `check_array`). Nothing is then log-transformed.
pub fn csr_block<T: crate::kernel::Real>(
    data: &mut [T],
    offsets: &[usize],
    factors: &[T],
    log1p: Option<&Log1p>,
    parts: usize,
) -> Result<u64, NotFinite> {
    crate::engine::scale::scale_sparse(data, offsets, factors, log1p, parts)
}

/// [`csr_block`] without log1p, from `data` into `out` (same length): `data / divisor[row]`,
/// leaving `data` as it is. Returns the number of NaN values written.
pub fn csr_block_into<T: crate::kernel::Real>(
    data: &[T],
    out: &mut [T],
    offsets: &[usize],
    factors: &[T],
    parts: usize,
) -> u64 {
    crate::engine::scale::scale_sparse_into(data, out, offsets, factors, parts)
}

/// Scales dense C-order rows of `n_cols` values in place and applies `log1p` (no finiteness
/// check: scanpy's dense log1p has none). Returns the number of NaN values written.
pub fn dense_block<T: crate::kernel::Real>(
    data: &mut [T],
    n_cols: usize,
    factors: &[T],
    log1p: Option<&Log1p>,
    parts: usize,
) -> u64 {
    crate::engine::scale::scale_dense(data, n_cols, factors, log1p, parts)
}

/// log1p alone over `data` in place (scanpy's `sc.pp.log1p` on values that are already
/// normalized), in chunks on the current rayon pool. Elements are independent, so chunking
/// never changes a bit.
pub fn log1p_values<T: crate::kernel::Real>(data: &mut [T], log1p: &Log1p) {
    use rayon::prelude::*;
    data.par_chunks_mut(LOG1P_CHUNK)
        .for_each(|piece| log1p.apply(piece));
}

/// What a log1p will meet in its input, found in one read-only pass before anything is
/// written: scanpy's sparse log1p (sklearn's `check_array`) refuses NaN and ±inf, and numpy's
/// log1p warns (floating-point flags) on values at or below -1, so a caller that must match
/// either decides before it transforms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Log1pInput {
    /// Some value is NaN or ±inf.
    pub non_finite: bool,
    /// Some value is <= -1 (including -inf): numpy raises "invalid value" / "divide by zero".
    pub at_or_below_minus_one: bool,
}

/// Scans `data` for [`Log1pInput`], in parallel.
pub fn scan_log1p_input<T: crate::kernel::Real>(data: &[T]) -> Log1pInput {
    use rayon::prelude::*;
    let minus_one = T::ZERO - T::ONE;
    data.par_chunks(LOG1P_CHUNK)
        .map(|piece| {
            // Element-wise tests OR-ed into integers: no floating-point reduction, so the loop
            // vectorizes. `x - x == 0` holds exactly for finite x.
            let (mut non_finite, mut low) = (0u8, 0u8);
            crate::kernel::simd::dispatch!(scan_piece(piece, minus_one, &mut non_finite, &mut low));
            Log1pInput {
                non_finite: non_finite != 0,
                at_or_below_minus_one: low != 0,
            }
        })
        .reduce(Log1pInput::default, |a, b| Log1pInput {
            non_finite: a.non_finite | b.non_finite,
            at_or_below_minus_one: a.at_or_below_minus_one | b.at_or_below_minus_one,
        })
}

#[inline(always)]
#[allow(clippy::eq_op)] // `x - x` is the finiteness test
fn scan_piece<T: crate::kernel::Real>(
    piece: &[T],
    minus_one: T,
    non_finite: &mut u8,
    low: &mut u8,
) {
    let (mut nf, mut lo) = (0u8, 0u8);
    for &x in piece {
        nf |= u8::from((x - x) != T::ZERO);
        lo |= u8::from(x <= minus_one);
    }
    *non_finite |= nf;
    *low |= lo;
}

/// Scales a dense **Fortran-order** matrix of `factors.len()` rows in place: column by column,
/// each value divided by its row's divisor (the same IEEE division as [`dense_block`]; only the
/// memory order differs).
pub fn dense_block_fortran<T: crate::kernel::Real>(data: &mut [T], factors: &[T]) {
    use rayon::prelude::*;
    let n_obs = factors.len();
    if n_obs == 0 {
        return;
    }
    assert!(
        data.len().is_multiple_of(n_obs),
        "data must hold whole columns of n_obs values"
    );
    let divisors: Vec<T> = factors.iter().map(|&f| crate::fit::divisor(f)).collect();
    data.par_chunks_mut(n_obs).for_each(|column| {
        for (x, &d) in column.iter_mut().zip(&divisors) {
            *x = *x / d;
        }
    });
}

/// Values per rayon task in the element-wise passes: large enough to amortize scheduling,
/// small enough to balance two to dozens of cores.
const LOG1P_CHUNK: usize = 1 << 16;
