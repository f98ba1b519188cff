"""Synthetic content shared by every writer of the wild corpus.

Runs in every writer venv (Python 3.8 with numpy 1.21 up to Python 3.13 with numpy 2.x), so it uses
only numpy's legacy `RandomState` (whose streams are the same in every numpy release) and syntax
that Python 3.8 accepts. Nothing here is derived from real data: counts are negative-binomial draws
from a fixed seed, with a log-normal library size per cell, so about two thirds of the stored
values are 1 or 2 (as in 10x data) and a few cells are empty.

`Manifest` collects one row per written file (file, writer, version, python, what is special);
make_corpus.sh merges the fragments into tests/data/wild/MANIFEST.tsv.
"""

import os
import platform
import sys

import numpy as np

N_OBS = 240
N_VARS = 48
N_RAW_EXTRA = 4  # raw keeps 4 more genes than X (as after a gene filter)


def counts(seed=0, n_obs=N_OBS, n_vars=N_VARS, empty_rows=(5,)):
    """Dense int64 counts: NB(r=0.4) scaled per cell; rows in `empty_rows` are all zero."""
    rs = np.random.RandomState(seed)
    lib = rs.lognormal(mean=0.0, sigma=0.6, size=(n_obs, 1))
    gene = rs.gamma(shape=0.6, scale=1.5, size=(1, n_vars))
    mean = lib * gene
    r = 0.4
    p = r / (r + mean)
    m = rs.negative_binomial(r, p).astype(np.int64)
    for i in empty_rows:
        if i < n_obs:
            m[i, :] = 0
    return m


def csr_parts(dense):
    """(data, indices, indptr) of a dense matrix in row-major order, like scipy's CSR."""
    rows, cols = np.nonzero(dense)
    indptr = np.zeros(dense.shape[0] + 1, dtype=np.int64)
    np.add.at(indptr, rows + 1, 1)
    return dense[rows, cols], cols.astype(np.int64), np.cumsum(indptr)


def obs_columns(n=N_OBS, seed=1):
    """Plain numpy/list columns of obs (the writer wraps them in its pandas)."""
    rs = np.random.RandomState(seed)
    cell_type = rs.choice(["B", "T", "NK", "Mono"], size=n).astype(object)
    cell_type[rs.rand(n) < 0.1] = np.nan  # categorical with NaN (code -1)
    return {
        "cell_type": cell_type,  # -> categorical with NaN
        "batch": rs.choice(["b1", "b2", "b3"], size=n).astype(object),  # -> ordered categorical
        "cluster": rs.randint(0, 5, size=n),  # -> categorical of integers
        "is_doublet": rs.rand(n) < 0.05,
        "n_genes": rs.randint(0, 1000, size=n).astype(np.int32),
        "qc_score": np.where(rs.rand(n) < 0.05, np.nan, rs.rand(n)),
        "barcode": np.array(["BC%05d-%s" % (i, "xyz"[i % 3]) for i in range(n)], dtype=object),
    }


def var_columns(n=N_VARS + N_RAW_EXTRA, seed=2):
    rs = np.random.RandomState(seed)
    return {
        "feature_type": rs.choice(["Gene Expression", "Antibody"], size=n, p=[0.9, 0.1]).astype(object),
        "highly_variable": rs.rand(n) < 0.3,
        "means": rs.rand(n).astype(np.float32),
        "gene_ids": np.array(["ENSG%011d" % (1000 + i) for i in range(n)], dtype=object),
    }


def obs_names(n=N_OBS):
    return ["cell-%04d" % i for i in range(n)]


def var_names(n=N_VARS + N_RAW_EXTRA):
    return ["gene-%03d" % i for i in range(n)]


def uns_content():
    """Nested dicts, scalars of several types, string and numeric arrays (as anndata writes them)."""
    return {
        "neighbors": {"params": {"n_neighbors": 15, "method": "umap", "metric": "euclidean"}},
        "int_scalar": 3,
        "float_scalar": 0.25,
        "str_scalar": "hello",
        "str_array": np.array(["alpha", "beta", "gamma"], dtype=object),
        "int_array": np.arange(6, dtype=np.int64),
        "float_matrix": np.arange(12, dtype=np.float64).reshape(3, 4) / 7.0,
        "cell_type_colors": np.array(["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"], dtype=object),
    }


def embeddings(n_obs=N_OBS, n_vars=N_VARS, seed=3):
    rs = np.random.RandomState(seed)
    return {
        "X_pca": rs.randn(n_obs, 5).astype(np.float32),
        "X_umap": rs.randn(n_obs, 2),
        "PCs": rs.randn(n_vars, 5),
    }


def knn_graph(n=N_OBS, k=4, seed=4):
    """(data, indices, indptr) of a CSR kNN graph with k neighbours a row, float32 weights."""
    rs = np.random.RandomState(seed)
    idx = np.stack([np.sort(rs.choice(n, size=k, replace=False)) for _ in range(n)])
    data = rs.rand(n, k).astype(np.float32)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    return data.ravel(), idx.ravel().astype(np.int64), indptr


class Manifest:
    """Rows of MANIFEST.tsv written by one writer script (a fragment file in the output dir)."""

    def __init__(self, out_dir, writer, version):
        self.out_dir = out_dir
        self.writer = writer
        self.version = version
        self.python = platform.python_version()
        self.rows = []

    def add(self, name, special):
        path = os.path.join(self.out_dir, name)
        assert os.path.exists(path), path
        self.rows.append((name, self.writer, self.version, self.python, special))
        sys.stderr.write("  wrote %s (%s)\n" % (name, special))

    def save(self):
        frag = os.path.join(self.out_dir, "_manifest.%s.%s.tsv" % (self.writer, self.version))
        with open(frag, "w") as f:
            for r in self.rows:
                f.write("\t".join(r) + "\n")
