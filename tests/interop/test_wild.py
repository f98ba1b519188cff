"""AnnData from the wild: every file of tests/data/wild (written by anndata 0.7.8 ... 0.12.19,
anndata-rs, hdf5plugin filters, h5py by hand; see its MANIFEST.tsv and scripts/wild/) x a few
option sets x .h5ad and .zarr OUTPUT.

Where anndata 0.13.4 + scanpy 1.12.4 (with hdf5plugin's filters registered) process the input,
atlasnorm must exit 0, and anndata must read its whole OUTPUT (obs/var with their categoricals,
uns, raw, layers, obsm...) equal to what scanpy wrote, bit for bit. Where scanpy fails, atlasnorm
must refuse with one clear message (conftest.assert_refused). Nothing is skipped or xfailed: a
case that fails here is a bug to fix (issue 9).

Each case runs on a private copy of the fixture, so a run that modified its INPUT could not damage
the committed corpus (and the modification is still caught).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import hdf5plugin  # noqa: F401  (registers blosc/zstd/lz4/bitshuffle with h5py, for scanpy's side)
import pytest

from compare import diff_files, is_zarr
from conftest import CRASH_TEXT, assert_refused, describe, run_cli, sha256
from oracle import Options, expected_outcome

WILD = Path(__file__).resolve().parents[1] / "data" / "wild"
MANIFEST = WILD / "MANIFEST.tsv"
MAX_CORPUS_BYTES = 5 * 2**20  # what the corpus may weigh, compressed as git stores it


def manifest_rows() -> list[dict]:
    with MANIFEST.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = manifest_rows()
FILES = [r["file"] for r in ROWS]


def has_layer(path: Path, name: str) -> bool:
    if is_zarr(path):
        return (path / "layers" / name).is_dir()
    import h5py

    with h5py.File(path, "r") as f:
        return f"layers/{name}" in f


def zarr_format(path: Path) -> int | None:
    """zarr format of a .zarr store (None for .h5ad)."""
    if not is_zarr(path):
        return None
    return 3 if (path / "zarr.json").exists() else 2


OPTION_SETS = {
    "default": Options(),
    "T1e4-key": Options(target_sum=1e4, key_added="f"),
    "ehe-nolog": Options(exclude_highly_expressed=True, log1p=False),
    "layer": Options(layer="counts"),
}


def cases():
    for name in FILES:
        for oname, opts in OPTION_SETS.items():
            if opts.layer and not has_layer(WILD / name, opts.layer):
                continue
            for out in ("h5ad", "zarr"):
                yield pytest.param(name, opts, out, id=f"{name}-{oname}-{out}")


def run_case(cli, tmp_path: Path, name: str, opts: Options, out_kind: str, source: Path = WILD):
    inp = tmp_path / "in" / name
    inp.parent.mkdir()
    if (source / name).is_dir():
        shutil.copytree(source / name, inp)
    else:
        shutil.copy2(source / name, inp)
    work = tmp_path / "work"
    work.mkdir()
    out = work / f"out.{out_kind}"
    exp = tmp_path / f"expected.{out_kind}"
    before = sha256(inp)
    # zarr -> zarr keeps the input's zarr format (as atlasnorm does); the comparison is through
    # anndata, so the format only matters for how scanpy's side is written
    expected = expected_outcome(inp, opts, exp, zarr_format=zarr_format(inp) if out_kind == "zarr" else None)
    proc = run_cli(cli, ["normalize", inp, out, *opts.cli_args(), "--quiet"])
    if isinstance(expected, BaseException):
        assert_refused(proc, inp=inp, out=out, inp_hash=before, names=[inp.name])
        return None
    assert proc.returncode == 0, f"scanpy succeeds here ({opts.short()}), atlasnorm failed: {describe(proc)}"
    assert not CRASH_TEXT.search(proc.stderr), describe(proc)
    assert out.exists(), "exit 0 but no OUTPUT"
    assert sha256(inp) == before, "INPUT was modified"
    leftovers = sorted(p.name for p in work.iterdir() if p != out)
    assert not leftovers, f"files left beside OUTPUT: {leftovers}"
    diffs = diff_files(exp, out)
    assert not diffs, f"{len(diffs)} difference(s) from scanpy:\n  " + "\n  ".join(diffs[:40])
    return out


@pytest.mark.parametrize("name,opts,out_kind", list(cases()))
def test_wild(cli, tmp_path, name, opts, out_kind):
    run_case(cli, tmp_path, name, opts, out_kind)


def test_manifest_lists_exactly_the_corpus():
    listed = sorted(FILES)
    present = sorted(p.name for p in WILD.iterdir() if p.name != "MANIFEST.tsv")
    assert listed == present, f"MANIFEST.tsv and tests/data/wild disagree: {set(listed) ^ set(present)}"
    assert all(r["writer"] and r["version"] and r["python"] and r["special"] for r in ROWS)


def test_corpus_covers_every_writer():
    """Every writer the issue names is in the corpus, in both containers where it writes them."""
    have = {(r["writer"], r["version"].rsplit(".", 1)[0] if r["writer"] == "anndata" else "",
             "zarr" if r["file"].endswith(".zarr") else "h5ad") for r in ROWS}
    for v in ("0.7", "0.8", "0.9", "0.10", "0.11", "0.12"):
        for kind in ("h5ad", "zarr"):
            assert any(w == "anndata" and ver.startswith(v) and k == kind for w, ver, k in have), (v, kind)
    assert any(r["writer"] == "anndata-rs" for r in ROWS)
    specials = " ".join(r["special"] for r in ROWS)
    for word in ("blosc", "zstd", "lz4", "bitshuffle", "fletcher32", "shuffle", "big-endian", "unsigned",
                 "1-element chunks", "compact layout", "int64 indices with int32 indptr", "no /var group",
                 "zarr v3", "__categories"):
        assert word in specials, f"no corpus file with {word!r}"


def test_corpus_is_small():
    """The committed corpus stays small: its files, zlib-compressed one by one as git stores them."""
    import zlib

    total = sum(len(zlib.compress(p.read_bytes(), 6)) for p in WILD.rglob("*") if p.is_file())
    assert total < MAX_CORPUS_BYTES, f"corpus weighs {total} bytes compressed (limit {MAX_CORPUS_BYTES})"


@pytest.mark.parametrize("out_name,extra", [("out.zarr", []), ("out_v3.zarr", ["--zarr-format", "3"]),
                                            ("out.h5ad", [])], ids=["v2-copy", "v3-recode", "h5ad"])
def test_anndata07_zarr_dunder_categories(cli, tmp_path, out_name, extra):
    """Regression (issue 9, finding 3a): anndata 0.7 keeps categories at obs/__categories/<col>,
    linked by the column's `categories` attribute (a relative path). zarrs refuses node paths
    beginning with `__` ("invalid node path"); atlasnorm must read them and carry the link into
    a readable output, whatever its format."""
    import anndata
    import pandas as pd

    inp = tmp_path / "ad0.7_csr.zarr"
    shutil.copytree(WILD / inp.name, inp)
    assert (inp / "obs" / "__categories" / "cell_type" / ".zarray").exists()
    out = tmp_path / out_name
    proc = run_cli(cli, ["normalize", inp, out, "--quiet", *extra])
    assert proc.returncode == 0, describe(proc)
    a = anndata.read_zarr(out) if is_zarr(out) else anndata.read_h5ad(out)
    src = anndata.read_zarr(inp)
    for frame, col in ((a.obs, "cell_type"), (a.obs, "batch"), (a.var, "feature_type")):
        assert isinstance(frame[col].dtype, pd.CategoricalDtype), (col, frame[col].dtype)
    assert a.obs["cell_type"].isna().sum() == src.obs["cell_type"].isna().sum() > 0
    assert list(a.obs["cell_type"].cat.categories) == list(src.obs["cell_type"].cat.categories)
    assert a.obs["batch"].cat.ordered
    assert isinstance(a.raw.var["feature_type"].dtype, pd.CategoricalDtype)


@pytest.mark.parametrize("out_kind", ["h5ad", "zarr"])
@pytest.mark.parametrize("name,frame", [("ad0.7_csr_gzip.h5ad", "obs"), ("ad0.7_csr_gzip.h5ad", "var"),
                                        ("ad0.10_csr_gzip.h5ad", "obs")])
def test_fixed_length_byte_string_columns(cli, tmp_path, name, frame, out_kind):
    """A dataframe column of fixed-length byte strings (`S6`, as h5py stores a numpy bytes array):
    un-encoded in an anndata 0.7 frame (anndata reads bytes), `string-array` in a 0.2.0 frame
    (read with asstr()). Output equal to scanpy's, whatever the OUTPUT format."""
    import h5py
    import numpy as np

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy2(WILD / name, src / name)
    with h5py.File(src / name, "r+") as f:
        g = f[frame]
        n = g[g.attrs["_index"]].shape[0]
        ds = g.create_dataset("fixed", data=np.array([f"c{i % 7}".encode() for i in range(n)], dtype="S6"))
        if g.attrs.get("encoding-version") == "0.2.0":
            ds.attrs["encoding-type"], ds.attrs["encoding-version"] = "string-array", "0.2.0"
        g.attrs["column-order"] = np.array([*g.attrs["column-order"], "fixed"], dtype=h5py.string_dtype())
    out = run_case(cli, tmp_path, name, Options(key_added="nf"), out_kind, source=src)
    assert out is not None, "scanpy refuses this input: the case tests nothing"
