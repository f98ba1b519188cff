"""Big-endian matrices (issue 9, finding 4). What scanpy 1.12.4 + anndata 0.13.4 do, recorded
in `expect`:

* dense `>f4`/`>f8`: the normalized X keeps the dtype *and* byte order (anndata writes `>f4`);
  dense big-endian integers become native `<f4`, as little-endian ones do;
* sparse big-endian `data`: anndata cannot read it (scipy.sparse refuses `>f4`): refused;
* sparse big-endian `indices`/`indptr`: CSC (and CSR with integer data) come out as CSR with
  native int32 index arrays; CSR with float data is refused by scanpy's numba kernels
  ("Unsupported array dtype: >i4"), or, when the two index dtypes differ, by scanpy itself.

Every case compares with scanpy's own output bit for bit, dtypes (byte order included) as
anndata reads them back, and the byte order h5py sees in OUTPUT's datasets.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from gen import counts, write_simple
from oracle import Options

KEY = "norm_factor"
OPTS = {"ln": Options(key_added=KEY), "nolog": Options(key_added=KEY, log1p=False),
        "t4": Options(target_sum=1e4)}


def _matrix(seed=0):
    return counts(np.random.default_rng(seed), 30, 20)


def _write(path, layout, data, indices="<i4", indptr="<i4", storage="chunked"):
    M = _matrix()
    if layout == "dense":
        dense = M.toarray() if sp.issparse(M) else np.asarray(M)
        write_simple(path, dense.astype(np.dtype(data).newbyteorder("=")),
                     rewrite={"storage": storage})
        with h5py.File(path, "r+") as f:
            kw = {"chunks": (7, 13)} if storage == "chunked" else {}
            del f["X"]
            d = f.create_dataset("X", data=dense.astype(data), **kw)
            d.attrs["encoding-type"] = "array"
            d.attrs["encoding-version"] = "0.2.0"
        return
    m = sp.csr_matrix(M) if layout == "csr" else sp.csc_matrix(M)
    write_simple(path, m.astype(np.dtype(data).newbyteorder("=")))
    with h5py.File(path, "r+") as f:
        g = f["X"]
        for name, arr, dt in (("data", m.data, data), ("indices", m.indices, indices),
                              ("indptr", m.indptr, indptr)):
            del g[name]
            kw = {"chunks": (min(97, max(1, arr.size)),), "maxshape": (None,)} if storage == "chunked" else {}
            g.create_dataset(name, data=arr.astype(dt), **kw)


def _file_dtypes(path):
    with h5py.File(path) as f:
        x = f["X"]
        if isinstance(x, h5py.Dataset):
            return x.dtype.str
        return tuple(x[k].dtype.str for k in ("data", "indices", "indptr"))


DENSE = [(d, s, o) for d in (">f4", ">f8", ">i4", ">i2", ">u2", ">i8", ">u4")
         for s in ("chunked", "contiguous") for o in ("ln", "nolog")]


@pytest.mark.parametrize("dtype,storage,opts", DENSE, ids=["-".join(c) for c in DENSE])
def test_dense_big_endian(runner, tmp_path, dtype, storage, opts):
    inp = tmp_path / "be.h5ad"
    _write(inp, "dense", dtype, storage=storage)
    out = runner.check(inp, OPTS[opts], expect="ok")
    want = dtype if dtype[1] == "f" else "<f4"
    assert _file_dtypes(out) == _file_dtypes(runner.tmp / "case.expected.h5ad") == want


SPARSE = [
    # layout, data, indices, indptr, what scanpy does
    ("csr", ">f4", "<i4", "<i4", "refuse"),
    ("csr", ">f8", "<i8", "<i8", "refuse"),
    ("csc", ">f4", "<i4", "<i4", "refuse"),
    ("csr", ">i4", "<i4", "<i4", "refuse"),
    ("csr", "<f4", ">i4", ">i4", "refuse"),
    ("csr", "<f4", ">i4", ">i8", "refuse"),
    ("csr", "<f4", "<i4", ">i4", "refuse"),
    ("csr", "<f8", ">i8", ">i8", "refuse"),
    ("csr", "<i4", ">i4", ">i4", "ok"),
    ("csr", "<i4", ">i2", ">i8", "ok"),
    ("csr", "<u2", ">u2", ">i4", "ok"),
    ("csc", "<f4", ">i4", ">i8", "ok"),
    ("csc", "<f4", ">i4", "<i4", "ok"),
    ("csc", "<f4", "<i4", ">i4", "ok"),
    ("csc", "<i4", ">i2", ">i8", "ok"),
    ("csc", "<f8", ">u2", ">i4", "ok"),
]


@pytest.mark.parametrize("layout,data,indices,indptr,expect", SPARSE,
                         ids=["-".join(c[:4]) for c in SPARSE])
@pytest.mark.parametrize("opts", ["ln", "t4"])
def test_sparse_big_endian(runner, tmp_path, layout, data, indices, indptr, expect, opts):
    inp = tmp_path / "be.h5ad"
    _write(inp, layout, data, indices, indptr)
    out = runner.check(inp, OPTS[opts], expect=expect, keywords=["X"])
    if out is not None:
        assert _file_dtypes(out) == _file_dtypes(runner.tmp / "case.expected.h5ad")
