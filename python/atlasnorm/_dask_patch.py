"""The scanpy patch on dask arrays: ``sc.pp.normalize_total`` / ``sc.pp.log1p`` on an AnnData
(or array) whose matrix is a dask array of CSR blocks by rows or of dense blocks.

Each call builds scanpy 1.12.4's own lazy graph — the same statements on the dask array, so the
same chunks, meta and dtypes, and the one eager barrier scanpy has (the median: the totals are
computed and ``np.median`` runs on the client) — with the heavy per-block calls swapped for
the kernels of ``python/src/dask_kernels.rs``, which give the bits of the calls they replace.
The result is what scanpy gives on that dask array, which is *not* its in-memory result:
scanpy's dask totals of a CSR block are scipy's ``csr.sum(axis=1)`` (``np.add.reduceat`` in
the data dtype), and so are these.

Two kinds of decision:

* at call time, by :func:`check` and :func:`normalize_total` (``Unsupported``: the call goes
  to scanpy, counted in ``atlasnorm.stats()``): column-chunked arrays (normalize_total; log1p is
  element-wise and takes any chunking), blocks other than scipy CSR or numpy arrays (CSC, cupy,
  ``sparse``...), dtypes other than float32/float64/integers (float16...), unknown chunk sizes,
  ``exclude_highly_expressed`` (scanpy's dask form of it goes through a lazy boolean column
  selection and warnings that are not reproduced here), and a ``target_sum`` that changes the
  factors' dtype;
* per block, at compute time on whichever worker runs the task: a block that is not the plain
  form the kernels take (another type or dtype than the graph says, Fortran order, an unusual
  ``indptr``, non-canonical CSR for log1p) or whose result numpy would warn about (overflow,
  ``inf / inf``, log1p at or below -1) runs scanpy's own per-block call instead, so its bits and
  warnings are scanpy's. These are not counted: they happen in the workers' processes.

Per-block functions are module-level so that Dask pickles them by name; a worker needs
atlasnorm installed.
"""

from __future__ import annotations

import itertools
import math
import sys
import threading
from collections import Counter
from operator import truediv

import numpy as np

from . import _core
from ._scanpy import (
    CSR_TYPES,
    FLOAT_DTYPES,
    INDEX_DTYPES,
    Unsupported,
    _finish_normalize,
    _is_integer_dtype,
    _native,
    _target_for_core,
)


_lock = threading.Lock()
_by_scanpy: Counter[str] = Counter()


def _scanpy_ran(step: str) -> None:
    with _lock:
        _by_scanpy[step] += 1


def blocks_by_scanpy() -> dict[str, int]:
    """How many blocks this process gave to scanpy's own per-block call, by step ("totals",
    "divide", "log1p"): blocks the kernels do not take or numpy warns about. A diagnostic (and
    the tests' proof that plain blocks ran the kernels); workers count in their own process."""
    with _lock:
        return dict(_by_scanpy)


def is_dask(x) -> bool:
    """Whether ``x`` is a dask array (without importing dask when nobody has)."""
    core = sys.modules.get("dask.array.core")
    return core is not None and isinstance(x, core.Array)


def check(x, *, for_log1p: bool = False) -> None:
    """Raises Unsupported unless ``x`` is a dask array this module serves (see the module's
    docstring)."""
    if x.ndim != 2:
        raise Unsupported(f"{x.ndim}-D dask array")
    if any(math.isnan(c) for c in itertools.chain(*x.chunks)):
        raise Unsupported("dask array of unknown chunk sizes")
    meta = x._meta
    if type(meta) not in CSR_TYPES and type(meta) is not np.ndarray:
        raise Unsupported(f"dask blocks of type {type(meta).__module__}.{type(meta).__name__}")
    dtype = x.dtype
    if not (
        dtype in FLOAT_DTYPES or _is_integer_dtype(dtype) or (for_log1p and dtype == np.bool_)
    ):
        raise Unsupported(f"dask array of dtype {dtype}")
    if not for_log1p:
        if len(x.chunks[1]) != 1:
            raise Unsupported("column-chunked dask array")
        if x.shape[0] == 0:
            raise Unsupported("no rows")


