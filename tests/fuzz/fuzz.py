"""Bounded mutation fuzzing of `atlasnorm normalize` and `atlasnorm inspect`.

A case is (run seed, case number): the case number picks a seed file (seeds.py: anndata-written
.h5ad and .zarr inputs), the Generator seeded with both draws one to three mutations
(mutate_h5ad.py, mutate_zarr.py) and an option set, so any case is rebuilt exactly from the two
numbers printed with it. Each mutated input is then run through the CLI and judged:

* exit 0: OUTPUT (and nothing else) exists; anndata 0.13.4 reads it; if anndata reads the mutated
  input and scanpy 1.12.4 processes it, the output equals scanpy's bit for bit (compare.py); if
  scanpy raises on it, exit 0 is wrong (the CLI must refuse where scanpy does); if anndata cannot
  even read the input's matrix, exit 0 is wrong too (the CLI computed from something no reader
  accepts: an unverified checksum, a silently mis-decoded chunk);
* otherwise: exit status 1, and on stderr exactly one message "error: INPUT: ELEMENT: PROBLEM"
  (warnings aside), no panic / abort / signal, no raw HDF5 or library noise, nothing left beside
  OUTPUT, INPUT byte-identical;
* a run longer than the timeout is a hang, a failure; so is any crash of `inspect`.

Two worker processes (multiprocessing, spawn) each keep anndata, scanpy and numba warm and run
the CLI as a subprocess (--threads 1 mostly): the machine's two cores stay busy with one CLI run
and one check at a time. Inputs and outputs live on /dev/shm when there is one (the CLI fsyncs
every file it writes; on a disk that is most of a small run's time).

Run by tests/interop/test_fuzz.py; by hand:
    python tests/fuzz/fuzz.py --cases 2000                  # the default run seeds, 2000 cases
    python tests/fuzz/fuzz.py --seed 20261201 --case 4711   # replay one case, keep its files
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for p in (str(HERE), str(HERE.parent / "interop")):
    if p not in sys.path:
        sys.path.insert(0, p)

import numpy as np  # noqa: E402

import seeds as seedlib  # noqa: E402

NORMALIZE_TIMEOUT = float(os.environ.get("ATLASNORM_FUZZ_TIMEOUT", "60"))
INSPECT_TIMEOUT = NORMALIZE_TIMEOUT / 2
WORKER_SILENCE = float(os.environ.get("ATLASNORM_FUZZ_SILENCE", str(4 * NORMALIZE_TIMEOUT + 60)))
WORKER_ADDRESS_SPACE = 16 << 30  # a judge reading a corrupt 2^32-element array fails, not the machine
CLI_ADDRESS_SPACE = 4 << 30  # RLIMIT_AS of a CLI run: a huge allocation fails fast, the machine survives

# glibc's heap checks print "malloc(): ...", "free(): ...", "corrupted size vs. prev_size",
# "corrupted double-linked list"; a codec's own word for damaged input (zstd's "Dictionary is
# corrupted", inside one clean error line) is no crash.
CRASH = re.compile(r"panicked at|RUST_BACKTRACE|stack backtrace|Traceback|malloc\(\)|free\(\)|double free|"
                   r"corrupted size vs|corrupted double-linked|Segmentation fault|core dumped|Aborted|"
                   r"memory allocation of \d+ bytes failed|internal error")
NOISE = re.compile(r"HDF5-DIAG|#\d{3}:|major: |minor: |errno = |file descriptor = |buf = 0x|addr = |"
                   r"H5[A-Z][A-Za-z_]*\(|H5F_|H5D_|H5O_|\bError \{|Os \{ code|Custom \{ kind")


def default_run_seeds() -> list[int]:
    """A fixed seed (the same cases every run) and one that rotates with the UTC date."""
    env = os.environ.get("ATLASNORM_FUZZ_SEEDS")
    if env:
        return [int(s) for s in env.split(",") if s.strip()]
    return [0, int(datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d"))]


def default_workdir() -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > (2 << 30):
        return shm
    return Path(os.environ.get("TMPDIR", "/tmp"))


def input_fingerprint(path: Path) -> str:
    """Like tree_hash, but a file hard-linked to a seed counts by (size, mtime, inode): the seeds'
    own hashes, checked at the end of a campaign, cover their bytes."""
    path = Path(path)
    if not path.is_dir():
        return tree_hash(path)
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode() + b"\0")
        if p.is_file():
            st = p.stat()
            if st.st_nlink > 1:
                h.update(f"{st.st_size}/{st.st_mtime_ns}/{st.st_ino}".encode())
            else:
                h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def tree_hash(path: Path) -> str:
    h = hashlib.sha256()
    path = Path(path)
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            h.update(str(p.relative_to(path)).encode() + b"\0")
            if p.is_file():
                h.update(hashlib.sha256(p.read_bytes()).digest())
    elif path.exists():
        h.update(path.read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# cases


@dataclasses.dataclass
class Case:
    run_seed: int
    index: int
    seed_name: str
    mutation: str = ""
    opts: object = None
    extra: tuple = ()
    out_name: str = "out.h5ad"
    inspect: bool = False

    @property
    def ident(self) -> str:
        return f"seed={self.run_seed} case={self.index}"

    def repro(self) -> str:
        return f"python tests/fuzz/fuzz.py --seed {self.run_seed} --case {self.index}"


def _options(rng, spec: dict):
    from oracle import Options

    layer = None if spec.get("where", "X") == "X" else "counts"
    ehe = rng.random() < 0.2
    return Options(
        target_sum=[None, None, 1e4, 1.0][int(rng.integers(4))],
        exclude_highly_expressed=ehe,
        max_fraction=0.1 if ehe else None,
        key_added="norm_factor" if rng.random() < 0.3 else None,
        layer=layer,
        log1p=(log1p := rng.random() < 0.85),
        base=2.0 if (rng.random() < 0.15 and log1p) else None,
    )


def build_case(seeds_dir: Path, case_dir: Path, run_seed: int, index: int) -> tuple[Case, Path]:
    """Copy the seed of case `index` into case_dir, mutate it; returns the case and the input path."""
    import mutate_h5ad
    import mutate_zarr

    names = list(seedlib.SEEDS)
    name = names[index % len(names)]
    spec = seedlib.SEEDS[name]
    rng = np.random.default_rng([run_seed, index])
    case = Case(run_seed, index, name)
    element = seedlib.element_of(spec)
    inp = case_dir / name
    if spec["kind"] == "h5ad":
        shutil.copyfile(seeds_dir / name, inp)
        case.mutation = mutate_h5ad.mutate(rng, inp, element)
    else:
        mutate_zarr.clone(seeds_dir / name, inp)
        case.mutation = mutate_zarr.mutate(rng, inp, element)
    case.opts = _options(rng, spec)
    extra = ["--threads", "2" if rng.random() < 0.15 else "1"]
    if rng.random() < 0.15:
        extra += ["--block-values", str(int(rng.integers(1, 64)))]
    case.extra = tuple(extra)
    same = "out.h5ad" if spec["kind"] == "h5ad" else "out.zarr"
    other = "out.zarr" if spec["kind"] == "h5ad" else "out.h5ad"
    case.out_name = other if rng.random() < 0.1 else same
    case.inspect = rng.random() < 0.2
    return case, inp


# ---------------------------------------------------------------------------------------------
# judging one case (runs in a worker)

_CFG: dict = {}


def _init_worker(cfg: dict) -> None:
    """Imports and numba JIT once per worker process."""
    if "numba" not in sys.modules:  # numba refuses a changed thread count once it has started
        os.environ.setdefault("NUMBA_NUM_THREADS", "1")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    _CFG.update(cfg)
    if cfg.get("limit_memory"):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY or soft > WORKER_ADDRESS_SPACE:
            resource.setrlimit(resource.RLIMIT_AS, (WORKER_ADDRESS_SPACE, hard))
    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.WARNING)
    import anndata as ad
    import scanpy as sc  # noqa: F401
    import scipy.sparse as sp

    from oracle import Options, scanpy_pipeline

    for X in (sp.random(6, 5, density=0.5, format="csr", dtype=np.float32, random_state=0),
              np.arange(30, dtype=np.float64).reshape(6, 5)):
        for o in (Options(), Options(exclude_highly_expressed=True, max_fraction=0.1, key_added="k")):
            try:
                scanpy_pipeline(ad.AnnData(X.copy()), o)
            except Exception:  # noqa: BLE001
                pass


def _limit_memory():  # preexec_fn of the CLI
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (CLI_ADDRESS_SPACE, CLI_ADDRESS_SPACE))


def _run(cmd: list[str], timeout: float):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout,
                              preexec_fn=_limit_memory, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        return e


def _judge_refusal(proc, inp: Path, what: str) -> str | None:
    """None if `proc` is a clean refusal naming `inp`, else the reason it is not."""
    rc = proc.returncode
    text = (proc.stderr or "") + (proc.stdout or "")
    if rc < 0:
        return f"{what}: killed by signal {-rc}"
    if CRASH.search(text):
        return f"{what}: crash text: {CRASH.search(text).group(0)!r}"
    if NOISE.search(text):
        return f"{what}: library noise: {NOISE.search(text).group(0)!r}"
    if rc != 1:
        return f"{what}: exit status {rc} (want 1)"
    lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip() and not ln.startswith("warning: ")]
    if len(lines) != 1:
        return f"{what}: {len(lines)} message lines (want one)"
    prefix = f"error: {inp}: "
    if not lines[0].startswith(prefix):
        return f"{what}: message does not start with {prefix!r}"
    element, sep, problem = lines[0][len(prefix):].partition(": ")
    if not sep or not element.strip() or not problem.strip():
        return f"{what}: message names no element and problem"
    return None


def _read_any(path: Path):
    import anndata as ad

    return ad.read_zarr(path) if str(path).endswith(".zarr") else ad.read_h5ad(path)


def _input_variants(inp: Path):
    """The ways a reader may see the input: anndata's read (through the consolidated metadata of a
    .zarr), and, for a .zarr with consolidated metadata, through each node's own metadata, which
    is what atlasnorm reads (store/zarr/node.rs: consolidated metadata may be stale)."""
    yield "anndata", _read_any
    if str(inp).endswith(".zarr") and ((inp / ".zmetadata").exists() or (
            (inp / "zarr.json").exists() and "consolidated_metadata" in (inp / "zarr.json").read_text())):
        if not _consolidated_is_exact(inp):
            yield "own-metadata", _read_own_metadata


def _consolidated_is_exact(store: Path) -> bool:
    """Whether a store's consolidated metadata is, document for document, its nodes' own
    metadata (the same nodes, equal JSON): then reading through either gives the same AnnData
    and the second reading is skipped. Any doubt (unreadable JSON, another node set) -> False."""
    try:
        if (store / "zarr.json").exists():
            root = json.loads((store / "zarr.json").read_text())
            entries = root["consolidated_metadata"]["metadata"]
            own = {}
            for p in store.rglob("zarr.json"):
                rel = str(p.parent.relative_to(store))
                if rel != ".":
                    own[rel] = json.loads(p.read_text())
            return _strip_cm(own) == _strip_cm(entries)
        doc = json.loads((store / ".zmetadata").read_text())
        entries = doc["metadata"]
        own = {}
        for name in (".zarray", ".zattrs", ".zgroup"):
            for p in store.rglob(name):
                rel = str(p.relative_to(store))
                own[rel] = json.loads(p.read_text())
        return _strip_cm(own) == _strip_cm(entries)
    except Exception:  # noqa: BLE001
        return False


def _strip_cm(entries: dict) -> dict:
    """The entries without a group's own (empty or nested) `consolidated_metadata` key, which
    zarr-python adds to group entries and rebuilds from the flat listing when it reads."""
    return {k: ({kk: vv for kk, vv in v.items() if kk != "consolidated_metadata"} if isinstance(v, dict) else v)
            for k, v in entries.items()}


def _read_own_metadata(path: Path):
    """anndata's read of a .zarr through every node's own metadata (not the consolidated copy);
    a .h5ad is read as usual."""
    import anndata as ad

    if not str(path).endswith(".zarr"):
        return ad.read_h5ad(path)
    import zarr

    return _native(ad.read_zarr(zarr.open_group(str(path), mode="r", use_consolidated=False)))


def _matrix_readable(inp: Path, element: str) -> bool:
    """Whether anndata reads the matrix element of the input on its own (any metadata variant)."""
    import anndata as ad

    for consolidated in (None, False):
        try:
            if str(inp).endswith(".zarr"):
                import zarr

                g = zarr.open_group(str(inp), mode="r", use_consolidated=consolidated)
                ad.io.read_elem(g[element])
            else:
                import h5py

                with h5py.File(inp, "r") as f:
                    ad.io.read_elem(f[element])
            return True
        except Exception:  # noqa: BLE001
            if not str(inp).endswith(".zarr"):
                return False
    return False


_RESULTS: dict = {}  # (matrix key, options) -> (matrix, norm_factor or None) | exception


def _matrix_key(M) -> tuple:
    import scipy.sparse as sp

    h = hashlib.sha1()
    if sp.issparse(M):
        parts = (M.data, M.indices, M.indptr)
        meta = (type(M).__name__, M.shape, *(a.dtype.str for a in parts))
    else:
        M = np.asarray(M)
        parts = (np.ascontiguousarray(M),)
        meta = (type(M).__name__, M.shape, M.dtype.str)
    for a in parts:
        h.update(np.ascontiguousarray(a).view(np.uint8).tobytes() if a.size else b"")
        h.update(b"|")
    return (*meta, h.hexdigest())


def expected_pipeline(adata, opts, *, verify: bool = False) -> None:
    """scanpy's pipeline (oracle.scanpy_pipeline) on `adata`, in place, with its result for a
    matrix already seen replayed instead of recomputed: normalize_total and log1p only read the
    matrix and the options, and write back the matrix, obs[key_added] (the factors, when asked)
    and uns["log1p"] = {"base": base} (scanpy 1.12.4, preprocessing/_normalization.py and
    _simple.py). Most exit-0 cases leave the matrix as the seed had it, so this saves scanpy's
    ~20 ms of per-call overhead there. `verify`: run scanpy anyway and check the replay."""
    from oracle import scanpy_pipeline

    M = adata.X if opts.layer is None else adata.layers[opts.layer]
    key = (_matrix_key(M), opts)
    hit = _RESULTS.get(key)
    if hit is None or verify:
        try:
            scanpy_pipeline(adata, opts)
        except Exception as e:  # noqa: BLE001
            if hit is not None and not isinstance(hit, BaseException):
                raise AssertionError(f"replayed scanpy result is wrong: scanpy raises {e!r}") from e
            _RESULTS[key] = e
            raise
        R = adata.X if opts.layer is None else adata.layers[opts.layer]
        factors = np.asarray(adata.obs[opts.key_added]).copy() if opts.key_added else None
        if hit is None:
            if len(_RESULTS) > 512:
                _RESULTS.clear()
            _RESULTS[key] = (R.copy(), factors)
            return
        from compare import diff_array, diff_matrix

        if isinstance(hit, BaseException):
            raise AssertionError(f"replayed scanpy result is wrong: it raised {hit!r} before")
        d = diff_matrix("X", hit[0], R) + ([] if factors is None else diff_array("factors", hit[1], factors))
        assert not d, f"replayed scanpy result is wrong: {d}"
        return
    if isinstance(hit, BaseException):
        raise hit
    R, factors = hit
    if opts.key_added is not None:
        adata.obs[opts.key_added] = factors.copy()
    if opts.layer is None:
        adata.X = R.copy()
    else:
        adata.layers[opts.layer] = R.copy()
    if opts.log1p:
        adata.uns["log1p"] = {"base": opts.base}


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:240]}"


def _native(adata):
    """zarr-python's reads without consolidated metadata give numpy dtypes with an explicit '<'
    byte order ('<f4', not 'float32'); compare.py compares dtypes by repr too, so make them
    native again before comparing (same values, same kind)."""
    import pandas as pd

    for df in (adata.obs, adata.var):
        for c in df.columns:
            dt = df[c].dtype
            if isinstance(dt, np.dtype) and dt.byteorder == "<":
                df[c] = df[c].to_numpy().astype(dt.char)
        dt = df.index.dtype
        if isinstance(dt, np.dtype) and dt.byteorder == "<":
            df.index = pd.Index(df.index.to_numpy().astype(dt.char), name=df.index.name)
    return adata


def _judge_success(case: Case, inp: Path, out: Path, workdir: Path) -> tuple[str, str | None, str | None]:
    """(outcome, failure kind, failure) of an exit-0 run."""
    from compare import diff_anndata, diff_files
    from oracle import expected_outcome

    if not out.exists():
        return "ok", "no-output", "exit 0 but no OUTPUT"
    leftovers = sorted(p.name for p in out.parent.iterdir() if p.name != out.name)
    if leftovers:
        return "ok", "leftovers", f"exit 0 but also left {leftovers} beside OUTPUT"
    try:
        actual = _read_any(out)
    except Exception as e:  # noqa: BLE001
        # atlasnorm reads a .zarr through each node's own metadata (store/zarr/node.rs): if the
        # input is unreadable that way too, the run copied a broken element it was given
        try:
            _read_own_metadata(inp)
        except Exception:  # noqa: BLE001
            return "ok", "broken-output-inherited", (
                f"broken output: anndata cannot read it ({_short(e)}); the input is unreadable too: "
                "exit 0 copied an element no reader accepts")
        return "ok", "broken-output", f"broken output: anndata reads the input but not the output: {_short(e)}"
    seen = []
    for name, read in _input_variants(inp):
        try:
            expected = read(inp)
        except Exception as e:  # noqa: BLE001
            seen.append((name, "unreadable", _short(e)))
            continue
        try:
            expected_pipeline(expected, case.opts, verify=case.index % 20 == 0)
        except Exception as e:  # noqa: BLE001
            seen.append((name, "scanpy-raises", _short(e)))
            continue
        if name != "anndata":
            _native(expected)  # factors computed from '<f4' data are '<f4' too
        if name != "anndata":
            try:
                actual = read(out)
            except Exception as e:  # noqa: BLE001
                seen.append((name, "differs", f"output unreadable this way: {_short(e)}"))
                continue
        diffs = diff_anndata(expected, actual)
        if diffs:
            # confirm the way the interop suite compares: scanpy's output written and read back
            if name == "anndata":
                exp = workdir / ("expected" + out.suffix)
                res = expected_outcome(inp, case.opts, exp)
                if not isinstance(res, BaseException):
                    diffs = diff_files(exp, out)
        if not diffs:
            return ("ok-equal" if name == "anndata" else f"ok-equal-{name}"), None, None
        if not diff_anndata(read(inp), read(inp)) == []:
            # the reader itself gives different values on two reads of the same bytes (zarr-python
            # on a truncated chunk returns uninitialised memory): there is no reference to agree with
            return "ok-input-unreadable", None, None
        seen.append((name, "differs", f"{len(diffs)} difference(s) from scanpy: " + " | ".join(diffs[:6])))
    kinds = [k for _n, k, _t in seen]
    if "differs" in kinds:
        return "ok", "differs", "; ".join(f"[{n}] {t}" for n, k, t in seen if k == "differs")
    if "scanpy-raises" in kinds:
        return "ok", "scanpy-raises", "exit 0 although scanpy raises on this input: " + "; ".join(
            f"[{n}] {t}" for n, k, t in seen if k == "scanpy-raises")
    element = seedlib.element_of(seedlib.SEEDS[case.seed_name])
    if any("does not support dtype >" in t for _n, _k, t in seen):
        # big-endian sparse data: scipy (so anndata) cannot hold it, atlasnorm can (issue 9 point 4)
        return "ok-input-unreadable", None, None
    if not _matrix_readable(inp, element):
        return "ok", "matrix-unreadable", (f"exit 0 although anndata cannot read the input's {element}: "
                                           + "; ".join(t for _n, _k, t in seen))
    return "ok-input-unreadable", None, None


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the CLI runs)."""
    import resource

    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + c.ru_utime + c.ru_stime


