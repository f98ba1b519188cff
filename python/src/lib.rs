//! `atlasnorm._core`: the Python extension. A thin layer: it borrows numpy's buffers (the
//! buffer protocol, no copies), releases the GIL and calls the core crate's in-memory driver on
//! a rayon pool whose size `set_threads` chooses. Every scanpy rule lives in `atlasnorm-core`;
//! the Python package (`atlasnorm/`) decides what reaches here and allocates the outputs.
//!
//! Buffers are checked here too (element type, contiguity, writability, lengths, no overlap
//! between what is read and what is written), so a wrong call is a Python exception, never
//! undefined behaviour.

mod dask_kernels;
mod distributed;

use std::sync::{Arc, Mutex};

use pyo3::buffer::{Element, PyBuffer};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use atlasnorm_core::apply;
use atlasnorm_core::engine::in_memory::{self, CsrRef, Fitted, Indices};
use atlasnorm_core::kernel::log1p::{Log1p, Log1pKernel};
use atlasnorm_core::kernel::Real;
use atlasnorm_core::params::Params;

/// The pool the in-memory calls run on; `None` until first use or after `set_threads(0)`.
static POOL: Mutex<Option<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

fn pool() -> PyResult<Arc<rayon::ThreadPool>> {
    let mut guard = POOL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, p)) = guard.as_ref() {
        return Ok(Arc::clone(p));
    }
    let p = build_pool(0)?;
    *guard = Some((p.current_num_threads(), Arc::clone(&p)));
    Ok(p)
}

fn build_pool(threads: usize) -> PyResult<Arc<rayon::ThreadPool>> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("atlasnorm-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start worker threads: {e}")))
}

/// Threads of the in-memory calls: `n` >= 1, or 0 for all cores (the default).
#[pyfunction]
fn set_threads(threads: usize) -> PyResult<()> {
    let p = build_pool(threads)?;
    let mut guard = POOL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *guard = Some((p.current_num_threads(), p));
    Ok(())
}

/// The number of threads the in-memory calls use.
#[pyfunction]
fn get_threads() -> PyResult<usize> {
    Ok(pool()?.current_num_threads())
}

/// Which log1p numpy runs on this CPU and atlasnorm reproduces: "svml" or "libm".
#[pyfunction]
fn log1p_kernel() -> &'static str {
    match Log1pKernel::numpy_default() {
        Log1pKernel::NumpySvml => "svml",
        Log1pKernel::Libm => "libm",
    }
}

/// A borrowed buffer as a slice, after the checks that make the borrow sound.
struct Borrowed<T: Element> {
    buf: PyBuffer<T>,
    name: &'static str,
}

impl<T: Element> Borrowed<T> {
    fn get(obj: &Bound<'_, PyAny>, name: &'static str, writable: bool) -> PyResult<Self> {
        let buf = PyBuffer::<T>::get(obj).map_err(|e| {
            PyValueError::new_err(format!("{name}: not a buffer of the expected type: {e}"))
        })?;
        // Explicit big-endian formats ('>' or '!') would pass PyBuffer's item-size checks.
        let format = buf.format().to_bytes();
        if cfg!(target_endian = "little") && matches!(format.first(), Some(b'>' | b'!')) {
            return Err(PyValueError::new_err(format!("{name}: big-endian values")));
        }
        if !buf.is_c_contiguous() {
            return Err(PyValueError::new_err(format!("{name}: not contiguous")));
        }
        if writable && buf.readonly() {
            return Err(PyValueError::new_err(format!("{name}: read-only")));
        }
        Ok(Borrowed { buf, name })
    }

    fn len(&self) -> usize {
        self.buf.item_count()
    }

    fn span(&self) -> (usize, usize) {
        let start = self.buf.buf_ptr() as usize;
        (start, start + self.buf.len_bytes())
    }

    fn expect_len(&self, n: usize) -> PyResult<()> {
        if self.len() == n {
            Ok(())
        } else {
            Err(PyValueError::new_err(format!(
                "{}: {} values where {n} are needed",
                self.name,
                self.len()
            )))
        }
    }

