"""scanpy's ``normalize_total`` and ``log1p`` with the heavy passes in atlasnorm's core.

Each call first decides, without touching anything, whether it is a form the fast path
supports; if not it raises :class:`Unsupported` and the caller hands the call to scanpy's own
function. Otherwise it walks scanpy 1.12.4's own steps — using scanpy's own helpers where they
have effects (the view warning, ``_get_obs_rep``/``_set_obs_rep``, logging, ``check_array``) —
and replaces only the per-cell totals, the gene mask, the median, the factors, the division and
the log1p by calls into ``atlasnorm._core``, which reproduces them bit for bit (the rules live
in the core crate, see ``crates/core/src/fit.rs``). If the core finds a case whose numpy
warnings it would not reproduce (no positive total with a median target, a non-finite
factor, values at or below -1 before a log1p), it says so before anything visible has changed
and the call goes to scanpy after all.
"""

from __future__ import annotations

import datetime
import functools
import math
import numbers
import sys
import sysconfig
import weakref
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import _core

CSR_TYPES = (sp.csr_matrix, sp.csr_array)
CSC_TYPES = (sp.csc_matrix, sp.csc_array)
INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

NT_DEFAULTS = {
    "target_sum": None,
    "exclude_highly_expressed": False,
    "max_fraction": 0.05,
    "key_added": None,
    "layer": None,
    "obsm": None,
    "inplace": True,
    "copy": False,
}
LOG1P_DEFAULTS = {
    "base": None,
    "copy": False,
    "chunked": None,
    "chunk_size": None,
    "layer": None,
    "obsm": None,
}


class Unsupported(Exception):
    """This call is not a form the fast path serves; the reason says why."""


def _dask():
    """The dask paths (imported on first use: that module imports this one)."""
    from . import _dask_patch

    return _dask_patch


def _install_warning_frames() -> None:
    """scanpy attributes its warnings to the first frame outside scanpy; with this package's
    frames between, that would be ours. Adding our directory to scanpy's skip list makes the
    warnings point where unpatched scanpy's do: the user's line."""
    from scanpy import _compat

    here = str(Path(__file__).parent)
    if here not in _compat._FILE_PREFIXES:
        _compat._FILE_PREFIXES = (*_compat._FILE_PREFIXES, here)


def _is_integer_dtype(dtype: np.dtype) -> bool:
    return issubclass(dtype.type, np.integer)


def _matrix_of(adata, layer, obsm):
    """The matrix scanpy's ``_get_obs_rep`` would pick, without side effects."""
    if layer is not None and obsm is not None:
        raise Unsupported("layer and obsm both given")
    try:
        if layer is not None:
            return adata.layers[layer]
        if obsm is not None:
            return adata.obsm[obsm]
        return adata.X
    except Exception as e:  # a missing key: scanpy raises its own error
        raise Unsupported(f"no such matrix ({type(e).__name__})") from None


def _check_matrix(x, *, exact: bool, for_log1p: bool = False) -> None:
    """Raises Unsupported unless ``x`` is an in-memory CSR/CSC or dense 2-D array the core
    handles. ``exact``: the type itself (after ``view_to_actual``); otherwise ``x`` belongs to
    an AnnData view, and its layout (which the copy changes) is checked after the copy."""

    if _dask().is_dask(x):
        return _dask().check(x, for_log1p=for_log1p)

    def is_type(types):
        return type(x) in types if exact else isinstance(x, types)

    if is_type(CSR_TYPES) or is_type(CSC_TYPES):
        if x.ndim != 2:
            raise Unsupported("sparse matrix not 2-D")
        if x.indices.dtype not in INDEX_DTYPES or x.indptr.dtype not in INDEX_DTYPES:
            raise Unsupported(f"index dtype {x.indices.dtype}/{x.indptr.dtype}")
        dtype = x.data.dtype
        if not (dtype in FLOAT_DTYPES or _is_integer_dtype(dtype)):
            raise Unsupported(f"dtype {dtype}")
        if exact and not x.data.flags.c_contiguous:
            raise Unsupported("non-contiguous data array")
        if x.shape[0] == 0:
            raise Unsupported("no rows")
        return
    if is_type((np.ndarray,)):
        if for_log1p:
            if not (x.dtype in FLOAT_DTYPES or _is_integer_dtype(x.dtype) or x.dtype == np.bool_):
                raise Unsupported(f"dtype {x.dtype}")
        else:
            if x.ndim != 2:
                raise Unsupported(f"{x.ndim}-D array")
            if not (x.dtype in FLOAT_DTYPES or _is_integer_dtype(x.dtype)):
                raise Unsupported(f"dtype {x.dtype}")
            if x.shape[0] == 0:
                raise Unsupported("no rows")
        if exact and not (x.flags.c_contiguous or x.flags.f_contiguous):
            raise Unsupported("non-contiguous array")
        if exact and x.dtype in FLOAT_DTYPES and not x.flags.writeable:
            raise Unsupported("read-only array")
        return
    raise Unsupported(f"matrix type {type(x).__module__}.{type(x).__name__}")


