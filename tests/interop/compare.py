"""Exact comparison of two AnnData objects, element by element.

`diff_anndata(expected, actual, ulp_tol={"X": 1})` returns a list of human-readable differences
(empty = equal). Equal means:
* floating arrays: identical bits (compared as unsigned integers of the same width), so NaN
  payloads and -0.0 count; optionally within `ulp_tol[path]` units in the last place for the matrix at
  `path` (only for float64 data after log1p, see MAX_ULP_F64_LOG1P in test_equivalence.py);
* every array: same dtype and shape; sparse: same class (CSR/CSC), same indptr, indices (values and
  dtypes) and data; dense vs sparse counts as a difference;
* DataFrames (obs, var, raw.var, obsm frames): same index (values and dtype), same columns in the
  same order, each column with the same dtype and values (categoricals: categories, codes, ordered);
* uns: same keys, recursively equal values, same Python/numpy types for scalars;
* obsm, varm, obsp, varp, layers: same keys, each equal; raw: present in both or neither, raw.X,
  raw.var, raw.varm equal.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

MAX_REPORT = 5  # differing positions shown per array


def _uint_view(a: np.ndarray) -> np.ndarray:
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place between same-dtype float arrays, as float64: 0 for
    identical bits; |bits(a) - bits(b)| (exact integers) where both are finite, non-zero and of one
    sign; inf everywhere else (NaN vs anything with other bits, -0.0 vs 0.0, zero vs non-zero,
    sign changes, inf), so a tolerance never excuses those."""
    assert a.dtype == b.dtype and a.dtype.kind == "f"
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    ia = a.view({4: np.int32, 8: np.int64}[a.dtype.itemsize]).astype(np.int64)
    ib = b.view({4: np.int32, 8: np.int64}[b.dtype.itemsize]).astype(np.int64)
    comparable = np.isfinite(a) & np.isfinite(b) & (a != 0) & (b != 0) & ((ia < 0) == (ib < 0))
    d = np.where(comparable, np.abs(np.where(comparable, ia - ib, 0)), 0).astype(np.float64)
    d[~comparable] = np.inf
    d[ia == ib] = 0.0
    return d


def diff_array(path: str, e, a, max_ulp: int = 0) -> list[str]:
    e = np.asarray(e)
    a = np.asarray(a)
    if e.dtype != a.dtype:
        return [f"{path}: dtype {a.dtype} != expected {e.dtype}"]
    if e.shape != a.shape:
        return [f"{path}: shape {a.shape} != expected {e.shape}"]
    if e.dtype.kind == "f" or e.dtype.kind == "c":
        if e.dtype.kind == "c":
            e, a = e.view(e.real.dtype), a.view(a.real.dtype)
        eb = _uint_view(np.ascontiguousarray(e))
        ab = _uint_view(np.ascontiguousarray(a))
        if np.array_equal(eb, ab):
            return []
        if max_ulp > 0:
            d = ulp_distance(e.ravel(), a.ravel())
            worst = float(d.max()) if d.size else 0.0
            if worst <= max_ulp:
                return []
            bad = np.flatnonzero(d > max_ulp)
            where = "; ".join(
                f"[{i}] {a.ravel()[i]!r} vs expected {e.ravel()[i]!r} ({d[i]:g} ulp)" for i in bad[:MAX_REPORT]
            )
            return [f"{path}: {bad.size} values more than {max_ulp} ulp off (max {worst:g}): {where}"]
        bad = np.flatnonzero(eb.ravel() != ab.ravel())
        where = "; ".join(
            f"[{i}] {a.ravel()[i]!r} (0x{int(ab.ravel()[i]):x}) vs expected {e.ravel()[i]!r} (0x{int(eb.ravel()[i]):x})"
            for i in bad[:MAX_REPORT]
        )
        return [f"{path}: {bad.size} of {e.size} values differ in their bits: {where}"]
    if e.dtype.kind == "O" or e.dtype.kind in "US":
        el, al = e.ravel().tolist(), a.ravel().tolist()
        if el != al:
            bad = [i for i, (x, y) in enumerate(zip(el, al)) if x != y and not (x is None and y is None)]
            return [f"{path}: values differ at {bad[:MAX_REPORT]}: {[al[i] for i in bad[:MAX_REPORT]]} vs {[el[i] for i in bad[:MAX_REPORT]]}"]
        return []
    if not np.array_equal(e, a):
        bad = np.flatnonzero(e.ravel() != a.ravel())
        return [f"{path}: {bad.size} values differ, first at {bad[:MAX_REPORT].tolist()}: "
                f"{a.ravel()[bad[:MAX_REPORT]].tolist()} vs expected {e.ravel()[bad[:MAX_REPORT]].tolist()}"]
    return []


