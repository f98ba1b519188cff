//! The file-to-file job (zarr to zarr) as tasks for a cluster such as Dask.
//!
//! The client [`Job::prepare`]s: paths checked and OUTPUT claimed as the CLI does, the input
//! checked, the output started under its staging name (every element copied but the
//! normalized matrix's values, whose array metadata is stored), and a [`Plan`]: row parts for
//! the totals, aligned with the input's `data` chunks, and write parts that are whole bands of
//! the output's write units (shards, else chunks), so no two tasks touch one object.
//! Tasks ([`totals_task`], [`kept_totals_task`], [`write_task`]) open the input and the
//! staging area themselves: no matrix data passes through the client, only per-cell totals
//! and factors. The client combines the totals in row order ([`Job::set_totals`]: the one
//! barrier, the median) and [`Job::commit`]s: `obs[key_added]`, `uns/log1p`, consolidated
//! metadata last, then the rename (or, on object storage, the root metadata). Dropping an
//! uncommitted job removes the staging area, so a failed or cancelled run leaves nothing
//! anndata opens.
//!
//! The tasks run the engine's own passes on parts (`engine::parts`), so the output is the
//! CLI's, bit for bit. What cannot be split (CSC input, an `.h5ad` on either side, a
//! re-encoded output, integer data whose index arrays scanpy rebuilds) is reported by
//! [`Job::prepare`] as [`Prepared::Whole`]: the caller runs the CLI's job as one task.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use atlasnorm_core::engine::parts::{self, PartOf};
use atlasnorm_core::engine::{conclude, element_of, preflight};
use serde_json::{json, Value};

use crate::array::{DType, NumVec};
use crate::error::{Error, Result};
use crate::kernel::Real;
use crate::options::Options;
use crate::report::{Report, Silent};
use crate::store::zarr::storage::{self, Location, Purpose};
use crate::store::zarr::{parts as zparts, ZarrInput, ZarrOutput};
use crate::store::{self as stores, InputStore, MatrixLayout, OutputStore, SparseStructure};

/// Values a part covers unless `--block-values` says otherwise: 32 MiB of float32.
pub const DEFAULT_PART_VALUES: u64 = 8 << 20;

/// What the tasks need to know, as JSON for other processes: where to read and write, the
/// matrix's shape and the parts.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub input: String,
    /// Where tasks write: the staging directory, or the output's prefix on object storage.
    pub staging: String,
    /// The output's final name, for messages.
    pub output: String,
    pub layout: MatrixLayout,
    /// The working (and output) dtype: F32 or F64.
    pub dtype: DType,
    pub n_obs: u64,
    pub n_vars: u64,
    pub nnz: u64,
    /// Row ranges of the totals tasks, in order, covering every row once.
    pub totals_parts: Vec<Range<u64>>,
    /// Write tasks: the rows they touch and their values (elements of the values array:
    /// whole bands of write units), in order, covering every value once.
    pub write_parts: Vec<WritePart>,
}

/// One write task: `values` of the values array, which belong to `rows` (CSR: the first
/// and last may be partial; dense: `values` is exactly those rows).
#[derive(Clone, Debug, PartialEq)]
pub struct WritePart {
    pub rows: Range<u64>,
    pub values: Range<u64>,
}

/// What [`Job::prepare`] found.
pub enum Prepared {
    /// The job, split into tasks.
    Split(Box<Job>),
    /// The job cannot be split (the reason): run the CLI's job as one task. Nothing was
    /// claimed or written.
    Whole(String),
}

/// The client's side of a split job: holds OUTPUT's claim and the staging area until
/// [`Job::commit`]; dropped uncommitted, it removes what was written.
pub struct Job {
    // Field order: the output (and its staging area) goes before the claim is released.
    out: Option<ZarrOutput>,
    input: ZarrInput,
    _claim: Option<stores::temp::OutputClaim>,
    plan: Plan,
    opts: Options,
    started: Instant,
    warnings: Vec<String>,
    /// After [`Job::set_totals`]: every cell's factor (the plan's dtype), the target, the
    /// excluded genes' positions.
    fitted: Option<(NumVec, f64, Vec<u64>)>,
    passes: u32,
    /// Keys of the input the copy tasks carry over as they are (every untouched element,
    /// `indices` and `indptr`), one list a task.
    copy_parts: Vec<Vec<String>>,
}

