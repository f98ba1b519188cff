#!/usr/bin/env python3
"""Dask scaling: `atlasnorm.dask.normalize` on 1, 2, 4 workers vs the CLI vs scanpy's dask path.

    .tools/py312/bin/python bench/dask_bench.py [--profile pbmc68k] [--workers 1,2,4]
                                                [--workdir bench-out/dask] [--skip scanpy]

1. Input (not timed): `atlasnorm synth` of the profile, written by anndata as zarr v3 (sharded,
   zstd: anndata 0.13's default), the same as bench/zarr_bench.py makes.
2. `cli`: `atlasnorm normalize IN OUT --force --quiet` (all cores of this machine), a fresh
   process.
3. For each N: a `LocalCluster(n_workers=N, threads_per_worker=1, processes=True)` on
   127.0.0.1, started and warmed (every worker imports atlasnorm, anndata and scanpy) before
   the clock starts, then
     `dask`      atlasnorm.dask.normalize(IN, OUT, client=client, force=True), timed; its task
                 stream gives the tasks by kind and the busy time per worker; the client's peak
                 RSS above its baseline is sampled every 10 ms;
     `scanpy`    scanpy's own dask path on the same cluster: X = read_elem_lazy(X) (row
                 chunks of about the values of one atlasnorm part), obs/var read eagerly,
                 normalize_total -> log1p -> write_elem(X) + obs/var/uns into a new zarr v3
                 group (anndata appends sparse dask chunks from the client).
4. Checks the dask output against the CLI's bit for bit (bench/zarr_bench.py's compare).

Output: a Markdown table on stdout, every number in --json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from zarr_bench import compare, describe, du, human, log, make_inputs, rm  # noqa: E402


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Peak RSS of this process above its level at entry, sampled every 10 ms."""

    def __enter__(self):
        self.base = rss()
        self.peak = self.base
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(0.01):
                self.peak = max(self.peak, rss())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())
        self.above = self.peak - self.base


def warm_workers(client) -> None:
    def imports():
        import warnings

        warnings.simplefilter("ignore")
        import anndata  # noqa: F401
        import scanpy  # noqa: F401

        import atlasnorm._core  # noqa: F401

        return os.getpid()

    client.run(imports)


def kinds(stream: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in stream:
        key = t["key"] if isinstance(t["key"], str) else str(t["key"])
        kind = key.split("-")[1] if key.startswith("atlasnorm-") else "other"
        out[kind] = out.get(kind, 0) + 1
    return out


def busy(stream: list[dict]) -> dict[str, float]:
    per: dict[str, float] = {}
    for t in stream:
        for s in t.get("startstops", ()):
            if s["action"] == "compute":
                per[t["worker"]] = per.get(t["worker"], 0.0) + s["stop"] - s["start"]
    return per


def run_dask(client, inp: Path, out: Path) -> dict:
    import atlasnorm.dask
    from distributed import get_task_stream

    rm(out)
    subprocess.run(["sync"], check=True)
    with get_task_stream(client) as ts, PeakRss() as mem:
        t0 = time.perf_counter()
        atlasnorm.dask.normalize(str(inp), str(out), client=client, force=True)
        wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "tasks": kinds(ts.data),
        "busy_s": busy(ts.data),
        "client_rss_above_bytes": mem.above,
    }