    /// The values, read-only.
    fn slice(&self) -> &[T] {
        // SAFETY: the buffer is C-contiguous (checked in `get`), of `item_count` elements of
        // type `T` (PyBuffer::get checked the format, item size and alignment), and stays
        // valid while `self.buf` holds the buffer export. Writers of the same memory in this
        // call are refused by `disjoint`; other Python threads writing it concurrently is the
        // same contract as numpy's own GIL-free loops.
        unsafe { std::slice::from_raw_parts(self.buf.buf_ptr().cast::<T>(), self.len()) }
    }

    /// The values, writable.
    #[allow(clippy::mut_from_ref)]
    fn slice_mut(&self) -> &mut [T] {
        // SAFETY: as `slice`, and the exporter said the memory is writable (checked in `get`
        // for every buffer obtained with `writable`); `disjoint` guarantees no other slice of
        // this call aliases it.
        unsafe { std::slice::from_raw_parts_mut(self.buf.buf_ptr().cast::<T>(), self.len()) }
    }
}

/// A float32 or float64 buffer, acquired once (the first type that fits is the one kept).
enum FloatBuf {
    F32(Borrowed<f32>),
    F64(Borrowed<f64>),
}

impl FloatBuf {
    fn get(obj: &Bound<'_, PyAny>, name: &'static str, writable: bool) -> PyResult<Self> {
        match Borrowed::<f32>::get(obj, name, writable) {
            Ok(b) => Ok(FloatBuf::F32(b)),
            Err(e32) => match Borrowed::<f64>::get(obj, name, writable) {
                Ok(b) => Ok(FloatBuf::F64(b)),
                // A float32 buffer refused for another reason (read-only, not contiguous...)
                // says why; anything else is not a float buffer at all.
                Err(e64) => Err(if PyBuffer::<f32>::get(obj).is_ok() {
                    e32
                } else {
                    e64
                }),
            },
        }
    }
}

/// Refuses a call whose written buffer overlaps another buffer of the same call.
fn disjoint(written: (usize, usize), others: &[(usize, usize)]) -> PyResult<()> {
    for &(s, e) in others {
        if written.0 < e && s < written.1 && written.0 != written.1 && s != e {
            return Err(PyValueError::new_err(
                "an output buffer overlaps an input buffer",
            ));
        }
    }
    Ok(())
}

fn params(target_sum: Option<f64>, exclude: bool, max_fraction: f64) -> Params {
    Params {
        target_sum,
        exclude_highly_expressed: exclude,
        max_fraction,
        log1p: false,
        ..Params::default()
    }
}