def _factor_dtype(target_sum, working: np.dtype) -> np.dtype:
    """The dtype of scanpy's factors ``counts / target_sum`` (numpy's promotion, NEP 50: a
    Python number is weak, a numpy scalar such as ``np.float64`` is not)."""
    if target_sum is None:
        return working
    if isinstance(target_sum, bool) or not isinstance(target_sum, numbers.Real):
        raise Unsupported(f"target_sum of type {type(target_sum).__name__}")
    with np.errstate(all="ignore"):  # only the dtype matters: the probe must not warn
        dtype = (np.ones(1, dtype=working) / target_sum).dtype
    if dtype != working and not (working == np.float32 and dtype == np.float64):
        raise Unsupported(f"target_sum {type(target_sum).__name__} promotes {working} to {dtype}")
    return dtype


def _target_for_core(target_sum, working: np.dtype) -> float | None:
    """``target_sum`` as the core takes it (a float rounded to the working dtype), when
    numpy's ``counts / target_sum`` stays in the working dtype; otherwise Unsupported."""
    if target_sum is None:
        return None
    if _factor_dtype(target_sum, working) != working:
        raise Unsupported(f"target_sum {type(target_sum).__name__} promotes {working}")
    if isinstance(target_sum, int | np.integer) and abs(int(target_sum)) > 2**53:
        raise Unsupported("target_sum integer beyond 2**53")
    value = float(target_sum)
    if not math.isfinite(value):
        raise Unsupported("non-finite target_sum")
    return value


def _max_fraction_for_core(max_fraction) -> float:
    # numba multiplies an np.float32 max_fraction in float32; the core's rule is scanpy's
    # for a Python number (float64 on CSR, the working dtype on dense).
    if isinstance(max_fraction, bool) or type(max_fraction) not in (float, int):
        raise Unsupported(f"max_fraction of type {type(max_fraction).__name__}")
    return float(max_fraction)


def _core_call(f, *args):
    """A call into the extension; a buffer it refuses (it checks before writing anything)
    sends the call to scanpy instead of failing it."""
    try:
        return f(*args)
    except (ValueError, BufferError) as e:
        raise Unsupported(f"core refused the buffers: {e}") from None


def _native(a: np.ndarray) -> np.ndarray:
    """``a`` with its dtype spelled natively (a zero-copy view): arrays read from files may
    carry an explicit ``<`` byte order, whose buffer format ("<f") the extension's typed
    buffers do not take. Only for arrays already native in fact (non-native ones never get
    here: their dtypes fail the checks above)."""
    if a.dtype.byteorder in "=|" or not a.dtype.isnative:
        return a
    return a.view(a.dtype.newbyteorder("="))


def _working_dtype(x) -> np.dtype:
    dtype = x.data.dtype if sp.issparse(x) else x.dtype
    return np.dtype(np.float32) if _is_integer_dtype(dtype) else dtype


# CPython with the GIL, whose `sys.getrefcount` counts every reference (3.14 may not count
# borrowed ones, free-threaded builds defer counts): where `_unseen_data` can be trusted.
_REFCOUNTS_EXACT = (
    sys.implementation.name == "cpython"
    and sys.version_info < (3, 14)
    and not sysconfig.get_config_var("Py_GIL_DISABLED")
)