impl Job {
    /// Checks and claims as `atlasnorm normalize INPUT OUTPUT` does, then starts the output
    /// and plans the tasks.
    ///
    /// # Errors
    /// The CLI's errors for bad paths, options or input.
    pub fn prepare(input: &Path, output: &Path, opts: &Options) -> Result<Prepared> {
        opts.validate()?;
        let whole = |why: &str| Ok(Prepared::Whole(why.to_string()));
        if !stores::is_directory_store(input) || !stores::is_directory_store(output) {
            return whole("an .h5ad input or output is written by one process");
        }
        let claim = crate::run::check_paths(input, output, opts.force)?;
        let store = ZarrInput::open_with(input, &opts.s3)?;
        let element = element_of(&opts.params);
        let meta = store.open_matrix(&element)?.meta().clone();
        let z = &opts.zarr;
        let same_encoding = z.format.is_none_or(|f| f == store.zarr_format())
            && z.codec.is_none()
            && z.chunk.is_none()
            && z.shard.is_none()
            && !store.has_legacy_uns_scalars()?;
        if meta.layout == MatrixLayout::Csc {
            return whole("a CSC matrix's totals run along its columns");
        }
        if !same_encoding {
            return whole("a re-encoded output (zarr format, codec, chunks or shards changed)");
        }
        let mut warnings = preflight(&store, &meta, &opts.params, &Silent)?;
        stores::check::check_tree(&store, false, &element, &meta, opts.params.memory / 4)?;
        let source = store.open_matrix(&element)?;
        let part_of = PartOf {
            input,
            element: &element,
            source: source.as_ref(),
            params: &opts.params,
        };
        if meta.layout == MatrixLayout::Csr
            && part_of.output_structure()? != SparseStructure::CopyFromInput
        {
            return whole("integer data whose index arrays scanpy rebuilds");
        }
        let dtype = match meta.data_dtype {
            DType::F64 => DType::F64,
            _ => DType::F32,
        };
        // The whole indptr (8 bytes a cell) is read and checked here, as the CLI's first
        // pass does, and gives the parts' boundaries.
        let indptr = match meta.layout {
            MatrixLayout::Csr => Some(part_of.indptr()?),
            _ => None,
        };
        drop(source);
        let mut out = ZarrOutput::create_deferring_copies(
            (store.storage(), store.zarr_format()),
            output,
            &element,
            opts,
        )?;
        out.categorize_copied_frames(&store)?;
        let spec = stores::OutputMatrixSpec {
            layout: match meta.layout {
                MatrixLayout::Dense => stores::OutputLayout::Dense,
                _ => stores::OutputLayout::Csr,
            },
            n_obs: meta.n_obs,
            n_vars: meta.n_vars,
            nnz: meta.nnz,
            data_dtype: dtype,
            structure: SparseStructure::CopyFromInput,
        };
        // Stores the values array's metadata; the tasks write its chunks and copy the rest.
        drop(out.create_matrix(&element, &spec)?);
        let copies = out.take_deferred_copies();
        let staging = match out.temp_path() {
            Some(p) => p.to_string_lossy().into_owned(),
            None => output.to_string_lossy().into_owned(),
        };
        let part_values = opts
            .params
            .max_block_values
            .unwrap_or(DEFAULT_PART_VALUES)
            .max(1);
        let values_path = zparts::values_path(&element.store_path(), meta.layout);
        let band = zparts::band_len(out_storage(&out), output, &values_path, dtype)?;
        let n_values = match meta.layout {
            MatrixLayout::Dense => meta.n_obs * meta.n_vars,
            _ => meta.nnz,
        };
        let (totals_parts, write_parts) = match &indptr {
            Some(indptr) => csr_parts(indptr, part_values, band),
            None => dense_parts(meta.n_obs, meta.n_vars, part_values, band),
        };
        debug_assert_eq!(write_parts.last().map_or(0, |p| p.values.end), n_values);
        let n_tasks = write_parts.len().max(totals_parts.len());
        warnings.retain(|w| !w.is_empty());
        let plan = Plan {
            input: input.to_string_lossy().into_owned(),
            staging,
            output: output.to_string_lossy().into_owned(),
            layout: meta.layout,
            dtype,
            n_obs: meta.n_obs,
            n_vars: meta.n_vars,
            nnz: meta.nnz,
            totals_parts,
            write_parts,
        };
        Ok(Prepared::Split(Box::new(Job {
            out: Some(out),
            input: store,
            _claim: claim,
            plan,
            opts: opts.clone(),
            started: Instant::now(),
            warnings,
            fitted: None,
            passes: 0,
            copy_parts: copy_parts(copies, n_tasks),
        })))
    }

