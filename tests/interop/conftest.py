"""Shared fixtures of the interop suite: where the CLI is, how to run it, and the checks every
successful or refused run gets."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from compare import diff_files  # noqa: E402
from oracle import Options, expected_outcome  # noqa: E402

CLI_TIMEOUT = float(os.environ.get("ATLASNORM_TEST_TIMEOUT", "600"))  # a hang is a failure

# Text that must never reach a user: a Python traceback, a Rust panic, a backtrace hint.
CRASH_TEXT = re.compile(r"Traceback \(most recent call last\)|panicked at|RUST_BACKTRACE|stack backtrace")


def _resolve_token(tok: str, first: bool) -> str:
    if first and tok in ("python", "python3"):
        return sys.executable  # the suite's own interpreter (the venv), not whatever is on PATH
    p = Path(tok)
    if not p.is_absolute():
        for base in (Path.cwd(), REPO):
            if (base / p).exists():
                return str((base / p).resolve())
    return tok


def cli_command() -> list[str]:
    """ATLASNORM_BIN: a path, or a command with arguments (split like a shell would)."""
    raw = os.environ.get("ATLASNORM_BIN")
    if not raw:
        return [str(REPO / "target" / "release" / "atlasnorm")]
    toks = shlex.split(raw)
    return [_resolve_token(t, i == 0) for i, t in enumerate(toks)]


@pytest.fixture(scope="session")
def cli() -> list[str]:
    cmd = cli_command()
    exe = cmd[0]
    if os.sep in exe and not os.access(exe, os.X_OK):
        pytest.fail(
            f"atlasnorm binary not found or not executable: {exe}\n"
            "Build it (cargo build --release) or set ATLASNORM_BIN, e.g.\n"
            '  ATLASNORM_BIN="python tests/interop/reference_cli.py" (the scanpy stand-in)',
            pytrace=False,
        )
    return cmd


def run_cli(cli: list[str], args: list[str], *, cwd: Path | None = None, env: dict | None = None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [*cli, *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )


def sha256(path: Path) -> str:
    """Of a file's bytes; of a directory (a .zarr store): of every relative path and file's bytes."""
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(path.rglob("*")):
            h.update(str(p.relative_to(path)).encode() + b"\0")
            if p.is_file():
                h.update(hashlib.sha256(p.read_bytes()).digest())
        return h.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def describe(proc) -> str:
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"


def assert_refused(proc, *, inp: Path | None, out: Path, inp_hash: str | None, names: list[str],
                   keywords: list[str] | None = None, out_hash: str | None = None):
    """A refusal as DESIGN.md §1 wants it: non-zero exit, no traceback/panic, stderr names the
    file(s) in `names` and (if given) one of `keywords` (element or problem; plain words match
    case-insensitively, "re:PATTERN" is a case-sensitive regex),
    nothing under OUTPUT's name (or, if it existed before, unchanged), INPUT's bytes unchanged."""
    assert proc.returncode != 0, "expected a refusal, got exit 0\n" + describe(proc)
    assert not CRASH_TEXT.search(proc.stderr + proc.stdout), "traceback/panic text in output\n" + describe(proc)
    err = proc.stderr
    assert err.strip(), "refused without a message on stderr\n" + describe(proc)
    for n in names:
        assert n in err, f"stderr does not name {n!r}\n" + describe(proc)
    if keywords:
        low = err.lower()
        assert any(re.search(k[3:], err) if k.startswith("re:") else k.lower() in low for k in keywords), (
            f"stderr names none of {keywords} (element/problem)\n" + describe(proc)
        )
    if out_hash is None:
        assert not out.exists(), f"{out} exists after a failed run"
    else:
        assert sha256(out) == out_hash, f"{out} changed although the run was refused"
    if inp is not None and inp_hash is not None:
        assert sha256(inp) == inp_hash, f"INPUT {inp} was modified"


class Runner:
    """Runs one case: the reference in-process, the CLI as a subprocess, then compares."""

    def __init__(self, cli: list[str], tmp: Path):
        self.cli = cli
        self.tmp = tmp

    def check(self, inp: Path, opts: Options, *, ulp_tol: dict | None = None, extra: list[str] = (),
              name: str = "case", expect: str | None = None, keywords: list[str] | None = None):
        """`expect` ("ok" / "refuse"), when given, pins down what scanpy does here (a recorded fact:
        the test fails if scanpy's behaviour changes); `keywords` are what a refusal must mention."""
        exp_path = self.tmp / f"{name}.expected.h5ad"
        out = self.tmp / f"{name}.out.h5ad"
        before = sha256(inp)
        expected = expected_outcome(inp, opts, exp_path)
        if expect is not None:
            got = "refuse" if isinstance(expected, BaseException) else "ok"
            assert got == expect, f"scanpy itself: expected {expect!r}, got {got!r} ({expected!r})"
        proc = run_cli(self.cli, ["normalize", inp, out, *opts.cli_args(), *extra])
        if isinstance(expected, BaseException):
            # scanpy raises -> the CLI must refuse, cleanly
            assert_refused(proc, inp=inp, out=out, inp_hash=before, names=[inp.name], keywords=keywords)
            return None
        assert proc.returncode == 0, f"scanpy succeeds here, the CLI failed: {describe(proc)}"
        assert not CRASH_TEXT.search(proc.stderr), describe(proc)
        assert out.exists(), "exit 0 but no OUTPUT"
        assert sha256(inp) == before, "INPUT was modified"
        diffs = diff_files(exp_path, out, ulp_tol)
        assert not diffs, f"{len(diffs)} difference(s) from scanpy:\n  " + "\n  ".join(diffs[:40])
        return out


@pytest.fixture
def runner(cli, tmp_path) -> Runner:
    return Runner(cli, tmp_path)


@pytest.fixture(autouse=True)
def _quiet_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def pytest_terminal_summary(terminalreporter):
    from test_real_data import REAL_DIR, REAL_FILES

    if REAL_FILES:
        terminalreporter.write_line(f"interop: real data: {len(REAL_FILES)} files from {REAL_DIR}")
    else:
        terminalreporter.write_line(
            f"interop: REAL DATA ABSENT: nothing in {REAL_DIR}; the real-matrix checks did not run", yellow=True
        )