def _unseen_data(x) -> bool:
    """Whether nothing but the matrix ``x`` can see the values of its ``data`` array, so that
    dividing them in place is indistinguishable from scanpy's new array (which replaces the
    old one, then freed): no other reference to the array (a variable, a view, a memoryview,
    a container, another matrix sharing it), no weak reference, and memory that only it
    reaches — its own, or a base array (scipy's ``copy()`` makes ``data`` a view of one)
    referred to by it alone, and so on up to an array owning its memory."""
    d = x.data
    if not _REFCOUNTS_EXACT or type(d) is not np.ndarray:
        return False
    if not (d.flags.writeable and d.flags.c_contiguous):
        return False
    # The references counted: the matrix's attribute, `d`, and getrefcount's argument.
    if sys.getrefcount(d) != 3 or weakref.getweakrefcount(d):
        return False
    child = d
    for _ in range(8):
        b = child.base
        if b is None:
            return child.flags.owndata
        # The references counted: the child's base pointer, `b`, getrefcount's argument.
        if type(b) is not np.ndarray or sys.getrefcount(b) != 3 or weakref.getweakrefcount(b):
            return False
        child = b
    return False


def _normalize_csr(x, target, exclude, max_fraction):
    factors = np.empty(x.shape[0], dtype=np.dtype(x.data.dtype.type))  # native, as scanpy's
    # scanpy gives CSR a new data array (indices and indptr stay), whose dtype is spelled as
    # the old one's (a zarr array's "<f4" stays "<f4"). Where nobody can see the old array,
    # the values are divided in it instead: the same result, without a new array, its memory
    # and the page faults of its first touch.
    out = None if _unseen_data(x) else np.empty(x.data.shape, dtype=x.data.dtype)
    used_target, excluded, _ = _core_call(
        _core.csr_normalize,
        _native(x.data),
        _native(x.indptr),
        _native(x.indices),
        x.shape[1],
        None if out is None else _native(out),
        factors,
        target,
        exclude,
        max_fraction,
    )
    if np.isinf(factors).any():
        # Nothing was divided (the core checks the factors first), in place or not.
        raise Unsupported("infinite factor (numpy warns dividing by it)")
    if out is not None:
        x.data = out
    return x, factors, excluded, used_target


def normalize_total(
    adata,
    *,
    target_sum=None,
    exclude_highly_expressed=False,
    max_fraction=0.05,
    key_added=None,
    layer=None,
    obsm=None,
    inplace=True,
    copy=False,
):
    """scanpy 1.12.4's ``normalize_total``, computed by the core; Unsupported otherwise."""
    from anndata import AnnData
    from scanpy import logging as logg
    from scanpy._compat import warn
    from scanpy._utils import view_to_actual
    from scanpy.get import _get_obs_rep

    # --- decide, touching nothing ---
    if not isinstance(adata, AnnData):
        raise Unsupported(f"not an AnnData ({type(adata).__name__})")
    if copy and not inplace:
        raise Unsupported("copy=True with inplace=False (scanpy raises)")
    if not isinstance(max_fraction, numbers.Real) or max_fraction < 0 or max_fraction > 1:
        raise Unsupported("max_fraction outside [0, 1] (scanpy raises)")
    if adata.isbacked:
        raise Unsupported("backed AnnData")
    x = _matrix_of(adata, layer, obsm)
    if _dask().is_dask(x):  # scanpy's lazy path (_dask_patch)
        options = (target_sum, exclude_highly_expressed, max_fraction, key_added, layer, obsm)
        return _dask().normalize_total(adata, x, *options, inplace, copy)
    _check_matrix(x, exact=not adata.is_view)
    working = _working_dtype(x)
    # float32 data with a target that numpy promotes (np.float64...): float64 factors.
    wide = _factor_dtype(target_sum, working) != working
    target = _target_for_core(target_sum, np.dtype(np.float64) if wide else working)
    fraction = _max_fraction_for_core(max_fraction)
    if not isinstance(exclude_highly_expressed, bool):
        raise Unsupported("exclude_highly_expressed not a bool")

    # --- scanpy's steps ---
    if copy:
        adata = adata.copy()
    view_to_actual(adata)
    x = _get_obs_rep(adata, layer=layer, obsm=obsm)
    stored = x
    _check_matrix(x, exact=True)
    if type(x) in CSC_TYPES:
        x = x.tocsr()
    if not inplace:
        x = x.copy()
    if _is_integer_dtype(x.dtype):
        x = x.astype(np.float32)

    started = datetime.datetime.now(datetime.UTC)
    if wide:
        x, factors, excluded, used_target = _normalize_wide(
            x, target_sum, exclude_highly_expressed, fraction
        )
    elif sp.issparse(x):
        x, factors, excluded, used_target = _normalize_csr(
            x, target, exclude_highly_expressed, fraction
        )
    else:
        x, factors, excluded, used_target = _normalize_dense_full(
            x, target, exclude_highly_expressed, fraction
        )
    if target is None and math.isnan(used_target):
        # No positive total: scanpy's np.median of an empty selection warns (inside numpy,
        # so the same file and line) and gives NaN, which the core used as well.
        np.median(np.zeros(0, dtype=working))
    logg.info("normalizing counts per cell")
    if exclude_highly_expressed:
        logg.info(
            "The following highly-expressed genes are not considered during normalization factor computation:\n"
            f"{adata.var_names[np.asarray(excluded, dtype=np.intp)].tolist()}"
        )
    if not np.all(factors > 0):
        warn("Some cells have zero counts", UserWarning)

    return _finish_normalize(
        adata, x, factors, started, key_added=key_added, layer=layer, obsm=obsm,
        inplace=inplace, copy=copy, stored=stored,
    )  # fmt: skip