    /// Copy tasks: each carries over [`Job::copy_keys`] of the input as they are, in
    /// parallel with the totals and write tasks, and all must end before [`Job::commit`].
    pub fn n_copy_parts(&self) -> usize {
        self.copy_parts.len()
    }

    /// The keys copy task `i` copies.
    pub fn copy_keys(&self, i: usize) -> &[String] {
        self.copy_parts.get(i).map_or(&[], Vec::as_slice)
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Warnings so far (scanpy's, in its order).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether the totals need a second round over the genes the combined mask leaves.
    pub fn excludes_genes(&self) -> bool {
        self.opts.params.exclude_highly_expressed
    }

    /// The totals tasks' results, in part order (native bytes of the plan's dtype): the
    /// first totals or, with gene exclusion, the kept-gene totals. Computes the target and
    /// every factor; `excluded`: the combined gene mask, when genes are excluded.
    ///
    /// # Errors
    /// [`Error::Internal`] when the parts do not add up to the plan.
    pub fn set_totals(&mut self, parts: &[Vec<u8>], excluded: Option<&[bool]>) -> Result<()> {
        let mut bytes = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let rows = self.plan.totals_parts.get(i).ok_or_else(|| {
                Error::Internal(format!("{} totals parts for a plan of {}", parts.len(), i))
            })?;
            if p.len() as u64 != (rows.end - rows.start) * self.plan.dtype.size() as u64 {
                return Err(Error::Internal(format!(
                    "totals part {i} has the wrong length"
                )));
            }
            bytes.extend_from_slice(p);
        }
        if parts.len() != self.plan.totals_parts.len() {
            return Err(Error::Internal(format!(
                "{} totals parts for a plan of {}",
                parts.len(),
                self.plan.totals_parts.len()
            )));
        }
        let totals = numvec_from_bytes(self.plan.dtype, &bytes)?;
        let (factors, target) = match totals {
            NumVec::F64(t) => {
                let (f, t) = parts::factors(&self.opts.params, t);
                (NumVec::F64(f), t)
            }
            other => {
                let (f, t) = parts::factors(&self.opts.params, other.to_f32());
                (NumVec::F32(f), f64::from(t))
            }
        };
        let excluded = excluded
            .map(atlasnorm_core::fit::excluded_positions)
            .unwrap_or_default();
        self.passes = if excluded.is_empty() && !self.excludes_genes() {
            2
        } else {
            3
        };
        self.fitted = Some((factors, target, excluded));
        Ok(())
    }

    /// Native bytes of the factors of write part `i`'s rows.
    ///
    /// # Errors
    /// [`Error::Internal`] before [`Job::set_totals`] or for a part not in the plan.
    pub fn factors_for(&self, i: usize) -> Result<Vec<u8>> {
        let (factors, _, _) = self
            .fitted
            .as_ref()
            .ok_or_else(|| Error::Internal("factors asked for before the totals".into()))?;
        let part = self
            .plan
            .write_parts
            .get(i)
            .ok_or_else(|| Error::Internal(format!("no write part {i}")))?;
        let rows = part.rows.start as usize..part.rows.end as usize;
        Ok(factors.slice(rows).as_bytes().to_vec())
    }

    /// After every write task succeeded (`nan_values`: their NaN counts summed): writes
    /// `obs[key_added]` and `uns/log1p`, the consolidated metadata, and makes the output
    /// visible under its name. The report is the CLI's.
    ///
    /// # Errors
    /// The output's write errors.
    pub fn commit(mut self, nan_values: u64) -> Result<Report> {
        let (factors, target, excluded) = self
            .fitted
            .take()
            .ok_or_else(|| Error::Internal("commit before the totals".into()))?;
        let mut out = self.out.take().expect("the output lives until commit");
        let mut warnings = std::mem::take(&mut self.warnings);
        if nan_values > 0 {
            warnings.push(format!(
                "{nan_values} values of the output are NaN, as scanpy leaves them \
                 (NaN input, a NaN factor, or log1p of a value below -1)"
            ));
        }
        let params = &self.opts.params;
        let zero_count_cells = match factors {
            NumVec::F64(f) => conclude(
                &mut out,
                &self.input,
                params,
                &Silent,
                f,
                &excluded,
                &mut warnings,
            )?,
            other => conclude(
                &mut out,
                &self.input,
                params,
                &Silent,
                other.to_f32(),
                &excluded,
                &mut warnings,
            )?,
        };
        Box::new(out).commit()?;
        Ok(Report {
            n_obs: self.plan.n_obs,
            n_vars: self.plan.n_vars,
            nnz: self.plan.nnz,
            target,
            target_is_median: params.target_sum.is_none(),
            zero_count_cells,
            excluded_genes: excluded.len() as u64,
            passes: self.passes,
            input_bytes: crate::run::stored_bytes(Path::new(&self.plan.input)),
            elapsed: self.started.elapsed(),
            warnings,
        })
    }
}

fn out_storage(out: &ZarrOutput) -> &crate::store::zarr::Storage {
    out.storage()
}

/// CSR parts: totals parts of whole rows with about `part_values` values each; write parts
/// of whole bands of `band` values (about `part_values` each), with the rows they touch.
fn csr_parts(indptr: &[i64], part_values: u64, band: u64) -> (Vec<Range<u64>>, Vec<WritePart>) {
    let n_obs = indptr.len() as u64 - 1;
    let nnz = *indptr.last().unwrap_or(&0) as u64;
    let blocks = atlasnorm_core::engine::plan::sparse_blocks(indptr, part_values);
    let totals: Vec<Range<u64>> = blocks.into_iter().map(|b| b.rows).collect();
    let per = band * (part_values / band.max(1)).max(1);
    let mut writes = Vec::new();
    let mut at = 0;
    while at < nnz {
        let end = (at + per).min(nnz);
        // The last row starting at or before `at`, and the first starting at or after `end`.
        let first = indptr.partition_point(|&p| p as u64 <= at) as u64 - 1;
        let last = (indptr.partition_point(|&p| (p as u64) < end) as u64).min(n_obs);
        writes.push(WritePart {
            rows: first..last.max(first + 1),
            values: at..end,
        });
        at = end;
    }
    (totals, writes)
}

/// Dense parts: rows with about `part_values` values; write parts of whole bands of write
/// units (`band` values: whole rows).
fn dense_parts(
    n_obs: u64,
    n_vars: u64,
    part_values: u64,
    band: u64,
) -> (Vec<Range<u64>>, Vec<WritePart>) {
    let rows_per = (part_values / n_vars.max(1)).max(1);
    let totals = (0..n_obs)
        .step_by(rows_per as usize)
        .map(|r| r..(r + rows_per).min(n_obs))
        .collect();
    let band_rows = (band / n_vars.max(1)).max(1);
    let per = band_rows * (rows_per / band_rows).max(1);
    let writes = (0..n_obs)
        .step_by(per as usize)
        .map(|r| {
            let rows = r..(r + per).min(n_obs);
            WritePart {
                values: rows.start * n_vars..rows.end * n_vars,
                rows,
            }
        })
        .collect();
    (totals, writes)
}

/// Keys a copy task takes at most: objects are copied one at a time within a task (its
/// one thread), so parts stay small enough to spread over the workers.
const KEYS_PER_COPY_TASK: usize = 256;

/// `keys` dealt round-robin into about `n_tasks` parts (more for many keys), so the chunks
/// of each array are spread over the parts.
fn copy_parts(mut keys: Vec<String>, n_tasks: usize) -> Vec<Vec<String>> {
    keys.sort_unstable();
    let n = n_tasks
        .max(keys.len().div_ceil(KEYS_PER_COPY_TASK))
        .min(keys.len());
    let mut parts = vec![Vec::new(); n];
    for (i, key) in keys.into_iter().enumerate() {
        parts[i % n].push(key);
    }
    parts
}

/// Where tasks write: the staging area, and the object store to flush when it is one.
type Staging = (
    crate::store::zarr::Storage,
    Option<std::sync::Arc<crate::store::zarr::s3::S3Storage>>,
);

fn open_staging(plan: &Plan, opts: &Options) -> Result<Staging> {
    let location = Location::parse(Path::new(&plan.staging))?;
    Ok(match &location {
        Location::Local(_) => (storage::open_with(&location, &opts.s3, Purpose::Any)?, None),
        Location::S3 { bucket, prefix } => {
            let s3 = crate::store::zarr::s3::open(bucket, prefix, &opts.s3)?;
            (s3.as_storage(), Some(s3))
        }
    })
}

fn flush_staging(staging: &Staging, output: &Path, what: &str) -> Result<()> {
    if let Some(s3) = &staging.1 {
        s3.flush()
            .map_err(|e| Error::output(output, format!("cannot store {what}: {e}")))?;
    }
    Ok(())
}

/// Copy task: `keys` of the input (from [`Job::copy_keys`]) into the staging area, as they
/// are. Returns the bytes copied.
///
/// # Errors
/// The stores' read and write errors.
pub fn copy_task(plan: &Plan, opts: &Options, keys: &[String]) -> Result<u64> {
    let output = PathBuf::from(&plan.output);
    let task = TaskInput::open(plan, opts)?;
    let staging = open_staging(plan, opts)?;
    let budget = (opts.params.memory / 4).max(1 << 20);
    let copied = zparts::copy_keys(task.store.storage(), &staging.0, keys, budget)
        .map_err(|e| Error::output(&output, e.to_string()))?;
    flush_staging(&staging, &output, "the copied elements")?;
    Ok(copied)
}

/// What a task opens: the input, its matrix and the options.
struct TaskInput {
    input: PathBuf,
    store: ZarrInput,
}

impl TaskInput {
    fn open(plan: &Plan, opts: &Options) -> Result<Self> {
        let input = PathBuf::from(&plan.input);
        let store = ZarrInput::open_with(&input, &opts.s3)?;
        Ok(TaskInput { input, store })
    }
}

fn with_part<R>(
    plan: &Plan,
    opts: &Options,
    f: impl FnOnce(&PartOf<'_>) -> Result<R>,
) -> Result<R> {
    let task = TaskInput::open(plan, opts)?;
    let element = element_of(&opts.params);
    let source = task.store.open_matrix(&element)?;
    let meta = source.meta();
    if meta.n_obs != plan.n_obs || meta.n_vars != plan.n_vars || meta.nnz != plan.nnz {
        return Err(Error::input(
            &task.input,
            element.store_path(),
            "changed while it was being normalized",
        ));
    }
    f(&PartOf {
        input: &task.input,
        element: &element,
        source: source.as_ref(),
        params: &opts.params,
    })
}

/// Totals task `i`: the totals of its rows (native bytes of the plan's dtype) and, with gene
/// exclusion, the genes its rows mark (combine with OR).
///
/// # Errors
/// The input's read errors and the CLI's checks of the rows.
pub fn totals_task(plan: &Plan, opts: &Options, i: usize) -> Result<(Vec<u8>, Option<Vec<bool>>)> {
    let rows = part_rows(plan, i)?;
    with_part(plan, opts, |p| match plan.dtype {
        DType::F64 => p.totals::<f64>(rows).map(|(t, m)| (bytes_of(t), m)),
        _ => p.totals::<f32>(rows).map(|(t, m)| (bytes_of(t), m)),
    })
}

/// Totals task `i` over the genes the combined `mask` leaves (native bytes).
///
/// # Errors
/// The input's read errors.
pub fn kept_totals_task(plan: &Plan, opts: &Options, i: usize, mask: &[bool]) -> Result<Vec<u8>> {
    let rows = part_rows(plan, i)?;
    with_part(plan, opts, |p| match plan.dtype {
        DType::F64 => p.kept_totals::<f64>(rows, mask).map(bytes_of),
        _ => p.kept_totals::<f32>(rows, mask).map(bytes_of),
    })
}

/// Write task `i`: its values scaled by `factors` (native bytes of its rows' factors, from
/// [`Job::factors_for`]), log-transformed and stored as whole write units in the staging
/// area. Returns the number of NaN values written.
///
/// # Errors
/// The input's read errors, scanpy's refusals (NaN before log1p), the output's write errors.
pub fn write_task(plan: &Plan, opts: &Options, i: usize, factors: &[u8]) -> Result<u64> {
    let part = plan
        .write_parts
        .get(i)
        .ok_or_else(|| Error::Internal(format!("no write part {i}")))?
        .clone();
    let output = PathBuf::from(&plan.output);
    let staging = open_staging(plan, opts)?;
    let element = element_of(&opts.params).store_path();
    let budget = (opts.params.memory / 4).max(1 << 20);
    let sink = zparts::part_sink(
        &staging.0,
        &output,
        &element,
        plan.layout,
        plan.dtype,
        budget,
        part.values.clone(),
    )?;
    let values = (plan.layout == MatrixLayout::Csr).then_some(part.values.clone());
    let factors = numvec_from_bytes(plan.dtype, factors)?;
    let nan = with_part(plan, opts, |p| match factors {
        NumVec::F64(f) => p.scale::<f64>(part.rows.clone(), values, &f, sink),
        other => p.scale::<f32>(part.rows.clone(), values, &other.to_f32(), sink),
    })?;
    flush_staging(&staging, &output, &element)?;
    Ok(nan)
}

fn part_rows(plan: &Plan, i: usize) -> Result<Range<u64>> {
    plan.totals_parts
        .get(i)
        .cloned()
        .ok_or_else(|| Error::Internal(format!("no totals part {i}")))
}

fn bytes_of<T: Real>(v: Vec<T>) -> Vec<u8> {
    T::into_numvec(v).as_bytes().to_vec()
}

fn numvec_from_bytes(dtype: DType, bytes: &[u8]) -> Result<NumVec> {
    let bad = || Error::Internal(format!("{} bytes are not {dtype} values", bytes.len()));
    match dtype {
        DType::F64 => {
            if !bytes.len().is_multiple_of(8) {
                return Err(bad());
            }
            Ok(NumVec::F64(
                bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_ne_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
            ))
        }
        DType::F32 => {
            if !bytes.len().is_multiple_of(4) {
                return Err(bad());
            }
            Ok(NumVec::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_ne_bytes(c.try_into().expect("4 bytes")))
                    .collect(),
            ))
        }
        _ => Err(bad()),
    }
}

