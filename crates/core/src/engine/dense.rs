//! Dense matrices: numpy's pairwise row sums, then every value scaled (zeros included).

use rayon::prelude::*;

use super::csr::{note_nan, BlockBuf};
use super::pipeline::{consume_pooled, stream_pooled};
use super::plan::{dense_blocks, streamed_block_values, Block, BLOCKS_IN_FLIGHT};
use super::scale::{dense_totals_parallel, scale_dense};
use super::{DenseJob, Normalized};
use crate::error::Result;
use crate::fit;
use crate::kernel::mask::dense_mark_highly_expressed;
use crate::kernel::scale::{factor, target_from_user};
use crate::kernel::totals::{dense_row_totals_kept_ordered, KeptSumOrder};
use crate::kernel::Real;
use crate::store::{MatrixSink, OutputLayout, OutputMatrixSpec, OutputStore, SparseStructure};

pub(super) fn normalize<T: Real>(
    job: &DenseJob,
    out: &mut dyn OutputStore,
) -> Result<Normalized<T>> {
    let (n_obs, n_vars) = (job.meta.n_obs, job.meta.n_vars);
    let n_cols = n_vars as usize;
    let blocks = blocks_of::<T>(job);
    let spec = OutputMatrixSpec {
        layout: OutputLayout::Dense,
        n_obs,
        n_vars,
        nnz: n_obs * n_vars,
        data_dtype: T::DTYPE,
        structure: SparseStructure::CopyFromInput,
    };
    let mut totals = vec![T::default(); n_obs as usize];
    let mut warnings = Vec::new();

    if job.fused() {
        let target: T = target_from_user(job.opts.target_sum.expect("fused implies a target"));
        let sink = out.create_matrix(&job.element_path, &spec)?;
        let nan_values = scale_pass(job, sink, blocks, Some(target), &mut totals)?;
        note_nan(job, nan_values, &mut warnings);
        return Ok(Normalized::new(totals, target, None, 1, warnings));
    }

    let mut excluded = job
        .opts
        .exclude_highly_expressed
        .then(|| vec![false; n_cols]);
    totals_pass(job, &blocks, &mut totals, excluded.as_mut())?;
    let mut passes = 2;

    if let Some(mask) = &excluded {
        kept_totals_pass(job, &blocks, mask, &mut totals)?;
        passes += 1;
    }

    let target = fit::target(job.opts.target_sum, &totals);
    fit::into_factors(&mut totals, target);
    let mut factors = totals;
    let sink = out.create_matrix(&job.element_path, &spec)?;
    let nan_values = scale_pass(job, sink, blocks, None, &mut factors)?;
    note_nan(job, nan_values, &mut warnings);
    Ok(Normalized::new(
        factors,
        target,
        excluded.as_deref(),
        passes,
        warnings,
    ))
}

/// Row blocks of every dense pass: the raw values and the converted ones in flight.
pub(super) fn blocks_of<T: Real>(job: &DenseJob) -> Vec<Block> {
    let bytes = job.meta.data_dtype.size() + std::mem::size_of::<T>();
    dense_blocks(
        job.meta.n_obs,
        job.meta.n_vars,
        streamed_block_values(job.values_per_block(bytes), job.threads),
    )
}

/// Pass 1: numpy's pairwise row sums into `totals`, the gene mask into `excluded`.
pub(super) fn totals_pass<T: Real>(
    job: &DenseJob,
    blocks: &[Block],
    totals: &mut [T],
    mut excluded: Option<&mut Vec<bool>>,
) -> Result<()> {
    let n_cols = job.meta.n_vars as usize;
    let parts = job.threads * 4;
    let read = |b: &Block, buf: &mut BlockBuf| read_rows::<T>(job, b, buf);
    job.progress.begin("totals", job.meta.n_obs);
    consume_pooled(
        blocks.to_vec(),
        BLOCKS_IN_FLIGHT as usize,
        BlockBuf::new,
        read,
        |b, buf| {
            let rows = b.rows.start as usize..b.rows.end as usize;
            let values = buf.values::<T>();
            dense_totals_parallel(values, n_cols, &mut totals[rows.clone()], parts);
            if let Some(mask) = excluded.as_deref_mut() {
                dense_mark_highly_expressed(
                    values,
                    n_cols,
                    &totals[rows],
                    job.opts.max_fraction,
                    mask,
                );
            }
            job.progress.advance(b.n_rows() as u64);
            Ok(())
        },
    )?;
    job.progress.end();
    Ok(())
}

