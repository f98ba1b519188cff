#!/usr/bin/env python3
"""End-to-end benchmark: `cp` vs `atlasnorm normalize` vs the scanpy pipeline, side by side.

For every input (given with --inputs, or synthesized from --profiles into --workdir) this runs, in
one process and interleaved round by round so that a change in machine load hits all three alike:

  cp         cp INPUT DST                                  the physical floor of a file-to-file job
  atlasnorm  atlasnorm normalize INPUT OUT --force --quiet  default options: median target, log1p
  scanpy     python bench/scanpy_pipeline.py INPUT OUT      read_h5ad, normalize_total, log1p,
                                                            write_h5ad (a fresh process each time,
                                                            imports included; output compressed
                                                            like the input's X)

each --repeat times (median reported), with peak RSS from GNU time (%M). Before every timed run the
input is read once, untimed (a warm-up), so that all three find it in the page cache whatever ran
before; the share of the input that is resident is measured (fincore) just before each timed run and
the minimum is reported. Destinations are deleted and
`sync` is called (both untimed) before every run, so that no contender pays for another's writeback.
Afterwards atlasnorm's output is compared with scanpy's bit for bit (X's data/indices/indptr or dense
values as raw bits, dtype, shape and encoding; obs[KEY] with --key-added; uns/log1p) -> MATCH/MISMATCH.

Output: a Markdown table on stdout (also written to --markdown) and raw numbers as JSON (--json).

Environment: ATLASNORM_BIN   the binary (default <repo>/target/release/atlasnorm, built with
                             `cargo build --release` when missing)
             ATLASNORM_PYTHON the Python that runs scanpy (default <repo>/.tools/py312/bin/python,
                             created by scripts/python-env.sh when missing)
Run it with that Python (it needs h5py and numpy), or through bench/run.sh.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PIPELINE = HERE / "scanpy_pipeline.py"
CONTENDERS = ("cp", "atlasnorm", "scanpy")


# ----------------------------------------------------------------------------------------- helpers

def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1024**3, "gb": 1000**3, "gib": 1024**3, "t": 1024**4,
          "tb": 1000**4, "tib": 1024**4}


def parse_size(s: str) -> int:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", s)
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {s!r} (e.g. 512MiB, 2GiB, 4GB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def human(n: float | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0]) * 1024
    return out


def load() -> str:
    a, b, c = os.getloadavg()
    return f"{a:.2f}, {b:.2f}, {c:.2f}"


def sh(argv: list[str], **kw) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True, **kw).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


# ------------------------------------------------------------------------------------ environment

def find_binary() -> list[str]:
    raw = os.environ.get("ATLASNORM_BIN")
    if raw:
        if not (os.access(raw, os.X_OK) or shutil.which(raw)):
            sys.exit(f"e2e: ATLASNORM_BIN={raw} is not an executable")
        return [raw]
    default = REPO / "target" / "release" / "atlasnorm"
    if not default.exists():
        log(f"{default} missing: cargo build --release (in {REPO})")
        subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    return [str(default)]


def find_python() -> str:
    raw = os.environ.get("ATLASNORM_PYTHON")
    if raw:
        return raw
    default = REPO / ".tools" / "py312" / "bin" / "python"
    if not default.exists():
        log(f"{default} missing: scripts/python-env.sh")
        out = subprocess.run([str(REPO / "scripts" / "python-env.sh")], capture_output=True,
                             text=True, check=True).stdout.strip().splitlines()
        return out[-1]
    return str(default)


def machine(workdir: Path, binary: list[str], python: str) -> dict:
    cpu = ""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not cpu:
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    mi = meminfo()
    du = shutil.disk_usage(workdir)
    fstype = sh(["df", "--output=fstype", str(workdir)]).splitlines()[-1:] or [""]
    versions = sh([python, "-c",
                   "from importlib.metadata import version as v; import sys; "
                   "print(sys.version.split()[0], *(v(p) for p in "
                   "('scanpy','anndata','numpy','scipy','h5py','numba')))"]).split()
    names = ("python", "scanpy", "anndata", "numpy", "scipy", "h5py", "numba")
    commit = sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = bool(sh(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"]))
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "kernel": platform.release(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "avx512f": "avx512f" in flags,
        "mem_total": mi.get("MemTotal"),
        "mem_available": mi.get("MemAvailable"),
        "workdir": str(workdir),
        "workdir_fs": fstype[0].strip(),
        "disk_free": du.free,
        "loadavg": load(),
        "atlasnorm_bin": binary[0],
        "atlasnorm_version": sh([*binary, "--version"]),
        "atlasnorm_bin_mtime": _mtime(binary[0]),
        "repo_commit": commit + ("-dirty" if dirty else ""),
        "python": python,
        "versions": dict(zip(names, versions)),
        "cp_version": sh(["cp", "--version"]).splitlines()[0] if sh(["cp", "--version"]) else "",
    }


def _mtime(path: str) -> str | None:
    exe = shutil.which(path) or path
    try:
        return dt.datetime.fromtimestamp(os.stat(exe).st_mtime).astimezone().isoformat(
            timespec="seconds")
    except OSError:
        return None


def print_machine(m: dict) -> None:
    v = m["versions"]
    print(f"Machine: {m['cpu_model']} ({m['nproc']} cores available, "
          f"AVX-512F {'yes' if m['avx512f'] else 'no'}), "
          f"{human(m['mem_total'])} RAM ({human(m['mem_available'])} available), "
          f"{human(m['disk_free'])} free on {m['workdir']} ({m['workdir_fs']}), "
          f"Linux {m['kernel']}")
    print(f"Load average at start: {m['loadavg']}")
    print(f"atlasnorm: {m['atlasnorm_version']} ({m['atlasnorm_bin']}, built "
          f"{m.get('atlasnorm_bin_mtime')}); checkout {m['repo_commit']}")
    print(f"scanpy {v.get('scanpy')}, anndata {v.get('anndata')}, numpy {v.get('numpy')}, "
          f"numba {v.get('numba')}, Python {v.get('python')} ({m['python']}); {m['cp_version']}")
    print(flush=True)


# ----------------------------------------------------------------------------------------- inputs

def describe_input(path: Path) -> dict:
    import h5py

    info: dict = {"path": str(path), "name": path.name, "file_size": path.stat().st_size}
    with h5py.File(path, "r") as f:
        x = f["X"]
        if isinstance(x, h5py.Group):
            enc = x.attrs.get("encoding-type", "")
            enc = enc.decode() if isinstance(enc, bytes) else str(enc)
            shape = tuple(int(s) for s in x.attrs["shape"])
            data = x["data"]
            info.update(encoding=enc, shape=shape, nnz=int(data.shape[0]), dtype=str(data.dtype),
                        compression=data.compression or "none",
                        x_bytes=sum(int(x[k].size) * x[k].dtype.itemsize
                                    for k in ("data", "indices", "indptr")))
        else:
            info.update(encoding="array", shape=tuple(x.shape), nnz=int(x.size), dtype=str(x.dtype),
                        compression=x.compression or "none", x_bytes=int(x.size) * x.dtype.itemsize)
    return info


def synth_inputs(binary: list[str], workdir: Path, profiles: list[str], comps: list[str],
                 seed: int, resynth: bool) -> list[Path]:
    out = []
    for prof in profiles:
        for comp in comps:
            p = workdir / f"{prof}.{comp}.s{seed}.h5ad"
            if p.exists() and not resynth:
                log(f"reusing {p}")
            else:
                log(f"synthesizing {p}")
                subprocess.run([*binary, "synth", str(p), "--profile", prof, "--compression", comp,
                                "--seed", str(seed), "--force"], check=True)
            out.append(p)
    return out


# ------------------------------------------------------------------------------------ page cache

def resident_fraction(path: Path) -> float | None:
    """Share of the file's pages in the page cache (util-linux fincore), None if unknown."""
    out = sh(["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", str(path)])
    try:
        res, size = (int(x) for x in out.split())
        return min(1.0, res / size) if size else 1.0  # fincore rounds the last page up
    except ValueError:
        return None


