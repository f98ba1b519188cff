//! The engine: plans row blocks, streams them through the kernels, and joins a
//! [`MatrixSource`](store::MatrixSource) to an [`OutputStore`] ([`normalize_stores`]). Opening files and
//! choosing their backends is the store crate's job.
//!
//! Per cell it keeps the totals (then factors) and, for CSR, `indptr`: at most 16 bytes a
//! cell. Everything proportional to the number of stored values streams through blocks
//! sized by the memory budget.

mod csc;
mod csr;
mod dense;
pub mod in_memory;
pub mod parts;
pub mod pipeline;
pub mod plan;
pub(crate) mod scale;
pub mod validate;

use std::path::Path;
use std::time::Instant;

use crate::array::DType;
use crate::error::{Error, Result};
use crate::fit;
use crate::kernel::log1p::Log1p;
use crate::kernel::Real;
use crate::params::Params;
use crate::report::{Progress, Report};
use crate::store::{
    self, DenseSource, ElementPath, MatrixLayout, MatrixMeta, MatrixRef, OutputStore, SparseSource,
    StoredMatrix,
};

/// The element `params` chooses: X or `layers/NAME`.
pub fn element_of(opts: &Params) -> ElementPath {
    match &opts.layer {
        Some(name) => ElementPath::Layer(name.clone()),
        None => ElementPath::X,
    }
}

/// The engine over any pair of stores: normalizes the element chosen by `opts` from
/// `input` into `out` and commits it. Runs on the current rayon pool.
pub fn normalize_stores(
    input: &dyn store::InputStore,
    mut out: Box<dyn OutputStore>,
    opts: &Params,
    progress: &dyn Progress,
) -> Result<Report> {
    let started = Instant::now();
    opts.validate()?;
    let element = element_of(opts);
    let source = input.open_matrix(&element)?;
    let meta = source.meta().clone();
    let mut warnings = preflight(input, &meta, opts, progress)?;
    let summary = match meta.data_dtype {
        DType::F64 => finish::<f64>(
            input,
            &element,
            source.as_ref(),
            opts,
            progress,
            out.as_mut(),
        )?,
        _ => finish::<f32>(
            input,
            &element,
            source.as_ref(),
            opts,
            progress,
            out.as_mut(),
        )?,
    };
    out.commit()?;
    warnings.extend(summary.warnings);
    Ok(Report {
        n_obs: meta.n_obs,
        n_vars: meta.n_vars,
        nnz: meta.nnz,
        target: summary.target,
        target_is_median: opts.target_sum.is_none(),
        zero_count_cells: summary.zero_count_cells,
        excluded_genes: summary.excluded_genes,
        passes: summary.passes,
        input_bytes: 0,
        elapsed: started.elapsed(),
        warnings,
    })
}

/// The checks and warnings of a run before its passes: scanpy's log1p refuses an empty sparse
/// matrix, and warns when `uns/log1p` says the data are log-transformed already. Returns
/// the warnings (also given to `progress`).
///
/// # Errors
/// [`Error::Input`] for an empty sparse matrix with log1p; the input's read errors.
pub fn preflight(
    input: &dyn store::InputStore,
    meta: &MatrixMeta,
    opts: &Params,
    progress: &dyn Progress,
) -> Result<Vec<String>> {
    let element = element_of(opts);
    if opts.log1p && meta.layout != MatrixLayout::Dense && (meta.n_obs == 0 || meta.n_vars == 0) {
        return Err(Error::input(
            input.path(),
            element.store_path(),
            format!(
                "a {} x {} sparse matrix: scanpy's log1p raises \"Found array with 0 \
                 sample(s)/feature(s)\" here, so atlasnorm refuses too (--no-log1p works)",
                meta.n_obs, meta.n_vars
            ),
        ));
    }
    let mut warnings = Vec::new();
    if opts.log1p && input.has_uns("log1p")? {
        warnings.push("adata.X seems to be already log-transformed.".to_string());
        progress.warn(warnings.last().unwrap());
    }
    Ok(warnings)
}

