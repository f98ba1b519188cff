//! CSC matrices come out as CSR, as scanpy's `tocsr()` leaves them.
//!
//! Totals accumulate in f64 per cell while columns stream by in ascending order, which is
//! the order `tocsr()` puts each row's values in, so the sums are scanpy's to the bit. The
//! output is then built in row blocks: each block scans every column and scatters the
//! entries of its rows into place (column order, duplicates and explicit zeros kept), so
//! memory stays within the budget at the cost of one scan of the input per output block.

use std::any::Any;

use super::csr::{note_nan, read_indptr, scale, scipy_index_dtype};
use super::pipeline::consume;
use super::plan::{sparse_blocks, Block};
use super::validate::{canonical, indices_in_range};
use super::{Job, Normalized};
use crate::error::Result;
use crate::fit;
use crate::kernel::Real;
use crate::store::{OutputLayout, OutputMatrixSpec, OutputStore, SparseStructure};

pub(super) fn normalize<T: Real>(job: &Job, out: &mut dyn OutputStore) -> Result<Normalized<T>> {
    let (n_obs, n_vars) = (job.meta.n_obs as usize, job.meta.n_vars);
    let col_ptr = read_indptr(job, job.source, n_vars)?;
    let data_size = job.meta.data_dtype.size();
    let index_size = job
        .meta
        .indices_dtype
        .map_or(8, super::super::array::DType::size);
    let col_blocks = sparse_blocks(
        &col_ptr,
        job.values_per_block(data_size + index_size + std::mem::size_of::<T>() + 4),
    );
    let read = |b: &Block| -> Result<(Vec<T>, Vec<u32>)> {
        let values = T::from_numvec(job.source.read_data(b.values.clone())?);
        let rows = indices_in_range(
            job.source.read_indices(b.values.clone())?,
            job.meta.n_obs,
            b.values.start,
        )
        .map_err(|problem| job.error("indices", problem))?;
        Ok((values, rows))
    };

    // Pass 1: totals (f64 accumulators, columns in order) and the number of values per row.
    let mut counts = vec![0u32; n_obs];
    let mut acc = vec![0f64; n_obs];
    job.progress.begin("totals (columns)", n_vars);
    consume(col_blocks.clone(), read, |b, (values, rows)| {
        if job.meta.data_dtype.is_integer() {
            // scipy's astype sorts and sums a non-canonical integer matrix (validate.rs)
            let base = b.values.start as i64;
            let offsets: Vec<usize> = col_ptr[b.rows.start as usize..=b.rows.end as usize]
                .iter()
                .map(|&p| (p - base) as usize)
                .collect();
            canonical(&rows, &offsets, b.rows.start, b.values.start, "column")
                .map_err(|problem| job.error("indices", problem))?;
        }
        for (&v, &r) in values.iter().zip(&rows) {
            acc[r as usize] += v.to_f64();
            counts[r as usize] += 1;
        }
        job.progress.advance(b.n_rows() as u64);
        Ok(())
    })?;
    job.progress.end();
    let mut totals: Vec<T> = round_totals(acc);
    let mut passes = 1;

    let mut excluded = None;
    if job.opts.exclude_highly_expressed {
        // Pass 1a: a gene is excluded if it exceeds max_fraction of some cell's total.
        let mut mask = vec![false; n_vars as usize];
        job.progress.begin("highly expressed genes", n_vars);
        consume(col_blocks.clone(), read, |b, (values, rows)| {
            for col in b.rows.clone() {
                let range = column_range(&col_ptr, b, col);
                let hit = range.clone().any(|j| {
                    values[j].to_f64() > job.opts.max_fraction * totals[rows[j] as usize].to_f64()
                });
                mask[col as usize] |= hit;
            }
            job.progress.advance(b.n_rows() as u64);
            Ok(())
        })?;
        job.progress.end();
        // Pass 1b: totals over the kept genes.
        drop(totals);
        let mut acc = vec![0f64; n_obs];
        job.progress
            .begin("totals without highly expressed genes", n_vars);
        consume(col_blocks.clone(), read, |b, (values, rows)| {
            for col in b.rows.clone() {
                if mask[col as usize] {
                    continue;
                }
                let range = column_range(&col_ptr, b, col);
                for j in range {
                    acc[rows[j] as usize] += values[j].to_f64();
                }
            }
            job.progress.advance(b.n_rows() as u64);
            Ok(())
        })?;
        job.progress.end();
        totals = round_totals(acc);
        passes += 2;
        excluded = Some(mask);
    }

    let target = fit::target(job.opts.target_sum, &totals);
    fit::into_factors(&mut totals, target);
    let factors = totals;

    // Pass 2: the CSR output in row blocks; each holds the values in T and their column (i64).
    let index_dtype = scipy_index_dtype(&job.meta);
    let spec = OutputMatrixSpec {
        layout: OutputLayout::Csr,
        n_obs: job.meta.n_obs,
        n_vars,
        nnz: job.meta.nnz,
        data_dtype: T::DTYPE,
        structure: SparseStructure::Write {
            indices: index_dtype,
            indptr: index_dtype,
        },
    };
    let out_blocks =
        blocks_from_counts(&counts, job.values_per_block(std::mem::size_of::<T>() + 8));
    let mut sink = out.create_matrix(&job.element_path, &spec)?;
    sink.append_indptr(&[0])?;
    let mut nan_values = 0;
    job.progress
        .begin("normalize (transposing)", job.meta.n_obs);
    passes += out_blocks.len() as u32;
    for block in out_blocks {
        let rows = block.rows.start as usize..block.rows.end as usize;
        let mut offsets = Vec::with_capacity(block.n_rows() + 1);
        offsets.push(0usize);
        for &c in &counts[rows.clone()] {
            offsets.push(offsets.last().unwrap() + c as usize);
        }
        let mut cursor = offsets[..block.n_rows()].to_vec();
        let mut values = vec![T::default(); block.n_values()];
        let mut columns = vec![0i64; block.n_values()];
        consume(col_blocks.clone(), read, |b, (vals, rws)| {
            for col in b.rows.clone() {
                let range = column_range(&col_ptr, b, col);
                for j in range {
                    let r = rws[j] as usize;
                    if rows.contains(&r) {
                        let at = &mut cursor[r - rows.start];
                        values[*at] = vals[j];
                        columns[*at] = col as i64;
                        *at += 1;
                    }
                }
            }
            Ok(())
        })?;
        nan_values += scale(
            job,
            rows.clone(),
            &mut values,
            &offsets,
            &factors[rows.clone()],
        )?;
        let base = block.values.start as i64;
        let indptr: Vec<i64> = offsets[1..].iter().map(|&o| base + o as i64).collect();
        sink.append_indptr(&indptr)?;
        sink.append_indices(&columns)?;
        sink.append_data(&T::into_numvec(values))?;
        job.progress.advance(block.n_rows() as u64);
    }
    sink.finish()?;
    job.progress.end();
    let mut warnings = Vec::new();
    note_nan(job, nan_values, &mut warnings);
    Ok(Normalized::new(
        factors,
        target,
        excluded.as_deref(),
        passes,
        warnings,
    ))
}