def warm_up(path: Path) -> float:
    t = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(16 << 20)
        while f.readinto(buf):
            pass
    return time.perf_counter() - t


# ----------------------------------------------------------------------------------------- running

TIME = "/usr/bin/time"


def run_timed(argv: list[str], env: dict | None, errfile: Path, timeout: float | None) -> dict:
    """Wall time (spawn to exit) and peak RSS of one child process.

    Peak RSS comes from GNU time (`/usr/bin/time -f %M`) when it is installed: Linux carries a
    process's RSS high-water mark across exec, so a child spawned straight from this (numpy-laden)
    Python would report at least this process's RSS; time's own few MiB are the floor instead.
    Without /usr/bin/time, wait4's rusage is used (and that floor applies)."""
    use_time = os.access(TIME, os.X_OK)
    rfile = errfile.with_suffix(".rusage")
    full = [TIME, "-q", "-o", str(rfile), "-f", "%M %U %S", *argv] if use_time else argv
    with open(errfile, "w") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                             env=env)
        deadline = None if timeout is None else t0 + timeout
        timed_out = False
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG if deadline else 0)
            if pid:
                break
            if time.perf_counter() > deadline:
                timed_out = True
                # our child (GNU time) forwards no signal: kill its own child first, then it
                subprocess.run(["pkill", "-KILL", "-P", str(p.pid)], check=False)
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - t0
    p.returncode = rc = os.waitstatus_to_exitcode(status)
    maxrss, user, sys_ = ru.ru_maxrss * 1024, ru.ru_utime, ru.ru_stime
    if use_time and rfile.exists():
        txt = rfile.read_text()
        m = re.search(r"terminated by signal (\d+)", txt)
        if m:
            rc = -int(m.group(1))
        last = txt.strip().splitlines()[-1:] or [""]
        try:
            kb, u, s = last[0].split()
            maxrss, user, sys_ = int(kb) * 1024, float(u), float(s)
        except ValueError:
            pass
        rfile.unlink()
    stderr = errfile.read_text(errors="replace")
    return {"wall": wall, "maxrss": maxrss, "user": user, "sys": sys_, "rc": rc,
            "timed_out": timed_out, "stderr_tail": stderr[-2000:]}


