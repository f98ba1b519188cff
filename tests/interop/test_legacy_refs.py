"""HDF5 references and anndata 0.7 categoricals (issue 9, finding 1).

anndata 0.7 links each categorical column to `obs/__categories/<col>` with an HDF5 object
reference; copying it into another file must keep it pointing at the output's copy (anndata
0.13.4 otherwise fails with "Invalid HDF5 object reference" on the output). Every reference
(attributes and datasets, object and region) must resolve in the output to the object at the
same path. Converting to zarr turns the old categorical into the form anndata 0.13 writes.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import CRASH_TEXT, assert_refused, describe, run_cli, sha256
from gen_legacy import write_anndata07
from oracle import Options, expected_outcome
from compare import diff_files, read_any

KEY = "norm_factor"


@pytest.mark.parametrize("layout", ["csr", "csc", "dense"])
@pytest.mark.parametrize("extra_refs", [False, True], ids=["categoricals", "extra_refs"])
def test_anndata07_h5ad_equals_scanpy(runner, tmp_path, layout, extra_refs):
    inp = write_anndata07(tmp_path / "in07.h5ad", layout=layout, extra_refs=extra_refs)
    out = runner.check(inp, Options(key_added=KEY), expect="ok")
    ad = read_any(out)  # the whole output, categoricals included
    assert list(ad.obs["cell_type"].cat.categories) == ["B", "NK", "T"]
    assert ad.obs["stage"].cat.ordered and ad.obs["stage"].isna().sum() > 0
    assert list(ad.var["kind"].cat.categories) == ["coding", "noncoding"]


@pytest.mark.parametrize("layer", [False, True], ids=["X", "layer"])
def test_anndata07_layer_and_root_attribute(runner, tmp_path, layer):
    inp = write_anndata07(tmp_path / "in07.h5ad", extra_refs=True)
    if layer:
        with h5py.File(inp, "r+") as f:
            f.copy("X", "layers_tmp")
            f.create_group("layers")
            f.move("layers_tmp", "layers/counts")
            f["layers"].attrs["link"] = f["obs/__categories/stage"].ref
    runner.check(inp, Options(layer="counts" if layer else None), expect="ok")


def _names(f: h5py.File, refs) -> list:
    return [f[r].name if r else None for r in np.atleast_1d(refs)]


def test_every_reference_resolves_to_the_same_path(cli, tmp_path):
    """Object and region references in attributes and datasets, across elements, into X, null."""
    inp = write_anndata07(tmp_path / "in.h5ad", extra_refs=True, ref_datasets=True)
    out = tmp_path / "out.h5ad"
    proc = run_cli(cli, ["normalize", inp, out, "--target-sum", "100"])
    assert proc.returncode == 0, describe(proc)
    with h5py.File(inp) as fi, h5py.File(out) as fo:
        checked = 0

        def visit(name, obj):
            nonlocal checked
            for k, v in obj.attrs.items():
                if isinstance(v, (h5py.Reference, h5py.RegionReference)) or (
                        isinstance(v, np.ndarray) and v.dtype.kind == "O" and v.size and
                        isinstance(v.flat[0], h5py.Reference)):
                    got = fo[name].attrs[k]
                    assert _names(fo, got) == _names(fi, v), f"{name}@{k}"
                    checked += 1
            if isinstance(obj, h5py.Dataset) and h5py.check_dtype(ref=obj.dtype) is not None:
                assert _names(fo, fo[name][()]) == _names(fi, obj[()]), name
                checked += 1

        fi.visititems(visit)
        visit("/", fi)  # the root's attributes
        assert checked >= 11
        # Region references select the same values (outside X) ...
        for ri, ro in zip(fi["uns/regrefs"][()], fo["uns/regrefs"][()]):
            assert np.array_equal(fi[ri][ri], fo[ro][ro])
        pi, po = fi["uns/params"].attrs["pca_rows"], fo["uns/params"].attrs["pca_rows"]
        assert np.array_equal(fi[pi][pi], fo[po][po])
        # ... and inside the (CSR) normalized matrix, the same positions of the new values.
        ro = fo["uns/params"].attrs["x_data_region"]
        assert np.array_equal(fo[ro][ro], fo["X/data"][2:5])
        assert not np.array_equal(fo["X/data"][2:5], fi["X/data"][2:5])
        # No stray unnamed copies: the output has as many objects as the input.
        def count(f):
            seen = []
            f.visit(lambda n: seen.append(n))
            return len(seen)
        assert count(fo) == count(fi) + 2  # uns/log1p and uns/log1p/base
    # anndata reads the whole output (its uns reference arrays as it reads the input's).
    ad = read_any(out)
    assert list(ad.obs["cell_type"].cat.categories) == ["B", "NK", "T"]
    assert [fo_name for fo_name in ad.uns] == sorted(["params", "objrefs", "regrefs", "log1p"])


def test_region_reference_into_a_matrix_that_changes_layout_is_refused(cli, tmp_path):
    """CSC comes out as CSR: a region of X/data would select other values, so the run fails."""
    inp = write_anndata07(tmp_path / "in.h5ad", layout="csc", extra_refs=True, x_region=True)
    out = tmp_path / "out.h5ad"
    before = sha256(inp)
    proc = run_cli(cli, ["normalize", inp, out])
    assert_refused(proc, inp=inp, out=out, inp_hash=before, names=[inp.name],
                   keywords=["x_data_region"])
    assert "region reference" in proc.stderr and "X/data" in proc.stderr
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("zfmt", [3, 2])
@pytest.mark.parametrize("layout", ["csr", "dense"])
def test_anndata07_h5ad_to_zarr_equals_scanpy(cli, tmp_path, zfmt, layout):
    """The old categoricals come out as anndata 0.13's read + write_zarr writes them."""
    inp = write_anndata07(tmp_path / "in07.h5ad", layout=layout)
    out = tmp_path / "out.zarr"
    exp = expected_outcome(inp, Options(key_added=KEY), tmp_path / "exp.zarr", zarr_format=zfmt)
    proc = run_cli(cli, ["normalize", inp, out, "--key-added", KEY, "--zarr-format", str(zfmt)])
    assert proc.returncode == 0, describe(proc)
    assert not CRASH_TEXT.search(proc.stderr), describe(proc)
    diffs = diff_files(exp, out)
    assert not diffs, "\n".join(diffs[:40])
    import zarr
    root = zarr.open_group(str(out), mode="r")
    assert "__categories" not in root["obs"] and "__categories" not in root["var"]
    ct = root["obs/cell_type"]
    assert dict(ct.attrs)["encoding-type"] == "categorical" and not dict(ct.attrs)["ordered"]
    assert dict(root["obs/stage"].attrs)["ordered"] is True
    assert sorted(ct.keys()) == ["categories", "codes"]


