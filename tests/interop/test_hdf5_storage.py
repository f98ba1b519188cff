"""HDF5 storage details of hand-written .h5ad files: fletcher32 checksums and user blocks.

* fletcher32 (h5py's ``fletcher32=True``, alone or after gzip / shuffle+gzip): every run must
  succeed and equal scanpy — the regression test of the heap overflow libhdf5's ``H5Ocopy`` hit
  when it copied the matrix's gzip+fletcher32 ``indices``/``indptr`` while their chunks sat in the
  chunk cache (``malloc(): corrupted top size``, exit 134, in ~4 runs of 10). Each case runs many
  times, with 1 and 2 threads and both the two-pass (median) and the fused (fixed target) paths,
  because the old failure depended on timing. The output keeps the input's filters, fletcher32
  included; a chunk whose checksum does not match is refused with one plain message.
* a user block (h5py ``userblock_size``): the raw-chunk reader must find chunks at their real file
  offsets (it used to add the user block twice and read the wrong bytes).
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from compare import diff_files
from conftest import CRASH_TEXT, assert_refused, describe, run_cli, sha256
from gen import counts, rich_adata, write_adata
from oracle import Options, expected_outcome

N_OBS, N_VARS = 300, 200
RUNS = 30  # per case, split over --threads 1 and 2

# name -> (h5py kwargs of data/indices, of indptr, data/indices chunk, indptr chunk)
FLETCHER_CASES = {
    # the reported file: gzip + fletcher32 on data/indices, fletcher32 alone on indptr
    "gzip-f32_ptr-f32_c97": ({"compression": "gzip", "fletcher32": True}, {"fletcher32": True}, 97, 13),
    "gzip-f32_ptr-f32_auto": ({"compression": "gzip", "fletcher32": True}, {"fletcher32": True}, True, True),
    "gzip-f32_ptr-gzip-f32_c500": (
        {"compression": "gzip", "fletcher32": True}, {"compression": "gzip", "fletcher32": True}, 500, 31,
    ),
    "shuffle-gzip-f32_c1000": (
        {"compression": "gzip", "shuffle": True, "fletcher32": True},
        {"compression": "gzip", "shuffle": True, "fletcher32": True}, 1000, 64,
    ),
    "f32-only_c7": ({"fletcher32": True}, {"fletcher32": True}, 7, 5),
}


def _chunks(c, n):
    return True if c is True else (max(1, min(c, n)),)


def write_fletcher(path, case: str, seed: int = 0):
    """A rich AnnData (anndata writes it), then X's arrays rewritten with h5py as `case` says."""
    vals_kw, ptr_kw, chunk, ptr_chunk = FLETCHER_CASES[case]
    rng = np.random.default_rng(seed)
    X = sp.csr_matrix(counts(rng, N_OBS, N_VARS).astype(np.float32))
    write_adata(rich_adata(X, seed=seed), path)
    with h5py.File(path, "r+") as f:
        g = f["X"]
        for name, kw, c in (("data", vals_kw, chunk), ("indices", vals_kw, chunk), ("indptr", ptr_kw, ptr_chunk)):
            v = g[name][...]
            del g[name]
            g.create_dataset(name, data=v, chunks=_chunks(c, len(v)), maxshape=(None,), **kw)


def matrix_bytes(path) -> dict:
    """X's data, indices and indptr: dtype and raw bytes (scanpy's output is CSR here)."""
    with h5py.File(path, "r") as f:
        return {m: (f["X"][m].dtype.str, f["X"][m][...].tobytes()) for m in ("data", "indices", "indptr")}


def filters_of(ds: h5py.Dataset) -> tuple:
    return (ds.compression, ds.compression_opts, ds.shuffle, ds.fletcher32)