fn core_error(e: &atlasnorm_core::error::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// What a fit tells Python: the target used, the excluded genes (positions) and how many
/// cells have a factor that is not > 0.
type FitSummary = (f64, Vec<u64>, u64);

fn summary<T: Real>(f: &Fitted<T>) -> FitSummary {
    (f.target.to_f64(), f.excluded.clone(), f.zero_count_cells)
}

fn indptr_i64(obj: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
    if let Ok(b) = Borrowed::<i64>::get(obj, "indptr", false) {
        return Ok(b.slice().to_vec());
    }
    let b = Borrowed::<i32>::get(obj, "indptr", false)?;
    Ok(b.slice().iter().map(|&i| i64::from(i)).collect())
}

enum IndexBuf {
    I32(Borrowed<i32>),
    I64(Borrowed<i64>),
}

impl IndexBuf {
    fn get(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        match Borrowed::<i32>::get(obj, "indices", false) {
            Ok(b) => Ok(IndexBuf::I32(b)),
            Err(_) => Ok(IndexBuf::I64(Borrowed::<i64>::get(obj, "indices", false)?)),
        }
    }

    fn indices(&self) -> Indices<'_> {
        match self {
            IndexBuf::I32(b) => Indices::I32(b.slice()),
            IndexBuf::I64(b) => Indices::I64(b.slice()),
        }
    }

    fn span(&self) -> (usize, usize) {
        match self {
            IndexBuf::I32(b) => b.span(),
            IndexBuf::I64(b) => b.span(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn csr_typed<T: Real + Element>(
    py: Python<'_>,
    data: Borrowed<T>,
    indptr: &Bound<'_, PyAny>,
    indices: &Bound<'_, PyAny>,
    n_vars: usize,
    out: Option<&Bound<'_, PyAny>>,
    factors: &Bound<'_, PyAny>,
    p: &Params,
) -> PyResult<FitSummary> {
    let out = out
        .map(|o| Borrowed::<T>::get(o, "out", true))
        .transpose()?;
    let factors_out = Borrowed::<T>::get(factors, "factors", true)?;
    let indptr = indptr_i64(indptr)?;
    let indices = IndexBuf::get(indices)?;
    factors_out.expect_len(indptr.len().saturating_sub(1))?;
    if let Some(out) = &out {
        out.expect_len(data.len())?;
        disjoint(
            out.span(),
            &[data.span(), indices.span(), factors_out.span()],
        )?;
    } else {
        // In place: `data` (acquired writable by the caller) is the written buffer.
        disjoint(data.span(), &[indices.span(), factors_out.span()])?;
    }
    disjoint(factors_out.span(), &[data.span(), indices.span()])?;
    let factor_values = factors_out.slice_mut();
    let pool = pool()?;
    let fitted = py
        .detach(|| {
            pool.install(|| {
                let fitted = match &out {
                    Some(out) => {
                        let m = CsrRef {
                            n_vars,
                            indptr: &indptr,
                            indices: indices.indices(),
                            data: data.slice(),
                        };
                        in_memory::normalize_csr(&m, out.slice_mut(), p)?.0
                    }
                    None => {
                        // The fit reads `data`; its borrow ends before the division writes it.
                        let fitted = in_memory::fit_csr(
                            &CsrRef {
                                n_vars,
                                indptr: &indptr,
                                indices: indices.indices(),
                                data: data.slice(),
                            },
                            p,
                        )?;
                        // Divided only when the caller keeps the result: with an infinite
                        // factor the call goes to scanpy, which must find the values as
                        // they were.
                        if refusal(&fitted).is_none() {
                            in_memory::chunk::csr_apply(
                                &indptr,
                                data.slice_mut(),
                                &fitted.factors,
                                p,
                            )?;
                        }
                        fitted
                    }
                };
                factor_values.copy_from_slice(&fitted.factors);
                Ok::<_, atlasnorm_core::error::Error>(fitted)
            })
        })
        .map_err(|e| core_error(&e))?;
    Ok(summary(&fitted))
}

/// Normalizes a CSR matrix (scanpy's `normalize_total` on CSR): `out` receives the new
/// `data`, or with `out=None` the values are divided in `data` itself (which must then be
/// writable; for a caller that knows no one else sees the old values). `factors` receives
/// the per-cell factors (`obs[key_added]`). `data`, `out` and `factors` are all float32 or
/// all float64. Returns (target, excluded gene positions, zero-count cells).
#[pyfunction]
#[pyo3(signature = (data, indptr, indices, n_vars, out, factors, target_sum, exclude_highly_expressed, max_fraction))]
#[allow(clippy::too_many_arguments)]
fn csr_normalize(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    indptr: &Bound<'_, PyAny>,
    indices: &Bound<'_, PyAny>,
    n_vars: usize,
    out: Option<&Bound<'_, PyAny>>,
    factors: &Bound<'_, PyAny>,
    target_sum: Option<f64>,
    exclude_highly_expressed: bool,
    max_fraction: f64,
) -> PyResult<FitSummary> {
    let p = params(target_sum, exclude_highly_expressed, max_fraction);
    match FloatBuf::get(data, "data", out.is_none())? {
        FloatBuf::F32(d) => csr_typed(py, d, indptr, indices, n_vars, out, factors, &p),
        FloatBuf::F64(d) => csr_typed(py, d, indptr, indices, n_vars, out, factors, &p),
    }
}

fn dense_typed<T: Real + Element>(
    py: Python<'_>,
    x: Borrowed<T>,
    fit_view: Option<&Bound<'_, PyAny>>,
    n_vars: usize,
    factors: &Bound<'_, PyAny>,
    p: &Params,
) -> PyResult<(&'static str, Vec<u64>, f64)> {
    let factors_out = Borrowed::<T>::get(factors, "factors", true)?;
    let n_obs = factors_out.len();
    x.expect_len(n_obs * n_vars)?;
    disjoint(factors_out.span(), &[x.span()])?;
    // A Fortran-order matrix is fitted over a C-order copy (`fit_view`, made by the caller)
    // and scaled in its own memory column by column.
    let fit_copy = fit_view
        .map(|v| Borrowed::<T>::get(v, "fit_view", false))
        .transpose()?;
    if let Some(c) = &fit_copy {
        c.expect_len(n_obs * n_vars)?;
        disjoint(x.span(), &[c.span()])?;
    }
    let values = x.slice_mut();
    let factor_values = factors_out.slice_mut();
    let pool = pool()?;
    let outcome = py.detach(|| {
        pool.install(|| {
            let fitted = match &fit_copy {
                None => in_memory::fit_dense(values, n_vars, p)?,
                Some(c) => in_memory::fit_dense_fortran(c.slice(), n_vars, p)?,
            };
            factor_values.copy_from_slice(&fitted.factors);
            if let Some(refusal) = refusal(&fitted) {
                return Ok((refusal, Vec::new(), fitted.target.to_f64()));
            }
            if fit_copy.is_some() {
                apply::dense_block_fortran(values, &fitted.factors);
            } else {
                in_memory::chunk::dense_apply(values, n_vars, &fitted.factors, p);
            }
            let target = fitted.target.to_f64();
            Ok::<_, atlasnorm_core::error::Error>(("done", fitted.excluded, target))
        })
    });
    outcome.map_err(|e| core_error(&e))
}

/// Fits whose scaling would make numpy warn (a division by an infinite factor): the matrix is left as it is and the caller hands the call to scanpy.
fn refusal<T: Real>(fitted: &Fitted<T>) -> Option<&'static str> {
    if fitted.factors.iter().any(|f| f.to_f64().is_infinite()) {
        return Some("infinite factor");
    }
    None
}

/// Normalizes a dense matrix in place (scanpy divides dense arrays in place): `x` as a flat
/// buffer of `n_obs * n_vars` float32 or float64 values, C order, or Fortran order passed as
/// its C-order transpose with `fit_view` a C-order copy to fit on. Returns ("done", excluded
/// gene positions, target), or (reason, [], target) with `x` untouched when numpy would warn
/// while scaling.
#[pyfunction]
#[pyo3(signature = (x, n_vars, factors, target_sum, exclude_highly_expressed, max_fraction, fit_view=None))]
#[allow(clippy::too_many_arguments)] // scanpy's arguments, passed through
fn dense_normalize(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    n_vars: usize,
    factors: &Bound<'_, PyAny>,
    target_sum: Option<f64>,
    exclude_highly_expressed: bool,
    max_fraction: f64,
    fit_view: Option<&Bound<'_, PyAny>>,
) -> PyResult<(&'static str, Vec<u64>, f64)> {
    let p = params(target_sum, exclude_highly_expressed, max_fraction);
    match FloatBuf::get(x, "x", true)? {
        FloatBuf::F32(x) => dense_typed(py, x, fit_view, n_vars, factors, &p),
        FloatBuf::F64(x) => dense_typed(py, x, fit_view, n_vars, factors, &p),
    }
}

fn log1p_typed<T: Real + Element>(
    py: Python<'_>,
    x: Borrowed<T>,
    log1p: &Log1p,
    refuse_non_finite: bool,
) -> PyResult<&'static str> {
    let values = x.slice_mut();
    let pool = pool()?;
    Ok(py.detach(|| {
        pool.install(|| {
            let seen = apply::scan_log1p_input(values);
            if refuse_non_finite && seen.non_finite {
                return "non-finite";
            }
            if seen.at_or_below_minus_one {
                return "at or below -1";
            }
            apply::log1p_values(values, log1p);
            "done"
        })
    }))
}

/// `np.log1p(x, out=x)` then, with `ln_base` (the caller's `np.log(base)`), `np.divide(x,
/// ln_base, out=x)`, bit for bit, over a contiguous float32 or float64 buffer. Returns
/// "done", or leaves `x` unchanged and says why: "non-finite" (NaN or ±inf with
/// `refuse_non_finite`, scanpy's sparse path, which raises there) or "at or below -1" (where
/// numpy warns; the caller lets numpy do it).
#[pyfunction]
#[pyo3(signature = (x, base, ln_base, refuse_non_finite))]
fn log1p(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    base: Option<f64>,
    ln_base: Option<f64>,
    refuse_non_finite: bool,
) -> PyResult<&'static str> {
    let kernel = Log1pKernel::numpy_default();
    let l = match (base, ln_base) {
        (Some(b), Some(ln)) => Log1p::with_ln_base(kernel, b, ln),
        (None, None) => Log1p::new(kernel, None),
        _ => {
            return Err(PyValueError::new_err(
                "base and ln_base go together (ln_base = np.log(base))",
            ))
        }
    };
    match FloatBuf::get(x, "x", true)? {
        FloatBuf::F32(x) => log1p_typed(py, x, &l, refuse_non_finite),
        FloatBuf::F64(x) => log1p_typed(py, x, &l, refuse_non_finite),
    }
}

/// The totals of a fit (the factors at target 1, which are the totals bit for bit: a division
/// by 1 is exact) and the excluded gene positions.
fn totals_of<T: Real>(fitted: Fitted<T>, out: &mut [T]) -> Vec<u64> {
    out.copy_from_slice(&fitted.factors);
    fitted.excluded
}

fn csr_totals_typed<T: Real + Element>(
    py: Python<'_>,
    data: Borrowed<T>,
    indptr: &Bound<'_, PyAny>,
    indices: &Bound<'_, PyAny>,
    n_vars: usize,
    totals: &Bound<'_, PyAny>,
    p: &Params,
) -> PyResult<Vec<u64>> {
    let totals_out = Borrowed::<T>::get(totals, "totals", true)?;
    let indptr = indptr_i64(indptr)?;
    let indices = IndexBuf::get(indices)?;
    totals_out.expect_len(indptr.len().saturating_sub(1))?;
    disjoint(totals_out.span(), &[data.span(), indices.span()])?;
    let m = CsrRef {
        n_vars,
        indptr: &indptr,
        indices: indices.indices(),
        data: data.slice(),
    };
    let out = totals_out.slice_mut();
    let pool = pool()?;
    py.detach(|| pool.install(|| in_memory::fit_csr(&m, p).map(|f| totals_of(f, out))))
        .map_err(|e| core_error(&e))
}

/// The per-cell totals of scanpy's CSR `normalize_total` (over the kept genes with
/// `exclude_highly_expressed`) into `totals` (the data's dtype); returns the excluded gene
/// positions. For the calls whose factors numpy computes in another dtype (`wide`).
#[pyfunction]
#[pyo3(signature = (data, indptr, indices, n_vars, totals, exclude_highly_expressed, max_fraction))]
#[allow(clippy::too_many_arguments)]
fn csr_totals(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    indptr: &Bound<'_, PyAny>,
    indices: &Bound<'_, PyAny>,
    n_vars: usize,
    totals: &Bound<'_, PyAny>,
    exclude_highly_expressed: bool,
    max_fraction: f64,
) -> PyResult<Vec<u64>> {
    let p = params(Some(1.0), exclude_highly_expressed, max_fraction);
    match FloatBuf::get(data, "data", false)? {
        FloatBuf::F32(d) => csr_totals_typed(py, d, indptr, indices, n_vars, totals, &p),
        FloatBuf::F64(d) => csr_totals_typed(py, d, indptr, indices, n_vars, totals, &p),
    }
}

fn dense_totals_typed<T: Real + Element>(
    py: Python<'_>,
    x: Borrowed<T>,
    fortran: bool,
    n_vars: usize,
    totals: &Bound<'_, PyAny>,
    p: &Params,
) -> PyResult<Vec<u64>> {
    let totals_out = Borrowed::<T>::get(totals, "totals", true)?;
    x.expect_len(totals_out.len() * n_vars)?;
    disjoint(totals_out.span(), &[x.span()])?;
    let values = x.slice();
    let out = totals_out.slice_mut();
    let pool = pool()?;
    py.detach(|| {
        pool.install(|| {
            let fitted = if fortran {
                in_memory::fit_dense_fortran(values, n_vars, p)
            } else {
                in_memory::fit_dense(values, n_vars, p)
            };
            fitted.map(|f| totals_of(f, out))
        })
    })
    .map_err(|e| core_error(&e))
}

/// The per-cell totals of scanpy's dense `normalize_total` into `totals`: `x` a C-order
/// buffer of rows of `n_vars` values, read only (for a Fortran-order matrix, its C-order copy
/// with `fortran` set: the totals' order is the layout's). Returns the excluded positions.
#[pyfunction]
#[pyo3(signature = (x, n_vars, totals, exclude_highly_expressed, max_fraction, fortran))]
fn dense_totals(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    n_vars: usize,
    totals: &Bound<'_, PyAny>,
    exclude_highly_expressed: bool,
    max_fraction: f64,
    fortran: bool,
) -> PyResult<Vec<u64>> {
    let p = params(Some(1.0), exclude_highly_expressed, max_fraction);
    match FloatBuf::get(x, "x", false)? {
        FloatBuf::F32(x) => dense_totals_typed(py, x, fortran, n_vars, totals, &p),
        FloatBuf::F64(x) => dense_totals_typed(py, x, fortran, n_vars, totals, &p),
    }
}

/// `out = f64(data) / divisor(factors[row])` (float64 `factors` and `out`, float32 `data`):
/// scanpy's CSR division by float64 factors, which makes a float64 `data` array. Returns the
/// number of values that overflowed (numpy warns; the caller discards `out`).
#[pyfunction]
fn csr_divide_wide(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    indptr: &Bound<'_, PyAny>,
    factors: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
) -> PyResult<u64> {
    let data = Borrowed::<f32>::get(data, "data", false)?;
    let factors = Borrowed::<f64>::get(factors, "factors", false)?;
    let out = Borrowed::<f64>::get(out, "out", true)?;
    let indptr = indptr_i64(indptr)?;
    disjoint(out.span(), &[data.span(), factors.span()])?;
    let (d, f, o) = (data.slice(), factors.slice(), out.slice_mut());
    let pool = pool()?;
    py.detach(|| pool.install(|| in_memory::wide::csr_divide(d, &indptr, f, o)))
        .map(|r| r.count)
        .map_err(|e| core_error(&e))
}

/// In place, `x = f32(f64(x) / divisor(factors[row]))` over a float32 dense matrix (C order;
/// Fortran order as its C-order transpose with `fortran` set): scanpy's `np.true_divide(x, d,
/// out=x)` with float64 factors. Returns the number of values that would overflow; then
/// nothing is written.
#[pyfunction]
fn dense_divide_wide(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    n_vars: usize,
    factors: &Bound<'_, PyAny>,
    fortran: bool,
) -> PyResult<u64> {
    let x = Borrowed::<f32>::get(x, "x", true)?;
    let factors = Borrowed::<f64>::get(factors, "factors", false)?;
    disjoint(x.span(), &[factors.span()])?;
    let (v, f) = (x.slice_mut(), factors.slice());
    let pool = pool()?;
    py.detach(|| pool.install(|| in_memory::wide::dense_divide(v, n_vars, f, fortran)))
        .map(|r| r.count)
        .map_err(|e| core_error(&e))
}

/// The `atlasnorm` command line, in this process: `argv` with the program name first.
/// Returns the exit status.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| atlasnorm_cli::run(argv, true))
}

/// `atlasnorm normalize ARGS...` in this process: returns the report, raises ValueError with
/// the command line's message.
#[pyfunction]
fn normalize_files(py: Python<'_>, argv: Vec<String>) -> PyResult<String> {
    py.detach(|| atlasnorm_cli::normalize_embedded(argv))
        .map_err(PyValueError::new_err)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_threads, m)?)?;
    m.add_function(wrap_pyfunction!(log1p_kernel, m)?)?;
    m.add_function(wrap_pyfunction!(csr_normalize, m)?)?;
    m.add_function(wrap_pyfunction!(dense_normalize, m)?)?;
    m.add_function(wrap_pyfunction!(log1p, m)?)?;
    m.add_function(wrap_pyfunction!(csr_totals, m)?)?;
    m.add_function(wrap_pyfunction!(dense_totals, m)?)?;
    m.add_function(wrap_pyfunction!(csr_divide_wide, m)?)?;
    m.add_function(wrap_pyfunction!(dense_divide_wide, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_files, m)?)?;
    dask_kernels::register(m)?;
    distributed::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
