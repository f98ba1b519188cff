"""Bounded mutation fuzzing (tests/fuzz/, issue 9 point 5): mutated .h5ad and .zarr inputs, each
one to end in an output anndata reads and scanpy agrees with, or in one clear error.

* `test_fuzz_regression`: every input the fuzzer once caught (tests/data/fuzz-regressions/NAME:
  the minimal mutated input and its case.json) runs again, judged the same way.
* The campaign itself (`python tests/fuzz/fuzz.py --cases 10000`, see tests/fuzz/fuzz.py) is not
  part of this suite yet: on the current build about 8% of its cases still break the contract
  (chiefly: an element outside the normalized matrix that anndata cannot read is copied into an
  exit-0 output), and 10,000 cases take 12-14 minutes here. It joins the suite, whole, once those
  are fixed (issue 9 stays open until then).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FUZZ = REPO / "tests" / "fuzz"
REGRESSIONS = REPO / "tests" / "data" / "fuzz-regressions"
sys.path.insert(0, str(FUZZ))

import fuzz  # noqa: E402


def _regressions():
    if not REGRESSIONS.is_dir():
        return []
    return sorted(p for p in REGRESSIONS.iterdir() if (p / "case.json").exists())


@pytest.mark.parametrize("case_dir", _regressions(), ids=lambda p: p.name)
def test_fuzz_regression(cli, tmp_path, case_dir):
    fuzz._init_worker({})
    rec = fuzz.run_regression(cli, case_dir, tmp_path)
    assert rec["failure"] is None, (
        f"{case_dir.name}: {rec['failure']}\n  mutation: {rec['mutation']}\n  cmd: {rec.get('cmd')}\n"
        f"  stderr: {rec.get('stderr', '')[-800:]}\n  bug: {json.loads((case_dir / 'case.json').read_text()).get('bug')}")


def test_fuzz_regressions_present():
    """The kept inputs are there (a glob that finds nothing would make the test above vanish)."""
    assert _regressions(), f"no regression cases under {REGRESSIONS}"