def execute(case: Case, inp: Path, out_dir: Path, root: Path, rec: dict) -> str | None:
    """Run the CLI on the (already mutated) input `inp` and judge it; fills `rec`, returns the
    failure (None: the run kept the contract)."""
    failure = None
    before = input_fingerprint(inp)
    out = out_dir / case.out_name
    cmd = [*_CFG["cli"], "normalize", str(inp), str(out), "--quiet", *case.opts.cli_args(), *case.extra]
    rec["cmd"] = " ".join(cmd)
    t1 = _cpu()
    proc = _run(cmd, NORMALIZE_TIMEOUT)
    t2 = _cpu()
    if isinstance(proc, subprocess.TimeoutExpired):
        failure = f"normalize: no result after {NORMALIZE_TIMEOUT:.0f} s (hang)"
        rec["outcome"] = rec["kind"] = "timeout"
    else:
        rec["stderr"] = (proc.stderr or "")[-1500:]
        if proc.returncode == 0:
            rec["outcome"], rec["kind"], failure = _judge_success(case, inp, out, root)
        else:
            rec["outcome"] = "refused"
            failure = _judge_refusal(proc, inp, "normalize")
            rec["kind"] = failure and failure.split(":")[1].strip().split(" ")[0]
            if failure is None and any(out_dir.iterdir()):
                failure = f"refused but left {sorted(p.name for p in out_dir.iterdir())} in OUTPUT's directory"
                rec["kind"] = "leftovers"
            lines = (proc.stderr or "").strip().splitlines()
            rec["message"] = lines[-1][:300] if lines else ""
    if failure is None and input_fingerprint(inp) != before:
        failure, rec["kind"] = "INPUT was modified", "input-modified"
    t3 = _cpu()
    if failure is None and case.inspect:
        ip = _run([*_CFG["cli"], "inspect", str(inp)], INSPECT_TIMEOUT)
        if isinstance(ip, subprocess.TimeoutExpired):
            failure = f"inspect: no result after {INSPECT_TIMEOUT:.0f} s (hang)"
            rec["kind"] = "inspect-timeout"
        elif ip.returncode != 0:
            failure = _judge_refusal(ip, inp, "inspect")
            if failure:
                rec["stderr"] = (ip.stderr or "")[-1500:]
                rec["kind"] = "inspect-" + failure.split(":")[1].strip().split(" ")[0]
    rec["t_run"] = (t2 - t1, t3 - t2, _cpu() - t3)
    return failure


