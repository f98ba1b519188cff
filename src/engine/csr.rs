//! CSR matrices: totals from `data` row by row, then `data` scaled in place; `indices` and
//! `indptr` are copied unchanged.

use rayon::prelude::*;

use super::pipeline::{consume, stream};
use super::plan::{balanced_row_ranges, sparse_blocks, Block};
use super::scale::{scale_sparse, split_rows_mut};
use super::validate::{check_indptr_piece, indices_in_range};
use super::{into_factors, target_of, Job, Normalized};
use crate::array::{DType, NumVec};
use crate::error::Result;
use crate::kernel::mask::csr_mark_highly_expressed;
use crate::kernel::scale::{factor, target_from_user};
use crate::kernel::totals::{csr_row_totals, csr_row_totals_kept};
use crate::kernel::Real;
use crate::store::{
    MatrixSink, MatrixSource, OutputLayout, OutputMatrixSpec, OutputStore, SparseStructure,
};

/// indptr is read in pieces of this many entries.
const INDPTR_PIECE: u64 = 1 << 20;

pub(super) fn normalize<T: Real>(job: &Job, out: &mut dyn OutputStore) -> Result<Normalized<T>> {
    let n_obs = job.meta.n_obs as usize;
    let indptr = read_indptr(job, job.source, job.meta.n_obs)?;
    let data_size = job.meta.data_dtype.size();
    let index_size = job.meta.indices_dtype.map_or(8, |d| d.size());
    // Pass 1 holds raw data + raw indices + converted values + u32 indices per value.
    let pass1_blocks = sparse_blocks(
        &indptr,
        job.values_per_block(data_size + index_size + std::mem::size_of::<T>() + 4),
    );
    let spec = OutputMatrixSpec {
        layout: OutputLayout::Csr,
        n_obs: job.meta.n_obs,
        n_vars: job.meta.n_vars,
        nnz: job.meta.nnz,
        data_dtype: T::DTYPE,
        structure: output_structure(job)?,
    };
    // Whether indices and indptr are rewritten (integer input: scipy rebuilds them as int32).
    let rewrite = matches!(spec.structure, SparseStructure::Write { .. });
    let mut totals = vec![T::default(); n_obs];

    if job.fused() {
        // Fixed target, no gene mask: totals, factors and scaling in one pass.
        let target: T = target_from_user(job.opts.target_sum.expect("fused implies a target"));
        let mut warnings = Vec::new();
        let scaling = Scaling {
            job,
            indptr: &indptr,
            rewrite,
            fused_target: Some(target),
        };
        scaling.run(out, &spec, pass1_blocks, &mut totals, &mut warnings)?;
        return Ok(Normalized::new(totals, target, None, 1, warnings));
    }

    // Pass 1: totals (and the gene mask, from the first totals).
    let mut excluded = job
        .opts
        .exclude_highly_expressed
        .then(|| vec![false; job.meta.n_vars as usize]);
    job.progress.begin("totals", job.meta.n_obs);
    consume(
        pass1_blocks.clone(),
        |b: &Block| read_block(job, b, true),
        |b, (values, indices)| {
            let offsets = block_offsets(&indptr, &b);
            let rows = b.rows.start as usize..b.rows.end as usize;
            row_totals(job, &values, &offsets, &mut totals[rows.clone()]);
            if let Some(mask) = excluded.as_mut() {
                csr_mark_highly_expressed(
                    &values,
                    &indices,
                    &offsets,
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
    let mut passes = 2;

    // Pass 1b: totals over the kept genes only.
    if let Some(mask) = &excluded {
        job.progress
            .begin("totals without highly expressed genes", job.meta.n_obs);
        consume(
            pass1_blocks,
            |b: &Block| read_block(job, b, true),
            |b, (values, indices)| {
                let offsets = block_offsets(&indptr, &b);
                let rows = b.rows.start as usize..b.rows.end as usize;
                csr_row_totals_kept(&values, &indices, &offsets, mask, &mut totals[rows]);
                job.progress.advance(b.n_rows() as u64);
                Ok(())
            },
        )?;
        job.progress.end();
        passes += 1;
    }

    let target = target_of(job.opts, &totals);
    into_factors(&mut totals, target);
    let mut factors = totals;

    // Pass 2: scale. Holds raw data + converted values per value (+ indices when rewritten).
    let pass2_blocks = sparse_blocks(
        &indptr,
        job.values_per_block(
            data_size + std::mem::size_of::<T>() + if rewrite { index_size + 4 } else { 0 },
        ),
    );

    let mut warnings = Vec::new();
    let scaling = Scaling {
        job,
        indptr: &indptr,
        rewrite,
        fused_target: None,
    };
    scaling.run(out, &spec, pass2_blocks, &mut factors, &mut warnings)?;
    Ok(Normalized::new(
        factors,
        target,
        excluded.as_deref(),
        passes,
        warnings,
    ))
}

/// The pass that writes the output: each block's values divided by their row's factor (and
/// log-transformed), with indices and indptr when the structure is rewritten.
struct Scaling<'a, T> {
    job: &'a Job<'a>,
    indptr: &'a [i64],
    rewrite: bool,
    /// With a fixed target and no gene mask the totals are computed here too (one pass):
    /// `factors` then receives them block by block.
    fused_target: Option<T>,
}

impl<T: Real> Scaling<'_, T> {
    fn run(
        &self,
        out: &mut dyn OutputStore,
        spec: &OutputMatrixSpec,
        blocks: Vec<Block>,
        factors: &mut [T],
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        let job = self.job;
        let mut sink = out.create_matrix(&job.element_path, spec)?;
        if self.rewrite {
            sink.append_indptr(&[0])?;
        }
        let mut nan_values = 0;
        let read_indices = self.rewrite || self.fused_target.is_some();
        job.progress.begin("normalize", job.meta.n_obs);
        stream(
            blocks,
            |b: &Block| read_block(job, b, read_indices),
            |b, (mut values, indices)| {
                let offsets = block_offsets(self.indptr, &b);
                let rows = b.rows.start as usize..b.rows.end as usize;
                if let Some(target) = self.fused_target {
                    row_totals(job, &values, &offsets, &mut factors[rows.clone()]);
                    for t in &mut factors[rows.clone()] {
                        *t = factor(*t, target);
                    }
                }
                nan_values += scale(job, rows.clone(), &mut values, &offsets, &factors[rows])?;
                job.progress.advance(b.n_rows() as u64);
                Ok(Piece::new(
                    values,
                    self.rewrite.then_some(indices),
                    self.indptr,
                    &b,
                ))
            },
            |piece| piece.write(sink.as_mut()),
        )?;
        sink.finish()?;
        job.progress.end();
        note_nan(job, nan_values, warnings);
        Ok(())
    }
}

/// One block of output: the scaled values and, when the structure is rewritten, its indices
/// and its part of indptr.
struct Piece {
    data: NumVec,
    indices: Option<Vec<i64>>,
    indptr: Option<Vec<i64>>,
}

impl Piece {
    fn new<T: Real>(values: Vec<T>, indices: Option<Vec<u32>>, indptr: &[i64], b: &Block) -> Self {
        let rows = b.rows.start as usize + 1..=b.rows.end as usize;
        Piece {
            data: T::into_numvec(values),
            indptr: indices.is_some().then(|| indptr[rows].to_vec()),
            indices: indices.map(|ix| ix.into_iter().map(i64::from).collect()),
        }
    }

    fn write(self, sink: &mut dyn MatrixSink) -> Result<()> {
        if let (Some(indices), Some(indptr)) = (&self.indices, &self.indptr) {
            sink.append_indptr(indptr)?;
            sink.append_indices(indices)?;
        }
        sink.append_data(&self.data)
    }
}

/// What scanpy leaves as the index arrays of a CSR matrix.
///
/// Float data keeps them as stored, but scanpy's numba kernel needs `indices` and `indptr` of
/// one dtype (it raises TypeError otherwise: refused here too). Integer data is cast with
/// scipy's `astype`, which rebuilds the matrix with the smallest signed index dtype that
/// fits (int32 unless a dimension or nnz passes 2^31 - 1): copied when already that.
fn output_structure(job: &Job) -> Result<SparseStructure> {
    let (indices, indptr) = match (job.meta.indices_dtype, job.meta.indptr_dtype) {
        (Some(i), Some(p)) => (i, p),
        _ => return Err(job.error("", "a sparse matrix without index dtypes")),
    };
    if job.meta.data_dtype.is_float() {
        if indices != indptr {
            return Err(job.error(
                "",
                format!(
                    "indices are {indices} but indptr is {indptr}: scanpy's normalize_total \
                     raises \"TypeError: indptr and indices must have the same dtype\" on such \
                     a matrix, so atlasnorm refuses too"
                ),
            ));
        }
        return Ok(SparseStructure::CopyFromInput);
    }
    let wanted = scipy_index_dtype(&job.meta);
    if indices == wanted && indptr == wanted {
        Ok(SparseStructure::CopyFromInput)
    } else {
        Ok(SparseStructure::Write {
            indices: wanted,
            indptr: wanted,
        })
    }
}

/// scipy's `get_index_dtype(..., check_contents=True)` for a matrix of this size: int32 unless
/// nnz or a dimension does not fit.
pub(super) fn scipy_index_dtype(meta: &crate::store::MatrixMeta) -> DType {
    if meta.nnz.max(meta.n_obs).max(meta.n_vars) <= i32::MAX as u64 {
        DType::I32
    } else {
        DType::I64
    }
}

/// Reads and checks the whole `indptr` (n_rows + 1 entries): starts at 0, never decreases,
/// ends at the number of stored values. Kept in memory: 8 bytes a row.
pub(super) fn read_indptr(job: &Job, source: &dyn MatrixSource, n_rows: u64) -> Result<Vec<i64>> {
    let len = n_rows + 1;
    let mut indptr = Vec::with_capacity(len as usize);
    let mut at = 0;
    while at < len {
        let end = (at + INDPTR_PIECE).min(len);
        let piece = source.read_indptr(at..end)?;
        check_indptr_piece(&piece, at, indptr.last().copied())
            .map_err(|problem| job.error("indptr", problem))?;
        indptr.extend_from_slice(&piece);
        at = end;
    }
    let last = *indptr.last().expect("indptr has n_rows + 1 >= 1 entries");
    if last as u64 != job.meta.nnz {
        return Err(job.error(
            "indptr",
            format!(
                "indptr ends at {last}, but data has {} stored values",
                job.meta.nnz
            ),
        ));
    }
    Ok(indptr)
}

/// Offsets of the block's rows relative to its first value.
pub(super) fn block_offsets(indptr: &[i64], block: &Block) -> Vec<usize> {
    let base = indptr[block.rows.start as usize];
    indptr[block.rows.start as usize..=block.rows.end as usize]
        .iter()
        .map(|&p| (p - base) as usize)
        .collect()
}

/// Reads a block's values in T and, if asked, its indices (checked to be genes).
fn read_block<T: Real>(job: &Job, block: &Block, with_indices: bool) -> Result<(Vec<T>, Vec<u32>)> {
    let values = T::from_numvec(job.source.read_data(block.values.clone())?);
    let indices = if with_indices {
        let raw = job.source.read_indices(block.values.clone())?;
        indices_in_range(raw, job.meta.n_vars, block.values.start)
            .map_err(|problem| job.error("indices", problem))?
    } else {
        Vec::new()
    };
    Ok((values, indices))
}

/// Totals of the block's rows, in parallel over row ranges.
fn row_totals<T: Real>(job: &Job, values: &[T], offsets: &[usize], out: &mut [T]) {
    let ranges = balanced_row_ranges(offsets, job.threads * 4);
    let pieces = split_rows_mut(out, &ranges);
    ranges
        .par_iter()
        .zip(pieces)
        .for_each(|(rows, piece)| csr_row_totals(values, &offsets[rows.start..=rows.end], piece));
}

/// Scales one block; refuses like scanpy's log1p when values are NaN or infinite.
pub(super) fn scale<T: Real>(
    job: &Job,
    rows: std::ops::Range<usize>,
    values: &mut [T],
    offsets: &[usize],
    factors: &[T],
) -> Result<u64> {
    scale_sparse(
        values,
        offsets,
        factors,
        job.log1p.as_ref(),
        job.threads * 4,
    )
    .map_err(|bad| {
        job.error(
            "data",
            format!(
                "{} normalized values in rows {}..{} are NaN or infinite (NaN or infinite \
                 input, or a NaN factor when no cell has a positive total); scanpy's log1p \
                 raises \"Input contains NaN\" here, so atlasnorm refuses too \
                 (--no-log1p writes them as scanpy's normalize_total does)",
                bad.count, rows.start, rows.end
            ),
        )
    })
}

pub(super) fn note_nan(job: &Job, nan_values: u64, warnings: &mut Vec<String>) {
    if nan_values > 0 {
        let message = format!(
            "{nan_values} values of the output are NaN, as scanpy leaves them \
             (NaN input, a NaN factor, or log1p of a value below -1)"
        );
        job.progress.warn(&message);
        warnings.push(message);
    }
}