def run_scanpy(client, inp: Path, out: Path, rows_per_chunk: int) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    import anndata as ad
    import scanpy as sc
    import zarr
    from distributed import get_task_stream

    rm(out)
    subprocess.run(["sync"], check=True)
    with get_task_stream(client) as ts, PeakRss() as mem:
        t0 = time.perf_counter()
        g = zarr.open_group(inp, mode="r")
        n_vars = int(g["X"].attrs["shape"][1])
        x = ad.experimental.read_elem_lazy(g["X"], chunks=(rows_per_chunk, n_vars))
        adata = ad.AnnData(X=x, obs=ad.io.read_elem(g["obs"]), var=ad.io.read_elem(g["var"]))
        sc.pp.normalize_total(adata)
        sc.pp.log1p(adata)
        o = zarr.open_group(out, mode="w", zarr_format=3)
        ad.io.write_elem(o, "X", adata.X)
        ad.io.write_elem(o, "obs", adata.obs)
        ad.io.write_elem(o, "var", adata.var)
        ad.io.write_elem(o, "uns", dict(adata.uns))
        wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "tasks": len(ts.data),
        "busy_s": busy(ts.data),
        "client_rss_above_bytes": mem.above,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="pbmc68k")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--workdir", default="bench-out/dask")
    ap.add_argument("--skip", default="", help="comma list of: cli,dask,scanpy")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    binary = os.environ.get("ATLASNORM_BIN", str(REPO / "target/release/atlasnorm"))

    inp = make_inputs(binary, workdir, args.profile, ["v3"])["v3"]
    import zarr

    g = zarr.open_group(inp, mode="r")
    n_obs, n_vars = (int(v) for v in g["X"].attrs["shape"])
    nnz = int(g["X/data"].shape[0])
    import atlasnorm.dask  # noqa: F401  (the default part size below)

    part_values = 8 << 20
    rows_per_chunk = max(1, round(n_obs * part_values / max(nnz, 1)))
    res: dict = {
        "profile": args.profile,
        "input": describe(inp),
        "input_bytes": du(inp),
        "n_obs": n_obs,
        "n_vars": n_vars,
        "nnz": nnz,
        "scanpy_rows_per_chunk": rows_per_chunk,
        "loadavg_start": os.getloadavg()[0],
        "runs": [],
    }
    log(f"{args.profile}: {n_obs:,} x {n_vars:,}, {nnz:,} values; {res['input']}")

    cli_out = workdir / f"{args.profile}.cli.zarr"
    if "cli" not in skip:
        rm(cli_out)
        subprocess.run(["sync"], check=True)
        t0 = time.perf_counter()
        subprocess.run([binary, "normalize", str(inp), str(cli_out), "--force", "--quiet"],
                       check=True)
        res["cli_s"] = time.perf_counter() - t0
        log(f"cli {res['cli_s']:.2f} s")

    from distributed import Client, LocalCluster

    for n in [int(w) for w in args.workers.split(",")]:
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            warm_workers(client)
            run = {"workers": n, "loadavg": os.getloadavg()[0]}
            if "dask" not in skip:
                out = workdir / f"{args.profile}.dask{n}.zarr"
                run["dask"] = run_dask(client, inp, out)
                log(f"dask x{n}: {run['dask']['wall_s']:.2f} s, tasks {run['dask']['tasks']}")
                if cli_out.exists():
                    ok, why = compare(out, cli_out)
                    run["dask_equals_cli"] = ok
                    log(f"  equals the CLI's output: {ok} ({why})")
                rm(out)
            if "scanpy" not in skip:
                out = workdir / f"{args.profile}.scanpy{n}.zarr"
                run["scanpy"] = run_scanpy(client, inp, out, rows_per_chunk)
                log(f"scanpy dask x{n}: {run['scanpy']['wall_s']:.2f} s")
                rm(out)
            res["runs"].append(run)
    res["loadavg_end"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    print(table(res))


def table(res: dict) -> str:
    lines = [
        f"{res['profile']}: {res['n_obs']:,} cells x {res['n_vars']:,} genes, {res['nnz']:,} "
        f"values; input {res['input']}, {human(res['input_bytes'])}; CLI (all cores): "
        + (f"{res['cli_s']:.2f} s" if "cli_s" in res else "–")
        + f"; load {res['loadavg_start']:.1f} → {res['loadavg_end']:.1f}",
        "",
        "| workers | atlasnorm.dask | tasks (copy / totals / write) | worker busy (sum) | "
        "client RSS above base | = CLI bits | scanpy dask path | scanpy tasks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["runs"]:
        d, s = r.get("dask"), r.get("scanpy")
        t = d["tasks"] if d else {}
        lines.append(
            f"| {r['workers']} | "
            + (f"{d['wall_s']:.2f} s" if d else "–")
            + f" | {t.get('copy', 0)} / {t.get('totals', 0)} / {t.get('write', 0)} | "
            + (f"{sum(d['busy_s'].values()):.2f} s" if d else "–")
            + " | "
            + (human(d["client_rss_above_bytes"]) if d else "–")
            + f" | {r.get('dask_equals_cli', '–')} | "
            + (f"{s['wall_s']:.2f} s" if s else "–")
            + f" | {s['tasks'] if s else '–'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