def scanpy_failure(r: dict) -> str | None:
    if r["rc"] == 0:
        return None
    if r.get("timed_out"):
        return "timed out"
    if "MemoryError" in r["stderr_tail"] or "Unable to allocate" in r["stderr_tail"]:
        return "MemoryError (input does not fit in RAM)"
    if r["rc"] == -9:
        return "killed by SIGKILL (likely the OOM killer: input does not fit in RAM)"
    last = [ln for ln in r["stderr_tail"].splitlines() if ln.strip()][-1:] or [""]
    return f"exit {r['rc']}: {last[0][:200]}"


def remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


# ------------------------------------------------------------------------------------- verifying

STEP = 8 << 20  # elements compared at a time


def _cmp_dataset(a, b, name: str, problems: list[str]) -> None:
    import numpy as np

    if a.dtype != b.dtype:
        problems.append(f"{name}: dtype {a.dtype} (atlasnorm) vs {b.dtype} (scanpy)")
        return
    if a.shape != b.shape:
        problems.append(f"{name}: shape {a.shape} (atlasnorm) vs {b.shape} (scanpy)")
        return
    if a.shape is None or b.shape is None:  # h5py.Empty (how anndata stores None)
        if (a.shape is None) != (b.shape is None):
            problems.append(f"{name}: empty in only one output")
        return
    if a.shape == ():
        if a[()] != b[()] and not (a.dtype.kind == "f" and np.isnan(a[()]) and np.isnan(b[()])):
            problems.append(f"{name}: {a[()]!r} vs {b[()]!r}")
        return
    n = a.shape[0]
    row = int(np.prod(a.shape[1:], dtype=np.int64)) or 1  # elements per leading index
    step = max(1, STEP // row)
    uint = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}.get(a.dtype.itemsize)
    diff, first = 0, None
    for i in range(0, n, step):
        x, y = np.ascontiguousarray(a[i:i + step]), np.ascontiguousarray(b[i:i + step])
        if x.tobytes() == y.tobytes():
            continue
        if uint is not None and x.dtype.kind in "fiu":
            bad = np.flatnonzero(x.reshape(-1).view(uint) != y.reshape(-1).view(uint))
        else:
            bad = np.flatnonzero(x.reshape(-1) != y.reshape(-1))
        if first is None and bad.size:
            k = int(bad[0])
            first = (i * row + k, x.reshape(-1)[k], y.reshape(-1)[k])
        diff += int(bad.size)
    if diff:
        at, va, vb = first
        problems.append(f"{name}: {diff} of {a.size} values differ in their bits; first at flat "
                        f"index {at}: {va!r} (atlasnorm) vs {vb!r} (scanpy)")


