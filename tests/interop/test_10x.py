"""10x Genomics inputs (issue 14, DESIGN.md §1c): `atlasnorm normalize INPUT OUTPUT` on a Cell
Ranger .h5 or a matrix directory must equal, read back with anndata, bit for bit,

    adata = sc.read_10x_h5(INPUT, genome=GENOME, gex_only=not ALL)   # or sc.read_10x_mtx(INPUT, gex_only=...)
    sc.pp.normalize_total(adata, ...); sc.pp.log1p(adata, ...)
    adata.write_h5ad(OUTPUT)                                         # or write_zarr

Inputs: files written by gen_10x.py from the real matrices of ../shared/data/real (when present)
and from synthetic ones, and scanpy's own 10x test files from the scanpy 1.12.4 sdist on PyPI
(fetched into <repo>/.tools/scanpy-sdist when missing)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, assert_refused, describe, run_cli, sha256
from compare import diff_files
from oracle import Options, scanpy_pipeline
import gen_10x as g

REAL = Path(os.environ.get("ATLASNORM_REAL_DATA", REPO.parent / "shared" / "data" / "real"))
PBMC = REAL / "fastTopics_pbmc_facs_zheng2017.h5ad"
KANG = REAL / "harmony_pbmc_stim_kang2018.h5ad"
SDIST = REPO / ".tools" / "scanpy-sdist"


def _real(path, n_cells):
    if not path.exists():
        pytest.skip(f"real data absent: {path}")
    return g.real_counts(path, n_cells)


# --- inputs ---------------------------------------------------------------------------------
# Each builder writes one input under `d` and returns (INPUT, reader, reader kwargs).

def v3_pbmc(d):
    X, bc, names = _real(PBMC, 700)
    Y, ids, names, types = g.with_antibodies(X, names, np.random.default_rng(1))
    p = d / "pbmc_v3.h5"
    g.write_v3_h5(p, Y, bc, ids, names, types, ["GRCh38"] * len(ids), chunks=4096)
    return p, "h5", {}


def v3_two_genomes(d):
    rng = np.random.default_rng(2)
    X, bc, names = g.synthetic(rng, 50, 60)
    Y, ids, names, types = g.with_antibodies(X, names, rng, 5)
    genomes = ["GRCh38"] * 30 + ["mm10"] * 30 + [""] * 5
    p = d / "two_genomes_v3.h5"
    g.write_v3_h5(p, Y, bc, ids, names, types, genomes,
                  extra={"pattern": g._bytes(["^A" if i % 4 else "" for i in range(len(ids))])})
    return p, "h5", {}


def v3_probe(d):
    rng = np.random.default_rng(3)
    X, bc, names = g.synthetic(rng, 40, 50)
    ids = [f"probe_{i}" for i in range(50)]
    gene_ids = [f"ENSG{i // 2:05d}" for i in range(50)]  # two probes a gene
    p = d / "probe_v3.h5"
    g.write_v3_h5(p, X, bc, ids, names, ["Gene Expression"] * 50, ["GRCh38"] * 50,
                  probe_gene_ids=gene_ids, filtered_barcodes=[i % 3 != 0 for i in range(40)])
    return p, "h5", {}


def legacy_single(d):
    X, bc, names = _real(KANG, 400)
    p = d / "kang_legacy.h5"
    g.write_legacy_h5(p, {"hg19": (X, bc, [f"ENSG{i:08d}" for i in range(X.shape[1])], names)})
    return p, "h5", {}


def legacy_multi(d):
    rng = np.random.default_rng(4)
    X1, bc, n1 = g.synthetic(rng, 30, 20)
    X2, _, n2 = g.synthetic(rng, 30, 25)
    p = d / "multi_legacy.h5"
    g.write_legacy_h5(p, {"hg19": (X1, bc, [f"H{i}" for i in range(20)], n1),
                          "mm10": (X2, bc, [f"M{i}" for i in range(25)], n2)})
    return p, "h5", {"genome": "mm10"}


def mtx_v3_sorted(d):
    X, bc, names = _real(PBMC, 500)
    Y, ids, names, types = g.with_antibodies(X, names, np.random.default_rng(5))
    p = d / "pbmc_mtx"
    g.write_mtx_dir(p, Y, bc, ids, names, types)
    return p, "mtx", {}


def mtx_v3_unsorted(d):
    rng = np.random.default_rng(6)
    X, bc, names = g.synthetic(rng, 80, 70)
    Y, ids, names, types = g.with_antibodies(X, names, rng, 6)
    p = d / "shuffled_mtx"
    g.write_mtx_dir(p, Y, bc, ids, names, types, shuffle=rng, duplicate=15, zeros=9)
    return p, "mtx", {}


def mtx_legacy_real_field(d):
    rng = np.random.default_rng(7)
    X, bc, names = g.synthetic(rng, 45, 35)
    p = d / "legacy_mtx"
    g.write_mtx_dir(p, X, bc, [f"ENSG{i}" for i in range(35)], names, None, real=True, shuffle=rng)
    return p, "mtx", {}


BUILDERS = {f.__name__: f for f in [v3_pbmc, v3_two_genomes, v3_probe, legacy_single, legacy_multi,
                                     mtx_v3_sorted, mtx_v3_unsorted, mtx_legacy_real_field]}


@pytest.fixture(scope="session")
def sdist() -> Path:
    """scanpy 1.12.4's tests/_data/10x_data, from the sdist on PyPI (cached in .tools/)."""
    data = SDIST / "scanpy-1.12.4" / "tests" / "_data" / "10x_data"
    if not data.exists():
        SDIST.mkdir(parents=True, exist_ok=True)
        tgz = SDIST / "scanpy-1.12.4.tar.gz"
        if not tgz.exists():
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "scanpy==1.12.4", "--no-binary", ":all:",
                 "--no-deps", "-d", str(SDIST)], capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                pytest.fail(f"cannot download the scanpy sdist: {proc.stderr[-2000:]}")
        with tarfile.open(tgz) as t:
            members = [m for m in t.getmembers() if "/tests/_data/10x_data/" in m.name]
            t.extractall(SDIST, members=members, filter="data")
    return data


SDIST_CASES = {
    "sdist_v3_h5": ("3.0.0/filtered_feature_bc_matrix.h5", "h5", {}),
    "sdist_v3_mtx": ("3.0.0/filtered_feature_bc_matrix", "mtx", {}),
    "sdist_legacy_h5": ("1.2.0/filtered_gene_bc_matrices_h5.h5", "h5", {}),
    "sdist_legacy_mtx": ("1.2.0/filtered_gene_bc_matrices/hg19_chr21", "mtx", {}),
    "sdist_multiple_genomes": ("1.2.0/multiple_genomes.h5", "h5", {"genome": "hg19_chr21"}),
}