def _store_matrix(adata, x, stored, *, layer, obsm) -> None:
    """scanpy's ``_set_obs_rep(adata, x, ...)``; skipped when ``x`` is the very matrix
    stored there (divided or log-transformed in place): anndata would validate it against
    the AnnData's shape and put the same object back (~0.2 ms)."""
    from scanpy.get import _set_obs_rep

    if x is not stored:
        _set_obs_rep(adata, x, layer=layer, obsm=obsm)


def _finish_normalize(
    adata, x, factors, started, *, key_added, layer, obsm, inplace, copy, stored=None
):
    """The end of scanpy's ``normalize_total``: stores or returns the result, and logs."""
    from scanpy import logging as logg

    dat = dict(X=x, norm_factor=factors)
    if inplace:
        if key_added is not None:
            adata.obs[key_added] = dat["norm_factor"]
        _store_matrix(adata, dat["X"], stored, layer=layer, obsm=obsm)
    logg.info("    finished ({time_passed})", time=started)
    if key_added is not None:
        logg.debug(
            f"and added {key_added!r}, counts per cell before normalization (adata.obs)"
        )
    if copy:
        return adata
    if not inplace:
        return dat
    return None


def _normalize_wide(x, target_sum, exclude, max_fraction):
    """float32 data, a target numpy promotes to float64: the core's float32 totals, numpy's
    own ``counts / target_sum`` (float64 factors, as scanpy), then the core's division in
    float64 — a new float64 ``data`` array for CSR (scanpy's ``x.data / np.repeat(...)``),
    in place in float32 for dense (``np.true_divide(x, d, out=x)``)."""
    n_obs, n_vars = x.shape
    totals = np.empty(n_obs, dtype=np.float32)
    if sp.issparse(x):
        data, indptr = _native(x.data), _native(x.indptr)
        excluded = _core_call(
            _core.csr_totals, data, indptr, _native(x.indices), n_vars, totals, exclude,
            max_fraction,
        )  # fmt: skip
    else:
        fortran = not x.flags.c_contiguous
        fit_on = np.ascontiguousarray(x) if fortran else x
        excluded = _core_call(
            _core.dense_totals, _native(fit_on), n_vars, totals, exclude, max_fraction, fortran
        )
    # Where numpy's current error state would warn (or raise, call, log), scanpy's turn.
    raise_where = {k: "raise" for k, v in np.geterr().items() if v != "ignore"}
    with np.errstate(**raise_where):
        try:
            factors = totals / target_sum
        except FloatingPointError as e:
            raise Unsupported(f"factors: {e}") from None
    if factors.dtype != np.float64:
        raise Unsupported(f"factors of dtype {factors.dtype}")
    if np.isinf(factors).any():
        raise Unsupported("infinite factor (numpy warns dividing by it)")
    if sp.issparse(x):
        out = np.empty(data.shape, dtype=np.float64)
        if _core_call(_core.csr_divide_wide, data, indptr, factors, out):
            raise Unsupported("values overflow float64 (numpy warns)")
        x.data = out
    else:
        buf = x if x.flags.c_contiguous else x.T
        if _core_call(_core.dense_divide_wide, _native(buf), n_vars, factors, not x.flags.c_contiguous):
            raise Unsupported("values overflow float32 (numpy warns)")
    return x, factors, excluded, float(target_sum)


