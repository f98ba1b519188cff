"""Small inputs for tests/valgrind/run.sh, written with the interop suite's generators (real
anndata / h5py / zarr): usage `make_inputs.py DIR`. A few hundred cells each, so that a run
under memcheck takes seconds."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "interop"))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from gen import counts, rich_adata, write_adata, write_matrix_element  # noqa: E402
from gen_zarr import write_adata_zarr  # noqa: E402

N_OBS, N_VARS = 240, 160


def main(out: Path) -> None:
    warnings.simplefilter("ignore")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    dense = counts(rng, N_OBS, N_VARS).astype(np.float32)
    X = sp.csr_matrix(dense)
    a = rich_adata(X, seed=11)

    # .h5ad: anndata's own (gzip), CSR in small unaligned chunks, dense, CSC int32.
    write_adata(a, out / "csr_gzip.h5ad", compression="gzip")
    write_adata(a, out / "csr_small_chunks.h5ad")
    with h5py.File(out / "csr_small_chunks.h5ad", "r+") as f:
        write_matrix_element(f, "X", X, data_chunk=97)
    write_adata(rich_adata(dense, seed=11), out / "dense.h5ad")
    with h5py.File(out / "dense.h5ad", "r+") as f:
        write_matrix_element(f, "X", dense, compression="gzip")
    write_adata(rich_adata(sp.csc_matrix(dense.astype(np.int32)), seed=11), out / "csc_int.h5ad")

    # The heap-overflow case: gzip + fletcher32 on every X array (indptr included).
    write_adata(a, out / "fletcher32.h5ad")
    with h5py.File(out / "fletcher32.h5ad", "r+") as f:
        g = f["X"]
        for name, chunk in (("data", 500), ("indices", 500), ("indptr", 50)):
            v = g[name][...]
            del g[name]
            g.create_dataset(name, data=v, chunks=(chunk,), maxshape=(None,), compression="gzip",
                             fletcher32=True)

    # .zarr: anndata's v3 sharded (its default), v2.
    write_adata_zarr(a, out / "v3_sharded.zarr", "v3-sharded")
    write_adata_zarr(a, out / "v2.zarr", "v2")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
