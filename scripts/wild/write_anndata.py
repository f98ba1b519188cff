"""Files of the wild corpus written by one (old) anndata release, in its own venv.

    .tools/wild/anndata-0.7/bin/python scripts/wild/write_anndata.py OUT_DIR

Writes, with whatever anndata/pandas/h5py/zarr the running venv has, files named
`ad<major.minor>_<what>.h5ad|.zarr`: a rich AnnData (CSR/CSC/dense X, an integer `counts` layer, raw
with more genes, categorical obs/var columns incl. NaN, ordered and integer categories, bool/int/
float/string columns, obsm/varm/obsp, nested uns with scalars and string arrays) in the release's
own encodings, gzip and lzf compressed .h5ad, and its default .zarr (v2; v2 and v3 for 0.12).
Features a release does not have are left out (noted in MANIFEST.tsv's last column).
Python 3.8 syntax: this runs under anndata 0.7's interpreter too.
"""

import os
import sys
import warnings

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

warnings.simplefilter("ignore")

VER = tuple(int(x) for x in anndata.__version__.split(".")[:2])
TAG = "ad%d.%d" % VER


def rich(x_format="csr", x_dtype=np.float32, seed=0, nullable=False):
    """The rich AnnData: raw keeps all genes, X/layers the first N_VARS."""
    n, nv = common.N_OBS, common.N_VARS + common.N_RAW_EXTRA
    m = common.counts(seed=seed, n_vars=nv)
    oc = common.obs_columns()
    obs = pd.DataFrame(index=pd.Index(common.obs_names(), name=None))
    obs["cell_type"] = pd.Categorical(oc["cell_type"], categories=["B", "Mono", "NK", "T"])
    obs["batch"] = pd.Categorical(oc["batch"], categories=["b1", "b2", "b3"], ordered=True)
    obs["cluster"] = pd.Categorical(oc["cluster"])
    obs["is_doublet"] = oc["is_doublet"]
    obs["n_genes"] = oc["n_genes"]
    obs["qc_score"] = oc["qc_score"]
    obs["barcode"] = oc["barcode"]
    if nullable:
        obs["n_umis_nullable"] = pd.array([None if i % 17 == 0 else i for i in range(n)], dtype="Int64")
        obs["flag_nullable"] = pd.array([None if i % 13 == 0 else bool(i % 2) for i in range(n)], dtype="boolean")
    vc = common.var_columns()
    var = pd.DataFrame(index=pd.Index(common.var_names()))
    var["feature_type"] = pd.Categorical(vc["feature_type"])
    var["highly_variable"] = vc["highly_variable"]
    var["means"] = vc["means"]
    var["gene_ids"] = vc["gene_ids"]
    raw_x = sp.csr_matrix(m.astype(np.float32))
    full = anndata.AnnData(X=raw_x, obs=obs, var=var)
    full.raw = full
    a = full[:, : common.N_VARS].copy()
    sub = m[:, : common.N_VARS]
    if x_format == "csr":
        a.X = sp.csr_matrix(sub.astype(x_dtype))
    elif x_format == "csc":
        a.X = sp.csc_matrix(sub.astype(x_dtype))
    else:
        a.X = np.ascontiguousarray(sub.astype(x_dtype))
    a.layers["counts"] = sp.csr_matrix(sub.astype(np.int32)) if x_format != "dense" else sub.astype(np.int32)
    emb = common.embeddings()
    a.obsm["X_pca"] = emb["X_pca"]
    a.obsm["X_umap"] = emb["X_umap"]
    a.varm["PCs"] = emb["PCs"]
    d, i, p = common.knn_graph()
    a.obsp["connectivities"] = sp.csr_matrix((d, i, p), shape=(n, n))
    a.uns = common.uns_content()
    return a


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    man = common.Manifest(out_dir, "anndata", anndata.__version__)
    nullable = VER >= (0, 9)  # nullable-integer/-boolean encodings (pandas extension arrays)
    extra = "; nullable Int64/boolean obs columns" if nullable else ""
    cat_link = "categoricals in obs/__categories (object-reference attribute)" if VER < (0, 8) else \
        "categorical groups (codes/categories)"

    def path(name):
        p = os.path.join(out_dir, name)
        assert not os.path.exists(p), "refusing to overwrite " + p
        return p

    a = rich("csr", np.float32, nullable=nullable)
    name = TAG + "_csr_gzip.h5ad"
    a.write_h5ad(path(name), compression="gzip")
    man.add(name, "CSR f32 X, int32 counts layer, raw (+4 genes), gzip; " + cat_link + extra)

    a = rich("csc", np.float64, seed=10, nullable=nullable)
    name = TAG + "_csc_lzf.h5ad"
    a.write_h5ad(path(name), compression="lzf")
    man.add(name, "CSC f64 X, lzf; " + cat_link + extra)

    a = rich("dense", np.float32, seed=20)
    name = TAG + "_dense.h5ad"
    a.write_h5ad(path(name))
    man.add(name, "dense f32 X and dense int32 counts layer, uncompressed; " + cat_link)

    a = rich("csr", np.float32, seed=30, nullable=nullable)
    if VER >= (0, 12):
        name = TAG + "_csr_v2.zarr"
        with anndata.settings.override(zarr_write_format=2):
            a.write_zarr(path(name))
        man.add(name, "zarr v2 (blosc lz4 arrays), CSR f32 X, rich" + extra)
        name = TAG + "_csr_v3.zarr"
        with anndata.settings.override(zarr_write_format=3):
            a.write_zarr(path(name))
        man.add(name, "zarr v3 (zstd), CSR f32 X, rich" + extra)
    else:
        name = TAG + "_csr.zarr"
        a.write_zarr(path(name))
        special = "zarr v2 (blosc lz4 arrays), CSR f32 X, rich"
        if VER < (0, 8):
            special += "; node names beginning with __ (obs/__categories/<col>), categories linked by a path attribute"
        man.add(name, special + extra)

    a = rich("dense", np.float64, seed=40)
    name = TAG + "_dense.zarr"
    if VER >= (0, 12):
        with anndata.settings.override(zarr_write_format=3):
            a.write_zarr(path(name), chunks=(50, 16))
        man.add(name, "zarr v3, dense f64 X in 50x16 chunks")
    else:
        a.write_zarr(path(name), chunks=(50, 16))
        man.add(name, "zarr v2, dense f64 X in 50x16 chunks")
    man.save()


if __name__ == "__main__":
    main(sys.argv[1])
