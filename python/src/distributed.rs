//! The Dask driver's Rust side (`atlasnorm.dask.normalize`): the client's job
//! ([`DistributedJob`], holding OUTPUT's claim and staging area) and the four task functions
//! the workers call. Options travel as the command line's arguments and are parsed as the CLI
//! parses them; the plan travels as JSON. Each task runs on one thread (the worker's thread
//! pool is the parallelism) with the GIL released.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use atlasnorm_store::distributed::{self, Job, Plan, Prepared};
use atlasnorm_store::Options;

fn err(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn options(argv: Vec<String>) -> PyResult<(std::path::PathBuf, std::path::PathBuf, Options)> {
    atlasnorm_cli::parse_normalize(argv).map_err(PyValueError::new_err)
}

/// Runs `f` on a pool of one thread: a task's share of a worker is one thread.
fn one_thread<R: Send>(f: impl FnOnce() -> atlasnorm_store::Result<R> + Send) -> PyResult<R> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| err(format!("cannot start a worker thread: {e}")))?;
    pool.install(f).map_err(err)
}

/// The client's side of a split job. Dropped (or [`DistributedJob::abort`]ed) before
/// [`DistributedJob::commit`], it removes the staging area and releases OUTPUT.
#[pyclass(name = "DistributedJob", module = "atlasnorm._core")]
pub struct DistributedJob {
    job: Option<Box<Job>>,
}

impl DistributedJob {
    fn job(&self) -> PyResult<&Job> {
        self.job
            .as_deref()
            .ok_or_else(|| err("the job was committed or aborted"))
    }
}

#[pymethods]
impl DistributedJob {
    /// The plan of totals (and kept-totals) task `i` (its part is then part 0), as JSON.
    fn totals_plan(&self, i: usize) -> PyResult<String> {
        Ok(self.job()?.plan().for_task(Some(i), None).to_json())
    }

    /// The plan of write task `i` (its part is then part 0), as JSON.
    fn write_plan(&self, i: usize) -> PyResult<String> {
        Ok(self.job()?.plan().for_task(None, Some(i)).to_json())
    }

    /// The plan of a copy task (no parts), as JSON.
    fn copy_plan(&self) -> PyResult<String> {
        Ok(self.job()?.plan().for_task(None, None).to_json())
    }

    #[getter]
    fn n_totals_parts(&self) -> PyResult<usize> {
        Ok(self.job()?.plan().totals_parts.len())
    }

    #[getter]
    fn n_write_parts(&self) -> PyResult<usize> {
        Ok(self.job()?.plan().write_parts.len())
    }

    #[getter]
    fn n_copy_parts(&self) -> PyResult<usize> {
        Ok(self.job()?.n_copy_parts())
    }

    /// The input keys copy task `i` carries over as they are.
    fn copy_keys(&self, i: usize) -> PyResult<Vec<String>> {
        Ok(self.job()?.copy_keys(i).to_vec())
    }

    /// Whether a second round of totals over the kept genes follows the first.
    #[getter]
    fn excludes_genes(&self) -> PyResult<bool> {
        Ok(self.job()?.excludes_genes())
    }

    /// The totals parts in order (bytes from the totals tasks) and, with gene exclusion, the
    /// combined mask (one byte a gene).
    #[pyo3(signature = (parts, mask=None))]
    fn set_totals(&mut self, parts: Vec<Vec<u8>>, mask: Option<Vec<u8>>) -> PyResult<()> {
        let job = self
            .job
            .as_deref_mut()
            .ok_or_else(|| err("the job was committed or aborted"))?;
        let mask: Option<Vec<bool>> = mask.map(|m| m.into_iter().map(|b| b != 0).collect());
        job.set_totals(&parts, mask.as_deref()).map_err(err)
    }

    /// The factors of write part `i`'s rows (bytes for the write task).
    fn factors_for<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.job()?.factors_for(i).map_err(err)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Writes what remains and makes the output visible: returns the CLI's report and the
    /// warnings scanpy would emit.
    fn commit(&mut self, py: Python<'_>, nan_values: u64) -> PyResult<(String, Vec<String>)> {
        let job = self
            .job
            .take()
            .ok_or_else(|| err("the job was committed or aborted"))?;
        let report = py.detach(|| job.commit(nan_values)).map_err(err)?;
        let warnings = report.warnings.clone();
        Ok((report.to_string(), warnings))
    }

