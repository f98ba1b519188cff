"""``atlasnorm.normalize`` (the CLI's job in-process) and the ``atlasnorm`` console script,
against scanpy on the same file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp

import atlasnorm


def write_input(path: Path) -> ad.AnnData:
    rng = np.random.default_rng(0)
    x = rng.poisson(0.6, (120, 70)).astype(np.float32)
    x[4] = 0
    a = ad.AnnData(sp.csr_matrix(x))
    a.obs_names = [f"c{i}" for i in range(120)]
    a.var_names = [f"g{j}" for j in range(70)]
    a.write_h5ad(path)
    return a


def expected(a: ad.AnnData, **kwargs) -> ad.AnnData:
    with atlasnorm.disabled():
        b = a.copy()
        sc.pp.normalize_total(b, **kwargs)
        sc.pp.log1p(b)
    return b


def same_bits(x, y) -> bool:
    x = x.toarray() if sp.issparse(x) else x
    y = y.toarray() if sp.issparse(y) else y
    return x.dtype == y.dtype and np.array_equal(x.view(np.uint32), y.view(np.uint32))


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_normalize_writes_what_scanpy_computes(tmp_path, suffix):
    a = write_input(tmp_path / "in.h5ad")
    out = tmp_path / f"out{suffix}"
    report = atlasnorm.normalize(tmp_path / "in.h5ad", out, target_sum=1e4, key_added="f")
    assert isinstance(report, str) and report
    got = ad.read_zarr(out) if suffix == ".zarr" else ad.read_h5ad(out)
    want = expected(a, target_sum=1e4, key_added="f")
    assert same_bits(got.X, want.X)
    assert np.array_equal(got.obs["f"].to_numpy(), want.obs["f"].to_numpy())
    assert got.uns["log1p"] == {"base": None}


def test_normalize_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.h5ad"
    with pytest.raises(ValueError, match="nope.h5ad"):
        atlasnorm.normalize(missing, tmp_path / "out.h5ad")
    write_input(tmp_path / "in.h5ad")
    with pytest.raises(ValueError, match="max.fraction"):
        atlasnorm.normalize(tmp_path / "in.h5ad", tmp_path / "out.h5ad", max_fraction=2.0)
    with pytest.raises(ValueError, match="unexpected argument|unknown|--no-such"):
        atlasnorm.normalize(tmp_path / "in.h5ad", tmp_path / "out.h5ad", no_such=1)
    assert not (tmp_path / "out.h5ad").exists()


def test_console_script_is_the_cli(tmp_path):
    a = write_input(tmp_path / "in.h5ad")
    exe = shutil.which("atlasnorm", path=str(Path(sys.executable).parent))
    assert exe is not None, "pip install ./python puts an atlasnorm script beside python"
    r = subprocess.run(
        [exe, "normalize", str(tmp_path / "in.h5ad"), str(tmp_path / "out.h5ad"), "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    assert r.returncode == 0, r.stderr
    assert same_bits(ad.read_h5ad(tmp_path / "out.h5ad").X, expected(a).X)
    bad = subprocess.run([exe, "normalize", str(tmp_path / "nope.h5ad"), str(tmp_path / "o.h5ad")], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "nope.h5ad" in bad.stderr
    assert subprocess.run([exe, "--version"], capture_output=True).returncode == 0
    assert subprocess.run([exe, "bogus"], capture_output=True).returncode == 2
