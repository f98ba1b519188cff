"""Hand-built .h5ad files in the layout anndata 0.7.x writes, with h5py only.

anndata 0.7.8 (checked with a throwaway py3.8 venv: anndata 0.7.8, h5py 3.7, numpy 1.24,
pandas 2.0) writes a categorical obs/var column as integer codes `obs/<col>` (int8 for few
categories) whose attribute `categories` is an HDF5 *object reference* to the dataset
`obs/__categories/<col>` (variable-length strings, attribute `ordered`); the dataframe group
has `_index`, `column-order`, `encoding-type: dataframe`, `encoding-version: 0.1.0`; plain
columns and `_index` carry no attributes; `uns` groups carry none; the root carries none;
X is `csr_matrix`/`csc_matrix` 0.1.0 with an int64 `shape`, or a bare dense dataset.

`write_anndata07` reproduces that layout; with `extra_refs` it adds references anndata never
reads but a file may hold (attributes on uns/obsm/varm elements): object references from uns
to obs, var, obsm and X (cross-element and into the normalized element), region references
into obsm and X/data, and null references. `ref_datasets` adds reference *datasets* in uns.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

STR = h5py.string_dtype()


def counts(n_obs: int = 30, n_vars: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.poisson(1.2, size=(n_obs, n_vars)).astype(np.float32)
    x[3] = 0  # a zero-count cell
    return x


def _strings(group: h5py.Group, name: str, values) -> h5py.Dataset:
    return group.create_dataset(name, data=np.array(values, dtype=object), dtype=STR)


def _frame(f: h5py.File, key: str, index: list[str], cats: dict[str, tuple[list[str], np.ndarray, bool]],
           plain: dict[str, np.ndarray]) -> None:
    g = f.create_group(key)
    g.attrs["_index"] = "_index"
    cols = list(cats) + list(plain)
    g.attrs.create("column-order", np.array(cols, dtype=object), dtype=STR) if cols else \
        g.attrs.create("column-order", np.array([], dtype=np.float64))
    g.attrs["encoding-type"] = "dataframe"
    g.attrs["encoding-version"] = "0.1.0"
    _strings(g, "_index", index)
    if cats:
        cg = g.create_group("__categories")
    for name, (categories, codes, ordered) in cats.items():
        c = _strings(cg, name, categories)
        c.attrs["ordered"] = np.bool_(ordered)
        d = g.create_dataset(name, data=codes.astype(np.int8))
        d.attrs["categories"] = c.ref
    for name, values in plain.items():
        g.create_dataset(name, data=values)


def write_anndata07(path: Path, *, layout: str = "csr", x: np.ndarray | None = None,
                    extra_refs: bool = False, ref_datasets: bool = False, x_region: bool | None = None,
                    seed: int = 0) -> Path:
    """`x_region` (default: CSR only) adds a region reference into X/data, which keeps its
    meaning only while the matrix keeps its layout."""
    x = counts(seed=seed) if x is None else x
    n_obs, n_vars = x.shape
    rng = np.random.default_rng(seed + 1)
    with h5py.File(path, "w") as f:
        if layout == "dense":
            f.create_dataset("X", data=x)
        else:
            m = sp.csr_matrix(x) if layout == "csr" else sp.csc_matrix(x)
            g = f.create_group("X")
            g.attrs["encoding-type"] = f"{layout}_matrix"
            g.attrs["encoding-version"] = "0.1.0"
            g.attrs["shape"] = np.array(x.shape, dtype=np.int64)
            g.create_dataset("data", data=m.data)
            g.create_dataset("indices", data=m.indices)
            g.create_dataset("indptr", data=m.indptr)
        _frame(f, "obs", [f"cell{i}" for i in range(n_obs)],
               {"cell_type": (["B", "NK", "T"], rng.integers(0, 3, n_obs), False),
                "stage": (["early", "late", "mid"], np.where(np.arange(n_obs) % 7 == 0, -1,
                                                             rng.integers(0, 3, n_obs)), True)},
               {"n_genes": rng.integers(0, 100, n_obs)})
        _frame(f, "var", [f"gene{j}" for j in range(n_vars)],
               {"kind": (["coding", "noncoding"], rng.integers(0, 2, n_vars), False)},
               {"mean": rng.random(n_vars)})
        obsm = f.create_group("obsm")
        pca = obsm.create_dataset("X_pca", data=rng.random((n_obs, 3)))
        f.create_group("varm")
        uns = f.create_group("uns")
        sub = uns.create_group("params")
        sub.create_dataset("n", data=np.arange(4))
        if extra_refs:
            # Attributes anndata ignores: references across elements and into X.
            sub.attrs["to_obs_categories"] = f["obs/__categories/cell_type"].ref
            sub.attrs["to_var"] = f["var"].ref
            sub.attrs["to_x"] = f["X"].ref
            sub.attrs.create("many", [f["obsm/X_pca"].ref, h5py.Reference(), f["var/kind"].ref],
                             dtype=h5py.ref_dtype)
            sub.attrs["pca_rows"] = pca.regionref[1:4, :2]
            pca.attrs["back_to_uns"] = sub.ref
            if layout != "dense":
                sub.attrs["x_data"] = f["X/data"].ref
                if layout == "csr" if x_region is None else x_region:
                    sub.attrs["x_data_region"] = f["X/data"].regionref[2:5]
            f.attrs["root_link"] = f["obs"].ref
        if ref_datasets:
            uns.create_dataset("objrefs", data=[f["obs"].ref, f["var/mean"].ref, f["obsm/X_pca"].ref,
                                                h5py.Reference()], dtype=h5py.ref_dtype)
            uns.create_dataset("regrefs", data=[pca.regionref[0:2, 1:3], f["var/mean"].regionref[::2]],
                               dtype=h5py.regionref_dtype)
    return path
