//! The per-block kernels of the scanpy patch on dask arrays (`atlasnorm/_dask_patch.py`).
//!
//! scanpy's dask path is a graph of per-block numpy/scipy calls; the patch keeps the graph and
//! swaps the heavy calls for these, each giving the bits of the call it replaces on one block:
//! the block totals of `stats.sum(x, axis=1)` (for CSR blocks scipy's `csr.sum(axis=1)`, i.e.
//! `np.add.reduceat` in the data dtype — not scanpy's in-memory order), the row division of
//! `axis_mul_or_truediv`, and `np.log1p`. The rules are the core crate's; this file only
//! borrows the buffers and says when numpy would warn, so that the caller runs numpy's own call
//! for that block instead (and the same warning is issued).
//!
//! A task is one thread: every call runs on a one-thread rayon pool of the calling thread with
//! the GIL released, so a Dask worker's thread pool is the only parallelism.

use std::cell::RefCell;
use std::sync::Arc;

use pyo3::buffer::{Element, PyBuffer};
use pyo3::prelude::*;

use atlasnorm_core::apply;
use atlasnorm_core::fit;
use atlasnorm_core::kernel::log1p::{Log1p, Log1pKernel};
use atlasnorm_core::kernel::Real;

use super::{build_pool, disjoint, indptr_i64, Borrowed};

thread_local! {
    /// The calling thread's one-thread pool (a Dask worker thread keeps its own).
    static ONE_THREAD: RefCell<Option<Arc<rayon::ThreadPool>>> = const { RefCell::new(None) };
}

/// Runs `f` on the calling thread's one-thread pool, the GIL released.
fn on_one_thread<R: Send>(py: Python<'_>, f: impl FnOnce() -> R + Send) -> PyResult<R> {
    let pool = ONE_THREAD.with(|cell| {
        let mut slot = cell.borrow_mut();
        if let Some(p) = slot.as_ref() {
            return Ok(Arc::clone(p));
        }
        let p = build_pool(1)?;
        *slot = Some(Arc::clone(&p));
        Ok::<_, PyErr>(p)
    })?;
    Ok(py.detach(|| pool.install(f)))
}

/// The rows of a CSR block as offsets into its `data`, when `indptr` starts at 0, never
/// decreases and ends at `data`'s length — the blocks on which scipy's `reduceat` segments, its
/// `np.repeat(factors, np.diff(indptr))` and the kernels agree. `None` otherwise: the caller
/// runs scipy's own code on that block, whatever it does there.
fn offsets(indptr: &[i64], nnz: usize) -> Option<Vec<usize>> {
    if indptr.first() != Some(&0) || indptr.windows(2).any(|w| w[1] < w[0]) {
        return None;
    }
    let offs: Vec<usize> = indptr
        .iter()
        .map(|&i| usize::try_from(i).ok())
        .collect::<Option<_>>()?;
    (offs.last() == Some(&nnz)).then_some(offs)
}

/// Whether numpy's `x / d` (for every `x` of a row, `q` the quotients) raises a floating-point
/// flag that it reports as a RuntimeWarning: overflow (finite / finite = ±inf) or invalid
/// (±inf / ±inf). Divisors are never zero (a zero factor divides by 1), so numpy's "divide by
/// zero" cannot occur. Branch-free over the row, so it vectorizes.
fn division_warns<T: Real>(x: &[T], d: T, q: &[T]) -> bool {
    let d = d.to_f64();
    let mut warns = false;
    if d.is_finite() {
        for (&a, &b) in x.iter().zip(q) {
            warns |= a.to_f64().is_finite() & b.to_f64().is_infinite();
        }
    } else if d.is_infinite() {
        for &a in x {
            warns |= a.to_f64().is_infinite();
        }
    }
    warns
}

