//! What a run did, for the summary paragraph and for callers of the library.

use std::fmt;
use std::time::Duration;

use crate::params::format_bytes;

/// Outcome of a successful `normalize`.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Number of cells (rows).
    pub n_obs: u64,
    /// Number of genes (columns).
    pub n_vars: u64,
    /// Stored values (sparse) or `n_obs * n_vars` (dense).
    pub nnz: u64,
    /// The target sum used (the median when none was given).
    pub target: f64,
    /// Whether `target` is the median of the cell totals (no target sum was given).
    pub target_is_median: bool,
    /// Cells whose factor is not > 0 (scanpy's "Some cells have zero counts").
    pub zero_count_cells: u64,
    /// Genes left out of the totals by `--exclude-highly-expressed`.
    pub excluded_genes: u64,
    /// Full passes over the matrix that were read.
    pub passes: u32,
    /// Size of the input file(s) on disk.
    pub input_bytes: u64,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Warnings scanpy would emit, and atlasnorm's own; also printed as they happen.
    pub warnings: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "Normalized {} cells × {} genes ({} stored values) with target sum {} ({}); \
             {} zero-count cells",
            self.n_obs,
            self.n_vars,
            self.nnz,
            self.target,
            if self.target_is_median {
                "median of the non-zero cell totals"
            } else {
                "given"
            },
            self.zero_count_cells,
        )?;
        if self.excluded_genes > 0 {
            write!(
                f,
                ", {} highly expressed genes excluded from the totals",
                self.excluded_genes
            )?;
        }
        write!(
            f,
            ". {} read pass{} in {:.2} s: {:.1} M values/s, {}/s of input.",
            self.passes,
            if self.passes == 1 { "" } else { "es" },
            secs,
            self.nnz as f64 / secs / 1e6,
            format_bytes((self.input_bytes as f64 / secs) as u64),
        )
    }
}

/// Progress of the passes over the matrix; the CLI draws bars, the library default is silent.
pub trait Progress: Sync {
    /// A pass over `total` rows (or columns, for CSC input) begins.
    fn begin(&self, _pass: &str, _total: u64) {}
    /// `n` more rows are done.
    fn advance(&self, _n: u64) {}
    /// The pass is done.
    fn end(&self) {}
    /// A warning (also kept in the report).
    fn warn(&self, _message: &str) {}
}

/// No progress display.
pub struct Silent;

impl Progress for Silent {}
