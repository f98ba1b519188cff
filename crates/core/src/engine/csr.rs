//! CSR matrices: totals from `data` row by row, then `data` scaled in place; `indices` and
//! `indptr` are copied unchanged.

use super::pipeline::{consume_pooled, stream_pooled};
use super::plan::{sparse_blocks, streamed_block_values, Block, BLOCKS_IN_FLIGHT};
use super::scale::{csr_totals_parallel, scale_sparse};
use super::validate::{check_canonical, check_indices, check_indptr_piece, indices_into_u32};
use super::{Job, Normalized};
use crate::array::{DType, NumVec};
use crate::error::{Error, Result};
use crate::fit;
use crate::kernel::mask::csr_mark_highly_expressed;
use crate::kernel::scale::{factor, target_from_user};
use crate::kernel::totals::csr_row_totals_kept;
use crate::kernel::Real;
use crate::store::{
    MatrixSink, OutputLayout, OutputMatrixSpec, OutputStore, SparseSource, SparseStructure,
};

/// indptr is read in pieces of this many entries.
const INDPTR_PIECE: u64 = 1 << 20;

pub(super) fn normalize<T: Real>(job: &Job, out: &mut dyn OutputStore) -> Result<Normalized<T>> {
    let n_obs = job.meta.n_obs as usize;
    let indptr = read_indptr(job, job.source, job.meta.n_obs)?;
    let pass1_blocks = totals_blocks::<T>(job, &indptr);
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
        let sink = out.create_matrix(&job.element_path, &spec)?;
        let nan_values = scaling.run(sink, pass1_blocks, &mut totals)?;
        note_nan(job, nan_values, &mut warnings);
        return Ok(Normalized::new(totals, target, None, 1, warnings));
    }

    std::thread::scope(|scope| {
        // The output matrix is set up (copying indices and indptr from the input: HDF5 work
        // under its lock) while pass 1 reads the input, outside that lock where it can.
        let element = &job.element_path;
        let spec_ref = &spec;
        let creating = scope.spawn(move || out.create_matrix(element, spec_ref));

        // Pass 1: totals (and the gene mask, from the first totals).
        let mut excluded = job
            .opts
            .exclude_highly_expressed
            .then(|| vec![false; job.meta.n_vars as usize]);
        let pass1 = totals_pass(job, &indptr, &pass1_blocks, &mut totals, excluded.as_mut());
        let sink = creating
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("the output set-up panicked".into())));
        pass1?;
        let sink = sink?;
        let mut passes = 2;

        // Pass 1b: totals over the kept genes only.
        if let Some(mask) = &excluded {
            kept_totals_pass(job, &indptr, pass1_blocks, mask, &mut totals)?;
            passes += 1;
        }

        let target = fit::target(job.opts.target_sum, &totals);
        fit::into_factors(&mut totals, target);
        let mut factors = totals;

        let mut warnings = Vec::new();
        let scaling = Scaling {
            job,
            indptr: &indptr,
            rewrite,
            fused_target: None,
        };
        let nan_values =
            scaling.run(sink, scale_blocks::<T>(job, &indptr, rewrite), &mut factors)?;
        note_nan(job, nan_values, &mut warnings);
        Ok(Normalized::new(
            factors,
            target,
            excluded.as_deref(),
            passes,
            warnings,
        ))
    })
}

/// Row blocks of the totals passes: raw data + raw indices + converted values + u32 indices
/// per value in flight.
pub(super) fn totals_blocks<T: Real>(job: &Job, indptr: &[i64]) -> Vec<Block> {
    let data_size = job.meta.data_dtype.size();
    let index_size = job.meta.indices_dtype.map_or(8, DType::size);
    sparse_blocks(
        indptr,
        streamed_block_values(
            job.values_per_block(data_size + index_size + std::mem::size_of::<T>() + 4),
            job.threads,
        ),
    )
}

/// Row blocks of the scaling pass: raw data + converted values per value (+ indices when
/// rewritten).
pub(super) fn scale_blocks<T: Real>(job: &Job, indptr: &[i64], rewrite: bool) -> Vec<Block> {
    let data_size = job.meta.data_dtype.size();
    let index_size = job.meta.indices_dtype.map_or(8, DType::size);
    sparse_blocks(
        indptr,
        streamed_block_values(
            job.values_per_block(
                data_size + std::mem::size_of::<T>() + if rewrite { index_size + 8 } else { 0 },
            ),
            job.threads,
        ),
    )
}

