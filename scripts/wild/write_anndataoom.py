"""Files of the wild corpus written by anndata-rs (the Rust AnnData behind SnapATAC2), through
anndataoom's bundled backend.

    .tools/wild/anndataoom/bin/python scripts/wild/write_anndataoom.py OUT_DIR

anndata-rs writes its own HDF5 layout: blosc-zstd (filter 32001, zstd level 5, byte shuffle) on
arrays above a small size, uncompressed below it; `obs/index` with `index_type`/`start`/`end`
attributes; no `/obs` or `/var` group at all when the frame has no columns and no names. This
build of anndataoom has no zarr backend ("Unknown backend: zarr"), so only .h5ad is written.
"""

import os
import sys
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndataoom import _backend as rs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

warnings.simplefilter("ignore")


def frames():
    oc = common.obs_columns()
    obs = pd.DataFrame(index=pd.Index(common.obs_names()))
    obs["cell_type"] = pd.Categorical(oc["cell_type"], categories=["B", "Mono", "NK", "T"])
    obs["is_doublet"] = oc["is_doublet"]
    obs["n_genes"] = oc["n_genes"].astype(np.int64)
    obs["qc_score"] = oc["qc_score"]
    obs["barcode"] = oc["barcode"].astype(str)
    vc = common.var_columns(common.N_VARS)
    var = pd.DataFrame(index=pd.Index(common.var_names(common.N_VARS)))
    var["feature_type"] = pd.Categorical(vc["feature_type"])
    var["highly_variable"] = vc["highly_variable"]
    var["gene_ids"] = vc["gene_ids"].astype(str)
    return obs, var


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    from importlib.metadata import version

    man = common.Manifest(out_dir, "anndata-rs", "anndataoom %s" % version("anndataoom"))
    m = common.counts(seed=50, n_vars=common.N_VARS)

    def path(name):
        p = os.path.join(out_dir, name)
        assert not os.path.exists(p), "refusing to overwrite " + p
        return p

    obs, var = frames()
    emb = common.embeddings()
    rs.set_write_options({"compression": rs.Compression.zstd(5), "block_size": None})  # the default
    a = rs.AnnData(filename=path("rs_csr_blosczstd.h5ad"), X=sp.csr_matrix(m.astype(np.float32)), obs=obs, var=var,
                   obsm={"X_pca": emb["X_pca"]}, varm={"PCs": emb["PCs"]},
                   uns={"int_scalar": 3, "str_scalar": "hello", "nested": {"a": np.arange(4), "b": 0.5}})
    a.layers["counts"] = sp.csr_matrix(m.astype(np.int32))
    a.close()
    man.add("rs_csr_blosczstd.h5ad", "CSR f32 X, int32 counts layer, blosc-zstd (default), obs/var columns, obsm/varm/uns")

    a = rs.AnnData(filename=path("rs_nocols.h5ad"), X=sp.csr_matrix(m.astype(np.float32)))
    a.close()
    man.add("rs_nocols.h5ad", "X only: no /obs and no /var group (no columns, no names)")

    a = rs.AnnData(filename=path("rs_dense_blosczstd.h5ad"), X=np.ascontiguousarray(m.astype(np.float64)),
                   obs=obs[["cell_type"]])
    a.close()
    man.add("rs_dense_blosczstd.h5ad", "dense f64 X, blosc-zstd, obs with one categorical column, no /var group")

    rs.set_write_options({"compression": rs.Compression.gzip(6), "block_size": [500]})
    a = rs.AnnData(filename=path("rs_csr_gzip_blocks.h5ad"), X=sp.csr_matrix(m.astype(np.float32)), obs=obs, var=var)
    a.close()
    man.add("rs_csr_gzip_blocks.h5ad", "CSR f32 X, gzip 6 in 500-element chunks on every array")
    man.save()


if __name__ == "__main__":
    main(sys.argv[1])
