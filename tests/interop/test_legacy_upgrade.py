"""anndata 0.7's un-encoded elements come out as anndata 0.13.4's read + write leaves them (issue 9).

anndata 0.7 wrote uns values without `encoding-type` (a 0-d dataset for every scalar, plain
datasets for arrays, plain groups for dicts) and dataframes as `dataframe` 0.1.0 (columns without
encodings, categories in `__categories`). anndata 0.13.4 reads a 0-d un-encoded number as a numpy
scalar (np.int64, np.float32, np.bool_ ...) but writes it back as a `numeric-scalar`, which it then
reads as a Python int/float/bool/complex; it reads fixed-length string arrays as numpy `<U` (a
one-element one as a `str`) and variable-length ASCII ones as `bytes`, and writes both back as
UTF-8 `str`. So an output that keeps those elements as stored reads back differently from scanpy's.

The inputs are written here with h5py, by hand, in 0.7's layout (tests/interop/gen_legacy.py plus
the uns and string columns below). Each case runs the CLI and the scanpy pipeline, and checks,
element by element, that what anndata reads from our output has the type and dtype of what it
reads from scanpy's (then everything, bit for bit, with compare.diff_files); for uns, also the
encoding attributes written (h5py / zarr), which must be scanpy's.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from compare import diff_files, read_any
from conftest import CRASH_TEXT, describe, run_cli
from gen_legacy import write_anndata07
from oracle import Options, expected_outcome

# uns/<name>: how anndata 0.7 (or h5py by hand, as 0.7 files often are) stored it
SCALAR_DTYPES = ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16", "?"]


def add_legacy_uns(f: h5py.File, *, h5py_only_types: bool = True) -> None:
    """`h5py_only_types`: also float16 and complex scalars and record arrays (which atlasnorm
    carries into .h5ad outputs, not yet into .zarr ones)."""
    u = f["uns"]
    for dt in SCALAR_DTYPES if h5py_only_types else [d for d in SCALAR_DTYPES if d not in ("f2", "c8", "c16")]:
        u.create_dataset(f"s_{dt.replace('?', 'bool')}", data=np.array(3 if dt != "?" else True, dtype=dt))
    u.create_dataset("s_str", data="hello", dtype=h5py.string_dtype())
    u.create_dataset("s_str_empty", data="", dtype=h5py.string_dtype())
    u.create_dataset("a_str", data=np.array(["alpha", "beta"], dtype=object), dtype=h5py.string_dtype())
    u.create_dataset("a_str_2d", data=np.array([["a", "b"], ["c", "d"]], dtype=object),
                     dtype=h5py.string_dtype())
    u.create_dataset("a_fixed", data=np.array([b"ab", b"cde", b""]))
    u.create_dataset("a_fixed_one", data=np.array([b"only"]))
    u.create_dataset("a_ascii", data=np.array([b"x", b"yz"], dtype=object), dtype=h5py.string_dtype("ascii"))
    u.create_dataset("a_int", data=np.arange(5, dtype=np.int32))
    u.create_dataset("a_bool", data=np.array([True, False, True]))
    u.create_dataset("a_float_2d", data=np.arange(6, dtype=np.float64).reshape(2, 3) / 7)
    u.create_dataset("a_empty", data=np.zeros(0, dtype=np.float64))
    g = u.create_group("neighbors").create_group("params")
    g.create_dataset("n_neighbors", data=np.int64(15))
    g.create_dataset("method", data="umap", dtype=h5py.string_dtype())
    g.create_dataset("flag", data=np.bool_(False))
    u.create_group("empty_dict")
    if h5py_only_types:
        # record arrays as anndata 0.7 stored rank_genes_groups (fixed-length string fields)
        r = u.create_group("rank_genes_groups")
        r.create_dataset("names", data=np.array([(b"g1", b"gene-long"), (b"g22", b"x")],
                                                dtype=[("0", "S3"), ("1", "S9")]))
        r.create_dataset("scores", data=np.array([(1.5, 2), (3.0, -1)], dtype=[("0", "<f4"), ("1", "<i8")]))
        r.create_dataset("mixed", data=np.array([(1, b"ab", True)] * 3, dtype=[("a", ">i4"), ("b", "S2"), ("c", "?")]))


def add_legacy_columns(f: h5py.File) -> None:
    """A string and a boolean column in obs and var, as anndata 0.7 stored them (no encoding).
    The strings are unique: anndata (0.7 as 0.13) writes a string column with repeated values as a
    categorical (`strings_to_categoricals`), so a 0.7 file never has one."""
    for key, n in (("obs", f["obs/_index"].shape[0]), ("var", f["var/_index"].shape[0])):
        g = f[key]
        g.create_dataset("label", data=np.array([f"{key}-{i}" for i in range(n)], dtype=object),
                         dtype=h5py.string_dtype())
        g.create_dataset("flag", data=np.arange(n) % 3 == 0)
        # variable-length ASCII strings (h5py writes `bytes` objects so; files made by hand, loompy
        # conversions): anndata reads them as `bytes`, scanpy's write stores them as UTF-8 `str`
        # (pandas infers `bytes`: never a categorical, even with repeats)
        ascii_t = h5py.string_dtype("ascii")
        g.create_dataset("label_ascii", data=np.array([f"{key}a{i}".encode() for i in range(n)], dtype=object),
                         dtype=ascii_t)
        g.create_dataset("rep_ascii", data=np.array([f"r{i % 3}".encode() for i in range(n)], dtype=object),
                         dtype=ascii_t)
        order = [c.decode() if isinstance(c, bytes) else c for c in g.attrs["column-order"]]
        g.attrs["column-order"] = np.array(order + ["label", "flag", "label_ascii", "rep_ascii"], dtype=object)
        # a 0.7 categorical whose categories are ASCII (read as `bytes` categories)
        cats = g.get("__categories")
        if cats is not None and len(cats):
            name = sorted(cats)[0]
            old = cats[name]
            values, attrs = old[()], dict(old.attrs)
            del cats[name]
            new = cats.create_dataset(name, data=np.array(values, dtype=object), dtype=ascii_t)
            for k, v in attrs.items():
                new.attrs[k] = v
            g[name].attrs["categories"] = new.ref


def write_input(path: Path, layout: str, *, h5py_only_types: bool = True) -> Path:
    write_anndata07(path, layout=layout)
    with h5py.File(path, "r+") as f:
        add_legacy_uns(f, h5py_only_types=h5py_only_types)
        add_legacy_columns(f)
    return path


def kind(v) -> str:
    """Type and dtype of a value anndata read (what must agree)."""
    return f"{type(v).__module__}.{type(v).__qualname__}/{getattr(v, 'dtype', '')!r}/{getattr(v, 'shape', '')}"


def walk_uns(d, path="uns"):
    for k, v in d.items():
        if isinstance(v, dict):
            yield f"{path}/{k}", "dict"
            yield from walk_uns(v, f"{path}/{k}")
        else:
            yield f"{path}/{k}", kind(v)


def read_types(path: Path) -> dict[str, str]:
    a = read_any(path)
    out = dict(walk_uns(a.uns))
    for name, df in (("obs", a.obs), ("var", a.var)):
        out[f"{name}.index"] = repr(df.index.dtype)
        for c in df.columns:
            out[f"{name}[{c}]"] = repr(df[c].dtype)
    return out


def uns_encodings(path: Path) -> dict[str, tuple]:
    """uns/<path> -> (encoding-type, encoding-version, value kind) as written on disk."""
    out = {}
    if str(path).endswith(".zarr"):
        import zarr

        root = zarr.open_group(str(path), mode="r")

        def visit(g, p):
            for k in sorted(g.keys()):
                node = g[k]
                a = dict(node.attrs)
                is_group = isinstance(node, zarr.Group)
                what = "group" if is_group else ("str" if node.dtype.kind in "OUT" or "str" in str(node.dtype)
                                                 else node.dtype.str) + f"{node.shape}"
                out[f"{p}/{k}"] = (a.get("encoding-type"), a.get("encoding-version"), what)
                if is_group and a.get("encoding-type") == "dict":
                    visit(node, f"{p}/{k}")

        visit(root["uns"], "uns")
        return out
    with h5py.File(path, "r") as f:
        def visit_h5(name, obj):
            a = obj.attrs
            if isinstance(obj, h5py.Group):
                what = "group"
            else:
                s = h5py.check_string_dtype(obj.dtype)
                what = (f"str-{s.encoding}-{'vlen' if s.length is None else 'fixed'}" if s else obj.dtype.str) + \
                    f"{obj.shape}"
            out[f"uns/{name}"] = (a.get("encoding-type"), a.get("encoding-version"), what)

        f["uns"].visititems(visit_h5)
    return out


CASES = [("csr", "h5ad"), ("dense", "h5ad"), ("csc", "h5ad"), ("csr", "zarr3"), ("csr", "zarr2"),
         ("dense", "zarr3")]


@pytest.mark.parametrize("layout,out_kind", CASES, ids=[f"{l}-{o}" for l, o in CASES])
def test_legacy_elements_read_back_as_after_scanpy(cli, tmp_path, layout, out_kind):
    zfmt = {"zarr3": 3, "zarr2": 2}.get(out_kind)
    inp = write_input(tmp_path / "in07.h5ad", layout, h5py_only_types=zfmt is None)
    suffix = "h5ad" if zfmt is None else "zarr"
    exp = expected_outcome(inp, Options(target_sum=1e4, key_added="f"), tmp_path / f"exp.{suffix}",
                           zarr_format=zfmt)
    assert not isinstance(exp, BaseException), exp
    out = tmp_path / f"out.{suffix}"
    args = ["normalize", inp, out, "--target-sum", "10000.0", "--key-added", "f", "--quiet"]
    if zfmt is not None:
        args += ["--zarr-format", str(zfmt)]
    proc = run_cli(cli, args)
    assert proc.returncode == 0, describe(proc)
    assert not CRASH_TEXT.search(proc.stderr), describe(proc)

    want, got = read_types(exp), read_types(out)
    # the premise: these are the elements whose type anndata's round trip changes
    assert want["uns/s_i8"].startswith("builtins.int/") and want["uns/s_f4"].startswith("builtins.float/")
    assert want["uns/s_bool"].startswith("builtins.bool/") and want["uns/s_u1"].startswith("builtins.int/")
    if zfmt is None:
        assert want["uns/s_c8"].startswith("builtins.complex/") and want["uns/s_f2"].startswith("builtins.float/")
        assert "('0', 'O')" in want["uns/rank_genes_groups/names"]
    assert want["uns/a_fixed_one"].startswith("builtins.str/")
    assert "Categorical" not in want["obs[rep_ascii]"], want["obs[rep_ascii]"]  # bytes stay bytes-like
    bad = [f"{k}: ours {got.get(k)} != scanpy's {v}" for k, v in want.items() if got.get(k) != v]
    bad += [f"{k}: only in ours ({v})" for k, v in got.items() if k not in want]
    assert not bad, "types anndata reads back differ:\n  " + "\n  ".join(bad)

    # uns on disk: the encodings (and string storage) scanpy's anndata writes
    we, ge = uns_encodings(exp), uns_encodings(out)
    bad = [f"{k}: ours {ge.get(k)} != scanpy's {v}" for k, v in we.items() if ge.get(k) != v]
    assert not bad, "uns elements stored differently:\n  " + "\n  ".join(bad)

    diffs = diff_files(exp, out)
    assert not diffs, f"{len(diffs)} difference(s) from scanpy:\n  " + "\n  ".join(diffs[:40])


def test_h5ad_output_keeps_references_and_upgrades_uns(cli, tmp_path):
    """.h5ad -> .h5ad with anndata 0.7's references: the references still resolve to the same
    paths, and uns (with reference-holding attributes on upgraded elements) is upgraded."""
    inp = write_anndata07(tmp_path / "in07.h5ad", extra_refs=True)
    with h5py.File(inp, "r+") as f:
        add_legacy_uns(f)
        f["uns/a_fixed"].attrs["points_at"] = f["obs"].ref
        f["uns/params"].attrs["to_fixed"] = f["uns/a_fixed"].ref
    out = tmp_path / "out.h5ad"
    proc = run_cli(cli, ["normalize", inp, out, "--quiet"])
    assert proc.returncode == 0, describe(proc)
    with h5py.File(out, "r") as f:
        assert f[f["uns/a_fixed"].attrs["points_at"]].name == "/obs"
        assert f[f["uns/params"].attrs["to_fixed"]].name == "/uns/a_fixed"
        assert f["uns/a_fixed"].attrs["encoding-type"] == "string-array"
        assert h5py.check_string_dtype(f["uns/a_fixed"].dtype).length is None
        assert f["uns/s_i8"].attrs["encoding-type"] == "numeric-scalar"
        assert f["uns/params"].attrs["encoding-type"] == "dict"
        # obs stays anndata 0.7's dataframe, with its categories linked as before
        assert f[f["obs/cell_type"].attrs["categories"]].name == "/obs/__categories/cell_type"
    exp = expected_outcome(inp, Options(), tmp_path / "exp.h5ad")
    diffs = diff_files(exp, out)
    assert not diffs, "\n  ".join(diffs[:40])


def test_input_is_really_anndata07_style(tmp_path):
    """The generated input has what the test is about: no encodings in uns, a 0.1.0 dataframe."""
    inp = write_input(tmp_path / "in07.h5ad", "csr")
    with h5py.File(inp, "r") as f:
        assert "encoding-type" not in f["uns"].attrs and "encoding-type" not in f["uns/s_i8"].attrs
        assert f["obs"].attrs["encoding-version"] == "0.1.0"
        assert "encoding-type" not in f["obs/label"].attrs