impl Plan {
    /// The plan of one task: this plan with only totals part `totals` and write part
    /// `write` (each then part 0), so what travels with a task does not grow with the
    /// number of tasks.
    pub fn for_task(&self, totals: Option<usize>, write: Option<usize>) -> Plan {
        let pick = |v: &[Range<u64>], i: Option<usize>| i.and_then(|i| v.get(i).cloned());
        Plan {
            totals_parts: pick(&self.totals_parts, totals).into_iter().collect(),
            write_parts: write
                .and_then(|i| self.write_parts.get(i).cloned())
                .into_iter()
                .collect(),
            ..self.clone()
        }
    }

    /// The plan as JSON, for the tasks.
    pub fn to_json(&self) -> String {
        let range = |r: &Range<u64>| json!([r.start, r.end]);
        json!({
            "input": self.input,
            "staging": self.staging,
            "output": self.output,
            "layout": match self.layout {
                MatrixLayout::Csr => "csr",
                MatrixLayout::Csc => "csc",
                MatrixLayout::Dense => "dense",
            },
            "dtype": if self.dtype == DType::F64 { "float64" } else { "float32" },
            "n_obs": self.n_obs,
            "n_vars": self.n_vars,
            "nnz": self.nnz,
            "totals_parts": self.totals_parts.iter().map(range).collect::<Vec<_>>(),
            "write_parts": self
                .write_parts
                .iter()
                .map(|p| json!({"rows": range(&p.rows), "values": range(&p.values)}))
                .collect::<Vec<_>>(),
        })
        .to_string()
    }

