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
