"""The suite must be able to fail: the comparison notices every kind of drift, and a CLI that is
one ULP off (reference_cli.py with REFERENCE_CLI_MUTATE=ulp) is caught."""

from __future__ import annotations

import sys
import warnings

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from compare import diff_anndata, diff_files, ulp_distance
from conftest import HERE, run_cli
from gen import counts, write_simple
from oracle import Options, expected_outcome


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    d = tmp_path_factory.mktemp("meta")
    inp = d / "in.h5ad"
    write_simple(inp, sp.csr_matrix(counts(np.random.default_rng(1), 30, 20).astype(np.float32)))
    out = expected_outcome(inp, Options(key_added="f"), d / "expected.h5ad")
    assert not isinstance(out, BaseException)
    return inp, out


def _read(p):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return anndata.read_h5ad(p)


def _bump(a: np.ndarray, i=0):
    a.view({4: np.uint32, 8: np.uint64}[a.dtype.itemsize])[i] += 1


MUTATIONS = {
    "one-ulp-in-X": lambda a: _bump(a.X.data),
    "minus-zero": lambda a: a.X.data.__setitem__(0, -0.0) if a.X.data[0] == 0 else a.X.data.__setitem__(0, -a.X.data[0]),
    "nan-payload": lambda a: (a.X.data.__setitem__(0, np.nan), _bump(a.X.data)),
    "X-dtype": lambda a: setattr(a, "X", a.X.astype(np.float64)),
    "X-csc": lambda a: setattr(a, "X", a.X.tocsc()),
    "X-dense": lambda a: setattr(a, "X", a.X.toarray()),
    "indices-dtype": lambda a: setattr(a.X, "indices", a.X.indices.astype(np.int64)),
    "obs-factor-ulp": lambda a: a.obs.__setitem__("f", np.nextafter(a.obs["f"].to_numpy(), np.float32(9))),
    "obs-column-order": lambda a: setattr(a, "obs", a.obs[list(a.obs.columns[::-1])]),
    "obs-factor-dtype": lambda a: a.obs.__setitem__("f", a.obs["f"].astype(np.float64)),
    "uns-log1p-base": lambda a: a.uns.__setitem__("log1p", {"base": 2.0}),
    "uns-missing": lambda a: a.uns.pop("log1p"),
    "uns-nested": lambda a: a.uns["neighbors"]["params"].__setitem__("n_neighbors", 16),
    "layer-changed": lambda a: _bump(a.layers["spliced"].data),
    "obsm-changed": lambda a: _bump(a.obsm["X_pca"].reshape(-1)),
    "varp-changed": lambda a: _bump(a.varp["corr"].reshape(-1)),
    "obsp-removed": lambda a: a.obsp.pop("distances"),
    "raw-changed": lambda a: _bump(a.raw.X.data),
    "var-category": lambda a: a.var.__setitem__("symbol", pd.Categorical(a.var["symbol"])),
    "obs-index": lambda a: setattr(a, "obs_names", [f"x{i}" for i in range(a.n_obs)]),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_compare_notices(expected, name):
    _, path = expected
    e, a = _read(path), _read(path)
    assert diff_anndata(e, a) == [], "a file must equal itself"
    MUTATIONS[name](a)
    diffs = diff_anndata(e, a)
    assert diffs, f"mutation {name} went unnoticed"


def test_ulp_tolerance_is_tight(expected):
    _, path = expected
    e, a = _read(path), _read(path)
    e.X = e.X.astype(np.float64)
    a.X = a.X.astype(np.float64)
    _bump(a.X.data)
    assert diff_anndata(e, a, {"X": 1}) == []
    _bump(a.X.data)
    assert diff_anndata(e, a, {"X": 1}), "2 ULP must exceed a 1-ULP tolerance"
    assert diff_anndata(e, a), "without tolerance every ULP counts"


def test_ulp_distance():
    a = np.array([1.0, -0.0, 0.0, np.nan, 1e-300, -1.0], dtype=np.float64)
    b = np.array([np.nextafter(1.0, 2), 0.0, np.float64(5e-324), np.nan, 1e-300, np.nextafter(-1.0, 0)])
    assert ulp_distance(a, b).tolist() == [1, np.inf, np.inf, 0, 0, 1]
    f = np.array([3.0, 1e30], np.float32)
    assert ulp_distance(f, np.nextafter(f, np.float32(0))).tolist() == [1, 1]


def test_one_ulp_off_cli_is_caught(expected, tmp_path):
    """reference_cli.py with REFERENCE_CLI_MUTATE=ulp: what the suite's equality check says."""
    inp, exp = expected
    out = tmp_path / "mutated.h5ad"
    cli = [sys.executable, str(HERE / "reference_cli.py")]
    proc = run_cli(cli, ["normalize", inp, out, *Options(key_added="f").cli_args()],
                   env={"REFERENCE_CLI_MUTATE": "ulp"})
    assert proc.returncode == 0, proc.stderr
    diffs = diff_files(exp, out)
    assert len(diffs) == 1 and "X.data: 1 of" in diffs[0], diffs