/// What a run does after its passes, given every cell's factor and the excluded genes'
/// positions: the zero-count and excluded-genes warnings (pushed to `warnings` and given to
/// `progress`), `obs[key_added]` and `uns["log1p"]`. Returns the number of zero-count cells.
///
/// # Errors
/// The output's write errors; the input's, reading the excluded genes' names.
pub fn conclude<T: Real>(
    out: &mut dyn OutputStore,
    input: &dyn store::InputStore,
    opts: &Params,
    progress: &dyn Progress,
    factors: Vec<T>,
    excluded: &[u64],
    warnings: &mut Vec<String>,
) -> Result<u64> {
    let zero_count_cells = fit::zero_count_cells(&factors);
    if zero_count_cells > 0 {
        warnings.push("Some cells have zero counts".to_string());
        progress.warn(warnings.last().unwrap());
    }
    if !excluded.is_empty() {
        let names = input.var_names(excluded)?;
        let shown: Vec<&str> = names.iter().take(20).map(String::as_str).collect();
        let more = names.len().saturating_sub(shown.len());
        let message = format!(
            "The following highly-expressed genes are not considered during normalization \
             factor computation: {:?}{}",
            shown,
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
        progress.warn(&message);
    }
    if let Some(key) = &opts.key_added {
        out.write_obs_column(key, &T::into_numvec(factors))?;
    }
    if opts.log1p {
        out.write_uns("log1p", &uns_log1p(opts.log1p_base))?;
    }
    Ok(zero_count_cells)
}

/// What scanpy's `log1p` records: `uns["log1p"] = {"base": base}` (`None` for the natural
/// logarithm).
pub fn uns_log1p(base: Option<f64>) -> store::UnsValue {
    let base = base.map_or(store::UnsValue::None, store::UnsValue::Float);
    store::UnsValue::Dict(vec![("base".to_string(), base)])
}

struct Summary {
    target: f64,
    zero_count_cells: u64,
    excluded_genes: u64,
    passes: u32,
    warnings: Vec<String>,
}

/// Runs the passes of `source`'s layout in working dtype `T`, then writes `obs[key_added]`
/// and `uns["log1p"]`.
fn finish<T: Real>(
    input: &dyn store::InputStore,
    element: &ElementPath,
    source: MatrixRef<'_>,
    opts: &Params,
    progress: &dyn Progress,
    out: &mut dyn OutputStore,
) -> Result<Summary> {
    let path = input.path();
    let done: Normalized<T> = match (source, source.meta().layout) {
        (MatrixRef::Sparse(s), MatrixLayout::Csr) => {
            csr::normalize(&Job::whole(path, element, s, opts, progress), out)?
        }
        (MatrixRef::Sparse(s), MatrixLayout::Csc) => {
            csc::normalize(&Job::whole(path, element, s, opts, progress), out)?
        }
        (MatrixRef::Dense(d), MatrixLayout::Dense) => {
            dense::normalize(&Job::whole(path, element, d, opts, progress), out)?
        }
        (_, layout) => {
            return Err(Error::Internal(format!(
                "{}: the backend opened a {layout:?} matrix as the other kind",
                element.store_path()
            )))
        }
    };
    let mut warnings = done.warnings;
    let zero_count_cells = conclude(
        out,
        input,
        opts,
        progress,
        done.factors,
        &done.excluded,
        &mut warnings,
    )?;
    Ok(Summary {
        target: done.target.to_f64(),
        zero_count_cells,
        excluded_genes: done.excluded.len() as u64,
        passes: done.passes,
        warnings,
    })
}

/// State shared by the passes of one run, over a sparse source (the default) or a dense one
/// ([`DenseJob`]).
pub(crate) struct Job<'a, S: ?Sized + 'a = dyn SparseSource + 'a> {
    pub input: &'a Path,
    /// `X` or `layers/NAME`, for messages.
    pub element: String,
    pub element_path: ElementPath,
    pub source: &'a S,
    pub meta: MatrixMeta,
    pub opts: &'a Params,
    pub progress: &'a dyn Progress,
    pub threads: usize,
    pub log1p: Option<Log1p>,
    /// Where `source`'s first row and value sit in the whole matrix (a task's part of it),
    /// for messages.
    pub origin: Origin,
    /// Rows of the whole matrix (numpy's summation order for dense kept-gene totals depends
    /// on it).
    pub n_obs_total: u64,
}

/// The passes' state over a dense source.
pub(crate) type DenseJob<'a> = Job<'a, dyn DenseSource + 'a>;

impl<'a, S: StoredMatrix + ?Sized> Job<'a, S> {
    /// A job over the whole of `source` (a part's view is a whole matrix of its own; the
    /// caller then sets where it sits, [`Job::origin`] and [`Job::n_obs_total`]).
    pub fn whole(
        input: &'a Path,
        element: &ElementPath,
        source: &'a S,
        opts: &'a Params,
        progress: &'a dyn Progress,
    ) -> Self {
        let meta = source.meta().clone();
        Job {
            input,
            element: element.store_path(),
            element_path: element.clone(),
            source,
            n_obs_total: meta.n_obs,
            meta,
            opts,
            progress,
            threads: rayon::current_num_threads(),
            log1p: opts
                .log1p
                .then(|| Log1p::new(opts.log1p_kernel, opts.log1p_base)),
            origin: Origin::default(),
        }
    }
}

/// The position of a part of a matrix in the whole: first row, first stored value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The part's first row.
    pub rows: u64,
    /// The part's first stored value (dense: row-major element).
    pub values: u64,
}

impl<S: ?Sized> Job<'_, S> {
    /// An input error about `member` of the element (`data`, `indptr`, ...).
    pub fn error(&self, member: &str, problem: impl Into<String>) -> Error {
        let element = if member.is_empty() {
            self.element.clone()
        } else {
            format!("{}/{member}", self.element)
        };
        Error::input(self.input, element, problem)
    }

    /// Values per block when each costs `bytes_per_value` while in flight.
    pub fn values_per_block(&self, bytes_per_value: usize) -> u64 {
        let budgeted = plan::values_per_block(self.opts.memory, bytes_per_value as u64);
        self.opts
            .max_block_values
            .map_or(budgeted, |cap| budgeted.min(cap))
    }

    /// Totals and gene mask need every cell's total before anything is scaled, except with
    /// a fixed target and no gene exclusion: then one pass does it all.
    pub fn fused(&self) -> bool {
        self.opts.target_sum.is_some() && !self.opts.exclude_highly_expressed
    }
}

/// What a layout's passes hand back.
pub(crate) struct Normalized<T> {
    pub factors: Vec<T>,
    pub target: T,
    /// Positions of the genes left out of the totals.
    pub excluded: Vec<u64>,
    pub passes: u32,
    pub warnings: Vec<String>,
}

impl<T> Normalized<T> {
    /// `excluded` is the gene mask, if genes were excluded.
    pub fn new(
        factors: Vec<T>,
        target: T,
        excluded: Option<&[bool]>,
        passes: u32,
        warnings: Vec<String>,
    ) -> Self {
        Normalized {
            factors,
            target,
            excluded: excluded.map(fit::excluded_positions).unwrap_or_default(),
            passes,
            warnings,
        }
    }
}