# --- normalize_total -------------------------------------------------------------------------


def normalize_total(
    adata,
    x,
    target_sum,
    exclude_highly_expressed,
    max_fraction,
    key_added,
    layer,
    obsm,
    inplace,
    copy,
):
    """scanpy 1.12.4's ``normalize_total`` when the matrix ``x`` (of ``adata``) is a dask array;
    the caller has already refused what scanpy raises for and backed AnnData."""
    from scanpy import logging as logg
    from scanpy._utils import view_to_actual
    from scanpy.get import _get_obs_rep

    # --- decide, touching nothing ---
    check(x)
    if not isinstance(exclude_highly_expressed, bool) or exclude_highly_expressed:
        raise Unsupported("exclude_highly_expressed on a dask array")
    working = np.dtype(np.float32) if _is_integer_dtype(x.dtype) else x.dtype
    _target_for_core(target_sum, working)  # Unsupported when the factors would not be `working`

    # --- scanpy's steps ---
    if copy:
        adata = adata.copy()
    view_to_actual(adata)
    x = _get_obs_rep(adata, layer=layer, obsm=obsm)
    check(x)
    if not inplace:
        x = x.copy()
    if _is_integer_dtype(x.dtype):
        x = x.astype(np.float32)

    start = logg.info("normalizing counts per cell")
    x, counts_per_cell = _normalize(x, target_sum)
    # scanpy's zero-count warning is skipped on dask: its `counts_per_cell > 0` is lazy.
    return _finish_normalize(
        adata, x, counts_per_cell, start, key_added=key_added, layer=layer, obsm=obsm,
        inplace=inplace, copy=copy,
    )  # fmt: skip


def _normalize(x, target_sum):
    """scanpy's ``_normalize_total_helper`` on a dask array without gene exclusion: the row
    sums (``stats.sum(x, axis=1)``), the median on the client when no target is given, the
    factors ``counts / target_sum`` and ``axis_mul_or_truediv``'s per-block division."""
    import dask.array as da
    from scanpy._utils import _broadcast_axis
    from scanpy.preprocessing._normalization import _compute_nnz_median

    # fast_array_utils' dtype for a dask sum: numpy's (float32 stays float32).
    sum_dtype = np.sum(np.zeros(1, dtype=x.dtype)).dtype
    counts = x.map_blocks(
        _block_totals,
        sum_dtype=sum_dtype,
        drop_axis=1,
        dtype=sum_dtype,
        meta=np.array([], dtype=sum_dtype),
    )
    if target_sum is None:
        target_sum = _compute_nnz_median(counts)
    counts = counts / target_sum
    scaling = _broadcast_axis(counts, 0)
    if x.chunksize[0] != scaling.chunksize[0]:  # scanpy would rechunk (and warn); never here
        raise AssertionError("factors chunked unlike their matrix")
    return da.map_blocks(_block_divide, x, scaling, meta=x._meta), counts


def _plain_csr(block, dtype: np.dtype) -> bool:
    """A CSR block the kernels take: values of exactly ``dtype`` (float32/float64), contiguous,
    int32/int64 indices."""
    return (
        type(block) in CSR_TYPES
        and block.data.dtype == dtype
        and dtype in FLOAT_DTYPES
        and block.data.ndim == 1
        and block.data.flags.c_contiguous
        and block.indptr.dtype in INDEX_DTYPES
    )


def _plain_dense(block, dtype: np.dtype) -> bool:
    """A dense block the kernels take: a C-order 2-D numpy array of exactly ``dtype``."""
    return (
        type(block) is np.ndarray
        and block.ndim == 2
        and block.dtype == dtype
        and dtype in FLOAT_DTYPES
        and block.flags.c_contiguous
    )


def _block_totals(block, *, sum_dtype: np.dtype) -> np.ndarray:
    """One block's row sums as scanpy's dask reduction computes them (its matrix has one chunk
    of columns): fast_array_utils' per-block ``sum(axis=1)``, then dask's aggregate."""
    out = np.empty(block.shape[0], dtype=np.dtype(sum_dtype.type))
    if _plain_csr(block, sum_dtype):
        if _core.dask_csr_totals(_native(block.data), _native(block.indptr), out):
            return out
    elif _plain_dense(block, sum_dtype):
        _core.dask_dense_totals(_native(block), block.shape[1], out)
        return out
    _scanpy_ran("totals")
    return _scanpy_block_totals(block, sum_dtype)