def _normalize_dense_full(x, target, exclude, max_fraction):
    n_obs, n_vars = x.shape
    factors = np.empty(n_obs, dtype=np.dtype(x.dtype.type))
    if x.flags.c_contiguous:
        status, excluded, used_target = _core_call(
            _core.dense_normalize, _native(x), n_vars, factors, target, exclude, max_fraction, None
        )
    else:  # Fortran order: fitted on a C-order copy, divided in place column by column
        status, excluded, used_target = _core_call(
            _core.dense_normalize,
            _native(x.T),
            n_vars,
            factors,
            target,
            exclude,
            max_fraction,
            _native(np.ascontiguousarray(x)),
        )
    if status != "done":
        raise Unsupported(status)
    return x, factors, excluded, used_target


def _log_base(base):
    """``np.log(base)`` as the core takes it, when scanpy's division stays the f64 one."""
    if base is None:
        return None, None
    if isinstance(base, bool) or not isinstance(base, numbers.Real):
        raise Unsupported(f"base of type {type(base).__name__}")
    value = float(base)
    if not math.isfinite(value) or value <= 0 or value == 1:
        raise Unsupported("base not positive, finite and != 1 (numpy warns)")
    ln = np.log(base)
    if type(ln) is not np.float64:
        raise Unsupported(f"np.log(base) is {type(ln).__name__}")
    return value, float(ln)


def _log1p_values(values, base, ln, *, sparse: bool) -> None:
    """In place over a float32/float64 array; Unsupported (unchanged) where numpy would warn
    or scanpy raise."""
    if values.dtype not in FLOAT_DTYPES or not values.flags.writeable:
        raise Unsupported(f"values {values.dtype}")
    if values.flags.c_contiguous:
        buf = values
    elif values.flags.f_contiguous:
        buf = values.T
    else:
        raise Unsupported("non-contiguous values")
    status = _core_call(_core.log1p, _native(buf), base, ln, sparse)
    if status != "done":
        raise Unsupported(f"{status} values")


def _log1p_array(x, *, base, copy):
    # scanpy's log1p_array
    if copy:
        x = x.astype(float) if not np.issubdtype(x.dtype, np.floating) else x.copy()
    elif not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, complex)):
        x = x.astype(float)
    b, ln = _log_base(base)
    _log1p_values(x, b, ln, sparse=False)
    return x


def _scanpy_check_array(x, copy):
    """sklearn's ``check_array`` as scanpy's ``log1p_sparse`` calls it."""
    from scanpy.preprocessing._simple import check_array

    return check_array(
        x,
        accept_sparse=("csr", "csc"),
        dtype=(np.float64, np.float32),
        copy=copy,
        ensure_all_finite=False,
    )


# (matrix type, data, indices and indptr dtypes) -> whether `_scanpy_check_array(x, copy=False)` gives
# such a matrix back as it is, found once per process on a 1 x 1 probe.
_CHECK_ARRAY_KEEPS: dict = {}


def _check_array_keeps(x) -> bool:
    """Whether scanpy's ``check_array`` call would return ``x`` itself, untouched and silent,
    so the call (about 0.3 ms, mostly sklearn's dataframe probing) can be skipped. For a
    sparse matrix with ``copy=False`` and ``ensure_all_finite=False`` what it does depends on
    the type, the dtypes and whether a dimension is 0 (the sample and feature minimums), never
    on the values; the installed sklearn is asked once per type and dtypes, on a 1 x 1
    matrix, and an empty dimension always takes the real call."""
    if x.shape[0] < 1 or x.shape[1] < 1:
        return False
    key = (type(x), x.data.dtype, x.indices.dtype, x.indptr.dtype)
    keeps = _CHECK_ARRAY_KEEPS.get(key)
    if keeps is None:
        import warnings

        data = np.ones(1, dtype=x.data.dtype)
        indices = np.zeros(1, dtype=x.indices.dtype)
        indptr = np.array([0, 1], dtype=x.indptr.dtype)
        probe = type(x)((data, indices, indptr), shape=(1, 1))
        probe.data, probe.indices, probe.indptr = data, indices, indptr  # scipy may recast
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            try:
                back = _scanpy_check_array(probe, copy=False)
            except Exception:
                back = None
        keeps = (
            back is probe
            and not seen
            and back.data is data
            and back.indices is indices
            and back.indptr is indptr
        )
        _CHECK_ARRAY_KEEPS[key] = keeps
    return keeps