def _kind(m) -> str:
    if sp.issparse(m):
        return m.format + ("_array" if isinstance(m, sp.sparray) else "_matrix")
    return type(m).__name__


def diff_matrix(path: str, e, a, max_ulp: int = 0) -> list[str]:
    """Two matrices: format (CSR/CSC/dense), shape, dtype, indptr, indices (dtypes too) and data."""
    if _kind(e) != _kind(a):
        return [f"{path}: format {_kind(a)} != expected {_kind(e)}"]
    if e.shape != a.shape:
        return [f"{path}: shape {a.shape} != expected {e.shape}"]
    if sp.issparse(e):
        out = []
        out += diff_array(f"{path}.indptr", e.indptr, a.indptr)
        out += diff_array(f"{path}.indices", e.indices, a.indices)
        out += diff_array(f"{path}.data", e.data, a.data, max_ulp)
        return out
    if isinstance(e, np.ndarray):
        return diff_array(path, e, a, max_ulp)
    return diff_value(path, e, a)


def diff_series(path: str, e: pd.Series | pd.Index, a: pd.Series | pd.Index) -> list[str]:
    if e.dtype != a.dtype or repr(e.dtype) != repr(a.dtype):
        return [f"{path}: dtype {a.dtype!r} != expected {e.dtype!r}"]
    if len(e) != len(a):
        return [f"{path}: length {len(a)} != expected {len(e)}"]
    if isinstance(e.dtype, pd.CategoricalDtype):
        out = diff_series(f"{path}.categories", e.dtype.categories, a.dtype.categories)
        if e.dtype.ordered != a.dtype.ordered:
            out.append(f"{path}: ordered {a.dtype.ordered} != expected {e.dtype.ordered}")
        ec = e.cat.codes if isinstance(e, pd.Series) else e.codes
        ac = a.cat.codes if isinstance(a, pd.Series) else a.codes
        return out + diff_array(f"{path}.codes", np.asarray(ec), np.asarray(ac))
    if isinstance(e.dtype, np.dtype):
        return diff_array(path, e.to_numpy(), a.to_numpy())
    # extension arrays (strings, nullable ints/bools): NA mask + remaining values
    em, am = np.asarray(pd.isna(e)), np.asarray(pd.isna(a))
    out = diff_array(f"{path}.na_mask", em, am)
    if out:
        return out
    ev = [v for v, m in zip(list(e), em) if not m]
    av = [v for v, m in zip(list(a), am) if not m]
    if ev != av:
        bad = [i for i, (x, y) in enumerate(zip(ev, av)) if x != y]
        return [f"{path}: values differ at {bad[:MAX_REPORT]}"]
    return []


def diff_frame(path: str, e: pd.DataFrame, a: pd.DataFrame) -> list[str]:
    out = diff_series(f"{path}.index", e.index, a.index)
    if e.index.name != a.index.name:
        out.append(f"{path}.index.name {a.index.name!r} != expected {e.index.name!r}")
    if list(e.columns) != list(a.columns):
        out.append(f"{path}: columns {list(a.columns)} != expected {list(e.columns)} (names and order)")
    if list(e.columns) == list(a.columns):
        # by position: a frame may repeat a column name (column-order lists it twice)
        for i, c in enumerate(e.columns):
            where = f"{path}[{c!r}]" + (f"#{i}" if list(e.columns).count(c) > 1 else "")
            out += diff_series(where, e.iloc[:, i], a.iloc[:, i])
    return out