def _scanpy_block_totals(block, sum_dtype: np.dtype) -> np.ndarray:
    """scanpy's own per-block row sums: the reduction's chunk step (``stats.sum(block, axis=1,
    dtype)``, kept 2-D) and its aggregate over that length-1 axis (``np.sum(axis=1)``)."""
    from fast_array_utils import stats

    chunk = stats.sum(block, axis=1, dtype=sum_dtype, keep_cupy_as_array=True)
    return stats.sum(chunk.reshape((-1, 1)), axis=1, dtype=sum_dtype)


def _block_divide(block, scaling):
    """scanpy's ``axis_mul_or_truediv(block, scaling, axis=0, op=truediv,
    allow_divide_by_zero=False)`` of one block (``scaling``: its rows' factors, ``(n, 1)``)."""
    factors = np.ascontiguousarray(np.ravel(scaling))
    dtype = factors.dtype
    if _plain_csr(block, dtype):
        out = np.empty(block.data.shape, dtype=np.dtype(dtype.type))
        status = _core.dask_csr_scale(
            _native(block.data), _native(block.indptr), _native(factors), out
        )
        if status == "done":  # the block scanpy's CSR branch builds
            return type(block)((out, block.indices.copy(), block.indptr.copy()), shape=block.shape)
    elif _plain_dense(block, dtype):
        out = np.empty(block.shape, dtype=np.dtype(dtype.type))
        if _core.dask_dense_scale(_native(block), block.shape[1], _native(factors), out) == "done":
            return out
    from scanpy._utils import axis_mul_or_truediv

    _scanpy_ran("divide")
    return axis_mul_or_truediv(
        block, scaling, axis=0, op=truediv, out=None, allow_divide_by_zero=False
    )


# --- log1p -----------------------------------------------------------------------------------


def log1p_array(x, *, base, copy):
    """scanpy 1.12.4's ``log1p_array`` on a dask array (what its ``log1p`` runs for one, for
    an AnnData's matrix too), with ``np.log1p(x, out=x)``'s per-block call swapped. As
    scanpy's, it rebinds the dask array it is given (numpy's ``out=`` on dask)."""
    if copy:
        x = x.astype(float) if not np.issubdtype(x.dtype, np.floating) else x.copy()
    elif not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, complex)):
        x = x.astype(float)
    _log1p_into(x)
    if base is not None:
        np.divide(x, np.log(base), out=x)
    return x


def _log1p_into(x) -> None:
    """``np.log1p(x, out=x)`` on a dask array: the graph dask builds for it (its dtype, meta
    and chunks, derived by dask from numpy's rules) with the per-block function swapped."""
    from dask.array.core import elemwise, handle_out

    reference = elemwise(np.log1p, x)  # a graph only: nothing is computed
    handle_out(x, x.map_blocks(_block_log1p, dtype=reference.dtype, meta=reference._meta))


def _block_log1p(block):
    """``np.log1p(block)``: for CSR, scipy's ``block.log1p()`` (stored values only, after
    ``sum_duplicates``, which leaves a canonical block as it is); for arrays, numpy's."""
    if (
        type(block) in CSR_TYPES
        and block.data.dtype in FLOAT_DTYPES
        and block.data.ndim == 1
        and block.data.flags.c_contiguous
        and block.has_canonical_format
    ):
        out = np.empty(block.data.shape, dtype=np.dtype(block.data.dtype.type))
        if _core.dask_log1p(_native(block.data), out) == "done":
            return block._with_data(out, copy=True)
    elif type(block) is np.ndarray and block.dtype in FLOAT_DTYPES and block.flags.c_contiguous:
        out = np.empty(block.shape, dtype=np.dtype(block.dtype.type))
        if _core.dask_log1p(_native(block).reshape(-1), out.reshape(-1)) == "done":
            return out
    _scanpy_ran("log1p")
    return np.log1p(block)
