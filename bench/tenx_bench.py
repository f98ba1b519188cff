"""10x .h5 benchmark: `atlasnorm normalize X.h5 out.h5ad` vs scanpy's
`sc.read_10x_h5` + `normalize_total` + `log1p` + `write_h5ad`, side by side, with `cp` of the
input as the floor (DESIGN.md §6: ratios in one run). The input is `atlasnorm synth --profile P`
converted to a Cell Ranger v3 .h5 (int32 data, int64 indices/indptr, gzip level 4 chunks of
80,000 values, features/ with name, id, feature_type, genome) by tests/interop/gen_10x.py.

    bench/tenx_bench.sh [--profiles pbmc68k,heart_adult] [--repeat N] [--workdir DIR]
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
a = sc.read_10x_h5(sys.argv[1])
sc.pp.normalize_total(a); sc.pp.log1p(a)
a.write_h5ad(sys.argv[2])
"""


def timed(cmd):
    """Wall seconds and peak RSS (MiB) of a command, with /usr/bin/time -v."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"failed: {cmd}\n{p.stderr[-3000:]}")
    rss = next(int(l.split()[-1]) for l in p.stderr.splitlines() if "Maximum resident" in l)
    return wall, rss / 1024


def make_input(profile, work: Path, atlasnorm) -> Path:
    import h5py
    import numpy as np
    import scipy.sparse as sp
    import gen_10x as g

    h5 = work / f"{profile}.10x.h5"
    if h5.exists():
        return h5
    src = work / f"{profile}.synth.h5ad"
    subprocess.run([atlasnorm, "synth", str(src), "--profile", profile, "--force"], check=True,
                   capture_output=True)
    with h5py.File(src) as f:
        shape = tuple(f["X"].attrs["shape"])
        X = sp.csr_matrix((f["X/data"][()].astype(np.int32), f["X/indices"][()], f["X/indptr"][()]),
                          shape=shape)
    n_cells, n_genes = shape
    ids = [f"ENSG{i:011d}" for i in range(n_genes)]
    names = [f"GENE{i}" for i in range(n_genes)]
    bc = [f"BC{i:08d}-1" for i in range(n_cells)]
    g.write_v3_h5(h5, X, bc, ids, names, ["Gene Expression"] * n_genes, ["GRCh38"] * n_genes,
                  chunks=80_000)
    src.unlink()
    return h5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", default="pbmc68k")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workdir", default=str(REPO / "bench-out" / "tenx"))
    args = ap.parse_args()
    atlasnorm = os.environ.get("ATLASNORM_BIN", str(REPO / "target" / "release" / "atlasnorm"))
    py = os.environ.get("ATLASNORM_PYTHON", sys.executable)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    print("| profile | input (.h5) | cp | atlasnorm | scanpy read_10x_h5 + normalize + log1p + write | scanpy / atlasnorm | peak RSS atlasnorm / scanpy |")
    print("|---|---|---|---|---|---|---|")
    for profile in args.profiles.split(","):
        h5 = make_input(profile, work, atlasnorm)
        size = h5.stat().st_size / 2**20
        best = {}
        for _ in range(args.repeat):
            for name, cmd in [
                ("cp", ["cp", str(h5), str(work / "copy.h5")]),
                ("atlasnorm", [atlasnorm, "normalize", str(h5), str(work / "a.h5ad"), "--force", "--quiet"]),
                ("scanpy", [py, "-c", SCANPY, str(h5), str(work / "s.h5ad")]),
            ]:
                w, r = timed(cmd)
                if name not in best or w < best[name][0]:
                    best[name] = (w, r)
        for f in ["copy.h5", "a.h5ad", "s.h5ad"]:
            (work / f).unlink(missing_ok=True)
        (cp, _), (an, an_rss), (sc, sc_rss) = best["cp"], best["atlasnorm"], best["scanpy"]
        print(f"| {profile} | {size:,.0f} MiB | {cp:.2f} s | {an:.2f} s | {sc:.2f} s | {sc / an:.1f}× | "
              f"{an_rss:,.0f} MiB / {sc_rss:,.0f} MiB |")


if __name__ == "__main__":
    main()
