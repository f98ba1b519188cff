//! Scaling one block in parallel, with scanpy's refusal of NaN and infinity before a
//! sparse log1p.

use std::ops::Range;

use rayon::prelude::*;

use super::plan::balanced_row_ranges;
use crate::kernel::log1p::Log1p;
use crate::kernel::scale::{divisor, normalize_csr_rows, normalize_dense_rows};
use crate::kernel::Real;

/// Splits `data` (the values of the rows described by `offsets`, which has one entry more
/// than there are rows) into disjoint row ranges of similar size and runs `f` on each in
/// parallel with its rows' offsets rebased to the piece.
pub fn for_row_parts<T: Send>(
    data: &mut [T],
    offsets: &[usize],
    parts: usize,
    f: impl Fn(&mut [T], &[usize], Range<usize>) -> u64 + Sync,
) -> u64 {
    let ranges = balanced_row_ranges(offsets, parts);
    let mut pieces = Vec::with_capacity(ranges.len());
    let mut rest = data;
    for r in ranges {
        let (head, tail) = rest.split_at_mut(offsets[r.end] - offsets[r.start]);
        pieces.push((head, r));
        rest = tail;
    }
    pieces
        .into_par_iter()
        .map(|(piece, rows)| {
            let base = offsets[rows.start];
            let local: Vec<usize> = offsets[rows.start..=rows.end]
                .iter()
                .map(|o| o - base)
                .collect();
            f(piece, &local, rows)
        })
        .sum()
}

/// Totals of the CSR rows of a block (`offsets`: rows + 1 entries relative to `data`), on up
/// to `parts` rayon tasks over balanced row ranges.
pub fn csr_totals_parallel<T: Real>(data: &[T], offsets: &[usize], out: &mut [T], parts: usize) {
    let ranges = balanced_row_ranges(offsets, parts);
    let pieces = split_rows_mut(out, &ranges);
    ranges.par_iter().zip(pieces).for_each(|(rows, piece)| {
        crate::fit::csr_totals(data, &offsets[rows.start..=rows.end], piece);
    });
}

/// Totals of dense C-order rows of `n_cols` values, on up to `parts` rayon tasks.
pub fn dense_totals_parallel<T: Real>(data: &[T], n_cols: usize, out: &mut [T], parts: usize) {
    if n_cols == 0 {
        out.fill(T::default());
        return;
    }
    let rows_per_part = out.len().div_ceil(parts).max(1);
    data.par_chunks(rows_per_part * n_cols)
        .zip(out.par_chunks_mut(rows_per_part))
        .for_each(|(v, t)| crate::fit::dense_totals(v, n_cols, t));
}

/// Splits `out` (one entry a row) along `ranges`.
pub fn split_rows_mut<'a, T>(mut out: &'a mut [T], ranges: &[Range<usize>]) -> Vec<&'a mut [T]> {
    let mut pieces = Vec::with_capacity(ranges.len());
    for r in ranges {
        let (head, tail) = out.split_at_mut(r.end - r.start);
        pieces.push(head);
        out = tail;
    }
    pieces
}

/// Why a block cannot be log-transformed the way scanpy would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotFinite {
    /// Normalized values that are NaN or infinite.
    pub count: u64,
}

/// Divides each row of a CSR block by its divisor (from `factors`) and applies log1p.
///
/// scanpy's sparse log1p first rejects NaN and ±inf among the normalized values
/// (sklearn's `check_array`); so does this. Where the block cannot produce such values
/// (no negative or non-finite input, no NaN divisor on a stored row) the fused kernel runs;
/// otherwise values are scaled, checked, then log-transformed, which gives the same bits.
/// Returns the number of NaN values written.
pub fn scale_sparse<T: Real>(
    data: &mut [T],
    offsets: &[usize],
    factors: &[T],
    log1p: Option<&Log1p>,
    parts: usize,
) -> Result<u64, NotFinite> {
    let divisors: Vec<T> = factors.iter().map(|&f| divisor(f)).collect();
    // Branch-free scan (vectorizes): any value negative, NaN or infinite?
    let risky = log1p.is_some()
        && (data.par_chunks(1 << 16).any(|c| {
            c.iter().fold(false, |acc, v| {
                let x = v.to_f64();
                acc | !(0.0..=f64::MAX).contains(&x)
            })
        }) || divisors
            .iter()
            .enumerate()
            .any(|(i, d)| d.is_nan() && offsets[i + 1] > offsets[i]));
    if risky {
        for_row_parts(data, offsets, parts, |piece, local, rows| {
            normalize_csr_rows(piece, local, &divisors[rows], None);
            0
        });
        let bad = data.par_iter().filter(|v| !v.to_f64().is_finite()).count() as u64;
        if bad > 0 {
            return Err(NotFinite { count: bad });
        }
        let log1p = log1p.expect("risky implies log1p");
        data.par_chunks_mut(1 << 14).for_each(|c| log1p.apply(c));
        Ok(count_nan(data))
    } else {
        // NaN are counted in each piece right after it is computed, while it is in cache.
        Ok(for_row_parts(data, offsets, parts, |piece, local, rows| {
            normalize_csr_rows(piece, local, &divisors[rows], log1p);
            nan_in(piece)
        }))
    }
}

/// `out = data / divisor[row]` for the CSR rows of a block, reading `data` and writing `out`
/// once (no copy first): the in-memory `normalize_total` without log1p, where scanpy returns a
/// new `data` array. Same division as [`scale_sparse`], so the same bits. Returns the
/// number of NaN values written.
pub fn scale_sparse_into<T: Real>(
    data: &[T],
    out: &mut [T],
    offsets: &[usize],
    factors: &[T],
    parts: usize,
) -> u64 {
    assert_eq!(
        data.len(),
        out.len(),
        "out must hold one value per stored value"
    );
    let divisors: Vec<T> = factors.iter().map(|&f| divisor(f)).collect();
    for_row_parts(out, offsets, parts, |piece, local, rows| {
        let src = &data[offsets[rows.start]..offsets[rows.end]];
        crate::kernel::scale::divide_rows_into(src, piece, local, &divisors[rows])
    })
}

/// Divides each dense row by its divisor and applies log1p (no finiteness check: scanpy's
/// dense log1p has none). Returns the number of NaN values written.
pub fn scale_dense<T: Real>(
    data: &mut [T],
    n_cols: usize,
    factors: &[T],
    log1p: Option<&Log1p>,
    parts: usize,
) -> u64 {
    if n_cols == 0 {
        return 0;
    }
    let divisors: Vec<T> = factors.iter().map(|&f| divisor(f)).collect();
    let rows_per_part = factors.len().div_ceil(parts.max(1)).max(1);
    data.par_chunks_mut(rows_per_part * n_cols)
        .zip(divisors.par_chunks(rows_per_part))
        .map(|(piece, divs)| {
            normalize_dense_rows(piece, n_cols, divs, log1p);
            nan_in(piece)
        })
        .sum()
}

fn count_nan<T: Real>(data: &[T]) -> u64 {
    data.par_chunks(1 << 16).map(nan_in).sum()
}

/// NaN in `c`, counted without branches (`x != x` only for NaN).
#[allow(clippy::eq_op)]
fn nan_in<T: Real>(c: &[T]) -> u64 {
    c.iter().map(|&v| u64::from(v != v)).sum()
}