/// Pass 1b: row sums over the genes `mask` leaves, in numpy's order for the whole matrix.
pub(super) fn kept_totals_pass<T: Real>(
    job: &DenseJob,
    blocks: &[Block],
    mask: &[bool],
    totals: &mut [T],
) -> Result<()> {
    let n_cols = job.meta.n_vars as usize;
    let parts = job.threads * 4;
    let kept: Vec<usize> = (0..n_cols).filter(|&c| !mask[c]).collect();
    // numpy's order for `x[:, kept].sum(axis=1)` depends on the whole matrix's row count.
    let order = KeptSumOrder::for_n_obs(job.n_obs_total as usize);
    let read = |b: &Block, buf: &mut BlockBuf| read_rows::<T>(job, b, buf);
    job.progress
        .begin("totals without highly expressed genes", job.meta.n_obs);
    consume_pooled(
        blocks.to_vec(),
        BLOCKS_IN_FLIGHT as usize,
        BlockBuf::new,
        read,
        |b, buf| {
            let rows = b.rows.start as usize..b.rows.end as usize;
            let rows_per_part = b.n_rows().div_ceil(parts).max(1);
            buf.values::<T>()
                .par_chunks(rows_per_part * n_cols.max(1))
                .zip(totals[rows].par_chunks_mut(rows_per_part))
                .for_each_init(Vec::new, |scratch, (v, t)| {
                    dense_row_totals_kept_ordered(v, n_cols, &kept, order, scratch, t);
                });
            job.progress.advance(b.n_rows() as u64);
            Ok(())
        },
    )?;
    job.progress.end();
    Ok(())
}

/// The pass that writes the output: every value divided by its row's factor (and
/// log-transformed). With `fused_target` (fixed target, no gene mask) the totals are computed
/// here too and `factors` receives them block by block.
pub(super) fn scale_pass<T: Real>(
    job: &DenseJob,
    mut sink: Box<dyn MatrixSink + '_>,
    blocks: Vec<Block>,
    fused_target: Option<T>,
    factors: &mut [T],
) -> Result<u64> {
    let n_cols = job.meta.n_vars as usize;
    let parts = job.threads * 4;
    let mut nan_values = 0;
    job.progress.begin("normalize", job.meta.n_obs);
    stream_pooled(
        blocks,
        BLOCKS_IN_FLIGHT as usize,
        BlockBuf::new,
        |b: &Block, buf: &mut BlockBuf| read_rows::<T>(job, b, buf),
        |b, buf| {
            let rows = b.rows.start as usize..b.rows.end as usize;
            if let Some(target) = fused_target {
                dense_totals_parallel(buf.values::<T>(), n_cols, &mut factors[rows.clone()], parts);
                for t in &mut factors[rows.clone()] {
                    *t = factor(*t, target);
                }
            }
            nan_values += scale_dense(
                buf.values_mut::<T>(),
                n_cols,
                &factors[rows],
                job.log1p.as_ref(),
                parts,
            );
            job.progress.advance(b.n_rows() as u64);
            Ok(())
        },
        |_, buf| sink.append_data(buf.output(T::DTYPE)),
    )?;
    sink.finish()?;
    job.progress.end();
    Ok(nan_values)
}

/// Reads a block's rows into `buf` and converts them to T.
fn read_rows<T: Real>(job: &DenseJob, b: &Block, buf: &mut BlockBuf) -> Result<()> {
    job.source.read_rows_into(b.rows.clone(), &mut buf.data)?;
    buf.convert::<T>();
    Ok(())
}