    /// The plan [`Plan::to_json`] wrote.
    ///
    /// # Errors
    /// [`Error::Internal`] when `text` is not such a plan.
    pub fn from_json(text: &str) -> Result<Self> {
        let bad = |what: &str| Error::Internal(format!("not a task plan: {what}"));
        let doc: Value = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
        let s = |k: &str| -> Result<String> {
            doc.get(k)
                .and_then(Value::as_str)
                .map(String::from)
                .ok_or_else(|| bad(k))
        };
        let n = |v: &Value, k: &str| -> Result<u64> {
            v.get(k).and_then(Value::as_u64).ok_or_else(|| bad(k))
        };
        let range = |v: &Value| -> Result<Range<u64>> {
            match v.as_array().map(Vec::as_slice) {
                Some([a, b]) => Ok(a.as_u64().ok_or_else(|| bad("range"))?
                    ..b.as_u64().ok_or_else(|| bad("range"))?),
                _ => Err(bad("range")),
            }
        };
        let list = |k: &str| -> Result<&Vec<Value>> {
            doc.get(k).and_then(Value::as_array).ok_or_else(|| bad(k))
        };
        Ok(Plan {
            input: s("input")?,
            staging: s("staging")?,
            output: s("output")?,
            layout: match s("layout")?.as_str() {
                "csr" => MatrixLayout::Csr,
                "csc" => MatrixLayout::Csc,
                "dense" => MatrixLayout::Dense,
                _ => return Err(bad("layout")),
            },
            dtype: match s("dtype")?.as_str() {
                "float64" => DType::F64,
                "float32" => DType::F32,
                _ => return Err(bad("dtype")),
            },
            n_obs: n(&doc, "n_obs")?,
            n_vars: n(&doc, "n_vars")?,
            nnz: n(&doc, "nnz")?,
            totals_parts: list("totals_parts")?
                .iter()
                .map(range)
                .collect::<Result<_>>()?,
            write_parts: list("write_parts")?
                .iter()
                .map(|p| {
                    Ok(WritePart {
                        rows: range(p.get("rows").ok_or_else(|| bad("rows"))?)?,
                        values: range(p.get("values").ok_or_else(|| bad("values"))?)?,
                    })
                })
                .collect::<Result<_>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_parts_take_every_key_once_and_spread_each_array() {
        for (n_keys, n_tasks) in [(0, 3), (1, 3), (5, 3), (7, 1), (1000, 2)] {
            let keys: Vec<String> = (0..n_keys).map(|i| format!("X/indices/c/{i}")).collect();
            let parts = copy_parts(keys.clone(), n_tasks);
            assert!(parts.iter().all(|p| !p.is_empty()));
            assert!(parts.len() <= n_keys.max(1));
            assert!(parts.len() >= n_tasks.min(n_keys));
            assert!(parts.iter().all(|p| p.len() <= KEYS_PER_COPY_TASK));
            let mut all: Vec<String> = parts.concat();
            all.sort();
            let mut want = keys;
            want.sort();
            assert_eq!(all, want);
        }
    }

    #[test]
    fn csr_write_parts_cover_every_value_once_in_whole_bands() {
        // Rows of 0, 3, 0, 5, 1, 0 values.
        let indptr = [0i64, 0, 3, 3, 8, 9, 9];
        for band in [1, 2, 4] {
            for part_values in [1, 2, 3, 100] {
                let (totals, writes) = csr_parts(&indptr, part_values, band);
                assert_eq!(totals.first().unwrap().start, 0);
                assert_eq!(totals.last().unwrap().end, 6);
                assert!(totals.windows(2).all(|w| w[0].end == w[1].start));
                assert_eq!(writes.first().unwrap().values.start, 0);
                assert_eq!(writes.last().unwrap().values.end, 9);
                for w in &writes {
                    assert!(w.values.start.is_multiple_of(band));
                    assert!(w.values.end.is_multiple_of(band) || w.values.end == 9);
                    // Every value of the part lies in one of its rows.
                    let (lo, hi) = (indptr[w.rows.start as usize], indptr[w.rows.end as usize]);
                    assert!(
                        lo as u64 <= w.values.start && w.values.end <= hi as u64,
                        "{w:?}"
                    );
                }
                assert!(writes
                    .windows(2)
                    .all(|w| w[0].values.end == w[1].values.start));
            }
        }
    }

    #[test]
    fn dense_write_parts_are_whole_bands_of_rows() {
        let (totals, writes) = dense_parts(10, 3, 7, 6);
        assert_eq!(totals, vec![0..2, 2..4, 4..6, 6..8, 8..10]);
        assert_eq!(
            writes.iter().map(|w| w.rows.clone()).collect::<Vec<_>>(),
            vec![0..2, 2..4, 4..6, 6..8, 8..10]
        );
        assert!(writes
            .iter()
            .all(|w| w.values == (w.rows.start * 3..w.rows.end * 3)));
    }

    #[test]
    fn a_task_plan_holds_its_own_parts_only() {
        let (totals_parts, write_parts) = csr_parts(&[0, 2, 5, 9], 2, 1);
        let plan = Plan {
            input: "in.zarr".into(),
            staging: "s".into(),
            output: "out.zarr".into(),
            layout: MatrixLayout::Csr,
            dtype: DType::F32,
            n_obs: 3,
            n_vars: 4,
            nnz: 9,
            totals_parts,
            write_parts,
        };
        let t = plan.for_task(Some(1), None);
        assert_eq!(t.totals_parts, vec![plan.totals_parts[1].clone()]);
        assert!(t.write_parts.is_empty());
        let w = plan.for_task(None, Some(2));
        assert_eq!(w.write_parts, vec![plan.write_parts[2].clone()]);
        assert!(w.totals_parts.is_empty());
        assert_eq!(Plan::from_json(&w.to_json()).unwrap(), w);
    }

    #[test]
    fn plans_survive_json() {
        let plan = Plan {
            input: "in.zarr".into(),
            staging: "/tmp/x".into(),
            output: "out.zarr".into(),
            layout: MatrixLayout::Csr,
            dtype: DType::F32,
            n_obs: 6,
            n_vars: 4,
            nnz: 9,
            totals_parts: vec![0..3, 3..6],
            write_parts: vec![
                WritePart {
                    rows: 0..4,
                    values: 0..4,
                },
                WritePart {
                    rows: 3..6,
                    values: 4..9,
                },
            ],
        };
        assert_eq!(Plan::from_json(&plan.to_json()).unwrap(), plan);
    }
}
