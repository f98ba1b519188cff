//! Cutting a matrix into row blocks that fit the memory budget.

use std::ops::Range;

/// Consecutive rows (or CSC columns) and the stored values they span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The rows (CSC: columns), as a range of row numbers.
    pub rows: Range<u64>,
    /// The stored values of those rows: element range into `data`/`indices` (sparse), or
    /// `rows * n_cols` (dense).
    pub values: Range<u64>,
}

impl Block {
    /// Number of rows (CSC: columns) in the block.
    pub fn n_rows(&self) -> usize {
        (self.rows.end - self.rows.start) as usize
    }

    /// Number of stored values in the block.
    pub fn n_values(&self) -> usize {
        (self.values.end - self.values.start) as usize
    }
}

/// Blocks are read, computed and written concurrently: one being read, one queued, one being
/// computed, one queued and one being written.
pub const BLOCKS_IN_FLIGHT: u64 = 5;

/// Share of the budget given to in-flight blocks; the rest covers HDF5's chunk caches, one
/// chunk of carry-over per output array, and the allocator's slack: blocks are allocated on
/// the reader thread and freed on another, and glibc keeps some freed blocks mapped (seen:
/// peak RSS up to ~1.1× the budget at 0.7 on a 2.8 GB input with a 256 MiB budget).
const BLOCK_SHARE: f64 = 0.5;

/// Blocks streamed through a pool of reused buffers are kept this small (per 4 worker
/// threads) even when the budget allows more: the buffers are faulted in once and stay warm
/// in the caches, and reading, computing and writing overlap at a finer grain. Larger blocks
/// only cost memory (measured on pbmc68k: 0.5 M–1 M values a block used ~20% less CPU than
/// the ~7 M the default budget gives).
pub const STREAM_BLOCK_VALUES: u64 = 1 << 20;

/// The block size for a streamed pass: the budget's, capped at [`STREAM_BLOCK_VALUES`] per
/// 4 threads.
pub fn streamed_block_values(budgeted: u64, threads: usize) -> u64 {
    budgeted.min(STREAM_BLOCK_VALUES * threads.div_ceil(4).max(1) as u64)
}

/// How many stored values one block may hold when each costs `bytes_per_value` bytes
/// while in flight.
pub fn values_per_block(budget: u64, bytes_per_value: u64) -> u64 {
    let usable = (budget as f64 * BLOCK_SHARE) as u64;
    (usable / BLOCKS_IN_FLIGHT / bytes_per_value.max(1)).max(1024)
}

/// Splits rows into consecutive blocks of at most `max_values` stored values each, by
/// `indptr` (already validated: starts at 0, non-decreasing). A row with more values than
/// that gets a block of its own.
pub fn sparse_blocks(indptr: &[i64], max_values: u64) -> Vec<Block> {
    let n_rows = indptr.len().saturating_sub(1);
    let mut blocks = Vec::new();
    let mut start = 0usize;
    while start < n_rows {
        let base = indptr[start];
        // The last row `end` with indptr[end] - base <= max_values, at least start + 1.
        let limit = base.saturating_add(max_values as i64);
        let rest = &indptr[start + 1..];
        let fit = rest.partition_point(|&p| p <= limit);
        let end = start + fit.max(1);
        blocks.push(Block {
            rows: start as u64..end as u64,
            values: base as u64..indptr[end] as u64,
        });
        start = end;
    }
    blocks
}

/// Splits `n_rows` dense rows of `n_cols` values into blocks of at most `max_values` values
/// (at least one row each).
pub fn dense_blocks(n_rows: u64, n_cols: u64, max_values: u64) -> Vec<Block> {
    let rows_per_block = (max_values / n_cols.max(1)).max(1);
    (0..n_rows)
        .step_by(rows_per_block as usize)
        .map(|start| {
            let end = (start + rows_per_block).min(n_rows);
            Block {
                rows: start..end,
                values: start * n_cols..end * n_cols,
            }
        })
        .collect()
}

/// Splits the rows of one block into about `parts` ranges of similar numbers of values,
/// for the worker threads. `offsets` has one entry more than there are rows.
pub fn balanced_row_ranges(offsets: &[usize], parts: usize) -> Vec<Range<usize>> {
    let n_rows = offsets.len().saturating_sub(1);
    if n_rows == 0 {
        return Vec::new();
    }
    let first = offsets[0];
    let total = offsets[n_rows] - first;
    let parts = parts.clamp(1, n_rows);
    let mut ranges = Vec::with_capacity(parts);
    let mut start = 0;
    for k in 1..=parts {
        let end = if k == parts {
            n_rows
        } else {
            let goal = first + total * k / parts;
            offsets
                .partition_point(|&o| o < goal)
                .clamp(start + 1, n_rows)
        };
        if end > start {
            ranges.push(start..end);
            start = end;
        }
        if start == n_rows {
            break;
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sparse_blocks_cover_every_row_once(counts in proptest::collection::vec(0i64..50, 0..200), max in 1u64..120) {
            let mut indptr = vec![0i64];
            for c in &counts { indptr.push(indptr.last().unwrap() + c); }
            let blocks = sparse_blocks(&indptr, max);
            let mut next = 0u64;
            for b in &blocks {
                prop_assert_eq!(b.rows.start, next);
                prop_assert!(b.rows.end > b.rows.start);
                prop_assert_eq!(b.values.start as i64, indptr[b.rows.start as usize]);
                prop_assert_eq!(b.values.end as i64, indptr[b.rows.end as usize]);
                prop_assert!(b.n_values() as u64 <= max || b.n_rows() == 1);
                next = b.rows.end;
            }
            prop_assert_eq!(next, counts.len() as u64);
        }

        #[test]
        fn balanced_ranges_partition_the_rows(counts in proptest::collection::vec(0usize..50, 1..100), parts in 1usize..9) {
            let mut offsets = vec![7usize];
            for c in &counts { offsets.push(offsets.last().unwrap() + c); }
            let ranges = balanced_row_ranges(&offsets, parts);
            let mut next = 0;
            for r in &ranges { prop_assert_eq!(r.start, next); prop_assert!(r.end > r.start); next = r.end; }
            prop_assert_eq!(next, counts.len());
            prop_assert!(ranges.len() <= parts);
        }
    }

    #[test]
    fn dense_blocks_hold_whole_rows() {
        let blocks = dense_blocks(10, 3, 7);
        assert_eq!(blocks.len(), 5);
        assert_eq!(blocks[4].rows, 8..10);
        assert_eq!(blocks[4].values, 24..30);
        assert_eq!(dense_blocks(3, 100, 10).len(), 3);
        assert!(dense_blocks(0, 5, 10).is_empty());
    }
}