/// Positions of column `col`'s values within the values read for block `b`.
fn column_range(col_ptr: &[i64], b: &Block, col: u64) -> std::ops::Range<usize> {
    let start = col_ptr[col as usize] as u64 - b.values.start;
    let end = col_ptr[col as usize + 1] as u64 - b.values.start;
    start as usize..end as usize
}

/// Rounds f64 accumulators once to T; for T = f64 the vector is reused as it is, so the
/// per-cell memory never holds both.
fn round_totals<T: Real>(acc: Vec<f64>) -> Vec<T> {
    let boxed: Box<dyn Any> = Box::new(acc);
    match boxed.downcast::<Vec<T>>() {
        Ok(same) => *same,
        Err(other) => {
            let acc = other.downcast::<Vec<f64>>().expect("it was a Vec<f64>");
            acc.iter().map(|&x| T::from_f64(x)).collect()
        }
    }
}

/// Consecutive rows holding at most `max_values` values each (a larger row alone).
fn blocks_from_counts(counts: &[u32], max_values: u64) -> Vec<Block> {
    let mut blocks = Vec::new();
    let (mut start, mut start_value, mut value) = (0usize, 0u64, 0u64);
    for (row, &c) in counts.iter().enumerate() {
        if row > start && value + c as u64 - start_value > max_values {
            blocks.push(Block {
                rows: start as u64..row as u64,
                values: start_value..value,
            });
            start = row;
            start_value = value;
        }
        value += c as u64;
    }
    if start < counts.len() {
        blocks.push(Block {
            rows: start as u64..counts.len() as u64,
            values: start_value..value,
        });
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_blocks_cover_all_rows() {
        let blocks = blocks_from_counts(&[3, 0, 5, 1, 9, 2], 6);
        let rows: Vec<_> = blocks.iter().map(|b| b.rows.clone()).collect();
        assert_eq!(rows, vec![0..2, 2..4, 4..5, 5..6]);
        assert_eq!(blocks[3].values, 18..20);
        assert!(blocks_from_counts(&[], 6).is_empty());
    }
}
