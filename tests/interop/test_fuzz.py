"""Bounded mutation fuzzing (tests/fuzz/, issue 9 point 5): mutated .h5ad and .zarr inputs, each
one to end in an output anndata reads and scanpy agrees with, or in one clear error.

* `test_fuzz_campaign`: the campaign itself, in every run: ATLASNORM_FUZZ_CASES (default
  10,000) cases over both readers (half the seed files are .h5ad, half .zarr), judged by
  fuzz.py on two persistent workers that import anndata/scanpy once. The gate runs a pinned
  set of run seeds (GATE_SEEDS, cases split evenly between them), so that the suite's verdict
  depends on the code, not on the day: every one of those cases passed when the set was
  pinned, and any failure is a regression. Exploring new cases is a separate act:
  ATLASNORM_FUZZ_SEEDS=S1,S2 (or `python tests/fuzz/fuzz.py --seed S --cases N`); what it
  finds is fixed, kept under tests/data/fuzz-regressions/, and the pinned set moves on to the
  seeds explored since (the date a seed names is the day it was first run). Any failure
  replays from the two numbers it prints (`python tests/fuzz/fuzz.py --seed S --case N`).
* `test_fuzz_regression`: every input the fuzzer once caught (tests/data/fuzz-regressions/NAME:
  the minimal mutated input and its case.json) runs again, judged the same way.
* `test_fuzz_catches_*`: the judge is not a test that cannot fail: stand-in CLIs that break the
  contract (exit 0 with the input copied unnormalized; a panic; an error naming the wrong file)
  must be caught on a few cases.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FUZZ = REPO / "tests" / "fuzz"
REGRESSIONS = REPO / "tests" / "data" / "fuzz-regressions"
sys.path.insert(0, str(FUZZ))

import fuzz  # noqa: E402

CASES = int(os.environ.get("ATLASNORM_FUZZ_CASES", "10000"))


def _regressions():
    if not REGRESSIONS.is_dir():
        return []
    return sorted(p for p in REGRESSIONS.iterdir() if (p / "case.json").exists())


# Run seeds whose first 2,000 cases each all kept the contract at the last pinning (2026-12-03,
# explored that day, 9 failures found and fixed, then all 10,000 cases passed at the
# fixed binary, ~25 min on 2 cores; the set before was 20261203-07).
GATE_SEEDS = [20261210, 20261211, 20261212, 20261213, 20261214]


def _campaign_seeds() -> list[int]:
    env = os.environ.get("ATLASNORM_FUZZ_SEEDS")
    if env:
        return [int(s) for s in env.split(",") if s.strip()]
    return list(GATE_SEEDS)


def test_fuzz_campaign(cli, tmp_path):
    seeds = _campaign_seeds()
    lines = []

    def log(msg):
        lines.append(msg)
        print(msg, flush=True)

    log(f"fuzz campaign: {CASES} cases, run seed(s) {seeds} (ATLASNORM_FUZZ_SEEDS to explore others)")
    s = fuzz.campaign(cli, n_cases=CASES, run_seeds=seeds, jobs=2, failures=tmp_path / "failures", log=log)
    fails = s["failures"]
    report = "\n".join(
        f"[{r.get('kind')}] seed={r['seed']} case={r['case']} [{r.get('seed_name')}] {str(r['failure'])[:400]}\n"
        f"     mutation: {r.get('mutation')}\n     cmd: {r.get('cmd')}\n"
        f"     replay: python tests/fuzz/fuzz.py --seed {r['seed']} --case {r['case']}"
        for r in fails[:25])
    assert not fails, (f"{len(fails)} of {s['cases']} fuzz cases broke the contract "
                       f"({s['failure_kinds']}); kept in {s['failures_dir']}\n{report}")
    assert not s["seeds_modified"], f"the fuzzer modified its seed files: {s['seeds_modified']}"
    assert s["cases"] == CASES, f"{s['cases']} cases judged, {CASES} asked for"
    # both readers, and both kinds of ending, really exercised
    assert s["h5ad_cases"] >= CASES // 3 and s["zarr_cases"] >= CASES // 3, s
    outcomes = s["outcomes"]
    assert outcomes.get("refused", 0) >= CASES // 10, outcomes
    assert outcomes.get("ok-equal", 0) >= CASES // 10, outcomes
    print(json.dumps({k: v for k, v in s.items() if k != "failures"}, indent=1))


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


# ---------------------------------------------------------------------------------------------
# the judge catches broken CLIs

BROKEN = {
    # exit 0, OUTPUT = INPUT copied (nothing normalized): differs from scanpy
    "copies": "import shutil, sys\n"
              "a = sys.argv[1:]\n"
              "if a[0] != 'normalize': sys.exit(0)\n"
              "src, dst = a[1], a[2]\n"
              "(shutil.copytree if src.endswith('.zarr') else shutil.copyfile)(src, dst)\n",
    # a Rust panic on every run
    "panics": "import sys\n"
              "sys.stderr.write(\"thread 'main' panicked at src/main.rs:1:1:\\nboom\\n\")\n"
              "sys.exit(101)\n",
    # a refusal naming the OUTPUT instead of the INPUT
    "names-output": "import sys\n"
                    "a = sys.argv[1:]\n"
                    "if a[0] != 'normalize': sys.exit(0)\n"
                    "sys.stderr.write(f'error: {a[2]}: X: broken\\n')\n"
                    "sys.exit(1)\n",
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_fuzz_catches_a_broken_cli(tmp_path, kind):
    script = tmp_path / f"broken-{kind}"
    script.write_text(f"#!{sys.executable}\n" + BROKEN[kind])
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    s = fuzz.campaign([str(script)], n_cases=12, run_seeds=[1], jobs=1, work=tmp_path,
                      failures=tmp_path / "failures", log=lambda m: None)
    fails = s["failures"]
    if kind == "copies":
        # some of the 12 cases leave the matrix intact: those must be caught as differing
        assert any(r["kind"] == "differs" for r in fails), s["outcomes"]
    else:
        # every case is a bad refusal
        assert len(fails) == 12, s["failure_kinds"]