def case_record(case: Case) -> dict:
    """What a regression test needs to run the case again (see run_regression)."""
    return {"seed_name": case.seed_name, "mutation": case.mutation, "opts": dataclasses.asdict(case.opts),
            "extra": list(case.extra), "out": case.out_name, "inspect": case.inspect}


def run_case(run_seed: int, index: int, *, keep: Path | None = None) -> dict:
    """Build, run and judge one case. Returns a record (outcome, failure, timings)."""
    t0 = _cpu()
    root = Path(_CFG["work"]) / f"c{run_seed}-{index}"
    shutil.rmtree(root, ignore_errors=True)
    case_dir = root / "in"
    out_dir = root / "out"
    case_dir.mkdir(parents=True)
    out_dir.mkdir()
    rec = {"seed": run_seed, "case": index}
    failure = None
    try:
        case, inp = build_case(Path(_CFG["seeds"]), case_dir, run_seed, index)
        rec.update(seed_name=case.seed_name, mutation=case.mutation, opts=case.opts.short(),
                   extra=" ".join(case.extra), out=case.out_name, op=case.mutation.split(":")[0],
                   case_record=case_record(case))
        t1 = _cpu()
        failure = execute(case, inp, out_dir, root, rec)
        rec["t"] = (t1 - t0, *rec.pop("t_run"))
    except Exception as e:  # noqa: BLE001 - a harness error is reported like a failure, never hidden
        failure = f"harness error: {type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}"
        rec.setdefault("outcome", "harness-error")
        rec["kind"] = "harness-error"
    rec["failure"] = failure
    if failure is not None:
        dest = Path(keep or _CFG["failures"]) / f"seed{run_seed}-case{index}"
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(case_dir, dest / "in", symlinks=True)
        (dest / "case.json").write_text(json.dumps(rec, indent=1, default=str))
        rec["kept"] = str(dest)
    if keep is None or failure is None:
        shutil.rmtree(root, ignore_errors=True)
    return rec


