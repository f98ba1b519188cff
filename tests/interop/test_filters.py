"""HDF5 filter plugins (hdf5plugin's registered filters: blosc, zstd, lz4, bitshuffle, bzip2) on X and
obs columns. scanpy (anndata with `import hdf5plugin`) is the oracle: the output must equal its result bit
for bit, anndata + hdf5plugin must read it, and the normalized X must keep the input's filter (same id,
same options). A filter atlasnorm does not implement is refused by name, never called corruption."""

from __future__ import annotations

import h5py
import hdf5plugin  # noqa: F401 - registers the filters with h5py's libhdf5, so anndata reads them
import numpy as np
import pytest

from conftest import assert_refused, run_cli, sha256
from gen import counts, rich_adata, to_layout, write_adata
from oracle import Options

KEY = "norm_factor"
OPTS = Options(key_added=KEY)

# (id, filter): each filter and its main option sets.
FILTERS = {
    "blosc-lz4-noshuffle": hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.NOSHUFFLE),
    "blosc-lz4-shuffle": hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE),
    "blosc-lz4-bitshuffle": hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE),
    "blosc-zstd-noshuffle": hdf5plugin.Blosc(cname="zstd", clevel=3, shuffle=hdf5plugin.Blosc.NOSHUFFLE),
    "blosc-zstd-shuffle": hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE),
    "blosc-zstd-bitshuffle": hdf5plugin.Blosc(cname="zstd", clevel=9, shuffle=hdf5plugin.Blosc.BITSHUFFLE),
    "blosc-blosclz-noshuffle": hdf5plugin.Blosc(cname="blosclz", clevel=5, shuffle=hdf5plugin.Blosc.NOSHUFFLE),
    "blosc-blosclz-shuffle": hdf5plugin.Blosc(cname="blosclz", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE),
    "blosc-blosclz-bitshuffle": hdf5plugin.Blosc(cname="blosclz", clevel=1, shuffle=hdf5plugin.Blosc.BITSHUFFLE),
    "blosc-zlib-shuffle": hdf5plugin.Blosc(cname="zlib", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE),
    "blosc-lz4hc-shuffle": hdf5plugin.Blosc(cname="lz4hc", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE),
    "zstd-1": hdf5plugin.Zstd(clevel=1),
    "zstd-3": hdf5plugin.Zstd(),
    "zstd-19": hdf5plugin.Zstd(clevel=19),
    "lz4": hdf5plugin.LZ4(),
    "lz4-block1k": hdf5plugin.LZ4(nbytes=1024),
    "bitshuffle": hdf5plugin.Bitshuffle(cname="none"),
    "bitshuffle-lz4": hdf5plugin.Bitshuffle(cname="lz4"),
    "bitshuffle-zstd": hdf5plugin.Bitshuffle(cname="zstd", clevel=5),
    "bitshuffle-lz4-block256": hdf5plugin.Bitshuffle(nelems=256, cname="lz4"),
    "bzip2": hdf5plugin.BZip2(blocksize=9),
}

# Matrix layouts and dtypes: every filter on CSR float32; each layout x dtype with a rotating filter.
LAYOUTS = [(layout, dtype) for layout in ("csr", "csc", "dense") for dtype in ("float32", "float64", "int32", "int64")]
CASES = [(name, "csr", "float32") for name in FILTERS] + [
    (list(FILTERS)[(3 * i + 1) % len(FILTERS)], layout, dtype) for i, (layout, dtype) in enumerate(LAYOUTS)
]

# Small chunks so every array has many chunks, and a last partial one.
CHUNK = 97


def _refilter(f: h5py.File, path: str, filt, chunk: int = CHUNK) -> None:
    """Rewrites dataset `path` with `filt` (same values, attributes; chunked by `chunk` rows)."""
    ds = f[path]
    data = ds[()]
    attrs = dict(ds.attrs)
    del f[path]
    chunks = (min(chunk, len(data)),) + data.shape[1:] if data.ndim else None
    new = f.create_dataset(path, data=data, chunks=chunks, maxshape=(None,) + data.shape[1:], **filt)
    for k, v in attrs.items():
        new.attrs[k] = v


def _x_datasets(f: h5py.File) -> list[str]:
    x = f["X"]
    return ["X/data", "X/indices", "X/indptr"] if isinstance(x, h5py.Group) else ["X"]


def write_filtered(path, filt, layout="csr", dtype="float32", seed=0, obs_too=True):
    rng = np.random.default_rng(seed)
    c = counts(rng, 300, 120)
    a = rich_adata(to_layout(c.astype(dtype), layout), seed=seed)
    write_adata(a, path)
    with h5py.File(path, "r+") as f:
        for p in _x_datasets(f):
            _refilter(f, p, filt)
        if obs_too:
            # numeric, boolean and categorical-code columns of obs (strings stay unfiltered:
            # hdf5plugin's filters do not apply to variable-length strings)
            for p in ("obs/batch", "obs/qc", "obs/ok", "obs/cell_type/codes", "layers/dense_extra"):
                _refilter(f, p, filt)