def _attr(obj, key):
    v = obj.attrs.get(key)
    return v.decode() if isinstance(v, bytes) else (str(v) if v is not None else None)


def verify(a_path: Path, s_path: Path, key_added: str | None) -> list[str]:
    """Bit-for-bit comparison of the normalized elements; [] means MATCH."""
    import h5py

    problems: list[str] = []
    with h5py.File(a_path, "r") as A, h5py.File(s_path, "r") as S:
        xa, xs = A["X"], S["X"]
        if isinstance(xa, h5py.Group) != isinstance(xs, h5py.Group):
            return [f"X: {type(xa).__name__} (atlasnorm) vs {type(xs).__name__} (scanpy)"]
        if _attr(xa, "encoding-type") != _attr(xs, "encoding-type"):
            problems.append(f"X encoding-type: {_attr(xa, 'encoding-type')} vs "
                            f"{_attr(xs, 'encoding-type')}")
        if isinstance(xa, h5py.Group):
            if list(xa.attrs.get("shape", [])) != list(xs.attrs.get("shape", [])):
                problems.append(f"X shape: {list(xa.attrs['shape'])} vs {list(xs.attrs['shape'])}")
            for k in ("data", "indices", "indptr"):
                _cmp_dataset(xa[k], xs[k], f"X/{k}", problems)
        else:
            _cmp_dataset(xa, xs, "X", problems)
        if key_added:
            oa, os_ = A["obs"].get(key_added), S["obs"].get(key_added)
            if oa is None or os_ is None:
                problems.append(f"obs/{key_added}: missing in "
                                f"{'atlasnorm' if oa is None else 'scanpy'} output")
            else:
                _cmp_dataset(oa, os_, f"obs/{key_added}", problems)
        la, ls = A.get("uns/log1p"), S.get("uns/log1p")
        if (la is None) != (ls is None):
            problems.append(f"uns/log1p: present only in {'scanpy' if la is None else 'atlasnorm'}")
        elif la is not None:
            ba, bs = la.get("base"), ls.get("base")
            if (ba is None) != (bs is None):
                problems.append("uns/log1p/base present in only one output")
            elif ba is not None:
                _cmp_dataset(ba, bs, "uns/log1p/base", problems)
    return problems


# ------------------------------------------------------------------------------------- one input