@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    made = {}
    d = tmp_path_factory.mktemp("tenx")

    def get(name):
        if name not in made:
            made[name] = BUILDERS[name](d)
        return made[name]

    return get


def expected(inp, reader, kw, all_features, opts, out):
    import scanpy as sc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if reader == "h5":
            a = sc.read_10x_h5(inp, genome=kw.get("genome"), gex_only=not all_features)
        else:
            a = sc.read_10x_mtx(inp, gex_only=not all_features)
        scanpy_pipeline(a, opts)
        if str(out).endswith(".zarr"):
            a.write_zarr(out)
        else:
            a.write_h5ad(out)


def check(cli, tmp_path, inp, reader, kw, opts, *, all_features=False, ext=".h5ad", extra=(),
          refusal_names=()):
    exp, out = tmp_path / f"expected{ext}", tmp_path / f"actual{ext}"
    args = ["normalize", inp, out, *opts.cli_args(), "--quiet", *extra]
    if kw.get("genome"):
        args += ["--genome", kw["genome"]]
    if all_features:
        args.append("--all-features")
    before = sha256(inp)
    try:
        expected(inp, reader, kw, all_features, opts, exp)
    except Exception as exc:  # noqa: BLE001 - scanpy refuses: so must the CLI
        proc = run_cli(cli, args)
        assert_refused(proc, inp=inp, out=out, inp_hash=before, names=list(refusal_names),
                       keywords=None)
        return exc
    proc = run_cli(cli, args)
    assert proc.returncode == 0, describe(proc)
    assert sha256(inp) == before, "INPUT modified"
    diffs = diff_files(exp, out)
    assert not diffs, "\n".join(diffs)
    leftovers = [p.name for p in tmp_path.iterdir() if "atlasnorm" in p.name]
    assert not leftovers, f"temporary files left: {leftovers}"


OPTS = [
    Options(),
    Options(target_sum=1e4, key_added="norm_factor"),
    Options(exclude_highly_expressed=True, max_fraction=0.1),
    Options(log1p=False),
]


@pytest.mark.parametrize("opts", OPTS, ids=Options.short)
@pytest.mark.parametrize("name", list(BUILDERS))
def test_generated_h5ad(cli, tmp_path, inputs, name, opts):
    inp, reader, kw = inputs(name)
    check(cli, tmp_path, inp, reader, kw, opts)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_generated_all_features_zarr(cli, tmp_path, inputs, name):
    inp, reader, kw = inputs(name)
    check(cli, tmp_path, inp, reader, kw, Options(target_sum=1e4, key_added="f"),
          all_features=True, ext=".zarr")


def test_genome_of_a_v3_file(cli, tmp_path, inputs):
    inp, reader, _ = inputs("v3_two_genomes")
    for genome, all_features in [("mm10", False), ("GRCh38", True)]:
        d = tmp_path / f"{genome}{all_features}"
        d.mkdir()
        check(cli, d, inp, reader, {"genome": genome}, Options(), all_features=all_features)


@pytest.mark.parametrize("case", list(SDIST_CASES))
@pytest.mark.parametrize("ext", [".h5ad", ".zarr"])
def test_scanpy_sdist_files(cli, tmp_path, sdist, case, ext):
    rel, reader, kw = SDIST_CASES[case]
    for all_features in [False, True]:
        d = tmp_path / str(all_features)
        d.mkdir()
        check(cli, d, sdist / rel, reader, kw, Options(), all_features=all_features, ext=ext)