/// Pass 1: every row's total into `totals` (indexed by row of `job`'s matrix), the gene mask
/// into `excluded` when genes are excluded, and the checks of integer input's structure.
pub(super) fn totals_pass<T: Real>(
    job: &Job,
    indptr: &[i64],
    blocks: &[Block],
    totals: &mut [T],
    mut excluded: Option<&mut Vec<bool>>,
) -> Result<()> {
    job.progress.begin("totals", job.meta.n_obs);
    consume_pooled(
        blocks.to_vec(),
        BLOCKS_IN_FLIGHT as usize,
        BlockBuf::new,
        |b: &Block, buf: &mut BlockBuf| read_block::<T>(job, b, true, buf),
        |b, buf| {
            let offsets = block_offsets(indptr, b);
            let rows = b.rows.start as usize..b.rows.end as usize;
            check_integer_canonical(job, b, &offsets, buf)?;
            let values = buf.values::<T>();
            row_totals(job, values, &offsets, &mut totals[rows.clone()]);
            if let Some(mask) = excluded.as_deref_mut() {
                indices_into_u32(&buf.indices, &mut buf.idx);
                let values = buf.values::<T>();
                csr_mark_highly_expressed(
                    values,
                    &buf.idx,
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
    Ok(())
}

/// Pass 1b: every row's total over the genes `mask` leaves, into `totals`.
pub(super) fn kept_totals_pass<T: Real>(
    job: &Job,
    indptr: &[i64],
    blocks: Vec<Block>,
    mask: &[bool],
    totals: &mut [T],
) -> Result<()> {
    job.progress
        .begin("totals without highly expressed genes", job.meta.n_obs);
    consume_pooled(
        blocks,
        BLOCKS_IN_FLIGHT as usize,
        BlockBuf::new,
        |b: &Block, buf: &mut BlockBuf| read_block::<T>(job, b, true, buf),
        |b, buf| {
            let offsets = block_offsets(indptr, b);
            let rows = b.rows.start as usize..b.rows.end as usize;
            indices_into_u32(&buf.indices, &mut buf.idx);
            let values = buf.values::<T>();
            csr_row_totals_kept(values, &buf.idx, &offsets, mask, &mut totals[rows]);
            job.progress.advance(b.n_rows() as u64);
            Ok(())
        },
    )?;
    job.progress.end();
    Ok(())
}

/// One block's buffers, reused block after block (see [`stream_pooled`]).
pub(super) struct BlockBuf {
    /// Stored values, in the stored dtype (scaled in place when that is the working dtype).
    pub(super) data: NumVec,
    /// The values in the working dtype when the stored one differs.
    conv: NumVec,
    /// Stored indices, in the stored dtype (checked as they are read).
    indices: NumVec,
    /// Indices as u32, when a kernel needs them.
    idx: Vec<u32>,
    /// Output indices and indptr entries when the structure is rewritten.
    out_indices: Vec<i64>,
    out_indptr: Vec<i64>,
}

impl BlockBuf {
    pub(super) fn new() -> Self {
        BlockBuf {
            data: NumVec::F32(Vec::new()),
            conv: NumVec::F32(Vec::new()),
            indices: NumVec::I32(Vec::new()),
            idx: Vec::new(),
            out_indices: Vec::new(),
            out_indptr: Vec::new(),
        }
    }

    /// Converts the stored values to T (into `conv`) unless they are stored as T.
    pub(super) fn convert<T: Real>(&mut self) {
        if self.data.dtype() != T::DTYPE {
            convert_into::<T>(&self.data, &mut self.conv);
        }
    }

    /// The values in T (after [`BlockBuf::convert`]).
    pub(super) fn values<T: Real>(&self) -> &[T] {
        let v = if self.data.dtype() == T::DTYPE {
            &self.data
        } else {
            &self.conv
        };
        real_slice(v).expect("converted to the working dtype")
    }

    pub(super) fn values_mut<T: Real>(&mut self) -> &mut [T] {
        let v = if self.data.dtype() == T::DTYPE {
            &mut self.data
        } else {
            &mut self.conv
        };
        real_slice_mut(v).expect("converted to the working dtype")
    }

    /// The values to write: the stored buffer when it is in T, else the converted one.
    pub(super) fn output(&self, dtype: DType) -> &NumVec {
        if self.data.dtype() == dtype {
            &self.data
        } else {
            &self.conv
        }
    }
}

pub(super) fn real_slice<T: Real>(v: &NumVec) -> Option<&[T]> {
    use std::any::Any;
    match v {
        NumVec::F32(x) => (x as &dyn Any).downcast_ref::<Vec<T>>(),
        NumVec::F64(x) => (x as &dyn Any).downcast_ref::<Vec<T>>(),
        _ => None,
    }
    .map(Vec::as_slice)
}

pub(super) fn real_slice_mut<T: Real>(v: &mut NumVec) -> Option<&mut [T]> {
    use std::any::Any;
    match v {
        NumVec::F32(x) => (x as &mut dyn Any).downcast_mut::<Vec<T>>(),
        NumVec::F64(x) => (x as &mut dyn Any).downcast_mut::<Vec<T>>(),
        _ => None,
    }
    .map(Vec::as_mut_slice)
}

/// `src` converted to T into `dst` (reusing its allocation), rounded like numpy's `astype`
/// (one rounding, to nearest: Rust's `as` from any integer or float type).
#[allow(clippy::unnecessary_cast)]
pub(super) fn convert_into<T: Real>(src: &NumVec, dst: &mut NumVec) {
    macro_rules! conv {
        ($variant:ident, $t:ty) => {{
            if !matches!(dst, NumVec::$variant(_)) {
                *dst = NumVec::$variant(Vec::new());
            }
            let NumVec::$variant(out) = dst else {
                unreachable!()
            };
            out.clear();
            match src {
                NumVec::I8(v) => out.extend(v.iter().map(|&x| x as $t)),
                NumVec::I16(v) => out.extend(v.iter().map(|&x| x as $t)),
                NumVec::I32(v) => out.extend(v.iter().map(|&x| x as $t)),
                NumVec::I64(v) => out.extend(v.iter().map(|&x| x as $t)),
                NumVec::U8(v) => out.extend(v.iter().map(|&x| x as $t)),
                NumVec::U16(v) => out.extend(v.iter().map(|&x| x as $t)),
                NumVec::U32(v) => out.extend(v.iter().map(|&x| x as $t)),
                NumVec::U64(v) => out.extend(v.iter().map(|&x| x as $t)),
                NumVec::F32(v) => out.extend(v.iter().map(|&x| x as $t)),
                NumVec::F64(v) => out.extend(v.iter().map(|&x| x as $t)),
            }
        }};
    }
    match T::DTYPE {
        DType::F64 => conv!(F64, f64),
        _ => conv!(F32, f32),
    }
}

/// The pass that writes the output: each block's values divided by their row's factor (and
/// log-transformed), with indices and indptr when the structure is rewritten.
pub(super) struct Scaling<'a, T> {
    pub job: &'a Job<'a>,
    pub indptr: &'a [i64],
    pub rewrite: bool,
    /// With a fixed target and no gene mask the totals are computed here too (one pass):
    /// `factors` then receives them block by block.
    pub fused_target: Option<T>,
}

impl<T: Real> Scaling<'_, T> {
    pub(super) fn run(
        &self,
        mut sink: Box<dyn MatrixSink + '_>,
        blocks: Vec<Block>,
        factors: &mut [T],
    ) -> Result<u64> {
        let job = self.job;
        if self.rewrite {
            sink.append_indptr(&[0])?;
        }
        let mut nan_values = 0;
        let read_indices = self.rewrite || self.fused_target.is_some();
        job.progress.begin("normalize", job.meta.n_obs);
        stream_pooled(
            blocks,
            BLOCKS_IN_FLIGHT as usize,
            BlockBuf::new,
            |b: &Block, buf: &mut BlockBuf| read_block::<T>(job, b, read_indices, buf),
            |b, buf| {
                let offsets = block_offsets(self.indptr, b);
                let rows = b.rows.start as usize..b.rows.end as usize;
                if let Some(target) = self.fused_target {
                    check_integer_canonical(job, b, &offsets, buf)?;
                    row_totals(job, buf.values::<T>(), &offsets, &mut factors[rows.clone()]);
                    for t in &mut factors[rows.clone()] {
                        *t = factor(*t, target);
                    }
                }
                let values = buf.values_mut::<T>();
                nan_values += scale(job, rows.clone(), values, &offsets, &factors[rows])?;
                if self.rewrite {
                    let ptr = b.rows.start as usize + 1..=b.rows.end as usize;
                    buf.out_indptr.clear();
                    buf.out_indptr.extend_from_slice(&self.indptr[ptr]);
                    buf.out_indices.clear();
                    indices_into_i64(&buf.indices, &mut buf.out_indices);
                }
                job.progress.advance(b.n_rows() as u64);
                Ok(())
            },
            |_, buf| {
                if self.rewrite {
                    sink.append_indptr(&buf.out_indptr)?;
                    sink.append_indices(&buf.out_indices)?;
                }
                sink.append_data(buf.output(T::DTYPE))
            },
        )?;
        sink.finish()?;
        job.progress.end();
        Ok(nan_values)
    }
}

/// Checked indices as i64 into a reused buffer.
#[allow(clippy::unnecessary_cast)]
fn indices_into_i64(indices: &NumVec, out: &mut Vec<i64>) {
    match indices {
        NumVec::I8(v) => out.extend(v.iter().map(|&i| i as i64)),
        NumVec::I16(v) => out.extend(v.iter().map(|&i| i as i64)),
        NumVec::I32(v) => out.extend(v.iter().map(|&i| i as i64)),
        NumVec::I64(v) => out.extend(v.iter().map(|&i| i as i64)),
        NumVec::U8(v) => out.extend(v.iter().map(|&i| i as i64)),
        NumVec::U16(v) => out.extend(v.iter().map(|&i| i as i64)),
        NumVec::U32(v) => out.extend(v.iter().map(|&i| i as i64)),
        NumVec::U64(v) => out.extend(v.iter().map(|&i| i as i64)),
        NumVec::F32(_) | NumVec::F64(_) => {}
    }
}

/// What scanpy leaves as the index arrays of a CSR matrix.
///
/// Float data keeps them as stored, but scanpy's numba kernel needs `indices` and `indptr` of
/// one dtype (it raises `TypeError` otherwise: refused here too). Integer data is cast with
/// scipy's `astype`, which rebuilds the matrix with the smallest signed index dtype that
/// fits (int32 unless a dimension or nnz passes 2^31 - 1): copied when already that.
pub(super) fn output_structure(job: &Job) -> Result<SparseStructure> {
    let (Some(indices), Some(indptr)) = (job.meta.indices_dtype, job.meta.indptr_dtype) else {
        return Err(job.error("", "a sparse matrix without index dtypes"));
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

/// Reads and checks the whole `indptr` (`n_rows` + 1 entries): starts at 0, never decreases,
/// ends at the number of stored values. Kept in memory: 8 bytes a row.
pub(super) fn read_indptr(job: &Job, source: &dyn SparseSource, n_rows: u64) -> Result<Vec<i64>> {
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

/// Reads a block's values (converted to T) and, if asked, its indices (checked to be genes)
/// into `buf`.
fn read_block<T: Real>(
    job: &Job,
    block: &Block,
    with_indices: bool,
    buf: &mut BlockBuf,
) -> Result<()> {
    job.source
        .read_data_into(block.values.clone(), &mut buf.data)?;
    buf.convert::<T>();
    if with_indices {
        job.source
            .read_indices_into(block.values.clone(), &mut buf.indices)?;
        check_indices(
            &buf.indices,
            job.meta.n_vars,
            job.origin.values + block.values.start,
        )
        .map_err(|problem| job.error("indices", problem))?;
    }
    Ok(())
}

/// Integer data must be in scipy's canonical form (see [`check_canonical`]); checked in the
/// pass that computes the totals, which reads every row's indices.
fn check_integer_canonical(job: &Job, b: &Block, offsets: &[usize], buf: &BlockBuf) -> Result<()> {
    if !job.meta.data_dtype.is_integer() {
        return Ok(());
    }
    check_canonical(
        &buf.indices,
        offsets,
        job.origin.rows + b.rows.start,
        job.origin.values + b.values.start,
        "row",
    )
    .map_err(|problem| job.error("indices", problem))
}

/// Totals of the block's rows, in parallel over row ranges.
fn row_totals<T: Real>(job: &Job, values: &[T], offsets: &[usize], out: &mut [T]) {
    csr_totals_parallel(values, offsets, out, job.threads * 4);
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
                bad.count,
                job.origin.rows + rows.start as u64,
                job.origin.rows + rows.end as u64
            ),
        )
    })
}

pub(super) fn note_nan<S: ?Sized>(job: &Job<'_, S>, nan_values: u64, warnings: &mut Vec<String>) {
    if nan_values > 0 {
        let message = format!(
            "{nan_values} values of the output are NaN, as scanpy leaves them \
             (NaN input, a NaN factor, or log1p of a value below -1)"
        );
        job.progress.warn(&message);
        warnings.push(message);
    }
}
