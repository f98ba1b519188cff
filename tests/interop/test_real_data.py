"""The real matrices in ../shared/data/real/ (or $ATLASNORM_REAL_DATA), when present: CSR float32
gzip files of a few thousand cells each. Absent -> skipped, and the run's summary says so."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import REPO
from oracle import Options

REAL_DIR = Path(os.environ.get("ATLASNORM_REAL_DATA", REPO.parent / "shared" / "data" / "real"))
REAL_FILES = sorted(REAL_DIR.glob("*.h5ad")) if REAL_DIR.is_dir() else []

OPTIONS = [
    Options(key_added="norm_factor"),  # the default pipeline: median target, natural log1p
    Options(target_sum=1e4, exclude_highly_expressed=True, max_fraction=0.05, base=2.0),
]

PARAMS = [(f, o) for f in REAL_FILES for o in OPTIONS] or [pytest.param(None, None, id="real-data-absent")]


@pytest.mark.parametrize(
    "path,opts", PARAMS, ids=None if not REAL_FILES else [f"{f.stem}-{o.short()}" for f, o in PARAMS]
)
def test_real_matrix(runner, path, opts):
    if path is None:
        pytest.skip(f"REAL DATA ABSENT: no *.h5ad in {REAL_DIR} (set ATLASNORM_REAL_DATA); real-matrix checks not run")
    runner.check(path, opts, expect="ok")