def run_regression(cli: list[str], case_dir: Path, work: Path) -> dict:
    """Run a kept case (tests/data/fuzz-regressions/NAME: `in/<input>` and `case.json`) again,
    judged exactly like a fuzz case. Returns the record; rec["failure"] is None when it passes."""
    from oracle import Options

    _CFG.setdefault("cli", cli)
    _CFG["cli"] = cli
    spec = json.loads((case_dir / "case.json").read_text())
    c = spec["case_record"]
    case = Case(int(spec.get("seed", -1)), int(spec.get("case", -1)), c["seed_name"], c["mutation"],
                Options(**c["opts"]), tuple(c["extra"]), c["out"], bool(c.get("inspect", True)))
    root = work / case_dir.name
    shutil.rmtree(root, ignore_errors=True)
    (root / "out").mkdir(parents=True)
    src = case_dir / "in" / c["seed_name"]
    inp = root / "in" / c["seed_name"]
    inp.parent.mkdir()
    if src.is_dir():
        shutil.copytree(src, inp)
    else:
        shutil.copyfile(src, inp)
    rec = {"seed": case.run_seed, "case": case.index, "mutation": case.mutation}
    rec["failure"] = execute(case, inp, root / "out", root, rec)
    return rec


def save_regression(kept: Path, name: str, bug: str) -> Path:
    """Copy a kept failing case (its mutated input and case record) to
    tests/data/fuzz-regressions/NAME, where test_fuzz.py runs it in every suite run."""
    rec = json.loads((kept / "case.json").read_text())
    dest = REPO / "tests" / "data" / "fuzz-regressions" / name
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(kept / "in", dest / "in")
    keep = {k: rec[k] for k in ("seed", "case", "seed_name", "mutation", "case_record", "failure", "kind") if k in rec}
    keep["bug"] = bug
    (dest / "case.json").write_text(json.dumps(keep, indent=1, default=str) + "\n")
    return dest


