"""Input writers for the interop suite.

Files are written with real anndata (`AnnData.write_h5ad`), then the matrix under test (X or a layer)
is rewritten with h5py wherever anndata itself cannot produce the layout wanted: index/indptr dtypes,
unsigned indices, contiguous (unchunked) storage, small chunks that do not align with rows, lzf/gzip
on that element only, and legacy `h5sparse_format` groups. Everything is deterministic (seeded).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

LAYER = "counts"  # name of the layer normalised when a case targets a layer

INT_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")


@dataclasses.dataclass(frozen=True)
class MatrixSpec:
    """How the matrix under test is stored."""

    layout: str = "csr"  # csr | csc | dense
    dtype: str = "float32"
    indptr: str | None = "int32"  # int32 | int64 | None (dense)
    indices: str | None = "int32"  # int32 | int64 | unsigned | None (dense)
    storage: str = "chunked"  # chunked | contiguous
    compression: str | None = None  # None | gzip | lzf  (contiguous implies None)
    strings: str = "nullable"  # nullable (pandas 3 default) | string-array (older files)
    legacy: bool = False  # legacy h5sparse_format / h5sparse_shape group attributes
    values: str = "integer"  # integer | fractional
    where: str = "X"  # X | layer

    def short(self) -> str:
        s = f"{self.layout}-{self.dtype}"
        if self.layout != "dense":
            s += f"-ptr{self.indptr}-idx{self.indices}"
        s += f"-{self.storage}-{self.compression or 'nocomp'}-{self.strings}"
        if self.legacy:
            s += "-legacy"
        if self.values != "integer":
            s += f"-{self.values}"
        s += f"-{self.where}"
        return s

    @property
    def element(self) -> str:
        return "X" if self.where == "X" else f"layers/{LAYER}"


# ---------------------------------------------------------------------------------------------
# matrices


def counts(rng: np.random.Generator, n_obs: int, n_vars: int, *, zero_rows=(3,), max_value=100):
    """Count-like data: heavy-tailed gene weights, log-normal library sizes, a few dominant genes
    (so exclude_highly_expressed with max_fraction 0.1 really excludes some genes, not all)."""
    w = rng.pareto(1.2, n_vars) + 0.05
    w /= w.sum()
    lib = rng.lognormal(np.log(250.0), 0.6, n_obs)
    c = rng.poisson(lib[:, None] * w[None, :]).astype(np.int64)
    c = np.minimum(c, max_value)
    for r in zero_rows:
        if r < n_obs:
            c[r] = 0
    return c


def fractional(rng: np.random.Generator, c: np.ndarray) -> np.ndarray:
    """Non-integer values with the same sparsity (summation order then matters)."""
    return c * rng.uniform(0.25, 1.75, c.shape)


def as_dtype(a: np.ndarray, dtype: str) -> np.ndarray:
    return np.asarray(a).astype(dtype)


def excluded_genes(dense: np.ndarray, max_fraction: float) -> int:
    """How many genes exclude_highly_expressed drops (approximate rule, for test sanity only)."""
    x = np.asarray(dense, dtype=np.float64)
    totals = x.sum(axis=1)
    return int(((x > max_fraction * totals[:, None]).any(axis=0)).sum())


def to_layout(dense: np.ndarray, layout: str):
    if layout == "csr":
        return sp.csr_matrix(dense)
    if layout == "csc":
        return sp.csc_matrix(dense)
    return np.ascontiguousarray(dense)


# ---------------------------------------------------------------------------------------------
# AnnData objects


def rich_adata(X, *, seed: int = 0, layers: dict | None = None, minimal: bool = False):
    """An AnnData with something in every slot, so that "everything else unchanged" is tested."""
    import anndata as ad

    n_obs, n_vars = X.shape
    rng = np.random.default_rng(seed + 7)
    obs_names = [f"cell{i:04d}" for i in range(n_obs)]
    var_names = [f"gene{j:04d}" for j in range(n_vars)]
    if minimal:
        a = ad.AnnData(X, obs=pd.DataFrame(index=obs_names), var=pd.DataFrame(index=var_names))
        for k, v in (layers or {}).items():
            a.layers[k] = v
        return a
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(rng.choice(["T", "B", "NK", "Mono"], n_obs)),
            "batch": rng.integers(0, 3, n_obs),
            "qc": rng.random(n_obs).astype(np.float32),
            "label": [f"l{i % 5}" for i in range(n_obs)],
            "ok": rng.random(n_obs) > 0.5,
        },
        index=obs_names,
    )
    var = pd.DataFrame(
        {
            "symbol": [f"SYM{j}" for j in range(n_vars)],
            "highly_variable": rng.random(n_vars) > 0.7,
            "mean": rng.random(n_vars),
        },
        index=var_names,
    )
    a = ad.AnnData(X, obs=obs, var=var)
    a.raw = a  # raw: a copy of X and var as they were
    a.layers["spliced"] = sp.random(n_obs, n_vars, density=0.2, format="csr", dtype=np.float32, random_state=seed)
    a.layers["dense_extra"] = rng.random((n_obs, n_vars))
    for k, v in (layers or {}).items():
        a.layers[k] = v
    a.obsm["X_pca"] = rng.standard_normal((n_obs, 4)).astype(np.float32)
    a.obsm["sparse_embed"] = sp.random(n_obs, 6, density=0.3, format="csr", dtype=np.float64, random_state=seed + 1)
    a.varm["PCs"] = rng.standard_normal((n_vars, 4))
    a.obsp["distances"] = sp.random(n_obs, n_obs, density=0.1, format="csr", dtype=np.float32, random_state=seed + 2)
    a.varp["corr"] = rng.random((n_vars, n_vars)).astype(np.float32)
    a.uns["neighbors"] = {"params": {"n_neighbors": 15, "method": "umap"}}
    a.uns["colors"] = np.array(["red", "blue"], dtype=object)
    a.uns["pi"] = 3.5
    a.uns["name"] = "hello"
    a.uns["ints"] = np.arange(4)
    a.uns["minus_zero"] = np.array([-0.0, 0.0, np.nan], dtype=np.float32)
    return a


def write_adata(adata, path: Path, *, strings: str = "nullable", compression: str | None = None) -> None:
    import anndata as ad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ad.settings.override(allow_write_nullable_strings=(strings == "nullable")):
            adata.write_h5ad(path, compression=compression)


# ---------------------------------------------------------------------------------------------
# h5py rewriting of one matrix element


def _dataset(g: h5py.Group, name: str, data: np.ndarray, *, storage: str, compression, chunk: int):
    kw = {}
    if storage == "chunked":
        kw["chunks"] = (max(1, min(chunk, len(data))),)
        kw["maxshape"] = (None,)
        if compression == "gzip":
            kw["compression"] = "gzip"
            kw["compression_opts"] = 4
        elif compression == "lzf":
            kw["compression"] = "lzf"
    else:
        assert compression is None, "contiguous storage cannot be compressed"
    return g.create_dataset(name, data=data, **kw)


def index_dtype(kind: str, dim: int) -> np.dtype:
    if kind == "unsigned":  # like anndata's write_csr_csc_indices_with_min_possible_dtype
        return np.min_scalar_type(max(dim - 1, 0))
    return np.dtype(kind)


def write_matrix_element(
    f: h5py.File,
    path: str,
    M,
    *,
    indptr: str | None = "int32",
    indices: str | None = "int32",
    storage: str = "chunked",
    compression: str | None = None,
    legacy: bool = False,
    data_chunk: int = 97,
) -> None:
    """(Re)write the matrix at `path` exactly as told. M: scipy csr/csc (kept as is: unsorted
    indices, duplicates, explicit zeros survive) or a numpy array (dense)."""
    if path in f:
        del f[path]
    if isinstance(M, np.ndarray):
        kw = {}
        if storage == "chunked":
            kw["chunks"] = tuple(max(1, min(c, s)) for c, s in zip((7, 13), M.shape))
            kw["maxshape"] = (None, None)
            if compression:
                kw["compression"] = compression
                if compression == "gzip":
                    kw["compression_opts"] = 4
        d = f.create_dataset(path, data=M, **kw)
        d.attrs["encoding-type"] = "array"
        d.attrs["encoding-version"] = "0.2.0"
        return
    fmt = "csr" if sp.isspmatrix_csr(M) or isinstance(M, sp.csr_array) else "csc"
    minor = M.shape[1] if fmt == "csr" else M.shape[0]
    g = f.create_group(path)
    if legacy:
        g.attrs["h5sparse_format"] = fmt
        g.attrs["h5sparse_shape"] = np.array(M.shape, dtype=np.int64)
    else:
        g.attrs["encoding-type"] = f"{fmt}_matrix"
        g.attrs["encoding-version"] = "0.1.0"
        g.attrs["shape"] = np.array(M.shape, dtype=np.int64)
    _dataset(g, "data", np.asarray(M.data), storage=storage, compression=compression, chunk=data_chunk)
    _dataset(
        g, "indices", np.asarray(M.indices).astype(index_dtype(indices, minor)),
        storage=storage, compression=compression, chunk=data_chunk,
    )
    _dataset(g, "indptr", np.asarray(M.indptr).astype(indptr), storage=storage, compression=compression, chunk=13)


# ---------------------------------------------------------------------------------------------
# whole cases


def matrix_for(spec: MatrixSpec, seed: int, n_obs: int = 60, n_vars: int = 140):
    rng = np.random.default_rng(seed)
    c = counts(rng, n_obs, n_vars)
    vals = fractional(rng, c) if spec.values == "fractional" else c
    dense = as_dtype(vals, spec.dtype)
    return dense, to_layout(dense, spec.layout)


def write_case(path: Path, spec: MatrixSpec, seed: int = 0) -> np.ndarray:
    """Write one equivalence input; returns the dense matrix under test (for sanity checks)."""
    dense, M = matrix_for(spec, seed)
    if spec.where == "X":
        a = rich_adata(M, seed=seed)
    else:
        other = sp.random(*dense.shape, density=0.3, format="csr", dtype=np.float32, random_state=seed + 3)
        a = rich_adata(other, seed=seed, layers={LAYER: M})
    write_adata(a, path, strings=spec.strings, compression=spec.compression)
    with h5py.File(path, "r+") as f:
        write_matrix_element(
            f, spec.element, M,
            indptr=spec.indptr, indices=spec.indices, storage=spec.storage,
            compression=spec.compression, legacy=spec.legacy,
        )
    return dense


def write_simple(path: Path, M, *, seed: int = 0, minimal: bool = False, rewrite: dict | None = None,
                 obs: pd.DataFrame | None = None, uns: dict | None = None) -> None:
    """An input whose X is M (anndata writes it; `rewrite` kwargs then rewrite X with h5py)."""
    a = rich_adata(M, seed=seed, minimal=minimal)
    if obs is not None:
        obs = obs.copy()
        obs.index = a.obs_names
        a.obs = obs
    if uns is not None:
        a.uns.update(uns)
    write_adata(a, path)
    if rewrite is not None:
        with h5py.File(path, "r+") as f:
            write_matrix_element(f, "X", M, **rewrite)
