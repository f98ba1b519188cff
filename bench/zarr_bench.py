#!/usr/bin/env python3
"""zarr benchmark: atlasnorm vs scanpy vs a same-codec recode of X/data vs `cp -r`, side by side.

    .tools/py312/bin/python bench/zarr_bench.py [--profile pbmc68k] [--repeat 3] [--forms v3,v2]
                                                [--workdir bench-out/zarr] [--memory SIZE]

1. Makes the input: `atlasnorm synth W/P.h5ad --profile P --seed 0`, then converts it with anndata
   (conversion not timed): `ad.read_h5ad(..).write_zarr(W/P.v3.zarr)` (anndata 0.13's default:
   zarr v3, sharded, zstd) and, with `ad.settings.zarr_write_format = 2`, `W/P.v2.zarr` (zarr v2,
   blosc lz4 clevel 5 with byte shuffle: zarr-python's v2 default under anndata).
2. For each store, interleaved round by round (so a change of machine load hits all alike), each a
   fresh process, peak RSS from GNU time (%M, the child alone):
     cp        cp -r IN DST
     recode    target/release/examples/zarr_recode IN DST X/data   (decode + re-encode X/data
               alone with the same codec, chunks/shards in parallel on rayon: the floor)
     recode_out the same on a normalized store (scanpy's output, made once untimed): the
               normalized values compress worse and slower than counts, so this is the
               floor's cost on the output side (decoding counts is the input side)
     atlasnorm atlasnorm normalize IN OUT --force --quiet           (default options)
     scanpy    this script in --scanpy-worker mode: read_zarr -> normalize_total -> log1p ->
               write_zarr with the input's zarr format (imports and numba's compilation included)
   Before every timed run the input is read once untimed (page cache warm for all), the
   destination is deleted and `sync` called (untimed).
3. Checks atlasnorm's output against scanpy's bit for bit (both read with anndata: X data as raw
   bits, indices, indptr, dtype, shape, format; uns/log1p).

Output: a Markdown table on stdout (and --markdown), every run's numbers in --json.
Environment: ATLASNORM_BIN (default target/release/atlasnorm), RECODE_BIN (default
target/release/examples/zarr_recode; both built with cargo when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONTENDERS = ("cp", "recode", "recode_out", "atlasnorm", "scanpy")


def log(msg: str) -> None:
    print(f"[zarr_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> float:
    return os.getloadavg()[0]


def human(n: float | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def rm(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def warm(path: Path) -> None:
    for f in path.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                while fh.read(1 << 22):
                    pass


def timed(argv: list[str], env: dict | None = None) -> dict:
    """Runs argv as a fresh process: wall seconds, user/sys CPU seconds, peak RSS.

    The child runs under GNU time (`%M`): wait4 in this process would report at least the
    RSS this driver had when it forked (Linux carries it over into the child's maxrss).
    """
    rusage = Path(os.environ.get("TMPDIR", "/tmp")) / f"zarr_bench.{os.getpid()}.time"
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-o", str(rusage), "-f", "%M %U %S", *argv],
                       capture_output=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{argv} failed ({p.returncode}): {p.stderr.decode()[-2000:]}")
    rss_kb, user, sys_ = rusage.read_text().split()[-3:]
    rusage.unlink()
    return {"wall": wall, "user": float(user), "sys": float(sys_), "rss": int(rss_kb) * 1024,
            "stdout": p.stdout.decode()[-1000:]}


# ------------------------------------------------------------------------------ scanpy side

def scanpy_worker(inp: str, out: str, fmt: int, timings: str | None) -> None:
    t0 = time.perf_counter()
    import warnings

    warnings.simplefilter("ignore")
    import anndata as ad
    import scanpy as sc

    t = {"import": time.perf_counter() - t0}
    s = time.perf_counter()
    adata = ad.read_zarr(inp)
    t["read_zarr"] = time.perf_counter() - s
    s = time.perf_counter()
    sc.pp.normalize_total(adata)
    t["normalize_total"] = time.perf_counter() - s  # includes numba's one-off compilation
    s = time.perf_counter()
    sc.pp.log1p(adata)
    t["log1p"] = time.perf_counter() - s
    s = time.perf_counter()
    ad.settings.zarr_write_format = fmt
    adata.write_zarr(out)
    t["write_zarr"] = time.perf_counter() - s
    if timings:
        Path(timings).write_text(json.dumps(t))


# ------------------------------------------------------------------------------------ inputs

def make_inputs(binary: str, workdir: Path, profile: str, forms: list[str]) -> dict[str, Path]:
    import warnings

    warnings.simplefilter("ignore")
    import anndata as ad

    h5 = workdir / f"{profile}.s0.h5ad"
    if not h5.exists():
        log(f"synth {h5}")
        subprocess.run([binary, "synth", str(h5), "--profile", profile, "--seed", "0"],
                       check=True)
    stores = {}
    adata = None
    for form in forms:
        z = workdir / f"{profile}.s0.{form}.zarr"
        stores[form] = z
        if z.exists():
            continue
        if adata is None:
            adata = ad.read_h5ad(h5)
        log(f"anndata write_zarr {z}")
        ad.settings.zarr_write_format = 3 if form == "v3" else 2
        adata.write_zarr(z)
    ad.settings.zarr_write_format = 3
    return stores


def describe(store: Path) -> str:
    """zarr format, codec and chunking of X/data, as anndata wrote them."""
    d = store / "X" / "data"
    if (d / "zarr.json").exists():
        m = json.loads((d / "zarr.json").read_text())
        grid = m["chunk_grid"]["configuration"]["chunk_shape"][0]
        c = m["codecs"][0]
        if c["name"] == "sharding_indexed":
            inner = c["configuration"]["chunk_shape"][0]
            codecs = [x["name"] + (f" {x['configuration'].get('level', '')}".rstrip()
                                   if x["name"] != "bytes" else "")
                      for x in c["configuration"]["codecs"] if x["name"] != "bytes"]
            return (f"v3 sharded ({', '.join(codecs)}); shard {grid:,}, inner chunk {inner:,} "
                    f"values")
        return f"v3 ({', '.join(x['name'] for x in m['codecs'])}); chunk {grid:,}"
    m = json.loads((d / ".zarray").read_text())
    comp = m["compressor"]
    desc = comp["id"] + (f" {comp.get('cname')} clevel {comp.get('clevel')} shuffle "
                         f"{comp.get('shuffle')}" if comp["id"] == "blosc" else "")
    return f"v2 ({desc}); chunk {m['chunks'][0]:,} values"


# ------------------------------------------------------------------------------------ compare

def compare(a_path: Path, b_path: Path) -> tuple[bool, str]:
    import warnings

    warnings.simplefilter("ignore")
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    a = ad.read_zarr(a_path)
    b = ad.read_zarr(b_path)
    why = []
    if type(a.X) is not type(b.X):
        why.append(f"X type {type(a.X).__name__} vs {type(b.X).__name__}")
    if a.X.shape != b.X.shape:
        why.append(f"shape {a.X.shape} vs {b.X.shape}")
    if sp.issparse(a.X) and sp.issparse(b.X):
        if a.X.data.dtype != b.X.data.dtype:
            why.append(f"dtype {a.X.data.dtype} vs {b.X.data.dtype}")
        else:
            raw = np.dtype(f"u{a.X.data.dtype.itemsize}")
            if not np.array_equal(a.X.data.view(raw), b.X.data.view(raw)):
                n = int((a.X.data.view(raw) != b.X.data.view(raw)).sum())
                why.append(f"data differs in {n} values")
        for k in ("indices", "indptr"):
            x, y = getattr(a.X, k), getattr(b.X, k)
            if x.dtype != y.dtype or not np.array_equal(x, y):
                why.append(f"{k} differ ({x.dtype} vs {y.dtype})")
    if dict(a.uns.get("log1p", {})) != dict(b.uns.get("log1p", {})):
        why.append(f"uns/log1p {a.uns.get('log1p')} vs {b.uns.get('log1p')}")
    return (not why), "; ".join(why) or (
        f"data ({a.X.data.dtype}, {a.X.nnz:,} values), indices, indptr, uns/log1p equal")


# ---------------------------------------------------------------------------------------- main

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--profile", default="pbmc68k")
    p.add_argument("--forms", default="v3,v2", help="store forms: v3 (sharded), v2")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workdir", default=str(REPO / "bench-out" / "zarr"))
    p.add_argument("--memory", default=None, help="atlasnorm --memory (default: its default)")
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", default=None)
    p.add_argument("--skip", default="", help="contenders to leave out, e.g. scanpy")
    p.add_argument("--scanpy-worker", nargs=4, metavar=("IN", "OUT", "FORMAT", "TIMINGS"),
                   help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.scanpy_worker:
        i, o, f, t = a.scanpy_worker
        scanpy_worker(i, o, int(f), t)
        return

    binary = os.environ.get("ATLASNORM_BIN", str(REPO / "target" / "release" / "atlasnorm"))
    recode = os.environ.get("RECODE_BIN",
                            str(REPO / "target" / "release" / "examples" / "zarr_recode"))
    if not Path(binary).exists():
        subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    if not Path(recode).exists():
        subprocess.run(["cargo", "build", "--release", "--example", "zarr_recode"], cwd=REPO,
                       check=True)
    workdir = Path(a.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    forms = [f for f in a.forms.split(",") if f]
    skip = set(x for x in a.skip.split(",") if x)
    stores = make_inputs(binary, workdir, a.profile, forms)
    env1 = dict(os.environ)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "nproc": len(os.sched_getaffinity(0)),
        "uptime_start": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "atlasnorm": binary,
        "recode": recode,
        "commit": commit,
        "python": sys.executable,
    }
    log(f"start: {meta['uptime_start']}")
    results = []
    for form, store in stores.items():
        fmt = 3 if form == "v3" else 2
        dst = {c: workdir / f"out.{c}.{form}.zarr" for c in CONTENDERS}
        timings_file = workdir / f"scanpy-timings.{form}.json"
        norm_args = ["--force", "--quiet"] + (["--memory", a.memory] if a.memory else [])
        normalized = workdir / f"{store.stem}.scanpy-normalized.zarr"
        if not normalized.exists() and "recode_out" not in skip:
            log(f"making {normalized} (scanpy, untimed)")
            subprocess.run([sys.executable, __file__, "--scanpy-worker", str(store),
                            str(normalized), str(fmt), ""], check=True)
        cmds = {
            "recode_out": [recode, str(normalized), str(dst["recode_out"]), "X/data"],
            "cp": ["cp", "-r", str(store), str(dst["cp"])],
            "recode": [recode, str(store), str(dst["recode"]), "X/data"],
            "atlasnorm": [binary, "normalize", str(store), str(dst["atlasnorm"]), *norm_args],
            "scanpy": [sys.executable, __file__, "--scanpy-worker", str(store),
                       str(dst["scanpy"]), str(fmt), str(timings_file)],
        }
        row = {"form": form, "store": str(store), "describe": describe(store),
               "size": du(store), "load_before": loadavg(), "runs": {c: [] for c in CONTENDERS},
               "scanpy_phases": []}
        log(f"{store}: {row['describe']}, {human(row['size'])}, load {row['load_before']:.2f}")
        for r in range(a.repeat):
            for c in CONTENDERS:
                if c in skip:
                    continue
                rm(dst[c])
                warm(store)
                subprocess.run(["sync"], check=True)
                load = loadavg()
                res = timed(cmds[c], env=env1)
                res["load"] = load
                row["runs"][c].append(res)
                if c == "scanpy":
                    row["scanpy_phases"].append(json.loads(timings_file.read_text()))
                log(f"  round {r + 1} {c}: {res['wall']:.2f} s, {human(res['rss'])}, load {load:.2f}")
        row["load_after"] = loadavg()
        if "scanpy" not in skip and "atlasnorm" not in skip:
            ok, why = compare(dst["atlasnorm"], dst["scanpy"])
            row["equal"] = ok
            row["equal_detail"] = why
            log(f"  atlasnorm vs scanpy: {'MATCH' if ok else 'MISMATCH'}: {why}")
        for c in CONTENDERS:
            rm(dst[c])
        results.append(row)
    meta["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out = {"meta": meta, "results": results}
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    md = table(out)
    print(md)
    if a.markdown:
        Path(a.markdown).write_text(md)
    if any(r.get("equal") is False for r in results):
        sys.exit(2)


def med(runs: list[dict], key: str) -> float | None:
    return statistics.median(r[key] for r in runs) if runs else None


def table(out: dict) -> str:
    m = out["meta"]
    lines = [
        f"Measured {m['date']}, {m['nproc']} cores, atlasnorm {m['atlasnorm']} (checkout "
        f"{m['commit']}); `uptime` at start: `{m['uptime_start']}`, at end: `{m['uptime_end']}`. "
        "Median of the interleaved rounds; wall seconds, process start to exit; peak RSS (max over "
        "rounds) from GNU time %M.",
        "",
        "| store (X/data) | size | load (1 min) before → after | cp -r s | recode s | "
        "recode of normalized s | atlasnorm s | scanpy s | scanpy / atlasnorm | "
        "atlasnorm / recode | atlasnorm / recode of normalized | atlasnorm / cp | "
        "CPU s (user+sys) recode / atlasnorm / scanpy | peak RSS recode / atlasnorm / scanpy | "
        "atlasnorm = scanpy |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in out["results"]:
        w = {c: med(r["runs"][c], "wall") for c in CONTENDERS}
        cpu = {c: (statistics.median(x["user"] + x["sys"] for x in r["runs"][c])
                   if r["runs"][c] else None) for c in CONTENDERS}
        rss = {c: (max(x["rss"] for x in r["runs"][c]) if r["runs"][c] else None)
               for c in CONTENDERS}

        def ratio(x, y):
            return f"{w[x] / w[y]:.2f}" if w[x] and w[y] else "–"

        def f(v):
            return f"{v:.2f}" if v is not None else "–"

        eq = {True: "MATCH", False: "MISMATCH", None: "–"}[r.get("equal")]
        lines.append(
            f"| {r['form']}: {r['describe']} | {human(r['size'])} | "
            f"{r['load_before']:.2f} → {r['load_after']:.2f} | {f(w['cp'])} | {f(w['recode'])} | "
            f"{f(w['recode_out'])} | {f(w['atlasnorm'])} | {f(w['scanpy'])} | "
            f"{ratio('scanpy', 'atlasnorm')} | {ratio('atlasnorm', 'recode')} | "
            f"{ratio('atlasnorm', 'recode_out')} | {ratio('atlasnorm', 'cp')} | "
            f"{f(cpu['recode'])} / {f(cpu['atlasnorm'])} / {f(cpu['scanpy'])} | "
            f"{human(rss['recode'])} / {human(rss['atlasnorm'])} / {human(rss['scanpy'])} | {eq} |")
    lines.append("")
    for r in out["results"]:
        if r["scanpy_phases"]:
            ph = {k: statistics.median(p[k] for p in r["scanpy_phases"])
                  for k in r["scanpy_phases"][0]}
            lines.append(f"scanpy phases ({r['form']}, median s): "
                         + ", ".join(f"{k} {v:.2f}" for k, v in ph.items()))
        for c in CONTENDERS:
            if r["runs"][c]:
                lines.append(f"{r['form']} {c} all rounds: "
                             + ", ".join(f"{x['wall']:.2f} s (load {x['load']:.1f})"
                                         for x in r["runs"][c]))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