def _task(args):
    return run_case(*args)


# ---------------------------------------------------------------------------------------------
# a campaign


def campaign(cli: list[str], *, n_cases: int = 10_000, run_seeds: list[int] | None = None, jobs: int = 2,
             work: Path | None = None, failures: Path | None = None, log=print) -> dict:
    """Run n_cases cases split evenly over run_seeds on `jobs` workers; returns a summary."""
    import multiprocessing as mp

    run_seeds = run_seeds or default_run_seeds()
    base = Path(work or default_workdir()) / f"atlasnorm-fuzz-{os.getpid()}"
    shutil.rmtree(base, ignore_errors=True)
    seeds_dir = base / "seeds"
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seedlib.build_all(seeds_dir)
    seed_hashes = {n: tree_hash(seeds_dir / n) for n in seedlib.SEEDS}
    t_seeds = time.perf_counter() - t0
    failures = Path(failures or (base / "failures"))
    cfg = {"cli": cli, "seeds": str(seeds_dir), "work": str(base / "cases"), "failures": str(failures),
           "limit_memory": True}
    (base / "cases").mkdir(parents=True)
    per = [n_cases // len(run_seeds) + (1 if i < n_cases % len(run_seeds) else 0) for i in range(len(run_seeds))]
    tasks = [(s, i) for s, n in zip(run_seeds, per) for i in range(n)]
    log(f"fuzz: {n_cases} cases, run seeds {run_seeds} ({per}), {jobs} workers, work dir {base}")
    records = []
    ctx = mp.get_context("spawn")
    t1 = time.perf_counter()
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(cfg,)) as pool:
        # chunksize 1: a larger one makes imap_unordered a plain generator, without next(timeout)
        it = pool.imap_unordered(_task, tasks, chunksize=1)
        k = 0
        while True:
            try:
                rec = it.next(timeout=WORKER_SILENCE)
            except StopIteration:
                break
            except mp.TimeoutError:
                # A worker died (the pool replaces it, but its cases are lost) or hangs: every
                # case without a record is reported, never silently dropped.
                done = {(r["seed"], r["case"]) for r in records}
                for s_, i_ in tasks:
                    if (s_, i_) not in done:
                        records.append({"seed": s_, "case": i_, "outcome": "lost", "kind": "lost",
                                        "failure": f"no result within {WORKER_SILENCE:.0f} s: the judging "
                                                   "worker died or hangs (replay the case alone)"})
                        log(f"FAIL [lost] seed={s_} case={i_}\n     repro: python tests/fuzz/fuzz.py "
                            f"--seed {s_} --case {i_}")
                pool.terminate()
                break
            k += 1
            records.append(rec)
            if rec["failure"]:
                log(f"FAIL [{rec.get('kind')}] seed={rec['seed']} case={rec['case']} [{rec.get('seed_name')}] {rec['failure']}\n"
                    f"     mutation: {rec.get('mutation')}\n     options: {rec.get('opts')} {rec.get('extra')} "
                    f"-> {rec.get('out')}\n     kept: {rec.get('kept')}\n"
                    f"     repro: python tests/fuzz/fuzz.py --seed {rec['seed']} --case {rec['case']}")
            if k % 1000 == 0:
                log(f"fuzz: {k}/{len(tasks)} cases, {time.perf_counter() - t1:.0f} s, "
                    f"{sum(1 for r in records if r['failure'])} failure(s)")
    elapsed = time.perf_counter() - t1
    changed = [n for n in seedlib.SEEDS if tree_hash(seeds_dir / n) != seed_hashes[n]]
    outcomes = Counter(r.get("outcome") for r in records)
    by_op = Counter((r.get("op"), r.get("outcome")) for r in records)
    kinds = Counter(r.get("kind") for r in records if r["failure"])
    fails = [r for r in records if r["failure"]]
    timing = np.array([r["t"] for r in records if "t" in r]) if records else np.zeros((0, 4))
    summary = {
        "cases": len(records), "run_seeds": run_seeds, "outcomes": dict(outcomes), "failure_kinds": dict(kinds),
        "by_op": {f"{o}/{c}": n for (o, c), n in sorted(by_op.items(), key=str)},
        "failures": fails, "seeds_modified": changed, "seconds": elapsed, "seed_build_seconds": t_seeds,
        "mean_cpu_seconds": dict(zip(("build", "normalize", "judge", "inspect"),
                                 timing.mean(axis=0).round(4).tolist() if len(timing) else [])),
        "cpu_by_seed": {n: round(float(np.mean([sum(r["t"]) for r in records if r.get("seed_name") == n and "t" in r]
                                                 or [0])), 4) for n in seedlib.SEEDS},
        "h5ad_cases": sum(1 for r in records if str(r.get("seed_name", "")).endswith(".h5ad")),
        "zarr_cases": sum(1 for r in records if str(r.get("seed_name", "")).endswith(".zarr")),
        "failures_dir": str(failures),
    }
    log(f"fuzz: {len(records)} cases in {elapsed:.0f} s (+{t_seeds:.0f} s seeds): {dict(outcomes)}; "
        f"h5ad {summary['h5ad_cases']}, zarr {summary['zarr_cases']}; mean CPU s/case {summary['mean_cpu_seconds']}; "
        f"{len(fails)} failure(s) {dict(kinds)}" + (f"; SEEDS MODIFIED: {changed}" if changed else ""))
    if not fails:
        shutil.rmtree(base, ignore_errors=True)
    else:
        shutil.rmtree(base / "cases", ignore_errors=True)
    return summary