    /// Removes the staging area and releases OUTPUT (after a failed or cancelled run).
    fn abort(&mut self, py: Python<'_>) {
        if let Some(job) = self.job.take() {
            py.detach(move || drop(job));
        }
    }
}

/// The client's preparation: `(job, None)`, or `(None, reason)` when the job cannot be
/// split and should run whole (the CLI's job, as one task). Raises ValueError with the
/// command line's message for bad paths, options or input.
#[pyfunction]
pub fn dask_prepare(
    py: Python<'_>,
    argv: Vec<String>,
) -> PyResult<(Option<DistributedJob>, Option<String>)> {
    let (input, output, opts) = options(argv)?;
    let prepared = py
        .detach(|| Job::prepare(&input, &output, &opts))
        .map_err(err)?;
    Ok(match prepared {
        Prepared::Split(job) => (Some(DistributedJob { job: Some(job) }), None),
        Prepared::Whole(reason) => (None, Some(reason)),
    })
}

/// Totals task `i`: `(totals bytes, mask bytes or None)`.
#[pyfunction]
pub fn dask_totals<'py>(
    py: Python<'py>,
    plan: &str,
    argv: Vec<String>,
    i: usize,
) -> PyResult<(Bound<'py, PyBytes>, Option<Bound<'py, PyBytes>>)> {
    let plan = Plan::from_json(plan).map_err(err)?;
    let (_, _, opts) = options(argv)?;
    let (totals, mask) = py.detach(|| one_thread(|| distributed::totals_task(&plan, &opts, i)))?;
    let mask = mask.map(|m| {
        let bytes: Vec<u8> = m.into_iter().map(u8::from).collect();
        PyBytes::new(py, &bytes)
    });
    Ok((PyBytes::new(py, &totals), mask))
}

/// Kept-gene totals task `i` over the combined `mask` (one byte a gene).
#[pyfunction]
pub fn dask_kept_totals<'py>(
    py: Python<'py>,
    plan: &str,
    argv: Vec<String>,
    i: usize,
    mask: Vec<u8>,
) -> PyResult<Bound<'py, PyBytes>> {
    let plan = Plan::from_json(plan).map_err(err)?;
    let (_, _, opts) = options(argv)?;
    let mask: Vec<bool> = mask.into_iter().map(|b| b != 0).collect();
    let totals =
        py.detach(|| one_thread(|| distributed::kept_totals_task(&plan, &opts, i, &mask)))?;
    Ok(PyBytes::new(py, &totals))
}

/// Write task `i` with its rows' `factors`: returns the number of NaN values written.
#[pyfunction]
pub fn dask_write(
    py: Python<'_>,
    plan: &str,
    argv: Vec<String>,
    i: usize,
    factors: Vec<u8>,
) -> PyResult<u64> {
    let plan = Plan::from_json(plan).map_err(err)?;
    let (_, _, opts) = options(argv)?;
    py.detach(|| one_thread(|| distributed::write_task(&plan, &opts, i, &factors)))
}

/// Copy task: `keys` of the input into the staging area as they are; returns the bytes
/// copied.
#[pyfunction]
pub fn dask_copy(
    py: Python<'_>,
    plan: &str,
    argv: Vec<String>,
    keys: Vec<String>,
) -> PyResult<u64> {
    let plan = Plan::from_json(plan).map_err(err)?;
    let (_, _, opts) = options(argv)?;
    py.detach(|| one_thread(|| distributed::copy_task(&plan, &opts, &keys)))
}

/// Adds the driver's class and functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DistributedJob>()?;
    m.add_function(wrap_pyfunction!(dask_prepare, m)?)?;
    m.add_function(wrap_pyfunction!(dask_totals, m)?)?;
    m.add_function(wrap_pyfunction!(dask_kept_totals, m)?)?;
    m.add_function(wrap_pyfunction!(dask_write, m)?)?;
    m.add_function(wrap_pyfunction!(dask_copy, m)?)?;
    Ok(())
}
