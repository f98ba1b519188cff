"""pytest plugin: scanpy's own test suite with the atlasnorm patch active.

Loaded with ``-p atlasnorm_plugin`` (this directory on PYTHONPATH) by ``run.sh``.

* ``pytest_configure`` activates the patch (``on_fallback="count"``). That runs before
  collection, so test modules that bind ``from scanpy.preprocessing import normalize_total``
  at import time get the patched functions. (This module does not import scanpy itself:
  scanpy's own plugin ``testing.scanpy._pytest`` asserts that scanpy is not imported before it.)
* At the end the call counts, ``atlasnorm.stats()``, are written as JSON to
  ``$ATLASNORM_STATS_OUT`` and printed. Under pytest-xdist each worker sends its counts to the
  controller (``workeroutput``), which sums them and writes the one file.
"""

from __future__ import annotations

import json
import os

_worker_stats: list[dict] = []


def pytest_configure(config):
    import atlasnorm

    atlasnorm.activate(on_fallback="count")
    atlasnorm.reset_stats()


def _sum(all_stats: list[dict]) -> dict:
    total: dict = {}
    for s in all_stats:
        for name, d in s.items():
            t = total.setdefault(name, {"fast": 0, "fallback": 0, "reasons": {}})
            t["fast"] += d["fast"]
            t["fallback"] += d["fallback"]
            for reason, n in d["reasons"].items():
                t["reasons"][reason] = t["reasons"].get(reason, 0) + n
    return total


def pytest_testnodedown(node, error):
    """xdist controller: a worker finished; keep its counts."""
    s = getattr(node, "workeroutput", {}).get("atlasnorm_stats")
    if s is not None:
        _worker_stats.append(json.loads(s))


def pytest_sessionfinish(session, exitstatus):
    import atlasnorm

    config = session.config
    if hasattr(config, "workerinput"):  # an xdist worker: report to the controller
        config.workeroutput["atlasnorm_stats"] = json.dumps(atlasnorm.stats())
        return
    stats = _sum([*_worker_stats, atlasnorm.stats()])
    text = json.dumps(stats, indent=2, sort_keys=True)
    if out := os.environ.get("ATLASNORM_STATS_OUT"):
        with open(out, "w") as f:
            f.write(text + "\n")
    print(f"\natlasnorm stats:\n{text}", flush=True)


def pytest_report_header(config):
    import atlasnorm

    return f"atlasnorm {atlasnorm.__version__}: patch active={atlasnorm.is_active()}"