def bench_input(path: Path, args, binary: list[str], python: str, outdir: Path) -> dict:
    info = describe_input(path)
    log(f"{path.name}: {human(info['file_size'])}, {info['encoding']} {info['shape']}, "
        f"nnz {info['nnz']:,}, X {info['compression']}")
    res: dict = {"input": info, "runs": {c: [] for c in CONTENDERS}, "load_before": load()}
    stem = path.name.removesuffix(".h5ad")
    dst = {c: outdir / f"{stem}.{c}.h5ad" for c in CONTENDERS}
    errf = outdir / f"{stem}.stderr"

    # Should scanpy be run at all?
    skip = None
    avail = meminfo().get("MemAvailable", 0)
    if args.skip_scanpy_above == "auto":
        need = 3 * info["x_bytes"] + (512 << 20)
        if need > avail:
            skip = (f"skipped: scanpy needs ≈{human(need)} (3 × X in memory + 0.5 GiB), "
                    f"{human(avail)} available")
    elif args.skip_scanpy_above is not None and info["x_bytes"] > args.skip_scanpy_above:
        skip = (f"skipped: X is {human(info['x_bytes'])} in memory, above --skip-scanpy-above "
                f"{human(args.skip_scanpy_above)}")
    res["scanpy_status"] = skip

    ncmd = [*binary, "normalize", str(path), str(dst["atlasnorm"]), "--force", "--quiet"]
    if args.memory:
        ncmd += ["--memory", args.memory]
    if args.threads:
        ncmd += ["--threads", str(args.threads)]
    if args.key_added:
        ncmd += ["--key-added", args.key_added]
    tfile = outdir / f"{stem}.scanpy-timings.json"
    scmd = [python, str(PIPELINE), str(path), str(dst["scanpy"]), "--compression",
            info["compression"], "--timings", str(tfile)]
    if args.key_added:
        scmd += ["--key-added", args.key_added]
    senv = dict(os.environ)
    if args.threads:  # the same thread budget for scanpy's numba/BLAS pools
        for v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            senv[v] = str(args.threads)
    cmds = {"cp": ["cp", str(path), str(dst["cp"])], "atlasnorm": ncmd, "scanpy": scmd}
    envs = {"cp": None, "atlasnorm": None, "scanpy": senv}
    res["commands"] = {c: " ".join(v) for c, v in cmds.items()}

    fits = info["file_size"] < 0.8 * meminfo().get("MemAvailable", 0)
    res["warmup_seconds"] = warm_up(path) if args.warm else None
    res["resident_after_warmup"] = resident_fraction(path)
    if args.warm:
        log(f"warm-up read {res['warmup_seconds']:.2f} s; resident "
            f"{_pct(res['resident_after_warmup'])}" + ("" if fits else " (input > 80% of free RAM)"))

    for rnd in range(args.repeat):
        for c in CONTENDERS:
            if c == "scanpy" and res["scanpy_status"]:
                continue
            remove(dst[c])
            if args.sync:
                os.sync()
            if c == "scanpy":
                remove(tfile)
            if args.warm and fits:  # re-warm: scanpy's RSS or the outputs may have evicted it
                warm_up(path)
            resident = resident_fraction(path)
            r = run_timed(cmds[c], envs[c], errf, args.timeout)
            r["resident_before"] = resident
            r["loadavg_after"] = load()
            if c == "scanpy" and r["rc"] == 0 and tfile.exists():
                r["phases"] = json.loads(tfile.read_text())
            res["runs"][c].append(r)
            log(f"  round {rnd + 1}/{args.repeat} {c:9s} {r['wall']:8.2f} s  "
                f"{human(r['maxrss']):>10s}  rc {r['rc']}  input resident {_pct(resident)}  "
                f"load {r['loadavg_after']}")
            if r["rc"] != 0:
                if c == "scanpy":
                    res["scanpy_status"] = scanpy_failure(r)
                else:
                    res[f"{c}_status"] = f"failed: exit {r['rc']}: {r['stderr_tail'][-300:]}"
                log(f"  {c} failed: {r['stderr_tail'][-500:]}")
        if res.get("atlasnorm_status") or res.get("cp_status"):
            break

    # medians
    summary: dict = {}
    for c in CONTENDERS:
        ok = [r for r in res["runs"][c] if r["rc"] == 0]
        if ok:
            summary[c] = {"wall_median": statistics.median(r["wall"] for r in ok),
                          "wall_all": [r["wall"] for r in ok],
                          "maxrss_max": max(r["maxrss"] for r in ok),
                          "user_median": statistics.median(r["user"] for r in ok),
                          "sys_median": statistics.median(r["sys"] for r in ok),
                          "n": len(ok)}
    if "scanpy" in summary:
        ph = [r["phases"] for r in res["runs"]["scanpy"] if r.get("phases")]
        if ph:
            summary["scanpy"]["phases_median"] = {k: statistics.median(p[k] for p in ph)
                                                  for k in ph[0]}
            work = [sum(v for k, v in p.items() if k not in ("import", "numba_jit",
                                                               "total_in_process")) for p in ph]
            summary["scanpy"]["work_median"] = statistics.median(work)
    res["summary"] = summary
    res["resident_min"] = min((r["resident_before"] for c in CONTENDERS for r in res["runs"][c]
                               if r["resident_before"] is not None), default=None)
    s = summary
    res["ratio_scanpy_atlasnorm"] = (s["scanpy"]["wall_median"] / s["atlasnorm"]["wall_median"]
                                     if "scanpy" in s and "atlasnorm" in s else None)
    res["ratio_atlasnorm_cp"] = (s["atlasnorm"]["wall_median"] / s["cp"]["wall_median"]
                                 if "cp" in s and "atlasnorm" in s else None)

    # outputs: sizes, then the bit-for-bit check
    res["output_size"] = {c: dst[c].stat().st_size for c in CONTENDERS if dst[c].exists()}
    if "atlasnorm" in s and "scanpy" in s and dst["atlasnorm"].exists() and dst["scanpy"].exists():
        log("  verifying atlasnorm output against scanpy output (bit for bit)")
        t = time.perf_counter()
        problems = verify(dst["atlasnorm"], dst["scanpy"], args.key_added)
        res["verify"] = "MATCH" if not problems else "MISMATCH"
        res["verify_problems"] = problems
        res["verify_seconds"] = time.perf_counter() - t
        log(f"  {res['verify']}" + "".join(f"\n    {p}" for p in problems))
    else:
        res["verify"] = "n/a"
        res["verify_problems"] = []
    res["load_after"] = load()
    if not args.keep_outputs:
        for p in (*dst.values(), tfile, errf):
            remove(p)
    return res


