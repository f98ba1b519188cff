"""Bounded mutation fuzzing (tests/fuzz/): 10,000 mutated .h5ad and .zarr inputs per run, each one
ending in an output anndata reads and scanpy agrees with, or in one clear error (issue 9, point 5).

* `test_fuzz_campaign`: a fixed run seed (0: the same cases every run) plus one that rotates with
  the UTC date, half the cases each; every failure prints its run seed, case number, mutation and
  a `python tests/fuzz/fuzz.py --seed S --case N` line that rebuilds and replays exactly that case,
  and its mutated input is kept under the printed directory. ATLASNORM_FUZZ_CASES (default
  10000) and ATLASNORM_FUZZ_SEEDS ("0,20261201") override the size and the seeds.
* `test_fuzz_regression`: every input the fuzzer once caught (tests/data/fuzz-regressions/NAME:
  the minimal mutated input and its case.json) runs again, judged the same way.

The campaign uses its own two worker processes; run it alone or beside the suite
(`pytest tests/interop/test_fuzz.py`), it takes about 5 minutes on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FUZZ = REPO / "tests" / "fuzz"
REGRESSIONS = REPO / "tests" / "data" / "fuzz-regressions"
sys.path.insert(0, str(FUZZ))

import fuzz  # noqa: E402

N_CASES = int(os.environ.get("ATLASNORM_FUZZ_CASES", "10000"))


def test_fuzz_campaign(cli, tmp_path):
    lines = []

    def log(msg):
        lines.append(msg)
        print(msg, flush=True)

    summary = fuzz.campaign(cli, n_cases=N_CASES, jobs=2, failures=tmp_path / "failures", log=log)
    head = (f"{summary['cases']} cases (h5ad {summary['h5ad_cases']}, zarr {summary['zarr_cases']}) in "
            f"{summary['seconds']:.0f} s, outcomes {summary['outcomes']}, failures {summary['failure_kinds']}")
    assert summary["cases"] == N_CASES, head
    assert not summary["seeds_modified"], f"seed inputs modified (a CLI run wrote into its INPUT): {summary}"
    fails = summary["failures"]
    if fails:
        shown = [line for line in lines if line.startswith("FAIL")][:25]
        pytest.fail(f"{len(fails)} fuzz case(s) broke the contract; {head}\n" + "\n".join(shown)
                    + f"\n(inputs kept under {summary['failures_dir']})", pytrace=False)
    # both readers are fuzzed, and both outcomes happen (a fuzzer that only ever sees refusals,
    # or only ever successes, is not testing what it claims)
    assert min(summary["h5ad_cases"], summary["zarr_cases"]) >= N_CASES // 3, head
    ok = sum(n for k, n in summary["outcomes"].items() if k.startswith("ok"))
    assert ok >= N_CASES // 10 and summary["outcomes"].get("refused", 0) >= N_CASES // 10, head


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
