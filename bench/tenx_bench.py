"""10x .h5 benchmark: `atlasnorm normalize X.h5 out.h5ad` vs scanpy's
`sc.read_10x_h5` + `normalize_total` + `log1p` + `write_h5ad`, side by side, with `cp` of the
input as the floor (DESIGN.md §6: ratios in one run). The input is `atlasnorm synth --profile P`
converted to a Cell Ranger v3 .h5 (int32 data, int64 indices/indptr, gzip level 4 chunks of
80,000 values, features/ with name, id, feature_type, genome) by tests/interop/gen_10x.py.

    bench/tenx_bench.sh [--profiles pbmc68k,heart_adult] [--repeat N] [--workdir DIR]

`--mtx`: the same matrix as 10x matrix directories instead: Cell Ranger v3 (`matrix.mtx.gz`,
gzip level 6, entries in Cell Ranger's order, by barcode then feature) and legacy (plain
`matrix.mtx`, `genes.tsv`), written by scipy's `mmwrite`; scanpy's side is `sc.read_10x_mtx`.
`--baseline BIN`: also time another atlasnorm binary (e.g. a build of an earlier commit) in
the same rounds, its column headed "baseline".
The last round's outputs are compared bit for bit (tests/interop/compare.py: X, obs, var, uns);
the last column says MATCH or the first differences.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "interop"))

SCANPY = """
import sys, scanpy as sc
a = sc.read_10x_h5(sys.argv[1]) if sys.argv[1].endswith(".h5") else sc.read_10x_mtx(sys.argv[1])
sc.pp.normalize_total(a); sc.pp.log1p(a)
a.write_h5ad(sys.argv[2])
"""


def timed(cmd, may_fail=False):
    """Wall seconds and peak RSS (MiB) of a command, with /usr/bin/time -v. With `may_fail` (scanpy,
    whose in-memory read can run out of memory on an atlas) a failure returns the exit as a third
    item instead of ending the benchmark."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t
    rss = [int(l.split()[-1]) / 1024 for l in p.stderr.splitlines() if "Maximum resident" in l]
    if p.returncode != 0:
        if not may_fail or not rss:
            sys.exit(f"failed: {cmd}\n{p.stderr[-3000:]}")
        signal = [l.strip() for l in p.stderr.splitlines() if "terminated by signal" in l]
        return wall, rss[0], (signal or [f"exit {p.returncode}"])[0]
    return wall, rss[0], None


def synth_counts(profile, work: Path, atlasnorm):
    """`atlasnorm synth --profile P` as an int32 CSR of cells, with ids, names and barcodes."""
    import h5py
    import numpy as np
    import scipy.sparse as sp

    src = work / f"{profile}.synth.h5ad"
    subprocess.run([atlasnorm, "synth", str(src), "--profile", profile, "--force"], check=True,
                   capture_output=True)
    with h5py.File(src) as f:
        shape = tuple(f["X"].attrs["shape"])
        X = sp.csr_matrix((f["X/data"][()].astype(np.int32), f["X/indices"][()], f["X/indptr"][()]),
                          shape=shape)
    src.unlink()
    n_cells, n_genes = shape
    ids = [f"ENSG{i:011d}" for i in range(n_genes)]
    names = [f"GENE{i}" for i in range(n_genes)]
    bc = [f"BC{i:08d}-1" for i in range(n_cells)]
    return X, ids, names, bc


def make_input(profile, work: Path, atlasnorm) -> Path:
    import gen_10x as g

    h5 = work / f"{profile}.10x.h5"
    if h5.exists():
        return h5
    X, ids, names, bc = synth_counts(profile, work, atlasnorm)
    n_genes = len(ids)
    g.write_v3_h5(h5, X, bc, ids, names, ["Gene Expression"] * n_genes, ["GRCh38"] * n_genes,
                  chunks=80_000)
    return h5


