//! Scaling one block in parallel, with scanpy's refusal of NaN and infinity before a
//! sparse log1p.

use std::ops::Range;

use rayon::prelude::*;

use super::plan::balanced_row_ranges;
use crate::kernel::log1p::Log1p;
use crate::kernel::scale::{divisor, nan_count, normalize_csr_rows, normalize_dense_rows};
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
        // NaN are counted right after each run of rows is computed, while it is in cache (a
        // count over the whole piece afterwards would read it from memory again).
        Ok(for_row_parts(data, offsets, parts, |piece, local, rows| {
            let divisors = &divisors[rows];
            let mut nan = 0;
            for run in cached_row_runs(local) {
                normalize_csr_rows(
                    piece,
                    &local[run.start..=run.end],
                    &divisors[run.clone()],
                    log1p,
                );
                nan += nan_count(&piece[local[run.start]..local[run.end]]);
            }
            nan
        }))
    }
}

/// About this many values are scaled (and log-transformed) before their NaN are counted.
const CACHED_RUN_VALUES: usize = 1 << 14;

/// The rows of `offsets` (rows + 1 entries) in consecutive runs of about
/// [`CACHED_RUN_VALUES`] values (a longer row is a run of its own).
fn cached_row_runs(offsets: &[usize]) -> impl Iterator<Item = Range<usize>> + '_ {
    let n_rows = offsets.len() - 1;
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= n_rows {
            return None;
        }
        let mut end = start + 1;
        while end < n_rows && offsets[end + 1] - offsets[start] <= CACHED_RUN_VALUES {
            end += 1;
        }
        let run = start..end;
        start = end;
        Some(run)
    })
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
            nan_count(piece)
        })
        .sum()
}

fn count_nan<T: Real>(data: &[T]) -> u64 {
    data.par_chunks(1 << 16).map(nan_count).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_runs_cover_every_row_once_in_order() {
        // Row lengths around the run size: empty rows, short ones, one longer than a run.
        let lens = [0usize, 5, 9000, 9000, 0, 20000, 1, 16384, 3, 3];
        let mut offsets = vec![0];
        for l in lens {
            offsets.push(offsets.last().unwrap() + l);
        }
        let runs: Vec<_> = cached_row_runs(&offsets).collect();
        assert_eq!(runs.first().unwrap().start, 0);
        assert_eq!(runs.last().unwrap().end, lens.len());
        for w in runs.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for r in &runs {
            let values = offsets[r.end] - offsets[r.start];
            assert!(
                values <= CACHED_RUN_VALUES || r.len() == 1,
                "{r:?}: {values} values"
            );
        }
    }

    #[test]
    fn scaling_in_runs_gives_the_bits_and_nan_count_of_one_whole_pass() {
        use crate::kernel::log1p::Log1pKernel;
        let lens = [3usize, 0, 40000, 17, 16384, 2, 70000, 1];
        let mut offsets = vec![0];
        for l in lens {
            offsets.push(offsets.last().unwrap() + l);
        }
        let n = *offsets.last().unwrap();
        let data: Vec<f32> = (0..n).map(|i| ((i * 7919) % 23) as f32 * 0.5).collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let log1p = Log1p::new(Log1pKernel::numpy_default(), None);
        // Without log1p, a NaN factor on one row (0/NaN...) makes NaN values to count; with
        // log1p, finite factors (the path that scales and log-transforms in one go).
        let nan_factors: Vec<f32> = (0..lens.len())
            .map(|r| if r == 3 { f32::NAN } else { 0.25 + r as f32 })
            .collect();
        let finite: Vec<f32> = (0..lens.len()).map(|r| 0.25 + r as f32).collect();
        for (factors, l) in [(&nan_factors, None), (&finite, Some(&log1p))] {
            let divisors: Vec<f32> = factors.iter().map(|&f| divisor(f)).collect();
            let mut want = data.clone();
            normalize_csr_rows(&mut want, &offsets, &divisors, l);
            let want_nan = want.iter().filter(|v| v.is_nan()).count() as u64;
            assert_eq!(want_nan > 0, l.is_none());
            for parts in [1, 3, 8] {
                let mut got = data.clone();
                let nan = scale_sparse(&mut got, &offsets, factors, l, parts).unwrap();
                assert_eq!(bits(&got), bits(&want), "parts {parts}");
                assert_eq!(nan, want_nan, "parts {parts}");
            }
        }
    }
}
