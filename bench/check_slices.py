"""Exactness check for an input too large for scanpy (see BENCHMARKS.md, larger-than-RAM run).

1. Streams the input's X (CSR) with h5py, cell block by cell block, and computes every cell's
   total and the median of the non-zero totals as scanpy does (np.median of the float32
   totals): it must equal the target atlasnorm used (`--target`, from its summary line).
2. For a few row slices, builds an in-memory AnnData of just those rows, runs
   sc.pp.normalize_total(target_sum=<that median, float32>) + sc.pp.log1p on it, and compares
   data (raw bits), indices and indptr (rebased) with the same rows of atlasnorm's OUTPUT.

usage: python bench/check_slices.py INPUT OUTPUT [--rows N] [--block CELLS]
"""
import argparse
import sys
import time

import anndata as ad
import h5py
import numpy as np
import scanpy as sc
import scipy.sparse as sp


def main():
    p = argparse.ArgumentParser()
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--block", type=int, default=100000)
    a = p.parse_args()
    t0 = time.time()
    fin, fout = h5py.File(a.input, "r"), h5py.File(a.output, "r")
    X, Y = fin["X"], fout["X"]
    n_obs, n_vars = (int(v) for v in X.attrs["shape"])
    indptr = X["indptr"][:]
    data = X["data"]
    totals = np.empty(n_obs, dtype=np.float64)
    for start in range(0, n_obs, a.block):
        end = min(start + a.block, n_obs)
        lo, hi = int(indptr[start]), int(indptr[end])
        v = data[lo:hi].astype(np.float64)
        c = np.concatenate([[0.0], np.cumsum(v)])
        totals[start:end] = c[indptr[start + 1 : end + 1] - lo] - c[indptr[start:end] - lo]
    dt = data.dtype
    counts = totals.astype(dt)  # integer sums below 2^24 are exact in float32
    median = np.median(counts[counts > 0])
    print(f"median of the non-zero totals: {median!r} ({time.time() - t0:.0f} s)", flush=True)
    bad = 0
    for start in (0, n_obs // 2, n_obs - a.rows):
        end = start + a.rows
        lo, hi = int(indptr[start]), int(indptr[end])
        m = sp.csr_matrix(
            (X["data"][lo:hi], X["indices"][lo:hi], indptr[start : end + 1] - lo),
            shape=(end - start, n_vars),
        )
        adata = ad.AnnData(m)
        sc.pp.normalize_total(adata, target_sum=median)
        sc.pp.log1p(adata)
        ref = adata.X
        got_data = Y["data"][lo:hi]
        got_ind = Y["indices"][lo:hi]
        got_ptr = Y["indptr"][start : end + 1] - lo
        same = (
            ref.data.dtype == got_data.dtype
            and np.array_equal(ref.data.view(np.uint8), got_data.view(np.uint8))
            and np.array_equal(ref.indices, got_ind)
            and np.array_equal(ref.indptr, got_ptr)
        )
        print(f"rows {start}..{end} ({hi - lo} values): {'MATCH' if same else 'MISMATCH'}", flush=True)
        bad += not same
    print(f"done in {time.time() - t0:.0f} s")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