def _log1p_sparse(x, *, base, copy):
    # scanpy's log1p_sparse: sklearn's check_array (conversions, copy, the sample checks), the
    # finiteness check done by the core in its scan (Unsupported -> scanpy raises).
    b, ln = _log_base(base)
    if copy or not _check_array_keeps(x):
        x = _scanpy_check_array(x, copy)
    _log1p_values(x.data, b, ln, sparse=True)
    return x


def _log1p_dispatch_check(x) -> None:
    if _dask().is_dask(x):
        return _dask().check(x, for_log1p=True)
    if type(x) in CSR_TYPES or type(x) in CSC_TYPES:
        _check_matrix(x, exact=True)
        return
    if type(x) is np.ndarray:
        _check_matrix(x, exact=True, for_log1p=True)
        return
    raise Unsupported(f"matrix type {type(x).__module__}.{type(x).__name__}")


def log1p(data, *, base=None, copy=False, chunked=None, chunk_size=None, layer=None, obsm=None):
    """scanpy 1.12.4's ``log1p``, computed by the core; Unsupported otherwise."""
    _log_base(base)  # Unsupported early, before any effect
    _register_anndata()
    return _log1p_dispatch(
        data, base=base, copy=copy, chunked=chunked, chunk_size=chunk_size, layer=layer, obsm=obsm
    )


@functools.singledispatch
def _log1p_dispatch(data, *, base, copy, chunked, chunk_size, layer, obsm):
    # A singledispatch function as scanpy's log1p is: scanpy's warnings skip its own and our
    # frames and land on the first other one, which for scanpy is functools' dispatch wrapper;
    # dispatching the same way puts them on the same file and line.
    if chunked is not None or chunk_size is not None or layer is not None or obsm is not None:
        raise Unsupported("AnnData-only arguments with an array (scanpy raises)")
    _log1p_dispatch_check(data)
    return _log1p_matrix(data, base=base, copy=copy)


def _log1p_matrix(x, *, base, copy):
    if _dask().is_dask(x):
        return _dask().log1p_array(x, base=base, copy=copy)
    if sp.issparse(x):
        return _log1p_sparse(x, base=base, copy=copy)
    return _log1p_array(x, base=base, copy=copy)


def _log1p_anndata(adata, *, base, copy, chunked, chunk_size, layer, obsm):
    """scanpy's log1p_anndata."""
    from scanpy import logging as logg
    from scanpy._utils import view_to_actual
    from scanpy.get import _get_obs_rep

    if chunked:
        raise Unsupported("chunked=True")
    if adata.isbacked:
        raise Unsupported("backed AnnData")
    x = _matrix_of(adata, layer, obsm)
    if adata.is_view:
        _check_matrix(x, exact=False, for_log1p=True)
    else:
        _log1p_dispatch_check(x)
    already = "log1p" in adata.uns
    adata = adata.copy() if copy else adata
    view_to_actual(adata)
    stored = _get_obs_rep(adata, layer=layer, obsm=obsm)
    _log1p_dispatch_check(stored)
    x = _log1p_matrix(stored, base=base, copy=False)
    # Logged once the call is sure to be served here (scanpy logs it first; a fallback after
    # this point would log it twice).
    if already:
        logg.warning("adata.X seems to be already log-transformed.")
    _store_matrix(adata, x, stored, layer=layer, obsm=obsm)
    adata.uns["log1p"] = {"base": base}
    if copy:
        return adata
    return None


@functools.cache
def _register_anndata() -> None:
    """Registered on first use: importing atlasnorm does not import anndata."""
    from anndata import AnnData

    _log1p_dispatch.register(AnnData)(_log1p_anndata)