def test_anndata07_zarr_back_to_h5ad(cli, tmp_path):
    """.h5ad (0.7) -> .zarr -> .h5ad: still the same categoricals as scanpy's."""
    inp = write_anndata07(tmp_path / "in07.h5ad")
    mid = tmp_path / "mid.zarr"
    out = tmp_path / "out.h5ad"
    assert run_cli(cli, ["normalize", inp, mid, "--no-log1p", "--target-sum", "1"]).returncode == 0
    proc = run_cli(cli, ["normalize", mid, out, "--no-log1p", "--target-sum", "1"])
    assert proc.returncode == 0, describe(proc)
    a, b = read_any(inp), read_any(out)
    for frame in ("obs", "var"):
        ea, eb = getattr(a, frame), getattr(b, frame)
        for col in ea.columns:
            assert ea[col].equals(eb[col]), (frame, col)


def test_other_references_cannot_go_to_zarr(cli, tmp_path):
    """zarr has no references: anything but the categorical link is a clear error."""
    inp = write_anndata07(tmp_path / "in07.h5ad", extra_refs=True)
    out = tmp_path / "out.zarr"
    before = sha256(inp)
    proc = run_cli(cli, ["normalize", inp, out])
    assert_refused(proc, inp=inp, out=out, inp_hash=before, names=[inp.name],
                   keywords=["HDF5 references"])
