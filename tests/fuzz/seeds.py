"""Seed inputs of the fuzzer: small real AnnData files written by anndata 0.13.4 itself.

Each seed is ~50 x 40 (so anndata + scanpy check an output in milliseconds) and carries something in
every slot (obs/var columns incl. categoricals, raw, layers, obsm, varm, obsp, varp, uns), so that a
mutation anywhere in the file reaches code that reads, validates or copies it. The matrix under
test is rewritten with h5py / zarr-python into several chunks (17-element chunks), so chunk-level
mutations hit one chunk among many. Everything is deterministic: the same seed set comes out of every
run (the mutations are reproducible from a printed seed).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "interop"))

import gen  # noqa: E402
import gen_zarr  # noqa: E402

N_OBS, N_VARS = 50, 40
CHUNK = 17  # elements per chunk of data/indices in .h5ad: not aligned with rows, ~70 chunks per array
# zarr: a chunk is a file, and reading many small files is what makes anndata slow on a store, so
# fewer, larger chunks (still not aligned with rows, still a dozen or more per array)
ZARR_CHUNK = 97
ZARR_SHARD_CHUNK, ZARR_SHARD = 17, 102


def _matrix(seed: int, layout: str, dtype: str):
    rng = np.random.default_rng(seed)
    c = gen.counts(rng, N_OBS, N_VARS, zero_rows=(3,))
    dense = c.astype(dtype)
    return gen.to_layout(dense, layout)


# name -> how it is built. "lean" seeds hold a few elements of each kind (anndata reads them in
# ~20 ms, which is what lets 10,000 cases fit the CI budget); the "rich" ones fill every slot.
SEEDS = {
    # .h5ad
    "h5-csr-f32-chunked.h5ad": dict(kind="h5ad", layout="csr", dtype="float32", compression=None, storage="chunked"),
    "h5-csc-i32-gzip.h5ad": dict(kind="h5ad", layout="csc", dtype="int32", compression="gzip", storage="chunked"),
    "h5-dense-f64-gzip.h5ad": dict(kind="h5ad", layout="dense", dtype="float64", compression="gzip", storage="chunked"),
    "h5-csr-f32-contig-rich.h5ad": dict(kind="h5ad", layout="csr", dtype="float32", compression=None,
                                        storage="contiguous", content="rich"),
    "h5-csr-i64-lzf-layer.h5ad": dict(kind="h5ad", layout="csr", dtype="int64", compression="lzf", storage="chunked",
                                      where="layer"),
    # .zarr
    "z3-sharded-csr-f32.zarr": dict(kind="zarr", store="v3-sharded", layout="csr", dtype="float32"),
    "z3-plain-csc-f64-gzip.zarr": dict(kind="zarr", store="v3-plain", layout="csc", dtype="float64", codec="gzip:6"),
    "z2-csr-i32.zarr": dict(kind="zarr", store="v2", layout="csr", dtype="int32"),
    "z2-dense-f32-zstd.zarr": dict(kind="zarr", store="v2", layout="dense", dtype="float32", codec="zstd:3"),
    "z3-sharded-csr-u16-layer.zarr": dict(kind="zarr", store="v3-sharded", layout="csr", dtype="uint16",
                                          where="layer", codec="blosc-zstd:3"),
}


def lean_adata(X, *, seed: int = 0, layers: dict | None = None):
    """A few elements of each kind: obs with a categorical, a float and a string column; var with a
    string and a bool column; one other sparse layer; an obsm array; a nested uns."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed + 5)
    n_obs, n_vars = X.shape
    ints = pd.array(rng.integers(0, 50, n_obs), dtype="Int64")
    ints[1] = pd.NA
    names = pd.array([f"donor{i % 7}" for i in range(n_obs)], dtype=pd.StringDtype())
    names[0] = pd.NA
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(rng.choice(["T", "B", "NK"], n_obs)),
            "qc": rng.random(n_obs).astype(np.float32),
            "donor": [f"d{i % 3}" for i in range(n_obs)],
            "n_nullable": ints,
            "name_nullable": names,
        },
        index=[f"cell{i:03d}" for i in range(n_obs)],
    )
    var = pd.DataFrame(
        {"symbol": [f"SYM{j}" for j in range(n_vars)], "hv": rng.random(n_vars) > 0.5},
        index=[f"gene{j:03d}" for j in range(n_vars)],
    )
    a = ad.AnnData(X, obs=obs, var=var)
    a.layers["spliced"] = sp.random(n_obs, n_vars, density=0.1, format="csr", dtype=np.float32, random_state=seed)
    for k, v in (layers or {}).items():
        a.layers[k] = v
    a.obsm["X_pca"] = rng.standard_normal((n_obs, 3)).astype(np.float32)
    a.uns["params"] = {"n": 15, "method": "umap", "arr": np.arange(3)}
    return a


def element_of(spec: dict) -> str:
    return "X" if spec.get("where", "X") == "X" else f"layers/{gen.LAYER}"


def build(name: str, path: Path, seed: int = 0) -> None:
    spec = SEEDS[name]
    M = _matrix(seed, spec["layout"], spec["dtype"])
    where = spec.get("where", "X")
    import scipy.sparse as sp

    other = sp.random(N_OBS, N_VARS, density=0.3, format="csr", dtype=np.float32, random_state=seed + 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec["kind"] == "h5ad":
            import h5py

            make = gen.rich_adata if spec.get("content") == "rich" else lean_adata
            a = make(M if where == "X" else other, seed=seed, layers=None if where == "X" else {gen.LAYER: M})
            gen.write_adata(a, path, compression=spec["compression"])
            with h5py.File(path, "r+", track_order=None) as f:
                gen.write_matrix_element(
                    f, element_of(spec), M, indptr="int32", indices="int32", storage=spec["storage"],
                    compression=spec["compression"], data_chunk=CHUNK,
                )
        else:
            make = gen_zarr.richer_adata if spec.get("content") == "rich" else lean_adata
            a = make(M if where == "X" else other, seed=seed, layers=None if where == "X" else {gen.LAYER: M})
            gen_zarr.write_adata_zarr(a, path, spec["store"])
            layouts = None
            if spec["layout"] != "dense":
                if spec["store"] == "v3-sharded":
                    chunked = ((ZARR_SHARD_CHUNK,), (ZARR_SHARD,))
                    ptr = ((13,), (26,))
                else:
                    chunked, ptr = ((ZARR_CHUNK,), None), ((13,), None)
                layouts = {"data": chunked, "indices": chunked, "indptr": ptr}
            else:
                layouts = {"": ((17, 13), None)}
            gen_zarr.write_zarr_matrix(
                path, element_of(spec), M, store=spec["store"], codec=spec.get("codec"), index="int32",
                layouts=layouts,
            )


def build_all(dest: Path, seed: int = 0) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in SEEDS:
        p = dest / name
        if not p.exists():
            build(name, p, seed)
        out[name] = p
    return out


if __name__ == "__main__":
    import time

    t = time.time()
    paths = build_all(Path(sys.argv[1]))
    print(f"built {len(paths)} seeds in {time.time() - t:.1f}s")