def filters_of(ds: h5py.Dataset) -> list[tuple[int, tuple]]:
    """(id, cd_values) of every filter of a dataset, in pipeline order."""
    plist = ds.id.get_create_plist()
    out = []
    for i in range(plist.get_nfilters()):
        fid, _flags, vals, _name = plist.get_filter(i)
        out.append((fid, tuple(vals)))
    return out


def comparable(fs, itemsize_changed: bool):
    """What must be kept: the id and the options; blosc's typesize/chunk bytes ([2], [3]) and
    bitshuffle's element size ([2]) follow the output's dtype, as the reference filters set them."""
    out = []
    for fid, vals in fs:
        v = list(vals)
        if itemsize_changed and fid in (32001, 32008) and len(v) > 3:
            v[2] = None
            if fid == 32001:
                v[3] = None
        out.append((fid, tuple(v)))
    return out


@pytest.mark.parametrize("name,layout,dtype", CASES, ids=[f"{n}-{l}-{d}" for n, l, d in CASES])
def test_filtered_input_equals_scanpy_and_keeps_the_filter(runner, tmp_path, name, layout, dtype):
    inp = tmp_path / "in.h5ad"
    write_filtered(inp, FILTERS[name], layout, dtype)
    out = runner.check(inp, OPTS, name=name)
    with h5py.File(inp, "r") as fi, h5py.File(out, "r") as fo:
        # CSC comes out as CSR: compare X/data's filter with the input's X/data (or dense X)
        src = fi["X/data"] if isinstance(fi["X"], h5py.Group) else fi["X"]
        dst = fo["X/data"] if isinstance(fo["X"], h5py.Group) else fo["X"]
        want = filters_of(src)
        assert want and want[0][0] in (32001, 32004, 32008, 32015, 307), want
        changed = src.dtype.itemsize != dst.dtype.itemsize
        assert comparable(filters_of(dst), changed) == comparable(want, changed), (
            f"output X lost the input's filter: {filters_of(dst)} vs {want}"
        )
        if isinstance(fo["X"], h5py.Group):
            for m in ("indices", "indptr"):
                assert comparable(filters_of(fo["X"][m]), False) == comparable(filters_of(fi["X"][m]), False) or (
                    layout == "csc"
                ), m
        # untouched elements are copied as they are: same filter, same values
        for p in ("obs/qc", "layers/dense_extra"):
            assert filters_of(fo[p]) == filters_of(fi[p]), p
            np.testing.assert_array_equal(fo[p][()], fi[p][()])


@pytest.mark.parametrize("name", ["blosc-zstd-shuffle", "bitshuffle-lz4", "zstd-3", "lz4", "bzip2"])
def test_filtered_input_to_zarr_equals_scanpy(runner, tmp_path, name):
    """h5ad -> zarr reads every element through HDF5's own pipeline (the registered filters)."""
    inp = tmp_path / "in.h5ad"
    write_filtered(inp, FILTERS[name])
    from compare import diff_files
    from oracle import expected_outcome

    exp = tmp_path / "exp.zarr"
    out = tmp_path / "out.zarr"
    assert expected_outcome(inp, OPTS, exp) == exp
    proc = run_cli(runner.cli, ["normalize", inp, out, *OPTS.cli_args()])
    assert proc.returncode == 0, proc.stderr
    diffs = diff_files(exp, out)
    assert not diffs, diffs[:20]


def test_inspect_names_the_filters(runner, tmp_path):
    inp = tmp_path / "in.h5ad"
    write_filtered(inp, FILTERS["blosc-zstd-bitshuffle"], obs_too=False)
    proc = run_cli(runner.cli, ["inspect", inp])
    assert proc.returncode == 0, proc.stderr
    assert "blosc zstd 9 bitshuffle" in proc.stdout, proc.stdout


def _unknown_filter_file(path, where: str):
    """A file whose `where` dataset is compressed with SZ (HDF5 filter 32017, lossy; hdf5plugin has it,
    atlasnorm does not implement it)."""
    rng = np.random.default_rng(3)
    a = rich_adata(to_layout(counts(rng, 50, 40).astype("float32"), "csr"))
    write_adata(a, path)
    with h5py.File(path, "r+") as f:
        _refilter(f, where, hdf5plugin.SZ(absolute=0.01))
        assert filters_of(f[where])[0][0] == 32017


@pytest.mark.parametrize("where,output", [("X/data", "out.h5ad"), ("obs/qc", "out.zarr")])
def test_unknown_filter_is_named_not_called_corrupt(runner, tmp_path, where, output):
    inp = tmp_path / "sz.h5ad"
    _unknown_filter_file(inp, where)
    out = tmp_path / output
    before = sha256(inp)
    proc = run_cli(runner.cli, ["normalize", inp, out, *OPTS.cli_args()])
    assert_refused(proc, inp=inp, out=out, inp_hash=before, names=[inp.name, where],
                   keywords=["HDF5 filter 32017 (SZ)"])
    assert "not supported" in proc.stderr and "corrupt" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0, "one error line expected:\n" + proc.stderr