def _pct(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{100 * x:.0f}%" if x >= 1 or round(100 * x) < 100 else f"{100 * x:.1f}%"


# ------------------------------------------------------------------------------------------ report

def _sec(s: dict, c: str) -> str:
    if c not in s:
        return "–"
    v = s[c]["wall_median"]
    return f"{v:.2f}" if v < 100 else f"{v:.0f}"


def markdown(results: list[dict], m: dict, args) -> str:
    lines = [
        f"Measured {m['date']} on {m['host']}: {m['cpu_model']}, {m['nproc']} cores, "
        f"{human(m['mem_total'])} RAM, {m['workdir_fs']}; {m['atlasnorm_version']} "
        f"(binary {m['atlasnorm_bin']}; checkout {m['repo_commit']}), scanpy {m['versions'].get('scanpy')}, anndata "
        f"{m['versions'].get('anndata')}. Median of {args.repeat} interleaved rounds; wall seconds "
        f"(process start to exit, scanpy's Python imports included); peak RSS from GNU time (%M). "
        f"atlasnorm options: defaults" + (f", --memory {args.memory}" if args.memory else "")
        + (f", --threads {args.threads}" if args.threads else "")
        + (f", --key-added {args.key_added}" if args.key_added else "") + ".",
        "",
        "| input | X | file size | nnz | page cache | load (1 min) before → after | cp s | "
        "atlasnorm s | scanpy s | scanpy work s¹ | scanpy / atlasnorm | atlasnorm / cp | CPU s (user+sys) cp / "
        "atlasnorm / scanpy | peak RSS cp | peak RSS atlasnorm | peak RSS scanpy | "
        "atlasnorm = scanpy |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    notes = []
    for r in results:
        i, s = r["input"], r["summary"]
        rm = r["resident_min"]
        cache = ("unknown" if rm is None else "warm" if rm >= 0.999 else
                 f"warm (≥ {_pct(rm)} resident)" if rm >= 0.95 else
                 f"partly cold (≥ {_pct(rm)} resident)")
        if not args.warm:
            cache += ", no warm-up"
        sc_time = _sec(s, "scanpy")
        if "scanpy" not in s:
            sc_time = "not run"
            notes.append(f"{i['name']}: scanpy {r['scanpy_status'] or 'not run'}")
        elif r["scanpy_status"]:
            notes.append(f"{i['name']}: scanpy {r['scanpy_status']}")
        for c in ("cp", "atlasnorm"):
            if r.get(f"{c}_status"):
                notes.append(f"{i['name']}: {c} {r[f'{c}_status']}")
        rss = [human(s[c]["maxrss_max"]) if c in s else "–" for c in CONTENDERS]
        ratio_s = f"{r['ratio_scanpy_atlasnorm']:.1f}×" if r["ratio_scanpy_atlasnorm"] else "–"
        ratio_c = f"{r['ratio_atlasnorm_cp']:.1f}×" if r["ratio_atlasnorm_cp"] else "–"
        w = s.get("scanpy", {}).get("work_median")
        sc_work = "–" if w is None else f"{w:.2f}"
        cpu = " / ".join(f"{s[c]['user_median'] + s[c]['sys_median']:.2f}" if c in s else "–"
                         for c in CONTENDERS)
        verdict = r["verify"]
        if r["verify_problems"]:
            notes += [f"{i['name']}: {p}" for p in r["verify_problems"]]
        lines.append(
            f"| {i['name']} | {i['encoding']}, {i['compression']} | {human(i['file_size'])} | "
            f"{i['nnz']:,} | {cache} | {r['load_before'].split(',')[0]} → "
            f"{r['load_after'].split(',')[0]} | {_sec(s, 'cp')} | {_sec(s, 'atlasnorm')} | "
            f"{sc_time} | {sc_work} | {ratio_s} | {ratio_c} | {cpu} | {rss[0]} | {rss[1]} | {rss[2]} | {verdict} |")
    lines += ["", "¹ scanpy's read_h5ad + normalize_total + log1p + write_h5ad as timed inside its "
              "process: its wall time without Python imports and numba's one-off compilation (what "
              "a warm, long-lived Python session would pay). The ratio column uses the full wall "
              "time."]
    if notes:
        lines += [""] + [f"* {n}" for n in notes]
    ph = [(r["input"]["name"], r["summary"]["scanpy"]["phases_median"],
           r["summary"]["scanpy"].get("work_median")) for r in results
          if "scanpy" in r["summary"] and "phases_median" in r["summary"]["scanpy"]]
    if ph:
        lines += ["", "scanpy's phases (median seconds, inside its process; `work` = read_h5ad + "
                  "normalize_total + log1p + write_h5ad, i.e. without Python imports and numba's "
                  "one-off compilation): " + "; ".join(
                      f"{n}: " + ", ".join(f"{k} {v:.2f}" for k, v in p.items()
                                           if k != "total_in_process")
                      + (f", **work {w:.2f}**" if w is not None else "")
                      for n, p, w in ph)]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------- main

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See BENCHMARKS.md for the commands behind its numbers.")
    p.add_argument("--inputs", nargs="+", type=Path, default=[], metavar="H5AD",
                   help="existing .h5ad inputs (instead of / as well as --profiles)")
    p.add_argument("--profiles", default=None,
                   help="comma-separated `atlasnorm synth` profiles to synthesize into --workdir "
                        "(default: pbmc68k when no --inputs)")
    p.add_argument("--compression", default="none",
                   help="comma-separated compressions for synthesized inputs: none,gzip,lzf "
                        "(default: none)")
    p.add_argument("--seed", type=int, default=0, help="synth seed (default 0)")
    p.add_argument("--resynth", action="store_true", help="synthesize even if the file exists")
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each contender (median)")
    p.add_argument("--memory", default=None, help="atlasnorm --memory (default: its own, 1GiB)")
    p.add_argument("--threads", type=int, default=None,
                   help="atlasnorm --threads; also sets NUMBA/OMP/BLAS thread counts for scanpy")
    p.add_argument("--key-added", default=None,
                   help="pass --key-added NAME to both, and compare obs[NAME] too")
    p.add_argument("--workdir", type=Path, default=REPO / "bench-out",
                   help="synthesized inputs, outputs, results (default <repo>/bench-out)")
    p.add_argument("--skip-scanpy-above", default="auto", metavar="SIZE|auto|none",
                   help="don't run scanpy when X's in-memory size exceeds SIZE; 'auto' (default): "
                        "when 3 × X + 0.5 GiB exceeds MemAvailable; 'none': always try (a "
                        "MemoryError or an OOM kill is then reported, not fatal)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per run before a kill")
    p.add_argument("--no-warm", dest="warm", action="store_false",
                   help="no warm-up read of the input before each run")
    p.add_argument("--no-sync", dest="sync", action="store_false",
                   help="don't call sync (untimed) before each run")
    p.add_argument("--keep-outputs", action="store_true", help="keep the three outputs")
    p.add_argument("--json", type=Path, default=None,
                   help="raw numbers (default <workdir>/e2e-<timestamp>.json)")
    p.add_argument("--markdown", type=Path, default=None,
                   help="the table (default <workdir>/e2e-<timestamp>.md)")
    p.add_argument("--from-json", nargs="+", type=Path, default=None, metavar="JSON",
                   help="run nothing: print the Markdown table of earlier runs' JSON files")
    args = p.parse_args()
    if args.from_json:
        docs = [json.loads(j.read_text()) for j in args.from_json]
        for d in docs:
            print(markdown(d["results"], d["machine"], argparse.Namespace(**d["args"])))
        return
    if args.skip_scanpy_above == "none":
        args.skip_scanpy_above = None
    elif args.skip_scanpy_above != "auto":
        args.skip_scanpy_above = parse_size(args.skip_scanpy_above)
    if args.memory:
        parse_size(args.memory)  # early check of the syntax; atlasnorm parses it itself
    if args.repeat < 1:
        p.error("--repeat must be >= 1")

    args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir.resolve()
    outdir = workdir / "out"
    outdir.mkdir(exist_ok=True)
    binary = find_binary()
    python = find_python()
    m = machine(workdir, binary, python)
    print_machine(m)

    inputs = [x.resolve() for x in args.inputs]
    for x in inputs:
        if not x.is_file():
            sys.exit(f"e2e: no such input: {x}")
    profiles = args.profiles.split(",") if args.profiles else ([] if inputs else ["pbmc68k"])
    comps = [c.strip() for c in args.compression.split(",") if c.strip()]
    inputs += synth_inputs(binary, workdir, [x.strip() for x in profiles if x.strip()], comps,
                           args.seed, args.resynth)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    jpath = args.json or workdir / f"e2e-{stamp}.json"
    mpath = args.markdown or workdir / f"e2e-{stamp}.md"
    results = []
    for x in inputs:
        results.append(bench_input(x, args, binary, python, outdir))
        # rewrite after every input, so a long run leaves what it measured so far
        doc = {"machine": m, "args": {k: (str(v) if isinstance(v, Path) else v)
                                      for k, v in vars(args).items() if k != "inputs"}
               | {"inputs": [str(i) for i in inputs]}, "results": results}
        jpath.write_text(json.dumps(doc, indent=1, default=str))
    md = markdown(results, m, args)
    mpath.write_text(md)
    print(md)
    print(f"JSON: {jpath}\nMarkdown: {mpath}")
    if any(r["verify"] == "MISMATCH" for r in results):
        sys.exit(2)


if __name__ == "__main__":
    main()
