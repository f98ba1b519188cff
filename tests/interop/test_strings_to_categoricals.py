"""String columns of obs, var and raw.var come out as anndata 0.13.4's write leaves them (issue 9).

`write_h5ad` and `write_zarr` first call `AnnData.strings_to_categoricals`: a column pandas infers
as strings becomes a categorical when it has fewer distinct values than rows (natsort order of
categories, masked entries as code -1 that still count as rows). Files from writers other than
anndata (anndata-rs/SnapATAC2, h5py by hand, anndata's own `convert_strings_to_categoricals=False`)
keep such columns as `string-array` or `nullable-string-array`; scanpy's read + write turns them
into categoricals, so atlasnorm's output must too, whatever the input and output formats.

The inputs are written with h5py by hand (.h5ad) and by anndata with the conversion off (.zarr v2,
v3); every output is compared with scanpy's, element by element (compare.diff_files: column dtypes,
categories, codes, ordered, values).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from compare import diff_files
from conftest import describe, run_cli
from oracle import Options, expected_outcome

N_OBS, N_VARS = 300, 12

# natsort's corner cases: leading zeros, Unicode decimal digits, a superscript digit (a number
# of its own for natsort), text before numbers, the empty string, case.
TRICKY = ["a10", "a9", "a09", "a٣", "a3", "a²", "", "1", "B", "b", "x-1", "1.5", "Ⅷ", "a½"]


def _strings(g, name, values):
    d = g.create_dataset(name, data=np.array(values, dtype=object), dtype=h5py.string_dtype())
    d.attrs["encoding-type"] = "string-array"
    d.attrs["encoding-version"] = "0.2.0"


def _nullable(g, name, values, mask):
    s = g.create_group(name)
    s.attrs["encoding-type"] = "nullable-string-array"
    s.attrs["encoding-version"] = "0.1.0"
    s.create_dataset("values", data=np.array(values, dtype=object), dtype=h5py.string_dtype())
    s.create_dataset("mask", data=np.asarray(mask, dtype=bool))


def _frame(f, path, n, columns):
    g = f.create_group(path)
    g.attrs["encoding-type"] = "dataframe"
    g.attrs["encoding-version"] = "0.2.0"
    g.attrs["_index"] = "_index"
    g.attrs["column-order"] = np.array([c for c, _ in columns], dtype=object)
    _strings(g, "_index", [f"{path.replace('/', '_')}{i}" for i in range(n)])
    for name, write in columns:
        write(g, name)


def _csr(f, path, x):
    g = f.create_group(path)
    g.attrs["encoding-type"] = "csr_matrix"
    g.attrs["encoding-version"] = "0.1.0"
    g.attrs["shape"] = x.shape
    g["data"], g["indices"], g["indptr"] = x.data, x.indices, x.indptr


def write_h5ad_by_hand(path: Path) -> None:
    rng = np.random.default_rng(7)
    x = sp.random(N_OBS, N_VARS, density=0.5, format="csr", dtype=np.float32, random_state=3)
    x.data[:] = rng.integers(1, 20, x.nnz)
    n = N_OBS
    cycle = lambda values: [values[i % len(values)] for i in range(n)]  # noqa: E731
    obs = [
        ("dup", lambda g, k: _strings(g, k, cycle(["b10", "b2", "a"]))),
        ("unique", lambda g, k: _strings(g, k, [f"u{i}" for i in range(n)])),
        ("tricky", lambda g, k: _strings(g, k, cycle(TRICKY))),
        ("k126", lambda g, k: _strings(g, k, cycle([f"c{i}" for i in range(126)]))),
        ("k127", lambda g, k: _strings(g, k, cycle([f"c{i}" for i in range(127)]))),
        # one missing entry makes an otherwise unique column a categorical
        ("unique_but_null", lambda g, k: _nullable(g, k, [f"v{i}" for i in range(n)], [i == 5 for i in range(n)])),
        ("null_dup", lambda g, k: _nullable(g, k, cycle(["p", "q", "p2"]), [i % 7 == 0 for i in range(n)])),
        ("all_null", lambda g, k: _nullable(g, k, [""] * n, [True] * n)),
        ("unique_nullable", lambda g, k: _nullable(g, k, [f"w{i}" for i in range(n)], [False] * n)),
        ("number", lambda g, k: g.create_dataset(k, data=np.arange(n) % 3)),
    ]
    var = [
        ("feature_types", lambda g, k: _strings(g, k, ["Gene Expression"] * (N_VARS - 2) + ["Peaks"] * 2)),
        ("gene_ids", lambda g, k: _strings(g, k, [f"ENSG{i:05d}" for i in range(N_VARS)])),
    ]
    raw_var = [("chrom", lambda g, k: _strings(g, k, [f"chr{1 + i % 11}" for i in range(N_VARS)]))]
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        _csr(f, "X", x)
        _frame(f, "obs", N_OBS, obs)
        _frame(f, "var", N_VARS, var)
        raw = f.create_group("raw")
        raw.attrs["encoding-type"] = "raw"
        raw.attrs["encoding-version"] = "0.1.0"
        _csr(raw, "X", x)
        _frame(raw, "var", N_VARS, raw_var)
        for k in ["obsm", "varm", "obsp", "varp", "layers", "uns"]:
            g = f.create_group(k)
            g.attrs["encoding-type"] = "dict"
            g.attrs["encoding-version"] = "0.1.0"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """The same AnnData as an .h5ad by hand and as zarr v2/v3 written by anndata with the
    conversion off (anndata then keeps pandas' string columns as string arrays)."""
    import anndata

    d = tmp_path_factory.mktemp("s2c")
    h5 = d / "by_hand.h5ad"
    write_h5ad_by_hand(h5)
    out = {"h5ad": h5}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = anndata.read_h5ad(h5)
        assert str(adata.obs["dup"].dtype) != "category", "the input must keep its string columns"
        for fmt in (2, 3):
            z = d / f"anndata_v{fmt}.zarr"
            with anndata.settings.override(zarr_write_format=fmt):
                adata.write_zarr(z, convert_strings_to_categoricals=False)
            out[f"zarr_v{fmt}"] = z
    return out


@pytest.mark.parametrize("out_suffix", [".h5ad", ".zarr"])
@pytest.mark.parametrize("source", ["h5ad", "zarr_v2", "zarr_v3"])
def test_string_columns_become_categoricals_as_in_scanpy(cli, tmp_path, inputs, source, out_suffix):
    inp = inputs[source]
    exp = expected_outcome(inp, Options(), tmp_path / f"expected{out_suffix}")
    assert isinstance(exp, Path), f"scanpy failed: {exp!r}"
    out = tmp_path / f"result{out_suffix}"
    proc = run_cli(cli, ["normalize", inp, out])
    assert proc.returncode == 0, describe(proc)
    diffs = diff_files(exp, out)
    assert not diffs, "\n".join(diffs)


def test_the_oracle_really_converts(tmp_path, inputs):
    """Guards the test itself: scanpy's output has the categoricals this file is about."""
    import anndata

    exp = expected_outcome(inputs["h5ad"], Options(), tmp_path / "expected.h5ad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = anndata.read_h5ad(exp)
    kinds = {c: str(a.obs[c].dtype) for c in a.obs.columns}
    for c in ["dup", "tricky", "k126", "k127", "unique_but_null", "null_dup", "all_null"]:
        assert kinds[c] == "category", kinds
    for c in ["unique", "unique_nullable"]:
        assert kinds[c] != "category", kinds
    assert str(a.var["feature_types"].dtype) == "category"
    assert str(a.raw.var["chrom"].dtype) == "category"
    from natsort import natsorted

    assert list(a.obs["tricky"].cat.categories) == natsorted(sorted(set(TRICKY)))
    assert a.obs["k127"].cat.codes.dtype == np.int16  # pandas: int8 only below 127 categories


def _categorical(g, name, categories, codes):
    c = g.create_group(name)
    c.attrs["encoding-type"] = "categorical"
    c.attrs["encoding-version"] = "0.2.0"
    c.attrs["ordered"] = False
    c.create_dataset("codes", data=np.asarray(codes, dtype=np.int8))
    if categories.dtype == object:
        _strings(c, "categories", list(categories))
    else:
        d = c.create_dataset("categories", data=categories)
        d.attrs["encoding-type"] = "array"
        d.attrs["encoding-version"] = "0.2.0"


BAD_CATEGORIES = {
    "duplicate-strings": np.array(["a", "b", "a"], dtype=object),
    "duplicate-ints": np.array([1, 2, 2], dtype=np.int64),
    "zero-and-minus-zero": np.array([0.0, -0.0, 1.0]),
    "nan": np.array([0.5, np.nan, 1.0]),
}


@pytest.mark.parametrize("out_suffix", [".h5ad", ".zarr"])
@pytest.mark.parametrize("case", list(BAD_CATEGORIES))
def test_categories_pandas_refuses_are_refused(cli, tmp_path, case, out_suffix):
    """anndata cannot read a categorical whose categories repeat or hold NaN (pandas raises), so
    scanpy cannot run: the CLI refuses, naming the element, rather than copying it."""
    from conftest import assert_refused, sha256
    import anndata

    inp = tmp_path / "input.h5ad"
    write_h5ad_by_hand(inp)
    with h5py.File(inp, "r+") as f:
        _categorical(f["var"], "bad", BAD_CATEGORIES[case], [i % 3 for i in range(N_VARS)])
        order = list(f["var"].attrs["column-order"]) + ["bad"]
        f["var"].attrs["column-order"] = np.array(order, dtype=object)
    with warnings.catch_warnings(), pytest.raises(Exception):
        warnings.simplefilter("ignore")
        anndata.read_h5ad(inp)
    out = tmp_path / f"result{out_suffix}"
    before = sha256(inp)
    proc = run_cli(cli, ["normalize", inp, out])
    assert_refused(proc, inp=inp, out=out, inp_hash=before, names=[inp.name, "var/bad/categories"],
                   keywords=["categor"])
