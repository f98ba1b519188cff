"""10x Genomics inputs for the interop suite (test_10x.py) and the 10x benchmark, written the way
Cell Ranger writes them: v3+ `.h5` (`/matrix`, features/ with `_all_tag_keys`), legacy v2 `.h5`
(one group per genome), and matrix directories (v3: matrix.mtx.gz + features.tsv.gz +
barcodes.tsv.gz; legacy: matrix.mtx + genes.tsv + barcodes.tsv), with entries in Cell Ranger's
order (by barcode, then feature) or shuffled.

Matrices are cells × features scipy CSR of integer counts; on disk they become features ×
barcodes (CSC of cells)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import scipy.sparse as sp


def _bytes(values) -> np.ndarray:
    return np.array([str(v).encode() for v in values])


def write_v3_h5(path, X, barcodes, ids, names, types, genomes, *, probe_gene_ids=None,
                filtered_barcodes=None, extra=None, data_dtype=np.int32, chunks=None):
    """Cell Ranger v3+ .h5. `probe_gene_ids`: a probe-barcode matrix (features/gene_id);
    `extra`: more features/ datasets {name: array}; `chunks`: chunk length of data/indices."""
    import h5py

    X = sp.csr_matrix(X)
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["barcodes"] = _bytes(barcodes)
        kw = {"chunks": (chunks,), "compression": "gzip"} if chunks else {}
        g.create_dataset("data", data=X.data.astype(data_dtype), **kw)
        g.create_dataset("indices", data=X.indices.astype(np.int64), **kw)
        g.create_dataset("indptr", data=X.indptr.astype(np.int64))
        g["shape"] = np.array([X.shape[1], X.shape[0]], dtype=np.int32)
        fe = g.create_group("features")
        fe["id"] = _bytes(ids)
        fe["name"] = _bytes(names)
        fe["feature_type"] = _bytes(types)
        fe["genome"] = _bytes(genomes)
        tags = ["genome"]
        if probe_gene_ids is not None:
            fe["gene_id"] = _bytes(probe_gene_ids)
            fe["probe_region"] = _bytes(["spliced" if i % 3 else "unspliced" for i in range(len(ids))])
            fe["filtered_probes"] = np.array([i % 7 != 0 for i in range(len(ids))])
            tags += ["gene_id", "probe_region", "filtered_probes"]
        for k, v in (extra or {}).items():
            fe[k] = v
            tags.append(k)
        fe["_all_tag_keys"] = _bytes(tags)
        if filtered_barcodes is not None:
            g["filtered_barcodes"] = np.asarray(filtered_barcodes, dtype=bool)


def write_legacy_h5(path, genomes: dict):
    """Cell Ranger 2 .h5: {genome: (X, barcodes, ids, names)}."""
    import h5py

    with h5py.File(path, "w") as f:
        for genome, (X, barcodes, ids, names) in genomes.items():
            X = sp.csr_matrix(X)
            g = f.create_group(genome)
            g["barcodes"] = _bytes(barcodes)
            g["data"] = X.data.astype(np.int32)
            g["indices"] = X.indices.astype(np.int64)
            g["indptr"] = X.indptr.astype(np.int64)
            g["shape"] = np.array([X.shape[1], X.shape[0]], dtype=np.int32)
            g["genes"] = _bytes(ids)
            g["gene_names"] = _bytes(names)


def write_mtx_dir(d, X, barcodes, ids, names, types=None, *, shuffle=None, real=False, duplicate=0,
                  zeros=0):
    """A matrix directory: v3 (gzip, features.tsv.gz) when `types` is given, else legacy
    (plain, genes.tsv). `shuffle`: a numpy Generator to write entries in random order; `real`:
    a "real" field with values written as decimals; `duplicate`: split this many entries into
    two lines that sum to the value; `zeros`: add this many explicit zero entries (at positions
    without a value)."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    coo = sp.coo_matrix(sp.csr_matrix(X).T)  # features × barcodes
    order = np.lexsort((coo.row, coo.col))  # by barcode, then feature (Cell Ranger's order)
    rows, cols, vals = coo.row[order] + 1, coo.col[order] + 1, coo.data[order]
    rows, cols, vals = list(rows), list(cols), [int(v) for v in vals]
    extra = []
    for i in range(min(duplicate, len(vals))):
        if vals[i] >= 2:
            vals[i] -= 1
            extra.append((rows[i], cols[i], 1))
    taken = set(zip(rows, cols))
    for k in range(zeros):
        r, c = 1 + (7 * k) % X.shape[1], 1 + (11 * k) % X.shape[0]
        if (r, c) not in taken:
            taken.add((r, c))
            extra.append((r, c, 0))
    entries = list(zip(rows, cols, vals)) + extra
    if shuffle is not None:
        entries = [entries[i] for i in shuffle.permutation(len(entries))]
    gz = types is not None
    opener = (lambda p: gzip.open(p, "wt")) if gz else (lambda p: open(p, "w"))
    sfx = ".gz" if gz else ""
    with opener(d / f"matrix.mtx{sfx}") as f:
        f.write(f"%%MatrixMarket matrix coordinate {'real' if real else 'integer'} general\n")
        f.write('%metadata_json: {"software_version": "test"}\n')
        f.write(f"{X.shape[1]} {X.shape[0]} {len(entries)}\n")
        for r, c, v in entries:
            f.write(f"{r} {c} {v}.0\n" if real else f"{r} {c} {v}\n")
    with opener(d / (f"features.tsv{sfx}" if gz else "genes.tsv")) as f:
        for i, n, *t in zip(ids, names, *([types] if gz else [])):
            f.write("\t".join([i, n, *t]) + "\n")
    with opener(d / f"barcodes.tsv{sfx}") as f:
        for b in barcodes:
            f.write(f"{b}\n")


def with_antibodies(X, names, rng, n_adt=17):
    """Appends an Antibody Capture block of `n_adt` features to a gene matrix."""
    X = sp.csr_matrix(X)
    adt = sp.random(X.shape[0], n_adt, density=0.6, format="csr", random_state=rng,
                    data_rvs=lambda n: rng.integers(1, 300, n)).astype(X.dtype)
    Y = sp.hstack([X, adt], format="csr")
    ids = [f"ENSG{i:011d}" for i in range(X.shape[1])] + [f"ADT{i}" for i in range(n_adt)]
    types = ["Gene Expression"] * X.shape[1] + ["Antibody Capture"] * n_adt
    return Y, ids, list(names) + [f"CD{i}_TotalSeqB" for i in range(n_adt)], types


def real_counts(path, n_cells=None):
    """X (int CSR), barcodes and gene names of a real .h5ad of ../shared/data/real."""
    import anndata

    a = anndata.read_h5ad(path)
    if n_cells:
        a = a[:n_cells]
    X = sp.csr_matrix(a.X).astype(np.int32)
    return X, list(map(str, a.obs_names)), list(map(str, a.var_names))


def synthetic(rng, n_cells=60, n_genes=40, density=0.3):
    """Small counts with an empty cell, duplicated gene symbols and a wide value range."""
    X = sp.random(n_cells, n_genes, density=density, format="csr", random_state=rng,
                  data_rvs=lambda n: rng.integers(1, 50, n)).astype(np.int32)
    X = X.tolil()
    X[3, :] = 0
    X = X.tocsr()
    X.eliminate_zeros()
    names = [f"G{i % 30}" for i in range(n_genes)]  # duplicates: G0 ... twice
    barcodes = [f"AAAC{i:06d}-1" for i in range(n_cells)]
    return X, barcodes, names
