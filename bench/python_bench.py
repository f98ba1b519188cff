#!/usr/bin/env python3
"""In-memory benchmark of ``sc.pp.normalize_total`` + ``sc.pp.log1p``: scanpy vs AutoZyme vs atlasnorm.

Run it through ``bench/python_bench.sh`` (which makes AutoZyme's separate venv). Every measurement
is its own fresh process (``--worker``): load the matrix (untimed), time the process's first
``normalize_total`` + ``log1p`` call, then ``--warm`` more calls, each on a fresh ``adata.copy()``
made outside the timed region. Implementations are interleaved (scanpy, autozyme, atlasnorm, scanpy,
...) for ``--rounds`` rounds, at each thread count and target. Peak extra memory of a call is the
high-water mark of the process's RSS during the call minus its RSS just before it (the kernel's
``VmHWM`` is reset with ``/proc/self/clear_refs`` before each call; ``ru_maxrss`` deltas if that is
not possible). Round 1 also saves each implementation's output values, which are compared bit for
bit with scanpy's (count of differing values, max ULP distance). A floor process per input times
``np.copyto(dst, X.data)`` (read + write once) and ``X.data.sum()`` (read once).

Output: a Markdown table on stdout and in ``bench-out/python_bench.md``; raw numbers in
``bench-out/python_bench.json`` (``--from-json`` reprints the table).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "bench-out")
IMPLS = ("scanpy", "autozyme", "atlasnorm")
PBMC68K = "/work/ab/pbmc68k.h5ad"
REAL_DIR = "/work/shared/data/real"
THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "ZYME_THREADS")


# ----------------------------------------------------------------------------------------------
# worker side (runs in the env of the implementation; imports nothing of atlasnorm unless asked)
# ----------------------------------------------------------------------------------------------

def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


class _Peak:
    """Peak RSS during a region, in KiB above the RSS at its start."""

    def __init__(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "VmHWM"
        except OSError:
            self.method = "ru_maxrss"

    def start(self) -> None:
        import resource
        if self.method == "VmHWM":
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak-RSS high-water mark to the current RSS
        self.rss0 = _status_kb("VmRSS")
        self.max0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def extra_kb(self) -> int:
        import resource
        if self.method == "VmHWM":
            return _status_kb("VmHWM") - self.rss0
        # ru_maxrss is a process-lifetime high-water mark: only growth above it is visible
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - max(self.max0, self.rss0)


def worker(spec: dict) -> dict:
    t_start = time.perf_counter()
    impl, n, target = spec["impl"], spec["threads"], spec["target"]
    res: dict = {"impl": impl, "threads": n, "target": target, "python": sys.executable}
    import numba
    import numpy as np
    import anndata as ad
    import scanpy as sc
    numba.set_num_threads(n)
    t_imp = time.perf_counter()
    if impl == "atlasnorm":
        import atlasnorm
        atlasnorm.set_threads(n)
        atlasnorm.activate()
        atlasnorm.reset_stats()
        res["atlasnorm_threads"] = atlasnorm.get_threads()
    elif impl == "autozyme":
        import autozyme
        autozyme.set_threads(n)  # sets OMP_NUM_THREADS etc.; its kernels read ZYME_THREADS/OMP_NUM_THREADS
        res["autozyme_activate_returned"] = repr(autozyme.activate("scanpy"))
        res["autozyme_status"] = autozyme.status().get("scanpy")
        for name in ("normalize_total", "log1p"):
            f = getattr(sc.pp, name)
            res[f"autozyme_patched_{name}"] = (
                getattr(f, "__autozyme_original__", None) is not None
                or getattr(f, "__module__", "").startswith("autozyme"))
    res["setup_s"] = time.perf_counter() - t_imp  # import + activate of the accelerator
    res["import_s"] = t_imp - t_start

    base = ad.read_h5ad(spec["path"])
    X = base.X
    res["shape"] = list(X.shape)
    res["nnz"] = int(X.nnz)
    res["data_bytes"] = int(X.data.nbytes)
    res["x_bytes"] = int(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes)
    assert X.format == "csr" and X.dtype == np.float32, (X.format, X.dtype)
    kw = {} if target is None else {"target_sum": target}
    peak = _Peak()
    res["mem_method"] = peak.method

    def one_call(a):
        gc.collect()
        peak.start()
        t0 = time.perf_counter()
        sc.pp.normalize_total(a, **kw)
        t1 = time.perf_counter()
        sc.pp.log1p(a)
        t2 = time.perf_counter()
        return {"total": t2 - t0, "normalize": t1 - t0, "log1p": t2 - t1,
                "extra_mb": peak.extra_kb() / 1024}

    a = base.copy()
    res["first"] = one_call(a)
    if spec.get("save"):
        np.save(spec["save"], a.X.data)
        res["saved"] = spec["save"]
        res["indices_unchanged"] = bool(np.array_equal(a.X.indices, X.indices)
                                        and np.array_equal(a.X.indptr, X.indptr))
    res["uns_log1p"] = repr(dict(a.uns.get("log1p", {})))
    warm = []
    for _ in range(spec["warm"]):
        del a
        gc.collect()
        a = base.copy()
        warm.append(one_call(a))
    res["warm"] = warm
    res["numba_threads"] = numba.get_num_threads()
    try:
        res["numba_layer"] = numba.threading_layer()
    except ValueError:
        res["numba_layer"] = "none used"
    if impl == "atlasnorm":
        import atlasnorm
        res["atlasnorm_stats"] = atlasnorm.stats()
    return res


def floor_worker(spec: dict) -> dict:
    import anndata as ad
    import numpy as np
    src = ad.read_h5ad(spec["path"]).X.data
    dst = np.empty_like(src)
    dst[...] = 0  # fault the pages in before timing
    src.sum()
    cp, rd = [], []
    for _ in range(spec["reps"]):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        t1 = time.perf_counter()
        src.sum()
        t2 = time.perf_counter()
        cp.append(t1 - t0)
        rd.append(t2 - t1)
    return {"copyto_s": statistics.median(cp), "sum_s": statistics.median(rd),
            "copyto_all": cp, "sum_all": rd, "data_bytes": int(src.nbytes)}


# ----------------------------------------------------------------------------------------------
# orchestrator side (the main env's Python)
# ----------------------------------------------------------------------------------------------

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def synth_pbmc68k(path: str, rows=68579, cols=32738, nnz=41_077_521, seed=0) -> None:
    """A CSR float32 stand-in for pbmc68k: ~nnz Poisson-ish integer counts, fixed seed."""
    import anndata as ad
    import numpy as np
    from scipy import sparse
    rng = np.random.default_rng(seed)
    per_row = rng.lognormal(mean=0.0, sigma=0.35, size=rows)
    per_row = np.minimum(np.maximum((per_row / per_row.sum() * nnz).astype(np.int64), 1), cols)
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(per_row, out=indptr[1:])
    indices = np.empty(int(indptr[-1]), dtype=np.int32)
    for i in range(rows):
        indices[indptr[i]:indptr[i + 1]] = np.sort(rng.choice(cols, size=per_row[i], replace=False))
    data = (1 + rng.poisson(rng.gamma(0.6, 1.0, size=indices.size))).astype(np.float32)
    X = sparse.csr_matrix((data, indices, indptr.astype(np.int32)), shape=(rows, cols))
    ad.AnnData(X).write_h5ad(path)


def pick_real() -> tuple[str, str]:
    """The real matrix with the most stored values whose X loads as a sparse matrix."""
    import anndata as ad
    import numpy as np
    from scipy import sparse
    best = None
    for p in sorted(glob.glob(os.path.join(REAL_DIR, "*.h5ad"))):
        try:
            X = ad.read_h5ad(p).X
        except Exception as e:  # noqa: BLE001
            log(f"  {p}: does not load ({e})")
            continue
        if not sparse.issparse(X):
            continue
        if best is None or X.nnz > best[1]:
            best = (p, X.nnz, X.format, X.dtype)
    if best is None:
        raise SystemExit(f"no sparse h5ad in {REAL_DIR}")
    p, _, fmt, dtype = best
    if fmt == "csr" and dtype == np.float32:
        return p, "as stored (CSR float32)"
    conv = os.path.join(OUT, os.path.basename(p).replace(".h5ad", ".csr32.h5ad"))
    if not os.path.exists(conv):
        a = ad.read_h5ad(p)
        a.X = sparse.csr_matrix(a.X, dtype=np.float32)
        a.write_h5ad(conv)
    return conv, f"converted from {fmt} {dtype} to CSR float32 ({conv})"


def run_worker(python: str, mode: str, spec: dict, threads: int) -> dict:
    env = dict(os.environ)
    for v in THREAD_VARS:
        env[v] = str(threads)
    env.pop("AUTOZYME_DISABLED", None)
    cmd = [python, os.path.abspath(__file__), mode, json.dumps(spec)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    try:
        out = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise SystemExit(f"worker failed, rc {p.returncode} ({' '.join(cmd)}):\n{p.stdout}\n{p.stderr}")
    # a worker that printed its whole result and then died at exit (seen once: atlasnorm, empty
    # stderr) keeps its numbers; the exit status is recorded and reported under "Checks"
    out["returncode"] = p.returncode
    if p.returncode != 0:
        log(f"  WARNING: worker exited with status {p.returncode} after printing its result")
    out["process_wall_s"] = wall
    out["stderr_tail"] = p.stderr[-1500:]
    return out


def ulp_compare(ref_path: str, other_path: str) -> dict:
    import numpy as np
    a = np.load(ref_path)
    b = np.load(other_path)
    if a.shape != b.shape:
        return {"n": int(a.size), "differ": None, "note": f"shapes {a.shape} vs {b.shape}"}
    ia = a.view(np.int32).astype(np.int64)
    ib = b.view(np.int32).astype(np.int64)
    # map float bits to a monotone integer line so |difference| counts representable floats
    oa = np.where(ia < 0, -(ia & 0x7FFFFFFF), ia)
    ob = np.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    d = np.abs(oa - ob)
    differ = int(np.count_nonzero(ia != ib))
    res = {"n": int(a.size), "differ": differ, "fraction": differ / a.size if a.size else 0.0,
           "max_ulp": int(d.max()) if d.size else 0}
    if differ:
        res["ulp_hist"] = {str(k): int(v) for k, v in zip(*np.unique(d[d > 0], return_counts=True))
                           if k <= 4}
        res["max_abs"] = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
    return res


def tname(t):
    return "median" if t is None else f"{t:g}"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(doc: dict) -> str:
    runs = doc["runs"]
    lines = []
    w = lines.append
    w(f"Measured {doc['started']} – {doc['finished']} on {doc['machine']}; "
      f"{doc['rounds']} rounds × {len(IMPLS)} implementations, interleaved, each a fresh process: "
      f"1 first call + {doc['warm']} warm calls (median), each call on a fresh `adata.copy()`.")
    w(f"Load (1-min) at start/end: {doc['load_start']} / {doc['load_end']}.")
    w("")
    w("| input | threads | target | X.data MB | warm s scanpy | warm s AutoZyme | warm s atlasnorm "
      "| scanpy ÷ atlasnorm | AutoZyme ÷ atlasnorm | first s scanpy | first s AutoZyme "
      "| first s atlasnorm | first scanpy ÷ atlasnorm | first AutoZyme ÷ atlasnorm "
      "| peak extra MB scanpy | AutoZyme | atlasnorm | floor s (read + read&write) "
      "| atlasnorm ÷ floor |")
    w("|" + "---|" * 19)
    noisy = []
    for key in doc["order"]:
        inp, n, target = key["input"], key["threads"], key["target"]
        sel = {i: [r for r in runs if r["input"] == inp and r["threads"] == n
                   and r["target"] == target and r["impl"] == i] for i in IMPLS}
        warm = {}
        first = {}
        mem = {}
        for i in IMPLS:
            per_round = [statistics.median(x["total"] for x in r["warm"]) for r in sel[i]]
            warm[i] = med(per_round)
            first[i] = med([r["first"]["total"] for r in sel[i]])
            mem[i] = med([statistics.median(x["extra_mb"] for x in r["warm"]) for r in sel[i]])
            if len(per_round) > 1 and warm[i]:
                spread = (max(per_round) - min(per_round)) / warm[i]
                if spread > 0.30:
                    noisy.append(f"{inp} {n}t {tname(target)} {i}: rounds "
                                 + ", ".join(f"{x:.3f}" for x in per_round))
        fl = doc["floor"][inp]
        floor = fl["copyto_s"] + fl["sum_s"]
        data_mb = sel["atlasnorm"][0]["data_bytes"] / 2**20

        def ratio(a, b):
            return f"{a / b:.1f}×" if a and b else "–"

        w(f"| {inp} | {n} | {tname(target)} | {data_mb:.0f} | {warm['scanpy']:.3f} "
          f"| {warm['autozyme']:.3f} | {warm['atlasnorm']:.3f} "
          f"| {ratio(warm['scanpy'], warm['atlasnorm'])} | {ratio(warm['autozyme'], warm['atlasnorm'])} "
          f"| {first['scanpy']:.3f} | {first['autozyme']:.3f} | {first['atlasnorm']:.3f} "
          f"| {ratio(first['scanpy'], first['atlasnorm'])} | {ratio(first['autozyme'], first['atlasnorm'])} "
          f"| {mem['scanpy']:.0f} | {mem['autozyme']:.0f} | {mem['atlasnorm']:.0f} "
          f"| {fl['sum_s']:.4f} + {fl['copyto_s']:.4f} = {floor:.4f} "
          f"| {warm['atlasnorm'] / floor:.1f}× |")
    w("")
    # phase split + first-call memory + setup
    w("Split of the warm time (median over rounds of per-process medians), normalize_total / log1p, s; "
      "peak extra MB of the first call; import + activate time of the accelerator:")
    w("")
    w("| input | threads | target | scanpy norm / log1p | AutoZyme norm / log1p | atlasnorm norm / log1p "
      "| first-call extra MB scanpy / AutoZyme / atlasnorm | activate s AutoZyme / atlasnorm |")
    w("|" + "---|" * 8)
    for key in doc["order"]:
        inp, n, target = key["input"], key["threads"], key["target"]
        sel = {i: [r for r in runs if r["input"] == inp and r["threads"] == n
                   and r["target"] == target and r["impl"] == i] for i in IMPLS}
        cells = []
        for i in IMPLS:
            nm = med([statistics.median(x["normalize"] for x in r["warm"]) for r in sel[i]])
            lg = med([statistics.median(x["log1p"] for x in r["warm"]) for r in sel[i]])
            cells.append(f"{nm:.3f} / {lg:.3f}")
        fm = " / ".join(f"{med([r['first']['extra_mb'] for r in sel[i]]):.0f}" for i in IMPLS)
        act = " / ".join(f"{med([r['setup_s'] for r in sel[i]]):.2f}" for i in ("autozyme", "atlasnorm"))
        w(f"| {inp} | {n} | {tname(target)} | " + " | ".join(cells) + f" | {fm} | {act} |")
    w("")
    w("Exactness against scanpy (round 1 outputs, X.data bits; indices/indptr unchanged in all):")
    w("")
    w("| input | threads | target | AutoZyme: values differing / nnz | AutoZyme max ULP "
      "| AutoZyme ULP histogram (1..4) | atlasnorm differing | scanpy: same bits as at 1 thread |")
    w("|" + "---|" * 8)
    for c in doc["compare"]:
        az, at = c["autozyme"], c["atlasnorm"]
        same = c.get("scanpy_vs_1thread")
        same_s = "–" if same is None else ("yes" if same["differ"] == 0 else f"no ({same['differ']})")
        w(f"| {c['input']} | {c['threads']} | {tname(c['target'])} "
          f"| {az['differ']:,} / {az['n']:,} ({100 * az['fraction']:.2f}%) | {az['max_ulp']} "
          f"| {az.get('ulp_hist', {})} | {at['differ']} | {same_s} |")
    w("")
    w("Checks: " + "; ".join(doc["checks"]))
    w("")
    w("Inputs: " + "; ".join(f"`{k}` = {v}" for k, v in doc["inputs"].items()))
    if noisy:
        w("")
        w("Round-to-round spread above 30%: " + "; ".join(noisy))
    return "\n".join(lines)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def orchestrate(args) -> None:
    os.makedirs(OUT, exist_ok=True)
    inputs: dict[str, str] = {}
    notes: dict[str, str] = {}
    if "pbmc68k" in args.inputs:
        if os.path.exists(PBMC68K):
            inputs["pbmc68k"] = PBMC68K
            notes["pbmc68k"] = f"{PBMC68K} (CSR float32)"
        else:
            p = os.path.join(OUT, "pbmc68k-synth.h5ad")
            if not os.path.exists(p):
                log(f"{PBMC68K} missing: synthesizing {p} (seed 0)")
                synth_pbmc68k(p)
            inputs["pbmc68k"] = p
            notes["pbmc68k"] = f"{p}: synthesized, {PBMC68K} was missing"
    if "real" in args.inputs:
        p, how = pick_real()
        name = os.path.basename(p).split(".")[0]
        inputs[name] = p
        notes[name] = f"{p}, the largest (nnz) real matrix in {REAL_DIR}, {how}"
    pythons = {"scanpy": args.main_python, "atlasnorm": args.main_python,
               "autozyme": args.autozyme_python}
    targets = [None if t == "median" else float(t) for t in args.targets.split(",")]
    threads = [int(x) for x in args.threads.split(",")]
    doc = {"started": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "rounds": args.rounds,
           "warm": args.warm, "load_start": loadavg(), "inputs": notes, "runs": [],
           "order": [], "compare": [], "floor": {}, "checks": [],
           "machine": f"{platform.node()}, {os.cpu_count()} cores, {platform.machine()}, "
                      f"Python {platform.python_version()}"}
    tmp = os.path.join(OUT, "python_bench_tmp")
    os.makedirs(tmp, exist_ok=True)
    t_all = time.perf_counter()
    for name, path in inputs.items():
        floors = [run_worker(args.main_python, "--floor", {"path": path, "reps": 9}, 1)
                  for _ in range(2)]
        doc["floor"][name] = {"copyto_s": min(f["copyto_s"] for f in floors),
                              "sum_s": min(f["sum_s"] for f in floors), "runs": floors}
        log(f"{name}: floor sum {doc['floor'][name]['sum_s']:.4f} s, "
            f"copyto {doc['floor'][name]['copyto_s']:.4f} s")
        ref1 = {}
        for n in threads:
            for target in targets:
                doc["order"].append({"input": name, "threads": n, "target": target})
                saved = {}
                for rnd in range(args.rounds):
                    for impl in IMPLS:
                        spec = {"impl": impl, "threads": n, "target": target, "path": path,
                                "warm": args.warm}
                        if rnd == 0:
                            spec["save"] = os.path.join(tmp, f"{name}-{impl}-{n}-{tname(target)}.npy")
                        r = run_worker(pythons[impl], "--worker", spec, n)
                        r.update(input=name, round=rnd)
                        doc["runs"].append(r)
                        with open(os.path.join(OUT, "python_bench.partial.json"), "w") as f:
                            json.dump(doc, f)
                        if rnd == 0:
                            saved[impl] = r["saved"]
                        log(f"{name} {n}t {tname(target):>6} r{rnd} {impl:>9}: first "
                            f"{r['first']['total']:.3f} s, warm median "
                            f"{statistics.median(x['total'] for x in r['warm']):.3f} s, "
                            f"extra {statistics.median(x['extra_mb'] for x in r['warm']):.0f} MB "
                            f"(process {r['process_wall_s']:.1f} s)")
                c = {"input": name, "threads": n, "target": target,
                     "autozyme": ulp_compare(saved["scanpy"], saved["autozyme"]),
                     "atlasnorm": ulp_compare(saved["scanpy"], saved["atlasnorm"])}
                if target in ref1:
                    c["scanpy_vs_1thread"] = ulp_compare(ref1[target], saved["scanpy"])
                doc["compare"].append(c)
                log(f"  exactness vs scanpy: AutoZyme {c['autozyme']}, atlasnorm {c['atlasnorm']}")
                for impl, p in saved.items():
                    if n == threads[0] and impl == "scanpy":
                        ref1[target] = p
                    else:
                        os.remove(p)
        for p in ref1.values():
            os.remove(p)
    # checks
    runs = doc["runs"]
    fb = [r["atlasnorm_stats"] for r in runs if r["impl"] == "atlasnorm"]
    tot_fast = sum(s[f]["fast"] for s in fb for f in s)
    tot_fb = sum(s[f]["fallback"] for s in fb for f in s)
    doc["checks"].append(f"atlasnorm.stats() over all {len(fb)} atlasnorm processes: "
                         f"fast = {tot_fast}, fallback = {tot_fb}")
    az = [r for r in runs if r["impl"] == "autozyme"]
    patched = all(r.get("autozyme_patched_normalize_total") and r.get("autozyme_patched_log1p")
                  for r in az)
    markers = sorted({ln for r in az for ln in r["stderr_tail"].splitlines() if "[autozyme]" in ln})
    doc["checks"].append(
        f"AutoZyme: activate('scanpy') returned {sorted({r['autozyme_activate_returned'] for r in az})}, "
        f"status {sorted({str(r['autozyme_status']) for r in az})}, sc.pp.normalize_total and "
        f"sc.pp.log1p replaced in {'all' if patched else 'NOT all'} {len(az)} processes; stderr: "
        + (" | ".join(f"`{m.strip()}`" for m in markers) or "no marker"))
    layers = sorted({f"{r['impl']}: {r['numba_layer']}" for r in runs})
    thr = sorted({f"{r['impl']} {r['threads']}→{r['numba_threads']}" for r in runs})
    doc["checks"].append("numba threading layer " + ", ".join(layers)
                         + "; numba threads requested→seen " + ", ".join(thr))
    doc["checks"].append(f"memory method {sorted({r['mem_method'] for r in runs})}")
    bad = [f"{r['input']} {r['threads']}t {tname(r['target'])} r{r['round']} {r['impl']}: {r['returncode']}"
           for r in runs if r.get("returncode")]
    doc["checks"].append("worker exit status nonzero after a complete result: " + ("; ".join(bad) or "none"))
    doc["finished"] = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    doc["load_end"] = loadavg()
    doc["total_s"] = time.perf_counter() - t_all
    os.rmdir(tmp)
    with open(os.path.join(OUT, "python_bench.json"), "w") as f:
        json.dump(doc, f, indent=1)
    emit(doc)


def emit(doc: dict) -> None:
    md = summarize(doc)
    with open(os.path.join(OUT, "python_bench.md"), "w") as f:
        f.write(md + "\n")
    print(md)


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] in ("--worker", "--floor"):
        spec = json.loads(sys.argv[2])
        res = worker(spec) if sys.argv[1] == "--worker" else floor_worker(spec)
        sys.stdout.write("\n" + json.dumps(res) + "\n")
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--main-python", default=sys.executable, help="Python with scanpy + atlasnorm")
    ap.add_argument("--autozyme-python", default=os.path.join(REPO, ".tools/bench-autozyme/bin/python"))
    ap.add_argument("--inputs", default="pbmc68k,real", help="pbmc68k,real")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--targets", default="median,1e4")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--from-json", help="reprint the table of an earlier run")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            emit(json.load(f))
        return
    orchestrate(args)


if __name__ == "__main__":
    main()