def make_mtx_inputs(profile, work: Path, atlasnorm) -> list[Path]:
    """A v3 directory (matrix.mtx.gz) and a legacy one (plain matrix.mtx) of the profile."""
    import gzip
    import scipy.io

    v3, legacy = work / f"{profile}.mtx_v3", work / f"{profile}.mtx_legacy"
    if (v3 / "matrix.mtx.gz").exists() and (legacy / "matrix.mtx").exists():
        return [v3, legacy]
    X, ids, names, bc = synth_counts(profile, work, atlasnorm)
    for d in (v3, legacy):
        d.mkdir(parents=True, exist_ok=True)
    # features × barcodes as CSC: written column by column, Cell Ranger's order
    scipy.io.mmwrite(legacy / "matrix.mtx", X.T.tocsc(), field="integer")
    with open(legacy / "genes.tsv", "w") as f:
        f.writelines(f"{i}\t{n}\n" for i, n in zip(ids, names))
    with open(legacy / "barcodes.tsv", "w") as f:
        f.writelines(f"{b}\n" for b in bc)
    subprocess.run(f"gzip -6 -c {legacy / 'matrix.mtx'} > {v3 / 'matrix.mtx.gz'}", shell=True,
                   check=True)
    with gzip.open(v3 / "features.tsv.gz", "wt", compresslevel=6) as f:
        f.writelines(f"{i}\t{n}\tGene Expression\n" for i, n in zip(ids, names))
    with gzip.open(v3 / "barcodes.tsv.gz", "wt", compresslevel=6) as f:
        f.writelines(f"{b}\n" for b in bc)
    return [v3, legacy]


def exact(scanpy_out: Path, ours: Path) -> str:
    """The last round's outputs, read back with anndata and compared bit for bit (X, obs, var,
    uns: tests/interop/compare.py): "MATCH", or the first differences."""
    from compare import diff_files

    diffs = diff_files(scanpy_out, ours)
    return "MATCH" if not diffs else "DIFFER: " + "; ".join(diffs[:3])


def size_of(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir()) / 2**20
    return path.stat().st_size / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", default="pbmc68k")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workdir", default=str(REPO / "bench-out" / "tenx"))
    ap.add_argument("--mtx", action="store_true", help="10x matrix directories instead of .h5")
    ap.add_argument("--baseline", help="another atlasnorm binary, timed in the same rounds")
    args = ap.parse_args()
    atlasnorm = os.environ.get("ATLASNORM_BIN", str(REPO / "target" / "release" / "atlasnorm"))
    py = os.environ.get("ATLASNORM_PYTHON", sys.executable)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    base = ["baseline"] if args.baseline else []
    head = ["profile", "input", "size", "cp", "atlasnorm", *base,
            "scanpy " + ("read_10x_mtx" if args.mtx else "read_10x_h5") + " + normalize + log1p + write",
            "scanpy / atlasnorm", *(["baseline / atlasnorm"] if base else []),
            "peak RSS atlasnorm / scanpy", "atlasnorm = scanpy"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for profile in args.profiles.split(","):
        inputs = make_mtx_inputs(profile, work, atlasnorm) if args.mtx else [make_input(profile, work, atlasnorm)]
        for inp in inputs:
            best, failures = {}, {}
            copy = work / "copy"
            cmds = [("cp", ["cp", "-r", str(inp), str(copy)])]
            for name, binary in [("atlasnorm", atlasnorm), *([("baseline", args.baseline)] if base else [])]:
                cmds.append((name, [binary, "normalize", str(inp), str(work / f"{name}.h5ad"), "--force", "--quiet"]))
            cmds.append(("scanpy", [py, "-c", SCANPY, str(inp), str(work / "s.h5ad")]))
            for _ in range(args.repeat):
                for name, cmd in cmds:
                    shutil.rmtree(copy, ignore_errors=True)
                    copy.unlink(missing_ok=True)
                    w, r, failed = timed(cmd, may_fail=name == "scanpy")
                    if failed:
                        failures[name] = f"failed ({failed}) after {w:.0f} s at {r:,.0f} MiB"
                    elif name not in best or w < best[name][0]:
                        best[name] = (w, r)
            shutil.rmtree(copy, ignore_errors=True)
            copy.unlink(missing_ok=True)
            scanpy_ran = "scanpy" in best and "scanpy" not in failures
            same = exact(work / "s.h5ad", work / "atlasnorm.h5ad") if scanpy_ran else "no scanpy output"
            for f in ["atlasnorm.h5ad", "baseline.h5ad", "s.h5ad"]:
                (work / f).unlink(missing_ok=True)
            (cp, _), (an, an_rss) = best["cp"], best["atlasnorm"]
            row = [profile, inp.name, f"{size_of(inp):,.0f} MiB", f"{cp:.2f} s", f"{an:.2f} s"]
            if base:
                row.append(f"{best['baseline'][0]:.2f} s")
            if scanpy_ran:
                sc, sc_rss = best["scanpy"]
                row += [f"{sc:.2f} s", f"{sc / an:.1f}×"]
            else:
                row += [failures["scanpy"], "–"]
            if base:
                row.append(f"{best['baseline'][0] / an:.2f}×")
            row.append(f"{an_rss:,.0f} MiB / " + (f"{sc_rss:,.0f} MiB" if scanpy_ran else "–"))
            row.append(same)
            print("| " + " | ".join(row) + " |", flush=True)

if __name__ == "__main__":
    main()