def test_larger_than_budget_mtx_is_sorted_externally(cli, tmp_path):
    """~650k unsorted entries with --memory 4MiB: several sorted runs merged; peak RSS bounded,
    no temporary file left."""
    X, bc, names = _real(PBMC, 1000)
    inp = tmp_path / "big_mtx"
    types = ["Gene Expression"] * X.shape[1]
    g.write_mtx_dir(inp, X, bc, [f"ENSG{i}" for i in range(X.shape[1])], names, types,
                    shuffle=np.random.default_rng(8))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    exp, out = tmp_path / "expected.h5ad", out_dir / "actual.h5ad"
    expected(inp, "mtx", {}, False, Options(), exp)
    proc = subprocess.run(["/usr/bin/time", "-v", *cli, "normalize", str(inp), str(out), "--memory", "4MiB",
                           "--quiet"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, describe(proc)
    rss_kib = int(next(l for l in proc.stderr.splitlines() if "Maximum resident" in l).split()[-1])
    # 4 MiB budget + O(n_obs) + the binary's fixed costs (HDF5, threads): far below the
    # ~650k entries * 12 bytes held unsorted
    assert rss_kib < 60 * 1024, f"peak RSS {rss_kib} KiB"
    assert not diff_files(exp, out)
    assert [p.name for p in out_dir.iterdir()] == ["actual.h5ad"]
    # Interrupted while sorting (regression: the sort directory outlived a SIGINT when a run
    # file was created while the handler removed it): nothing is left, under any name.
    import signal
    import time

    out2 = out_dir / "interrupted.h5ad"
    p = subprocess.Popen([*cli, "normalize", str(inp), str(out2), "--memory", "1MiB", "--quiet"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.15)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode in (0, 130), err
    left = sorted(q.name for q in out_dir.iterdir())
    assert left == (["actual.h5ad", "interrupted.h5ad"] if p.returncode == 0 else ["actual.h5ad"]), left


# --- bad inputs -----------------------------------------------------------------------------

def _mtx(tmp_path, **kw):
    rng = np.random.default_rng(9)
    X, bc, names = g.synthetic(rng, 20, 15)
    d = tmp_path / "bad_mtx"
    g.write_mtx_dir(d, X, bc, [f"E{i}" for i in range(15)], names, ["Gene Expression"] * 15, **kw)
    return d


def _rewrite_gz(path, edit):
    import gzip

    text = gzip.open(path, "rt").read()
    with gzip.open(path, "wt") as f:
        f.write(edit(text))


def _refused(cli, tmp_path, inp, names, keywords, extra=()):
    out = tmp_path / "out.h5ad"
    h = sha256(inp)
    proc = run_cli(cli, ["normalize", inp, out, *extra])
    assert_refused(proc, inp=inp, out=out, inp_hash=h, names=names, keywords=keywords)
    assert not [p for p in tmp_path.iterdir() if "atlasnorm" in p.name]


def test_missing_features_file(cli, tmp_path):
    d = _mtx(tmp_path)
    (d / "features.tsv.gz").unlink()
    _refused(cli, tmp_path, d, ["features.tsv.gz"], ["missing"])


def test_header_shape_mismatch(cli, tmp_path):
    d = _mtx(tmp_path)
    _rewrite_gz(d / "matrix.mtx.gz", lambda t: t.replace("\n15 20 ", "\n16 20 ", 1))
    _refused(cli, tmp_path, d, ["matrix.mtx.gz"], ["16 rows"])


def test_truncated_gzip(cli, tmp_path):
    d = _mtx(tmp_path)
    p = d / "matrix.mtx.gz"
    p.write_bytes(p.read_bytes()[:-40])
    _refused(cli, tmp_path, d, ["matrix.mtx.gz"], ["cannot read", "entries"])


def test_non_integer_value(cli, tmp_path):
    d = _mtx(tmp_path)
    _rewrite_gz(d / "matrix.mtx.gz", lambda t: t[: t.rindex(" ")] + " 2.5\n")
    _refused(cli, tmp_path, d, ["matrix.mtx.gz"], ["not an integer"])


def test_index_out_of_range(cli, tmp_path):
    d = _mtx(tmp_path)
    _rewrite_gz(d / "matrix.mtx.gz", lambda t: t[: t.rindex("\n", 0, len(t) - 1)] + "\n99 1 3\n")
    _refused(cli, tmp_path, d, ["matrix.mtx.gz"], ["out of range"])


def test_h5_index_out_of_range(cli, tmp_path):
    import h5py

    rng = np.random.default_rng(10)
    X, bc, names = g.synthetic(rng, 20, 15)
    Y, ids, names, types = g.with_antibodies(X, names, rng, 3)
    p = tmp_path / "bad.h5"
    g.write_v3_h5(p, Y, bc, ids, names, types, ["GRCh38"] * len(ids))
    with h5py.File(p, "r+") as f:
        f["matrix/indices"][0] = 1000
    _refused(cli, tmp_path, p, ["bad.h5"], ["out of range"])


def test_legacy_multi_genome_needs_genome(cli, tmp_path, inputs):
    inp, _, _ = inputs("legacy_multi")
    _refused(cli, tmp_path, inp, [inp.name], ["more than one genome"])
    _refused(cli, tmp_path, inp, [inp.name], ["no genome"], extra=["--genome", "nope"])


def test_unknown_genome_of_a_v3_file(cli, tmp_path, inputs):
    inp, _, _ = inputs("v3_two_genomes")
    _refused(cli, tmp_path, inp, [inp.name], ["genome"], extra=["--genome", "nope"])


def test_v3_without_features_group(cli, tmp_path):
    import h5py

    rng = np.random.default_rng(11)
    X, bc, names = g.synthetic(rng, 10, 8)
    p = tmp_path / "nofeatures.h5"
    g.write_v3_h5(p, X, bc, [f"E{i}" for i in range(8)], names, ["Gene Expression"] * 8, ["g"] * 8)
    with h5py.File(p, "r+") as f:
        del f["matrix/features"]
    _refused(cli, tmp_path, p, ["nofeatures.h5"], ["features"])


def test_sdist_int_ids_dir_is_refused_like_scanpy(cli, tmp_path, sdist):
    """features.tsv without .gz in a v3 directory: scanpy's read_10x_mtx (compressed=True) fails."""
    import scanpy as sc

    inp = sdist / "int-ids"
    with pytest.raises(Exception):
        sc.read_10x_mtx(inp)
    _refused(cli, tmp_path, inp, ["features.tsv.gz"], ["missing"])


def test_inspect_describes_10x_inputs(cli, inputs):
    for name in ["v3_pbmc", "legacy_single", "mtx_v3_unsorted"]:
        inp, _, _ = inputs(name)
        proc = run_cli(cli, ["inspect", inp])
        assert proc.returncode == 0, describe(proc)
        assert "10x input" in proc.stdout and "cells" in proc.stdout, proc.stdout


def test_10x_options_on_an_anndata_input_are_refused(cli, tmp_path):
    import anndata
    import scipy.sparse as sp

    p = tmp_path / "plain.h5ad"
    anndata.AnnData(sp.random(5, 4, density=0.5, format="csr", dtype=np.float32)).write_h5ad(p)
    _refused(cli, tmp_path, p, ["--genome"], ["10x"], extra=["--genome", "hg19"])


@pytest.mark.parametrize("layout", ["legacy", "v3"])
def test_sdist_int_ids_as_pandas_infers_them(cli, tmp_path, sdist, layout):
    """scanpy's int-ids files (numeric gene ids: pandas reads an int64 gene_ids column), in a
    legacy and a v3 (gzip) directory."""
    import gzip
    import shutil

    src = sdist / "int-ids"
    d = tmp_path / "int_ids"
    d.mkdir()
    if layout == "legacy":
        shutil.copy(src / "matrix.mtx", d / "matrix.mtx")
        shutil.copy(src / "barcodes.tsv", d / "barcodes.tsv")
        (d / "genes.tsv").write_text("".join(l.split("\t")[0] + "\t" + l.split("\t")[1] + "\n"
                                             for l in (src / "features.tsv").read_text().splitlines()))
    else:
        for f in ["matrix.mtx", "features.tsv", "barcodes.tsv"]:
            with gzip.open(d / f"{f}.gz", "wb") as out:
                out.write((src / f).read_bytes())
    check(cli, tmp_path, d, "mtx", {}, Options(target_sum=1e4, key_added="k"))


# --- features.tsv / barcodes.tsv as pandas reads them ----------------------------------------
# scanpy reads them with `pd.read_csv(header=None, sep=...)`: quoting, NA strings, blank lines,
# typed columns (int64, uint64, float64, bool, objects), a first row that fixes the width. Each
# case writes 4 features x 5 barcodes; a case is (features rows, barcodes rows or None), a row a
# list of fields (v3: id, symbol, type; legacy drops the type) or a raw line (str). Where scanpy
# fails (reading, making names unique, writing), the CLI must refuse, naming the file.

_GEX = "Gene Expression"


def _rows(ids, syms, types=None):
    types = types or [_GEX] * len(ids)
    return [[i, s, t] for i, s, t in zip(ids, syms, types)]


_IDS = ["E0", "E1", "E2", "E3"]
TABLE_CASES = {
    "na_symbol": _rows(_IDS, ["G0", "NA", "G2", "G3"]),
    "two_nan_symbols": _rows(_IDS, ["NA", "G1", "nan", "G3"]),
    "nan_and_duplicate": _rows(_IDS, ["NA", "G1", "G1", "NA"]),
    "make_unique_collision": _rows(_IDS, ["a", "a", "a-1", "a"]),
    "quoted_fields": ['"E0"\t"G\t0"\t"Gene Expression"', 'E1\t"G""1"\tGene Expression',
                      'E2\tp"q"r\tGene Expression', '"E3"x\t"G\n3"\tGene Expression'],
    "unterminated_quote": ["E0\tG0\tGene Expression", 'E1\t"G1\tGene Expression',
                           "E2\tG2\tGene Expression", "E3\tG3\tGene Expression"],
    "float_symbols": _rows(_IDS, ["1.5", "2", "3.25", "1e3"]),
    "int_symbols": _rows(_IDS, ["1", "2", "3", "-4"]),
    "int_symbols_repeat": _rows(_IDS, ["1", "2", "1", "4"]),
    "int_na_symbols": _rows(_IDS, ["1", "NA", "3", "4"]),
    "bool_symbols_repeat": _rows(_IDS, ["True", "False", "TRUE", "false"]),
    "bool_na_symbols": _rows(_IDS, ["True", "NA", "False", "NA"]),
    "nan_spellings": _rows(_IDS, ["NAN", "Nan", "nan", "-NaN"]),
    "not_quite_numbers": _rows(_IDS, ["1e", "0x1", "1.2.3", "+"]),
    "spaced_numbers": _rows([" 1", "2 ", "3", "4"], [" 5", "6 ", " 7.5", "8"]),
    "huge_symbols": _rows(_IDS, ["99999999999999999999", "1", "2", "3"]),
    "uint_ids": _rows(["18446744073709551615", "1", "2", "3"], ["G0", "G1", "G2", "G3"]),
    "huge_ids": _rows(["99999999999999999999", "1", "2", "3"], ["G0", "G1", "G2", "G3"]),
    "inf_ids": _rows(["inf", "1", "-Infinity", "2.5"], ["G0", "G1", "G2", "G3"]),
    "float_na_ids": _rows(["1.5", "NA", "2", "3"], ["G0", "G1", "G2", "G3"]),
    "bool_ids": _rows(["True", "False", "true", "FALSE"], ["G0", "G1", "G2", "G3"]),
    "bool_na_ids": _rows(["True", "NA", "False", "True"], ["G0", "G1", "G2", "G3"]),
    "more_fields_later": ["E0\tG0\tGene Expression", "E1\tG1\tGene Expression\textra",
                          "E2\tG2\tGene Expression", "E3\tG3\tGene Expression"],
    "fewer_fields_later": ["E0\tG0\tGene Expression", "E1\tG1", "E2\tG2\tGene Expression",
                           "E3\tG3\tGene Expression"],
    "int_types": _rows(_IDS, ["G0", "G1", "G2", "G3"], ["1", "2", "3", "4"]),
    "na_types": _rows(_IDS, ["G0", "G1", "G2", "G3"], ["NA", "NA", "NA", "NA"]),
    "unicode_symbols": _rows(_IDS, ["Gène", "Γ1", "G2", "基因"]),
    "tab_only_line": _rows(_IDS[:3], ["G0", "G1", "G2"]) + ["\t\t"],
}
BARCODE_CASES = {
    "barcodes_na_and_ints": ["NA", "0", "1", "2", "3"],
    "barcodes_floats": ["1.5", "2", "1e20", "-0.0", "3"],
    "barcodes_bools": ["True", "False", "TRUE", "false", "True"],
    "barcodes_quoted_comma": ['"AC,GT-1"', "AC-2", "AC-3", '"A""C-4"', "AC-5"],
    "barcodes_two_columns": ["AC-1,x", "AC-2,y", "AC-3", "AC-4,z", "AC-5,w"],
    "barcodes_longer_row": ["AC-1", "AC-2,y", "AC-3", "AC-4", "AC-5"],
    "barcodes_duplicates": ["AC-1", "AC-1", "AC-2", "AC-2", "AC-3"],
}
LINE_ENDS = {"crlf": "\r\n", "cr_only": "\r", "bom_blank_lines": "\n"}


def _table_dir(tmp_path, legacy, features, barcodes=None, *, end="\n", bom=False, raw=None):
    import gzip

    import scipy.io
    import scipy.sparse as sp

    d = tmp_path / "table_case"
    d.mkdir()
    n = 4 if features is None else len(features)
    X = sp.csr_matrix(np.arange(n * 5, dtype=np.int64).reshape(n, 5) % 7)  # features x barcodes
    sfx = "" if legacy else ".gz"
    opener = (lambda p: open(p, "wb")) if legacy else (lambda p: gzip.open(p, "wb"))
    scipy.io.mmwrite(d / "matrix.mtx", X, field="integer")
    if not legacy:
        with gzip.open(d / "matrix.mtx.gz", "wb") as f:
            f.write((d / "matrix.mtx").read_bytes())
        (d / "matrix.mtx").unlink()

    def text(rows):
        lines = [r if isinstance(r, str) else "\t".join(r[:2] if legacy else r) for r in rows]
        if bom:  # a byte-order mark, blank and whitespace-only lines pandas skips
            return "\ufeff" + ("\n  \n".join(lines)) + "\n\n"
        return end.join(lines) + end

    with opener(d / (f"genes.tsv{sfx}" if legacy else f"features.tsv{sfx}")) as f:
        f.write(raw if raw is not None else text(features).encode())
    with opener(d / f"barcodes.tsv{sfx}") as f:
        f.write(text(barcodes or [f"AC-{i}" for i in range(5)]).encode())
    return d


def _names(d, legacy):
    return [str(d / ("genes.tsv" if legacy else "features.tsv.gz"))]


_TYPE_CASES = ("int_types", "na_types")  # legacy genes.tsv has no feature-type column


@pytest.mark.parametrize("case,legacy", [(c, False) for c in TABLE_CASES]
                         + [(c, True) for c in TABLE_CASES if c not in _TYPE_CASES])
def test_features_table_as_pandas_reads_it(cli, tmp_path, case, legacy):
    d = _table_dir(tmp_path, legacy, TABLE_CASES[case])
    # types that are not "Gene Expression" leave no genes, on which log1p fails
    opts = Options(log1p=False) if case in _TYPE_CASES else Options()
    check(cli, tmp_path, d, "mtx", {}, opts, refusal_names=_names(d, legacy))


@pytest.mark.parametrize("legacy", [False, True], ids=["v3", "legacy"])
@pytest.mark.parametrize("case", list(BARCODE_CASES))
def test_barcodes_table_as_pandas_reads_it(cli, tmp_path, case, legacy):
    d = _table_dir(tmp_path, legacy, _rows(_IDS, ["G0", "G1", "G2", "G3"]), BARCODE_CASES[case])
    check(cli, tmp_path, d, "mtx", {}, Options(),
          refusal_names=["barcodes.tsv" + ("" if legacy else ".gz")])


@pytest.mark.parametrize("legacy", [False, True], ids=["v3", "legacy"])
@pytest.mark.parametrize("ends", list(LINE_ENDS))
def test_tables_line_ends_and_blank_lines(cli, tmp_path, ends, legacy):
    d = _table_dir(tmp_path, legacy, _rows(_IDS, ["G0", "G1", "G1", "G3"]),
                   end=LINE_ENDS[ends], bom=ends.startswith("bom"))
    check(cli, tmp_path, d, "mtx", {}, Options(), refusal_names=_names(d, legacy))


def test_decimals_are_read_as_pandas_rounds_them(cli, tmp_path):
    """Random decimals (1-40 digits, exponents into the subnormals and past overflow) as a
    float64 gene_ids column, and (1-17 digits, no overflow, so no repeats) as symbols written
    as their reprs: equal bit for bit to what pandas parses."""
    import random

    rnd = random.Random(5)

    def decimal(n_digits, exponents):
        digits = "".join(rnd.choice("0123456789") for _ in range(n_digits))
        point = rnd.randint(0, len(digits))
        return f"{digits[:point]}.{digits[point:]}e{rnd.randint(*exponents)}"

    ids = [decimal(rnd.randint(1, 40), (-340, 310)) for _ in range(2000)]
    syms, seen = [], set()
    while len(syms) < 2000:  # distinct values: repeated numeric symbols make scanpy fail
        text = decimal(rnd.randint(1, 17), (-300, 270))
        if float(text) not in seen:
            seen.add(float(text))
            syms.append(text)
    for name, rows in [("ids", _rows(ids, [f"G{k}" for k in range(len(ids))])),
                       ("symbols", _rows([f"E{k}" for k in range(len(syms))], syms))]:
        work = tmp_path / name
        work.mkdir()
        d = _table_dir(work, False, rows)
        exc = check(cli, work, d, "mtx", {}, Options())
        assert exc is None, f"scanpy refused the {name} case: {exc}"


@pytest.mark.parametrize("legacy", [False, True], ids=["v3", "legacy"])
def test_features_table_not_utf8_is_refused(cli, tmp_path, legacy):
    raw = "".join(f"E{i}\tG{i}\t{_GEX}\n" if not legacy else f"E{i}\tG{i}\n" for i in range(4))
    raw = raw.replace("G2", "G\xe92").encode("latin-1")
    d = _table_dir(tmp_path, legacy, None, raw=raw)
    exc = check(cli, tmp_path, d, "mtx", {}, Options(), refusal_names=_names(d, legacy))
    assert exc is not None, "scanpy read a latin-1 features table"


# --- matrix.mtx as scipy's mmread (fast_matrix_market) reads it ----------------------------
# Banner words in any case after "%%MatrixMarket"; fields integer, unsigned-integer, real/double,
# complex (the real part survives astype(float32)), pattern (ones); symmetric, skew-symmetric and
# hermitian matrices mirrored; blank lines anywhere, comments only before the size line; fields
# after the value ignored. 4 features x 4 barcodes, so mirrors stay in the shape.

_MM = "%%MatrixMarket matrix coordinate {} {}\n"
_AR = "%%MatrixMarket matrix array {} {}\n"
MTX_CASES = {
    "pattern": _MM.format("pattern", "general") + "4 4 3\n1 1\n2 3\n4 4\n",
    "pattern_with_values": _MM.format("pattern", "general") + "4 4 2\n1 1 7\n2 3 9\n",
    "integer_symmetric": _MM.format("integer", "symmetric") + "4 4 3\n1 1 5\n3 2 2\n4 1 7\n",
    "real_symmetric": _MM.format("real", "symmetric") + "4 4 2\n1 1 5.5\n3 2 2.25\n",
    "skew_symmetric": _MM.format("integer", "skew-symmetric") + "4 4 3\n2 1 5\n3 2 -2\n4 4 3\n",
    "pattern_symmetric": _MM.format("pattern", "symmetric") + "4 4 2\n1 1\n3 2\n",
    "real_hermitian": _MM.format("real", "hermitian") + "4 4 2\n1 1 2\n2 1 3\n",
    "complex": _MM.format("complex", "general") + "4 4 2\n1 1 2.5 7\n3 2 4 -1\n",
    "complex_hermitian": _MM.format("complex", "hermitian") + "4 4 2\n2 1 2 7\n4 4 1 0\n",
    "unsigned_integer": _MM.format("unsigned-integer", "general") + "4 4 2\n1 1 2\n3 2 3000000000\n",
    "double": _MM.format("double", "general") + "4 4 2\n1 1 2.5\n3 2 1e2\n",
    "negative_value": _MM.format("integer", "general") + "4 4 2\n1 1 -5\n3 2 2\n",
    "real_spellings": _MM.format("real", "general") + "4 4 4\n1 1 .5\n2 2 1.\n3 3 2.5E-1\n4 4 -0\n",
    "plus_sign": _MM.format("integer", "general") + "4 4 1\n1 1 +5\n",
    "index_with_point": _MM.format("integer", "general") + "4 4 1\n1.0 1 5\n",
    "missing_value": _MM.format("integer", "general") + "4 4 1\n1 1\n",
    "extra_fields": _MM.format("integer", "general") + "4 4 2\n1 1 5 9\n3 2 2 x y\n",
    "comments_and_blank_lines": _MM.format("integer", "general")
    + "% c\n%\n\n4 4 2\n\n1 1 5\n  \n3 2 2\n\n",
    "comment_among_entries": _MM.format("integer", "general") + "4 4 2\n1 1 5\n% mid\n3 2 2\n",
    "comment_at_end": _MM.format("integer", "general") + "4 4 1\n1 1 5\n% end\n",
    "banner_words_upper": "%%MatrixMarket MATRIX COORDINATE INTEGER GENERAL\n4 4 1\n1 1 5\n",
    "banner_lower": "%%matrixmarket matrix coordinate integer general\n4 4 1\n1 1 5\n",
    "banner_spacing": "%%MatrixMarket  matrix\tcoordinate integer general  \n4 4 1\n1 1 5\n",
    "tabs_and_spaces": _MM.format("integer", "general") + "4\t4\t2\n1\t1\t5\n 3  2  2 \n",
    "crlf": _MM.format("integer", "general").replace("\n", "\r\n") + "4 4 2\r\n1 1 5\r\n3 2 2\r\n",
    "big_integer": _MM.format("integer", "general") + "4 4 1\n1 1 3000000001\n",
    "int64_overflow": _MM.format("integer", "general") + "4 4 1\n1 1 99999999999999999999\n",
    "duplicates_summed": _MM.format("real", "general") + "4 4 3\n1 1 0.1\n1 1 0.2\n1 1 0.3\n",
    "explicit_zero": _MM.format("integer", "general") + "4 4 2\n1 1 0\n3 2 2\n",
    "no_entries": _MM.format("integer", "general") + "4 4 0\n",
    "fewer_entries": _MM.format("integer", "general") + "4 4 3\n1 1 5\n3 2 2\n",
    "more_entries": _MM.format("integer", "general") + "4 4 1\n1 1 5\n3 2 2\n",
    "index_zero": _MM.format("integer", "general") + "4 4 1\n0 1 5\n",
    "no_final_newline": _MM.format("integer", "general") + "4 4 1\n1 1 5",
    # dense arrays: column by column, zeros dropped by scanpy's csr_matrix(dense)
    "array_integer": _AR.format("integer", "general") + "4 4\n"
    + "".join(f"{i % 3}\n" for i in range(16)),
    "array_real_extra_fields": _AR.format("real", "general") + "4 4\n"
    + "".join(f"{(i * 7) % 5 / 4} 9\n" for i in range(16)),
    "array_symmetric": _AR.format("integer", "symmetric") + "4 4\n"
    + "".join(f"{i % 4}\n" for i in range(10)),
    "array_skew": _AR.format("real", "skew-symmetric") + "4 4\n"
    + "".join(f"{i + 1}\n" for i in range(6)),
    "array_too_few_values": _AR.format("integer", "general") + "4 4\n"
    + "".join(f"{i}\n" for i in range(15)),
    "array_two_a_line": _AR.format("integer", "general") + "4 4\n"
    + "".join(f"{i} {i}\n" for i in range(8)),
}
# where scipy's mmread reads the number a value starts with and atlasnorm refuses
MTX_REFUSED = {
    "decimal_in_integer_matrix": (_MM.format("integer", "general") + "4 4 1\n1 1 5.7\n",
                                  "not an integer"),
    "junk_after_integer": (_MM.format("integer", "general") + "4 4 1\n1 1 5x\n", "not an integer"),
    "junk_after_real": (_MM.format("real", "general") + "4 4 1\n1 1 1e5x\n", "not a number"),
}


def _mtx_case_dir(tmp_path, text, n=4):
    """A v3 directory of `text` as matrix.mtx.gz, with n features and n barcodes."""
    import gzip

    d = tmp_path / "mtx_case"
    d.mkdir()
    for name, t in [("matrix.mtx.gz", text),
                    ("features.tsv.gz", "".join(f"E{i}\tG{i}\t{_GEX}\n" for i in range(n))),
                    ("barcodes.tsv.gz", "".join(f"AC-{i}\n" for i in range(n)))]:
        with gzip.open(d / name, "wt", newline="") as f:
            f.write(t)
    return d


def _mmwrite_text(a, symmetry):
    """What scipy's mmwrite writes for `a` (sparse: coordinate; dense: array)."""
    import io

    import scipy.io

    buf = io.BytesIO()
    scipy.io.mmwrite(buf, a, symmetry=symmetry)
    return buf.getvalue().decode()


@pytest.mark.parametrize("case", list(MTX_CASES))
def test_matrix_market_as_mmread_reads_it(cli, tmp_path, case):
    d = _mtx_case_dir(tmp_path, MTX_CASES[case])
    check(cli, tmp_path, d, "mtx", {}, Options(), refusal_names=["matrix.mtx.gz"])


@pytest.mark.parametrize("memory", ["1MiB", "1GiB"])
def test_symmetric_matrix_in_many_blocks(cli, tmp_path, memory):
    """A symmetric matrix written by scipy's mmwrite (the lower triangle), 600 x 600 with ~90k
    lines: mirrors break the cell order, so the entries are sorted (in runs at 1 MiB)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(11)
    n = 600
    a = sp.random(n, n, density=0.25, format="coo", random_state=rng,
                  data_rvs=lambda k: rng.integers(1, 50, k))
    a = sp.tril(a + a.T).tocoo()  # symmetric; mmwrite keeps the lower triangle
    text = _mmwrite_text(a.astype(np.int64), "symmetric")
    assert "coordinate integer symmetric" in text[:80]
    d = _mtx_case_dir(tmp_path, text, n)
    check(cli, tmp_path, d, "mtx", {}, Options(), extra=["--memory", memory])


@pytest.mark.parametrize("symmetry", ["general", "symmetric", "skew-symmetric"])
def test_dense_array_matrix_in_many_blocks(cli, tmp_path, symmetry):
    """A dense `array` matrix as scipy's mmwrite writes one (column by column; the lower
    triangle when symmetric), 300 x 300, parsed in 16 KiB blocks: each value's place follows
    from the count of values before it, across blocks."""

    rng = np.random.default_rng(12)
    n = 300
    a = rng.integers(0, 4, (n, n)) * (rng.random((n, n)) < 0.3)
    if symmetry == "symmetric":
        a = np.tril(a) + np.tril(a, -1).T
    elif symmetry == "skew-symmetric":
        a = np.tril(a, -1) - np.tril(a, -1).T
    text = _mmwrite_text(a.astype(np.int64), symmetry)
    assert f"array integer {symmetry}" in text[:80]
    d = _mtx_case_dir(tmp_path, text, n)
    check(cli, tmp_path, d, "mtx", {}, Options(log1p=symmetry != "skew-symmetric"),
          extra=["--memory", "1MiB"])


@pytest.mark.parametrize("case", list(MTX_REFUSED))
def test_matrix_market_values_scipy_truncates_are_refused(cli, tmp_path, case):
    """The one deviation from scanpy here (README "10x inputs"): scanpy reads these, keeping the
    number a value starts with; atlasnorm refuses, naming the file and the problem, rather than
    truncate data."""
    import scanpy as sc

    text, problem = MTX_REFUSED[case]
    d = _mtx_case_dir(tmp_path, text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.read_10x_mtx(d)  # scanpy reads it (if this starts failing, check() applies instead)
    _refused(cli, tmp_path, d, ["matrix.mtx.gz"], [problem])


# --- .h5 datasets as h5py and numpy's astype(str) read them ----------------------------------
# scanpy reads every dataset with `v[()]` and turns names and feature metadata into strings with
# numpy's `astype(str)` (bool metadata with `astype(bool)`): variable-length and fixed-length
# strings (bytes, decoded as ASCII: other text makes scanpy fail), integers, float32/float64 (the
# shortest digits, numpy's positional/scientific cut-offs), scalars broadcast, 2-D refused.

def _rand_floats(dtype, n=400, seed=1):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2 ** (8 * np.dtype(dtype).itemsize), n, dtype=np.uint64)
    x = bits.astype({2: np.uint16, 4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]).view(dtype)
    top = {np.float16: 5, np.float32: 9, np.float64: 20}[dtype]
    decades = rng.uniform(-8, top, n)
    y = (rng.uniform(1, 10, n) * 10.0 ** np.floor(decades)).astype(dtype)
    edges = np.array([1e-4, 9.9e-5, 1e6, 999999.94, 1e16, 9.999e15, 0.0, -0.0, 1.0, np.nan,
                      np.inf, -np.inf, 16777216.0, 5e-324, 1.4e-45, 1e3, 999.5, 2048, 2052,
                      65504, 6e-8], dtype=np.float64)
    with np.errstate(over="ignore"):
        return np.concatenate([x, y, edges.astype(dtype)])


def _rep(f, path, data, **kw):
    del f[path]
    f.create_dataset(path, data=data, **kw)


def _h5_edits(names, bc, n):
    import h5py

    fe = "matrix/features"
    return {
        "vlen_str_names": lambda f: _rep(f, f"{fe}/name", np.array(names, dtype=object),
                                         dtype=h5py.string_dtype()),
        "vlen_str_barcodes": lambda f: _rep(f, "matrix/barcodes", np.array(bc, dtype=object),
                                            dtype=h5py.string_dtype()),
        "vlen_ascii_names": lambda f: _rep(f, f"{fe}/name", np.array([x.encode() for x in names],
                                           dtype=object), dtype=h5py.string_dtype("ascii")),
        "fixed_utf8_cset_names": lambda f: _rep(f, f"{fe}/name", np.array(
            [x.encode() for x in names], dtype=h5py.string_dtype("utf-8", 12))),
        "non_ascii_fixed_names": lambda f: _rep(f, f"{fe}/name", g._bytes(["Gè" + x for x in names])),
        "non_ascii_vlen_names": lambda f: _rep(f, f"{fe}/name", np.array(
            ["Gè" + x for x in names], dtype=object), dtype=h5py.string_dtype()),
        "non_ascii_barcodes": lambda f: _rep(f, "matrix/barcodes", g._bytes(["é" + x for x in bc])),
        "int_names": lambda f: _rep(f, f"{fe}/name", np.arange(n) * 10),
        "float_barcodes": lambda f: _rep(f, "matrix/barcodes", np.arange(len(bc)) * 0.5 + 1e5),
        "float64_metadata": lambda f: f[fe].create_dataset("score", data=_rand_floats(np.float64)[:n]),
        "float32_metadata": lambda f: f[fe].create_dataset("score", data=_rand_floats(np.float32)[:n]),
        "float32_edges": lambda f: f[fe].create_dataset("score", data=_rand_floats(np.float32)[-n:]),
        "float64_edges": lambda f: f[fe].create_dataset("score", data=_rand_floats(np.float64)[-n:]),
        "float16_metadata": lambda f: f[fe].create_dataset("score", data=_rand_floats(np.float16)[:n]),
        "float16_edges": lambda f: f[fe].create_dataset("score", data=_rand_floats(np.float16)[-n:]),
        "int8_metadata": lambda f: f[fe].create_dataset("k", data=(np.arange(n) % 250 - 125).astype(np.int8)),
        "uint64_metadata": lambda f: f[fe].create_dataset("k", data=np.arange(n, dtype=np.uint64)
                                                          + np.uint64(2**64 - 1 - n)),
        "bool_metadata": lambda f: f[fe].create_dataset("flag", data=np.arange(n) % 3 == 0),
        "vlen_metadata": lambda f: f[fe].create_dataset("note", data=np.array(
            [f"n{i % 3}" for i in range(n)], dtype=object), dtype=h5py.string_dtype()),
        "scalar_float_metadata": lambda f: f[fe].create_dataset("s", data=np.float64(1)),
        "scalar_bool_metadata": lambda f: f[fe].create_dataset("sb", data=np.True_),
        "scalar_string_metadata": lambda f: f[fe].create_dataset("ss", data=b"abc"),
        "two_d_metadata": lambda f: f[fe].create_dataset("m", data=np.zeros((n, 2))),
        "nested_group_metadata": lambda f: f[fe].create_group("sub").create_dataset("z", data=np.arange(n)),
        "filtered_barcodes_int": lambda f: f["matrix"].create_dataset("filtered_barcodes",
                                                                    data=np.arange(len(bc)) % 3),
        "filtered_barcodes_float": lambda f: f["matrix"].create_dataset(
            "filtered_barcodes", data=np.array([0.5, 0.0, np.nan] * len(bc))[:len(bc)]),
        "data_uint16": lambda f: _rep(f, "matrix/data", f["matrix/data"][()].astype(np.uint16)),
        "data_float64": lambda f: _rep(f, "matrix/data", f["matrix/data"][()].astype(np.float64)),
        "indices_int32": lambda f: _rep(f, "matrix/indices", f["matrix/indices"][()].astype(np.int32)),
        "indptr_uint32": lambda f: _rep(f, "matrix/indptr", f["matrix/indptr"][()].astype(np.uint32)),
        "shape_int64": lambda f: _rep(f, "matrix/shape", f["matrix/shape"][()].astype(np.int64)),
    }


H5_EDITS = list(_h5_edits([], [], 0))


@pytest.mark.parametrize("edit", H5_EDITS)
def test_h5_datasets_as_scanpy_reads_them(cli, tmp_path, edit):
    import h5py

    rng = np.random.default_rng(3)
    n = 400
    X, bc, names = g.synthetic(rng, 30, n)
    p = tmp_path / "in.h5"
    g.write_v3_h5(p, X, bc, [f"E{i}" for i in range(n)], names, ["Gene Expression"] * n,
                  ["GRCh38"] * n)
    with h5py.File(p, "a") as f:
        _h5_edits(names, bc, n)[edit](f)
    check(cli, tmp_path, p, "h5", {}, Options(), refusal_names=[str(p)])


# --- matrix.mtx parsed in parallel blocks -----------------------------------------------------
# `--memory 1MiB` makes the blocks 16 KiB: a matrix of ~650k entries (~6 MB of text) is
# hundreds of blocks, lines straddling the reads. Plain (legacy) and gzip (v3, one member or
# many cut anywhere, as bgzip or `cat a.gz b.gz` make them), sorted and not, 1 and 2 threads.

def _big_mtx(tmp_path, *, legacy=False, shuffle=None, members=0):
    import gzip

    X, bc, names = _real(PBMC, 1000)
    inp = tmp_path / ("big_legacy" if legacy else "big_v3")
    ids = [f"ENSG{i}" for i in range(X.shape[1])]
    types = None if legacy else ["Gene Expression"] * X.shape[1]
    g.write_mtx_dir(inp, X, bc, ids, names, types, shuffle=shuffle)
    if members:
        p = inp / "matrix.mtx.gz"
        raw = gzip.decompress(p.read_bytes())
        cuts = sorted(np.random.default_rng(12).choice(len(raw), members - 1, replace=False))
        with open(p, "wb") as f:
            for a, b in zip([0, *cuts], [*cuts, len(raw)]):
                f.write(gzip.compress(raw[a:b], compresslevel=1))
    return inp


@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("layout", ["legacy", "v3_sorted", "v3_shuffled", "v3_members"])
def test_mtx_in_small_parallel_blocks(cli, tmp_path, layout, threads):
    inp = _big_mtx(tmp_path, legacy=layout == "legacy",
                   shuffle=np.random.default_rng(13) if layout == "v3_shuffled" else None,
                   members=37 if layout == "v3_members" else 0)
    check(cli, tmp_path, inp, "mtx", {}, Options(), extra=["--memory", "1MiB", "--threads", threads])


@pytest.mark.parametrize("legacy", [True, False], ids=["plain", "gzip"])
def test_mtx_errors_deep_in_the_file_name_their_line(cli, tmp_path, legacy):
    """Errors past the first blocks carry the line number a line-by-line read gives."""
    import gzip

    inp = _big_mtx(tmp_path, legacy=legacy)
    p = inp / ("matrix.mtx" if legacy else "matrix.mtx.gz")
    opener = open if legacy else gzip.open
    with opener(p, "rt") as f:
        lines = f.read().split("\n")
    n_lines = len(lines) - 1
    cases = [
        (123_457, lambda l: l.rsplit(" ", 1)[0] + " 2.5", "line 123457", "not an integer"),
        (400_001, lambda l: "99999 " + l.split(" ", 1)[1], "line 400001", "out of range"),
        (n_lines, lambda l: l + "x", f"line {n_lines}", "not an integer"),
    ]
    for i, (at, edit, where, problem) in enumerate(cases):
        bad = list(lines)
        bad[at - 1] = edit(bad[at - 1])
        with opener(p, "wt") as f:
            f.write("\n".join(bad))
        d = tmp_path / f"case{i}"
        d.mkdir()
        out = d / "out.h5ad"
        proc = run_cli(cli, ["normalize", inp, out, "--memory", "1MiB"])
        assert_refused(proc, inp=None, out=out, inp_hash=None, names=[p.name],
                       keywords=[where])
        assert problem in proc.stderr, describe(proc)
    # more entries than the header declares: the first entry past the count is named
    with opener(p, "wt") as f:
        header = lines[2].split()
        f.write("\n".join([*lines[:2], f"{header[0]} {header[1]} 300000", *lines[3:]]))
    out = tmp_path / "over.h5ad"
    proc = run_cli(cli, ["normalize", inp, out, "--memory", "1MiB"])
    assert_refused(proc, inp=None, out=out, inp_hash=None, names=[p.name],
                   keywords=["line 300004"])
    assert "more entries than the 300000" in proc.stderr, describe(proc)
    # gzip cut short far into the file
    if not legacy:
        raw = gzip.compress("\n".join(lines).encode(), compresslevel=1)
        p.write_bytes(raw[: len(raw) // 2])
        out = tmp_path / "cut.h5ad"
        proc = run_cli(cli, ["normalize", inp, out, "--memory", "1MiB"])
        assert_refused(proc, inp=None, out=out, inp_hash=None, names=[p.name],
                       keywords=["cannot read"])
        assert re.search(r"line [0-9]{5,}", proc.stderr), describe(proc)


# --- 10x input -> s3:// output ---------------------------------------------------------------

@pytest.fixture(scope="module")
def moto_s3():
    """`moto_server` (moto[server], in the suite's venv) on a free 127.0.0.1 port: the S3
    endpoint, with a bucket `tenx`."""
    import socket
    import time
    import urllib.request

    for _ in range(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while time.time() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        if proc.poll() is None:
            break
    else:
        pytest.fail("moto_server did not start")
    try:
        client = _s3_client(endpoint)
        client.create_bucket(Bucket="tenx")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _s3_client(endpoint):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing", region_name="us-east-1")


def _download(endpoint, bucket, prefix, dest):
    """Every object under s3://bucket/prefix/ into the directory `dest`."""
    client = _s3_client(endpoint)
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    for k in keys:
        target = dest / k[len(prefix) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, k, str(target))
    return keys


@pytest.mark.parametrize("name", ["v3_pbmc", "legacy_single", "mtx_v3_sorted", "mtx_v3_unsorted",
                                  "mtx_legacy_real_field"])
def test_10x_input_to_s3_zarr(cli, tmp_path, inputs, moto_s3, name):
    """10x .h5 and matrix directories -> s3://bucket/prefix.zarr: read back with anndata,
    equal bit for bit to scanpy's reader + pipeline + write_zarr; the matrix.mtx sort
    directory (in the system's temporary directory for an object-storage OUTPUT) is gone."""
    inp, reader, kw = inputs(name)
    opts = Options(target_sum=1e4, key_added="norm")
    exp = tmp_path / "expected.zarr"
    expected(inp, reader, kw, False, opts, exp)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    prefix = f"runs/{name}.zarr"
    env = {"AWS_ENDPOINT_URL": moto_s3, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
           "TMPDIR": str(tmp)}
    before = sha256(inp)
    proc = run_cli(cli, ["normalize", inp, f"s3://tenx/{prefix}", *opts.cli_args(), "--quiet",
                         "--memory", "1MiB"], env=env)
    assert proc.returncode == 0, describe(proc)
    assert sha256(inp) == before, "INPUT modified"
    assert list(tmp.iterdir()) == [], f"temporary files left: {list(tmp.iterdir())}"
    got = tmp_path / "got.zarr"
    keys = _download(moto_s3, "tenx", prefix, got)
    assert any(k.endswith("zarr.json") for k in keys), keys
    diffs = diff_files(exp, got)
    assert not diffs, "\n".join(diffs)
    # nothing else written to the bucket (no staging prefix left)
    client = _s3_client(moto_s3)
    others = [o["Key"] for o in client.list_objects_v2(Bucket="tenx").get("Contents", [])
              if not o["Key"].startswith("runs/")]
    assert not others, others