/// dask's aggregate step of scanpy's row sums: `np.sum` over the length-1 axis of each
/// block's `(n, 1)` result, which starts from `+0.0` (so a `-0.0` total becomes `+0.0`).
fn aggregate<T: Real>(totals: &mut [T]) {
    for t in totals {
        *t = T::ZERO + *t;
    }
}

/// `$f::<f32>(args)` when `$probe` is a float32 buffer, else `$f::<f64>(args)` (the typed
/// functions check every buffer again).
macro_rules! by_dtype {
    ($probe:expr, $f:ident($($arg:expr),*)) => {
        if PyBuffer::<f32>::get($probe).is_ok() {
            $f::<f32>($($arg),*)
        } else {
            $f::<f64>($($arg),*)
        }
    };
}

fn csr_totals_typed<T: Real + Element>(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    indptr: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let data = Borrowed::<T>::get(data, "data", false)?;
    let out = Borrowed::<T>::get(out, "out", true)?;
    let indptr = indptr_i64(indptr)?;
    out.expect_len(indptr.len().saturating_sub(1))?;
    disjoint(out.span(), &[data.span()])?;
    let Some(offs) = offsets(&indptr, data.len()) else {
        return Ok(false);
    };
    let (values, totals) = (data.slice(), out.slice_mut());
    on_one_thread(py, || {
        fit::csr_totals_reduceat(values, &offs, totals);
        aggregate(totals);
    })?;
    Ok(true)
}

/// scanpy's dask row sums of one CSR block (`stats.sum(block, axis=1)` then dask's aggregate)
/// into `out` (one value a row, the data dtype, float32 or float64). False, with `out`
/// untouched, when `indptr` does not describe `data` plainly (see `offsets`).
#[pyfunction]
fn dask_csr_totals(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    indptr: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    by_dtype!(data, csr_totals_typed(py, data, indptr, out))
}

fn dense_totals_typed<T: Real + Element>(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    n_cols: usize,
    out: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let x = Borrowed::<T>::get(x, "x", false)?;
    let out = Borrowed::<T>::get(out, "out", true)?;
    x.expect_len(out.len() * n_cols)?;
    disjoint(out.span(), &[x.span()])?;
    let (values, totals) = (x.slice(), out.slice_mut());
    on_one_thread(py, || {
        fit::dense_totals(values, n_cols, totals);
        aggregate(totals);
    })
}

/// scanpy's dask row sums of one dense C-order block of `n_cols` columns (numpy's pairwise
/// `sum(axis=1)`, then dask's aggregate) into `out`.
#[pyfunction]
fn dask_dense_totals(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    n_cols: usize,
    out: &Bound<'_, PyAny>,
) -> PyResult<()> {
    by_dtype!(x, dense_totals_typed(py, x, n_cols, out))
}

/// Divides `x` into `q` with `scale` (the core's row division, `scale(x, q)`) on one thread, and says whether numpy's division would have warned about a value of row
/// `i` (`row_range(i)`: its values): "done" or "numpy warns".
fn scale_checked<T: Real>(
    py: Python<'_>,
    x: &[T],
    q: &mut [T],
    factors: &[T],
    row_range: impl Fn(usize) -> std::ops::Range<usize> + Send + Sync,
    scale: impl FnOnce(&[T], &mut [T]) + Send,
) -> PyResult<&'static str> {
    on_one_thread(py, || {
        scale(x, q);
        let warns = factors.iter().enumerate().any(|(i, &f)| {
            let r = row_range(i);
            division_warns(&x[r.clone()], fit::divisor(f), &q[r])
        });
        if warns {
            "numpy warns"
        } else {
            "done"
        }
    })
}

