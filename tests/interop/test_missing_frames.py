"""anndata-rs (SnapATAC2, anndataoom) leaves out `/var` when the frame has no columns
(issue 9, finding 3c). anndata 0.13.4 reads such a file or store with var names "0", "1", ...;
it cannot read one without `/obs` (KeyError in read_h5ad / read_zarr): refused, as scanpy must.
"""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import zarr

from conftest import assert_refused, run_cli, sha256
from gen import counts, write_simple
from oracle import Options
from test_zarr import run_and_compare

KEY = "norm_factor"


def _h5ad_without(path, member):
    write_simple(path, counts(np.random.default_rng(0), 30, 20), minimal=True)
    with h5py.File(path, "r+") as f:
        del f[member]
    return path


def _zarr_without(tmp_path, member, fmt):
    import anndata as ad
    src = tmp_path / "src.h5ad"
    write_simple(src, counts(np.random.default_rng(0), 30, 20), minimal=True)
    p = tmp_path / f"in{fmt}.zarr"
    with ad.settings.override(zarr_write_format=fmt):
        ad.read_h5ad(src).write_zarr(p)
    shutil.rmtree(p / member)
    zarr.consolidate_metadata(str(p), zarr_format=fmt)
    return p


OPTS = [Options(key_added=KEY), Options(exclude_highly_expressed=True, max_fraction=0.2, target_sum=1e4)]


@pytest.mark.parametrize("opts", OPTS, ids=["key", "ehe"])
def test_h5ad_without_var(runner, tmp_path, opts):
    inp = _h5ad_without(tmp_path / "novar.h5ad", "var")
    runner.check(inp, opts, expect="ok")


@pytest.mark.parametrize("out", ["out.h5ad", "out.zarr"])
@pytest.mark.parametrize("fmt", [2, 3])
def test_zarr_without_var(cli, tmp_path, fmt, out):
    inp = _zarr_without(tmp_path, "var", fmt)
    assert run_and_compare(cli, tmp_path, inp, Options(key_added=KEY), out, [], fmt) is not None


def test_h5ad_without_var_to_zarr(cli, tmp_path):
    inp = _h5ad_without(tmp_path / "novar.h5ad", "var")
    assert run_and_compare(cli, tmp_path, inp, Options(key_added=KEY), "out.zarr", [], None) is not None


def test_h5ad_without_obs_is_refused(runner, tmp_path):
    inp = _h5ad_without(tmp_path / "noobs.h5ad", "obs")
    runner.check(inp, Options(), expect="refuse", keywords=["obs"])


@pytest.mark.parametrize("fmt", [2, 3])
def test_zarr_without_obs_is_refused(cli, tmp_path, fmt):
    inp = _zarr_without(tmp_path, "obs", fmt)
    out = tmp_path / "out.zarr"
    proc = run_cli(cli, ["normalize", inp, out])
    assert_refused(proc, inp=inp, out=out, inp_hash=sha256(inp), names=[inp.name], keywords=["obs"])