@pytest.mark.parametrize("case", sorted(FLETCHER_CASES))
@pytest.mark.parametrize(
    "opts", [Options(), Options(target_sum=1e4)], ids=["median", "fused-target"]
)
def test_fletcher32_many_runs(cli, tmp_path, case, opts):
    inp = tmp_path / "f32.h5ad"
    write_fletcher(inp, case)
    before = sha256(inp)
    expected = expected_outcome(inp, opts, tmp_path / "expected.h5ad")
    assert not isinstance(expected, BaseException), f"scanpy fails on {case}: {expected!r}"
    with h5py.File(inp, "r") as f:
        in_filters = {m: filters_of(f["X"][m]) for m in ("data", "indices", "indptr")}
    assert in_filters["data"][3] and in_filters["indptr"][3], "the input must carry fletcher32"
    want = matrix_bytes(tmp_path / "expected.h5ad")
    failures = []
    for i in range(RUNS):
        threads = 1 + i % 2
        out = tmp_path / f"out{i}.h5ad"
        proc = run_cli(cli, ["normalize", inp, out, "--quiet", "--threads", threads, *opts.cli_args()])
        if proc.returncode != 0 or CRASH_TEXT.search(proc.stderr):
            failures.append(f"run {i} (--threads {threads}): {describe(proc)}")
            continue
        if i < 2:  # the whole file against scanpy's, and the filters
            diffs = diff_files(tmp_path / "expected.h5ad", out)
            if diffs:
                failures.append(f"run {i} (--threads {threads}): differs from scanpy: {diffs[:5]}")
            with h5py.File(out, "r") as f:
                got = {m: filters_of(f["X"][m]) for m in ("data", "indices", "indptr")}
            if got != in_filters:  # the output element keeps them, fletcher32 included
                failures.append(f"run {i}: filters {got} != input's {in_filters}")
        else:  # the normalized matrix, bit for bit (cheaper than reading the whole file back)
            got = matrix_bytes(out)
            if got != want:
                bad = [m for m in got if got[m] != want[m]]
                failures.append(f"run {i} (--threads {threads}): X/{bad} differ from scanpy's")
        out.unlink()
    assert sha256(inp) == before, "INPUT was modified"
    assert not failures, f"{len(failures)} of {RUNS} runs failed:\n" + "\n".join(failures[:5])


def _flip_checksum(path, member: str, chunk_index: int) -> None:
    """Flips one bit of the fletcher32 checksum (the last 4 stored bytes) of one chunk."""
    with h5py.File(path, "r") as f:
        info = f["X"][member].id.get_chunk_info(chunk_index)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + info.size - 1)
        b = fh.read(1)[0]
        fh.seek(info.byte_offset + info.size - 1)
        fh.write(bytes([b ^ 0x10]))


@pytest.mark.parametrize("member", ["data", "indices", "indptr"])
@pytest.mark.parametrize("opts", [Options(), Options(target_sum=1e4)], ids=["median", "fused-target"])
def test_fletcher32_bad_checksum_is_refused(cli, tmp_path, member, opts):
    inp = tmp_path / "bad.h5ad"
    write_fletcher(inp, "gzip-f32_ptr-gzip-f32_c500")
    _flip_checksum(inp, member, 1)
    with pytest.raises(OSError):  # anndata/h5py cannot read it either
        with h5py.File(inp, "r") as f:
            f["X"][member][...]
    before = sha256(inp)
    out = tmp_path / "out.h5ad"
    proc = run_cli(cli, ["normalize", inp, out, *opts.cli_args()])
    assert_refused(proc, inp=inp, out=out, inp_hash=before, names=[inp.name, f"X/{member}"],
                   keywords=["Fletcher32 checksum"])
    assert "HDF5" not in proc.stderr and "H5" not in proc.stderr, describe(proc)
    assert len(proc.stderr.strip().splitlines()) == 1, "one message, not a list\n" + describe(proc)


@pytest.mark.parametrize("storage", [{}, {"compression": "gzip"}, {"compression": "gzip", "shuffle": True}],
                         ids=["plain", "gzip", "shuffle-gzip"])
@pytest.mark.parametrize("userblock", [512, 4096])
def test_user_block(runner, tmp_path, storage, userblock):
    """A file with a user block: every element copied by h5py into a new file that has one."""
    rng = np.random.default_rng(3)
    X = sp.csr_matrix(counts(rng, N_OBS, N_VARS).astype(np.float32))
    plain = tmp_path / "plain.h5ad"
    write_adata(rich_adata(X, seed=3), plain)
    inp = tmp_path / "ub.h5ad"
    with h5py.File(plain, "r") as s, h5py.File(inp, "w", userblock_size=userblock) as d:
        for k, v in s.attrs.items():
            d.attrs[k] = v
        for k in s:
            if k != "X":
                s.copy(s[k], d, k)
        g = d.create_group("X")
        for k, v in s["X"].attrs.items():
            g.attrs[k] = v
        for m in ("data", "indices", "indptr"):
            v = s["X"][m][...]
            g.create_dataset(m, data=v, chunks=(min(500, len(v)),), maxshape=(None,), **storage)
    with open(inp, "rb") as fh:
        assert fh.read(8) != b"\x89HDF\r\n\x1a\n", "the file must start with a user block"
    runner.check(inp, Options(), name="ub")
    runner.check(inp, Options(target_sum=1e4), name="ub_fused")
