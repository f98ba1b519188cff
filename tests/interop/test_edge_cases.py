"""Edge cases. The oracle decides: where scanpy succeeds the CLI must give the same file, bit for bit;
where scanpy raises the CLI must refuse cleanly. `expect` records what scanpy 1.12.4 does (so a
change of scanpy's behaviour shows up here, not as a mystery elsewhere)."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gen import counts, fractional, write_simple
from oracle import Options
from test_equivalence import MAX_ULP_F64_LOG1P

F32, F64 = np.float32, np.float64
KEY = "norm_factor"
LN = Options(key_added=KEY)  # median target, natural log1p, factor in obs
NOLOG = Options(key_added=KEY, log1p=False)
T4 = Options(target_sum=1e4, key_added=KEY)
LOG2 = Options(key_added=KEY, base=2.0)


@dataclasses.dataclass
class Case:
    id: str
    build: Callable  # (path) -> None
    opts: Options = LN
    expect: str = "ok"  # what scanpy does: ok | refuse
    keywords: list | None = None  # a refusal's message must mention one of these
    ulp: int = 0  # allowed ULP distance on X (float64 + log1p only)


def rng(seed=0):
    return np.random.default_rng(seed)


def base_counts(seed=0, n_obs=30, n_vars=20, **kw):
    return counts(rng(seed), n_obs, n_vars, **kw)


def x(M, **kw):
    """Builder: X = M, rich AnnData around it; kw go to gen.write_simple."""
    return lambda path: write_simple(path, M, **kw)


def exact(M):
    """Builder that writes X exactly as given (unsorted indices, duplicates, explicit zeros kept)."""
    return x(M, rewrite={"indptr": str(M.indptr.dtype), "indices": str(M.indices.dtype)})


def csr(rows, dtype=F32):
    return sp.csr_matrix(np.array(rows, dtype=dtype))


def raw_csr(data, indices, indptr, shape, fmt="csr", dtype=F32):
    cls = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
    return cls((np.array(data, dtype), np.array(indices, np.int32), np.array(indptr, np.int32)), shape=shape)


# a few fixed matrices ---------------------------------------------------------------------------
C = base_counts()
C_ZERO_ROWS = base_counts(1, zero_rows=(0, 4, 5, 29))
FRAC = fractional(rng(2), base_counts(2, n_obs=40, n_vars=300)).astype(F32)  # >128 columns: pairwise sum recursion
C3 = base_counts(3)
BIG = np.where(C3 > 0, C3 * 1_000_003 + (1 << 24) + 1, 0).astype(np.int64)  # beyond f32 integer precision
NAN_CSR = csr([[1, 2, 0], [0, np.nan, 3], [4, 0, 0]])
INF_CSR = csr([[1, 2, 0], [0, np.inf, 3], [4, 0, 0]])
NEG = csr([[1, 2, 0], [0, -5, 3], [4, 0, 0], [0, 0, 1]])
UNSORTED = raw_csr([2, 1, 3, 4, 5, 7], [3, 0, 2, 1, 3, 0], [0, 2, 5, 6], (3, 4))
DUPS = raw_csr([2, 1, 3, 4, 5, 7], [1, 1, 2, 2, 2, 0], [0, 2, 5, 6], (3, 4))
EXPLICIT_ZEROS = raw_csr([0, 1, 0, 4, 0, 7], [0, 1, 0, 2, 3, 3], [0, 2, 3, 5, 6], (4, 4))  # row 1: a stored 0 only
EVEN_MEDIAN = csr(fractional(rng(4), base_counts(4, n_obs=6, n_vars=8, zero_rows=(1, 3))))

obs_with_key = pd.DataFrame(
    {"a": np.arange(30), KEY: np.full(30, -1.0), "z": ["s"] * 30}
)
obs_with_key_cat = pd.DataFrame({KEY: pd.Categorical(["u", "v"] * 15), "b": np.arange(30.0)})

CASES = [
    # zero counts
    Case("zero-count-cells-csr", x(sp.csr_matrix(C_ZERO_ROWS.astype(F32)))),
    Case("zero-count-cells-dense", x(C_ZERO_ROWS.astype(F32))),
    Case("zero-count-cells-csc-int", x(sp.csc_matrix(C_ZERO_ROWS.astype(np.int32))), T4),
    Case("empty-nnz-csr-median", x(sp.csr_matrix((6, 5), dtype=F32))),
    Case("empty-nnz-csr-target", x(sp.csr_matrix((6, 5), dtype=F32)), T4),
    Case("empty-nnz-csc", x(sp.csc_matrix((6, 5), dtype=F32))),
    Case("all-zero-dense", x(np.zeros((6, 5), F32))),
    # degenerate shapes: scanpy's sparse log1p raises (sklearn check_array: 0 samples/features)
    Case("shape-0xn-csr-log1p", x(sp.csr_matrix((0, 5), dtype=F32), minimal=True), expect="refuse"),
    Case("shape-0xn-csr-nolog", x(sp.csr_matrix((0, 5), dtype=F32), minimal=True), NOLOG),
    Case("shape-nx0-csr-log1p", x(sp.csr_matrix((5, 0), dtype=F32), minimal=True), expect="refuse"),
    Case("shape-nx0-csr-nolog", x(sp.csr_matrix((5, 0), dtype=F32), minimal=True), NOLOG),
    Case("shape-0xn-dense-log1p", x(np.zeros((0, 5), F32), minimal=True)),
    Case("shape-nx0-dense-log1p", x(np.zeros((5, 0), F32), minimal=True)),
    # one row / one column
    Case("one-row-csr", x(sp.csr_matrix(C[:1].astype(F32)))),
    Case("one-row-dense", x(C[:1].astype(F32))),
    Case("one-row-csc-int", x(sp.csc_matrix(C[:1].astype(np.int64))), LOG2),
    Case("one-column-csr", x(sp.csr_matrix(C[:, :1].astype(F32)))),
    # non-integer values: summation order matters
    Case("fractional-csr-f32", x(sp.csr_matrix(FRAC))),
    Case("fractional-dense-f32-300cols", x(FRAC)),
    Case("fractional-dense-f32-ehe", x(FRAC), Options(exclude_highly_expressed=True, max_fraction=0.02)),
    Case("fractional-csc-f32", x(sp.csc_matrix(FRAC)), LOG2),
    Case("fractional-dense-f64", x(FRAC.astype(F64)), ulp=MAX_ULP_F64_LOG1P),
    Case("fractional-csr-f64-nolog", x(sp.csr_matrix(FRAC.astype(F64))), NOLOG),
    # beyond f32 integer precision (int -> f32 rounds to nearest even above 2^24)
    Case("big-int64-csr", x(sp.csr_matrix(BIG))),
    Case("big-int64-dense", x(BIG)),
    Case("big-int64-csc-target", x(sp.csc_matrix(BIG)), T4),
    Case("big-uint32-csr", x(sp.csr_matrix(BIG.astype(np.uint32)))),
    Case("big-f64-csr", x(sp.csr_matrix(BIG.astype(F64))), ulp=MAX_ULP_F64_LOG1P),
    Case("big-f64-csr-nolog", x(sp.csr_matrix(BIG.astype(F64))), NOLOG),
    # storage oddities kept as they are
    Case("unsorted-indices-csr", exact(UNSORTED)),
    Case("unsorted-indices-csc", exact(sp.csc_matrix((UNSORTED.data, UNSORTED.indices, UNSORTED.indptr), shape=(4, 3)))),
    Case("duplicates-csr", exact(DUPS)),
    Case("duplicates-csc", exact(sp.csc_matrix((DUPS.data, DUPS.indices, DUPS.indptr), shape=(4, 3)))),
    Case("explicit-zeros-csr", exact(EXPLICIT_ZEROS)),
    Case("explicit-zeros-csc", exact(sp.csc_matrix(
        (EXPLICIT_ZEROS.data, EXPLICIT_ZEROS.indices, EXPLICIT_ZEROS.indptr), shape=(4, 4)))),
    # index dtypes: scanpy's numba kernel needs indices and indptr of one dtype (float CSR only;
    # integer data and CSC are converted by scipy first, which makes both int32)
    Case("csr-f32-idx64-ptr64", lambda p: write_simple(p, sp.csr_matrix(C.astype(F32)),
                                                          rewrite={"indptr": "int64", "indices": "int64"})),
    Case("csr-f64-idx64-ptr64", lambda p: write_simple(p, sp.csr_matrix(C.astype(F64)),
                                                          rewrite={"indptr": "int64", "indices": "int64"}),
         ulp=MAX_ULP_F64_LOG1P),
    Case("csr-f32-idxu32-ptru32", lambda p: write_simple(p, sp.csr_matrix(C.astype(F32)),
                                                            rewrite={"indptr": "uint32", "indices": "uint32"})),
    Case("csr-f32-idx32-ptr64-scanpy-raises", lambda p: write_simple(
        p, sp.csr_matrix(C.astype(F32)), rewrite={"indptr": "int64", "indices": "int32"}),
        expect="refuse", keywords=["dtype", "indptr", "indices"]),
    Case("csr-f32-idxu8-ptr32-scanpy-raises", lambda p: write_simple(
        p, sp.csr_matrix(C.astype(F32)), rewrite={"indptr": "int32", "indices": "unsigned"}),
        expect="refuse", keywords=["dtype", "indptr", "indices"]),
    Case("csr-int32-idx32-ptr64", lambda p: write_simple(p, sp.csr_matrix(C.astype(np.int32)),
                                                            rewrite={"indptr": "int64", "indices": "int32"})),
    # uns / obs contents
    Case("existing-uns-log1p", x(sp.csr_matrix(C.astype(F32)), uns={"log1p": {"base": 2}})),
    Case("existing-uns-log1p-nolog", x(sp.csr_matrix(C.astype(F32)), uns={"log1p": {"base": 2}}), NOLOG),
    Case("existing-obs-key-replaced-in-place", x(sp.csr_matrix(C.astype(F32)), obs=obs_with_key)),
    Case("existing-obs-key-categorical", x(C.astype(F32), obs=obs_with_key_cat), LOG2),
    Case("obs-without-columns", x(sp.csr_matrix(C.astype(F32)), minimal=True)),
    Case("obs-without-columns-no-key", x(sp.csr_matrix(C.astype(F32)), minimal=True), Options()),
    # NaN / inf / negative
    Case("nan-csr-log1p", x(NAN_CSR), expect="refuse", keywords=["nan"]),
    Case("nan-csc-log1p", x(NAN_CSR.tocsc()), expect="refuse", keywords=["nan"]),
    Case("nan-csr-nolog", x(NAN_CSR), NOLOG),
    Case("nan-dense-log1p", x(NAN_CSR.toarray())),  # dense log1p has no NaN check
    Case("inf-csr-log1p", x(INF_CSR), expect="refuse", keywords=["nan", "inf"]),
    Case("inf-csr-nolog", x(INF_CSR), NOLOG),
    Case("inf-dense-log1p", x(INF_CSR.toarray())),
    Case("negative-csr-log1p", x(NEG)),
    Case("negative-dense-log1p", x(NEG.toarray())),
    # median / target / base details
    Case("even-number-of-positive-totals", x(EVEN_MEDIAN)),
    Case("target-not-representable", x(sp.csr_matrix(C.astype(F32))), Options(target_sum=0.1, key_added=KEY)),
    Case("target-not-representable-f64", x(sp.csr_matrix(C.astype(F64))),
         Options(target_sum=0.1, key_added=KEY, log1p=False)),
    Case("log1p-base-10", x(sp.csr_matrix(FRAC)), Options(base=10.0)),
    Case("log1p-base-0.5-dense", x(FRAC), Options(base=0.5)),
    # max_fraction 0 excludes every expressed gene: all totals 0 -> median NaN -> NaN data -> log1p raises
    Case("ehe-max-fraction-0", x(sp.csr_matrix(C.astype(F32))),
         Options(exclude_highly_expressed=True, max_fraction=0.0, key_added=KEY), expect="refuse", keywords=["nan"]),
    Case("ehe-max-fraction-0-nolog", x(sp.csr_matrix(C.astype(F32))),
         Options(exclude_highly_expressed=True, max_fraction=0.0, key_added=KEY, log1p=False)),
    Case("ehe-max-fraction-1", x(sp.csr_matrix(C.astype(F32))),
         Options(exclude_highly_expressed=True, max_fraction=1.0, key_added=KEY)),
    Case("ehe-default-max-fraction-target", x(sp.csr_matrix(C_ZERO_ROWS.astype(F32))),
         Options(exclude_highly_expressed=True, target_sum=1e4, key_added=KEY)),
    Case("max-fraction-without-ehe", x(sp.csr_matrix(C.astype(F32))), Options(max_fraction=0.5)),
    Case("larger-csr-f32", x(sp.csr_matrix(fractional(rng(5), counts(rng(5), 2000, 500)).astype(F32)))),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_edge_case(runner, tmp_path, case: Case):
    inp = tmp_path / f"{case.id}.h5ad"
    case.build(inp)
    runner.check(inp, case.opts, ulp_tol={"X": case.ulp} if case.ulp else None, expect=case.expect,
                 keywords=case.keywords)