fn csr_scale_typed<T: Real + Element>(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    indptr: &Bound<'_, PyAny>,
    factors: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
) -> PyResult<&'static str> {
    let data = Borrowed::<T>::get(data, "data", false)?;
    let factors = Borrowed::<T>::get(factors, "factors", false)?;
    let out = Borrowed::<T>::get(out, "out", true)?;
    let indptr = indptr_i64(indptr)?;
    out.expect_len(data.len())?;
    factors.expect_len(indptr.len().saturating_sub(1))?;
    disjoint(out.span(), &[data.span(), factors.span()])?;
    let Some(offs) = offsets(&indptr, data.len()) else {
        return Ok("irregular indptr");
    };
    let f = factors.slice();
    scale_checked(
        py,
        data.slice(),
        out.slice_mut(),
        f,
        |i| offs[i]..offs[i + 1],
        |x, q| {
            apply::csr_block_into(x, q, &offs, f, 1);
        },
    )
}

/// scanpy's dask division of one CSR block (`data / np.repeat(divisor, np.diff(indptr))`,
/// divisor = factor, or 1 for a zero factor) into `out`. Returns "done", or why `out` is not
/// the result ("irregular indptr", "numpy warns": numpy would issue a RuntimeWarning).
#[pyfunction]
fn dask_csr_scale(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    indptr: &Bound<'_, PyAny>,
    factors: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
) -> PyResult<&'static str> {
    by_dtype!(data, csr_scale_typed(py, data, indptr, factors, out))
}

fn dense_scale_typed<T: Real + Element>(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    n_cols: usize,
    factors: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
) -> PyResult<&'static str> {
    let x = Borrowed::<T>::get(x, "x", false)?;
    let factors = Borrowed::<T>::get(factors, "factors", false)?;
    let out = Borrowed::<T>::get(out, "out", true)?;
    x.expect_len(factors.len() * n_cols)?;
    out.expect_len(x.len())?;
    disjoint(out.span(), &[x.span(), factors.span()])?;
    let f = factors.slice();
    scale_checked(
        py,
        x.slice(),
        out.slice_mut(),
        f,
        |i| i * n_cols..(i + 1) * n_cols,
        |x, q| {
            q.copy_from_slice(x);
            apply::dense_block(q, n_cols, f, None, 1);
        },
    )
}

/// scanpy's dask division of one dense C-order block (`x / divisor[:, None]`) into `out`.
/// Returns "done" or "numpy warns" (see [`dask_csr_scale`]).
#[pyfunction]
fn dask_dense_scale(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    n_cols: usize,
    factors: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
) -> PyResult<&'static str> {
    by_dtype!(x, dense_scale_typed(py, x, n_cols, factors, out))
}

fn log1p_typed<T: Real + Element>(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
) -> PyResult<&'static str> {
    let x = Borrowed::<T>::get(x, "x", false)?;
    let out = Borrowed::<T>::get(out, "out", true)?;
    out.expect_len(x.len())?;
    disjoint(out.span(), &[x.span()])?;
    let (x, q) = (x.slice(), out.slice_mut());
    let log1p = Log1p::new(Log1pKernel::numpy_default(), None);
    on_one_thread(py, || {
        if apply::scan_log1p_input(x).at_or_below_minus_one {
            return "at or below -1";
        }
        q.copy_from_slice(x);
        apply::log1p_values(q, &log1p);
        "done"
    })
}

/// `np.log1p(x)` of one block's values (float32 or float64, contiguous) into `out`, numpy's
/// bits on this CPU. Returns "done", or "at or below -1" with `out` unspecified (numpy warns
/// there; the caller runs numpy's own call).
#[pyfunction]
fn dask_log1p(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
) -> PyResult<&'static str> {
    by_dtype!(x, log1p_typed(py, x, out))
}

/// Adds the per-block kernels to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(dask_csr_totals, m)?)?;
    m.add_function(wrap_pyfunction!(dask_dense_totals, m)?)?;
    m.add_function(wrap_pyfunction!(dask_csr_scale, m)?)?;
    m.add_function(wrap_pyfunction!(dask_dense_scale, m)?)?;
    m.add_function(wrap_pyfunction!(dask_log1p, m)?)?;
    Ok(())
}
