"""Bad input: every case must give a non-zero exit, no traceback or panic text, a message on stderr
naming the file and the element or problem, nothing under OUTPUT's name, and INPUT's bytes unchanged.
(NaN reaching log1p, and inputs scanpy itself rejects, are in test_edge_cases.py.)"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from conftest import assert_refused, run_cli, sha256
from gen import counts, write_simple
from oracle import Options

N_OBS, N_VARS = 40, 30


def good_csr(path, **rewrite):
    M = sp.csr_matrix(counts(np.random.default_rng(0), N_OBS, N_VARS).astype(np.float32))
    write_simple(path, M, rewrite=rewrite or None)
    return M


def edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def replace(f, name, values):
    d = f[name]
    attrs = dict(d.attrs)
    del f[name]
    nd = f.create_dataset(name, data=values)
    for k, v in attrs.items():
        nd.attrs[k] = v


def b_not_hdf5(p):
    p.write_text("this is not an HDF5 file\n" * 20)


def b_not_anndata(p):
    with h5py.File(p, "w") as f:
        f.create_dataset("counts", data=np.arange(12).reshape(3, 4))


def b_unsupported_encoding(p):
    good_csr(p)
    edit(p, lambda f: f["X"].attrs.__setitem__("encoding-type", "coo_matrix"))


def b_indptr_not_monotone(p):
    good_csr(p)

    def fn(f):
        ip = f["X/indptr"][()]
        ip[5], ip[6] = ip[6], ip[5] - 1  # a decrease in the middle, same end
        replace(f, "X/indptr", ip)
    edit(p, fn)


def b_indptr_end_short(p):
    good_csr(p)

    def fn(f):
        ip = f["X/indptr"][()]
        ip[-1] -= 1  # ends before nnz
        replace(f, "X/indptr", ip)
    edit(p, fn)


def b_indptr_end_long(p):
    good_csr(p)

    def fn(f):
        ip = f["X/indptr"][()]
        ip[-1] += 5  # ends after nnz
        replace(f, "X/indptr", ip)
    edit(p, fn)


def b_index_out_of_range(p):
    good_csr(p)

    def fn(f):
        ind = f["X/indices"][()]
        ind[len(ind) // 2] = N_VARS  # one past the last gene
        replace(f, "X/indices", ind)
    edit(p, fn)


def b_negative_index(p):
    good_csr(p)

    def fn(f):
        ind = f["X/indices"][()]
        ind[3] = -1
        replace(f, "X/indices", ind)
    edit(p, fn)


def b_shape_vs_indptr(p):
    good_csr(p)
    edit(p, lambda f: f["X"].attrs.__setitem__("shape", np.array([N_OBS + 1, N_VARS], dtype=np.int64)))


def b_dense_vs_obs(p):
    write_simple(p, counts(np.random.default_rng(0), N_OBS, N_VARS).astype(np.float32))

    def fn(f):
        X = f["X"][()]
        replace(f, "X", np.vstack([X, X[:1]]))  # one row more than obs has
    edit(p, fn)


def b_truncated(p):
    good_csr(p)
    size = p.stat().st_size
    with open(p, "r+b") as fh:
        fh.truncate(size * 6 // 10)


def b_corrupt_chunk(p):
    good_csr(p, compression="gzip", data_chunk=200)
    with h5py.File(p, "r") as f:
        d = f["X/data"]
        assert d.id.get_num_chunks() > 2
        ci = d.id.get_chunk_info(1)
    with open(p, "r+b") as fh:
        fh.seek(ci.byte_offset + ci.size // 2)
        fh.write(b"\xff" * 16)
    with h5py.File(p, "r") as f:  # make sure the damage is detectable at all
        with pytest.raises(OSError):
            f["X/data"][()]


BAD = [
    # id, builder, extra args, keywords (element or problem; one must appear, case-insensitive)
    ("not-hdf5", b_not_hdf5, [], ["hdf5", "h5ad", "format"]),
    ("not-anndata-no-X", b_not_anndata, [], ["anndata", r"re:\bX\b"]),
    ("unsupported-encoding", b_unsupported_encoding, [], ["coo_matrix", "encoding"]),
    ("missing-layer", good_csr, ["--layer", "nope_layer"], ["nope_layer"]),
    ("indptr-not-monotone", b_indptr_not_monotone, [], ["indptr"]),
    ("indptr-ends-before-nnz", b_indptr_end_short, [], ["indptr", "nnz"]),
    ("indptr-ends-after-nnz", b_indptr_end_long, [], ["indptr", "nnz"]),
    ("index-out-of-range", b_index_out_of_range, [], ["indices", "index", "range"]),
    ("negative-index", b_negative_index, [], ["indices", "index", "range"]),
    ("shape-attr-vs-indptr", b_shape_vs_indptr, [], ["shape", "indptr"]),
    ("dense-rows-vs-obs", b_dense_vs_obs, [], ["shape", "obs", "rows"]),
    ("truncated-file", b_truncated, [], ["truncat", "corrupt", "eof", "hdf5", "read"]),
    ("corrupt-gzip-chunk", b_corrupt_chunk, [], ["X/data", "chunk", "corrupt", "decompress", "inflate", "filter"]),
]


@pytest.mark.parametrize("bid,build,extra,keywords", BAD, ids=[b[0] for b in BAD])
def test_bad_input(cli, tmp_path, bid, build, extra, keywords):
    inp = tmp_path / "input.h5ad"
    build(inp)
    out = tmp_path / "out" / "result.h5ad"
    out.parent.mkdir()
    before = sha256(inp)
    proc = run_cli(cli, ["normalize", inp, out, *extra])
    assert_refused(proc, inp=inp, out=out, inp_hash=before, names=[inp.name], keywords=keywords)


def test_missing_input(cli, tmp_path):
    inp = tmp_path / "does-not-exist.h5ad"
    out = tmp_path / "result.h5ad"
    proc = run_cli(cli, ["normalize", inp, out])
    assert_refused(proc, inp=None, out=out, inp_hash=None, names=[inp.name],
                   keywords=["no such", "not found", "exist", "missing"])


@pytest.mark.parametrize("value", ["-0.1", "1.5"])
@pytest.mark.parametrize("ehe", [True, False], ids=["with-ehe", "without-ehe"])
def test_max_fraction_out_of_range(cli, tmp_path, value, ehe):
    # scanpy raises "Choose max_fraction between 0 and 1." even with exclude_highly_expressed off
    inp = tmp_path / "input.h5ad"
    good_csr(inp)
    out = tmp_path / "result.h5ad"
    before = sha256(inp)
    args = ["normalize", inp, out, "--max-fraction", value] + (["--exclude-highly-expressed"] if ehe else [])
    proc = run_cli(cli, args)
    assert_refused(proc, inp=inp, out=out, inp_hash=before, names=[], keywords=["max-fraction", "max_fraction"])


def test_existing_output_needs_force(cli, runner, tmp_path):
    inp = tmp_path / "input.h5ad"
    good_csr(inp)
    out = tmp_path / "existing.h5ad"
    out.write_bytes(b"precious")
    before, out_before = sha256(inp), sha256(out)
    proc = run_cli(cli, ["normalize", inp, out])
    assert_refused(proc, inp=inp, out=out, inp_hash=before, out_hash=out_before, names=[out.name],
                   keywords=["exist", "force"])
    # with --force it is replaced by the right result
    proc = run_cli(cli, ["normalize", inp, out, "--force"])
    assert proc.returncode == 0, proc.stderr
    from compare import diff_files
    from oracle import expected_outcome

    exp = expected_outcome(inp, Options(), tmp_path / "expected.h5ad")
    assert not diff_files(exp, out)
    assert sha256(inp) == before


def _spellings(tmp_path, inp):
    sub = tmp_path / "sub"
    sub.mkdir(exist_ok=True)
    link = tmp_path / "link.h5ad"
    if not link.exists():
        link.symlink_to(inp)
    hard = tmp_path / "hard.h5ad"
    if not hard.exists():
        os.link(inp, hard)
    return {
        "same-path": (str(inp), None),
        "relative": ("./input.h5ad", tmp_path),
        "dotdot": (str(sub / ".." / "input.h5ad"), None),
        "symlink": (str(link), None),
        "hardlink": (str(hard), None),
    }


@pytest.mark.parametrize("spelling", ["same-path", "relative", "dotdot", "symlink", "hardlink"])
@pytest.mark.parametrize("force", [False, True], ids=["", "force"])
def test_output_is_input(cli, tmp_path, spelling, force):
    inp = tmp_path / "input.h5ad"
    good_csr(inp)
    out_arg, cwd = _spellings(tmp_path, inp)[spelling]
    before = sha256(inp)
    proc = run_cli(cli, ["normalize", str(inp), out_arg] + (["--force"] if force else []), cwd=cwd)
    assert_refused(proc, inp=inp, out=inp, inp_hash=before, out_hash=before, names=[],
                   keywords=["same", "input", "overwrite"])
    assert inp.name in proc.stderr or os.path.basename(out_arg) in proc.stderr, proc.stderr