def cli_command() -> list[str]:
    raw = os.environ.get("ATLASNORM_BIN")
    return [raw] if raw else [str(REPO / "target" / "release" / "atlasnorm")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=int(os.environ.get("ATLASNORM_FUZZ_CASES", "10000")))
    ap.add_argument("--seed", type=int, action="append", help="run seed (repeatable); default: 0 and today's date")
    ap.add_argument("--case", type=int, help="replay only this case (with --seed), keeping its files")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--keep", type=Path, default=Path("fuzz-failures"), help="where failing inputs are kept")
    ap.add_argument("--bin", help="the CLI (default: $ATLASNORM_BIN or target/release/atlasnorm)")
    ap.add_argument("--save-regression", nargs=3, metavar=("KEPT_DIR", "NAME", "BUG"),
                    help="copy a kept failing case to tests/data/fuzz-regressions/NAME")
    a = ap.parse_args(argv)
    if a.save_regression:
        print(save_regression(Path(a.save_regression[0]), a.save_regression[1], a.save_regression[2]))
        return 0
    cli = [a.bin] if a.bin else cli_command()
    if a.case is not None:
        seed = (a.seed or [0])[0]
        work = Path(a.work or default_workdir()) / f"atlasnorm-fuzz-replay-{os.getpid()}"
        seedlib.build_all(work / "seeds")
        _init_worker({"cli": cli, "seeds": str(work / "seeds"), "work": str(work / "cases"),
                      "failures": str(a.keep)})
        rec = run_case(seed, a.case, keep=a.keep)
        print(json.dumps({k: v for k, v in rec.items()}, indent=1, default=str))
        return 1 if rec["failure"] else 0
    s = campaign(cli, n_cases=a.cases, run_seeds=a.seed, jobs=a.jobs, work=a.work, failures=a.keep)
    print(json.dumps({k: v for k, v in s.items() if k != "failures"}, indent=1))
    return 1 if s["failures"] or s["seeds_modified"] else 0


if __name__ == "__main__":
    sys.exit(main())