def diff_value(path: str, e: Any, a: Any) -> list[str]:
    """Recursive comparison of uns-like values."""
    if isinstance(e, Mapping):
        if not isinstance(a, Mapping):
            return [f"{path}: {type(a).__name__} != expected dict"]
        out = []
        if set(e) != set(a):
            out.append(f"{path}: keys {sorted(map(str, a))} != expected {sorted(map(str, e))}")
        for k in e:
            if k in a:
                out += diff_value(f"{path}/{k}", e[k], a[k])
        return out
    if type(e) is not type(a):
        return [f"{path}: type {type(a).__name__} ({a!r:.60}) != expected {type(e).__name__} ({e!r:.60})"]
    if isinstance(e, pd.DataFrame):
        return diff_frame(path, e, a)
    if sp.issparse(e) or isinstance(e, np.ndarray):
        return diff_matrix(path, e, a)
    if isinstance(e, np.generic):
        return diff_array(path, np.asarray(e), np.asarray(a))
    if isinstance(e, float):
        return diff_array(path, np.float64(e), np.float64(a))
    if isinstance(e, (list, tuple)):
        if len(e) != len(a):
            return [f"{path}: length {len(a)} != expected {len(e)}"]
        return [d for i, (x, y) in enumerate(zip(e, a)) for d in diff_value(f"{path}[{i}]", x, y)]
    if e is None:
        return []
    if e != a:
        return [f"{path}: {a!r:.80} != expected {e!r:.80}"]
    return []


def _diff_mapping(path: str, e, a, item) -> list[str]:
    # anndata 0.13 lists X as layers[None]; X is compared on its own
    ek, ak = [k for k in e.keys() if k is not None], [k for k in a.keys() if k is not None]
    out = []
    if sorted(ek) != sorted(ak):
        out.append(f"{path}: keys {sorted(ak)} != expected {sorted(ek)}")
    for k in ek:
        if k in ak:
            out += item(f"{path}/{k}", e[k], a[k])
    return out


def _elem(path: str, e, a, ulp_tol: Mapping[str, int]) -> list[str]:
    if isinstance(e, pd.DataFrame) or isinstance(a, pd.DataFrame):
        return diff_value(path, e, a)
    return diff_matrix(path, e, a, ulp_tol.get(path, 0))


def diff_anndata(e, a, ulp_tol: Mapping[str, int] | None = None) -> list[str]:
    """All differences between the expected AnnData `e` and the actual `a` (both read from files)."""
    ulp_tol = dict(ulp_tol or {})
    out: list[str] = []
    if e.shape != a.shape:
        out.append(f"shape {a.shape} != expected {e.shape}")
    if (e.X is None) != (a.X is None):
        out.append(f"X present: {a.X is not None} != expected {e.X is not None}")
    elif e.X is not None:
        out += _elem("X", e.X, a.X, ulp_tol)
    out += diff_frame("obs", e.obs, a.obs)
    out += diff_frame("var", e.var, a.var)
    out += _diff_mapping("layers", e.layers, a.layers, lambda p, x, y: _elem(p, x, y, ulp_tol))
    for name in ("obsm", "varm", "obsp", "varp"):
        out += _diff_mapping(name, getattr(e, name), getattr(a, name), lambda p, x, y: _elem(p, x, y, ulp_tol))
    out += diff_value("uns", dict(e.uns), dict(a.uns))
    if (e.raw is None) != (a.raw is None):
        out.append(f"raw present: {a.raw is not None} != expected {e.raw is not None}")
    elif e.raw is not None:
        out += _elem("raw/X", e.raw.X, a.raw.X, ulp_tol)
        out += diff_frame("raw/var", e.raw.var, a.raw.var)
        out += _diff_mapping("raw/varm", e.raw.varm, a.raw.varm, lambda p, x, y: _elem(p, x, y, ulp_tol))
    return out


def is_zarr(path) -> bool:
    """A `.zarr` path (a directory store) rather than an `.h5ad` file."""
    return str(path).rstrip("/").endswith(".zarr")


def read_any(path):
    """anndata.read_zarr for `.zarr`, anndata.read_h5ad otherwise (as DESIGN.md §1 reads OUTPUT)."""
    import warnings

    import anndata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return anndata.read_zarr(path) if is_zarr(path) else anndata.read_h5ad(path)


def diff_files(expected_path, actual_path, ulp_tol: Mapping[str, int] | None = None) -> list[str]:
    """Both read with anndata (read_zarr or read_h5ad by suffix), then diff_anndata."""
    return diff_anndata(read_any(expected_path), read_any(actual_path), ulp_tol)
