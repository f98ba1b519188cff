"""Bit-for-bit equivalence with scanpy on `.zarr` stores (zarr v2, v3 sharded, v3 unsharded), and
across formats (.zarr -> .h5ad, .h5ad -> .zarr), plus what the output store looks like.

* `test_zarr_pairwise`: a pairwise covering design over store form x codec x layout x dtype x index
  dtype x chunking x values x options x output (same format, .h5ad, --zarr-format / --zarr-chunk /
  --zarr-shard overrides) x --zarr-codec. The output, read back by anndata, must equal what scanpy
  writes (read_zarr -> pipeline -> write_zarr / write_h5ad, DESIGN.md §1): every element, bit for bit.
  For zarr output, the normalised matrix's arrays must also have the format, codec, chunking and
  sharding asked for (or the input's, when not asked: options.rs ZarrOutputOptions).
* `test_h5ad_to_zarr_pairwise`: .h5ad inputs (gen.py's writers) to .zarr outputs with the overrides.
* store level: consolidated metadata present, complete and up to date (new obs column, uns/log1p);
  untouched arrays of a zarr -> zarr run keep the input's codecs and chunking.
* meta: a one-ULP change in a zarr output is caught by this comparison.
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from compare import diff_files, read_any
from conftest import CRASH_TEXT, HERE, describe, run_cli, sha256
from gen import LAYER, MatrixSpec, excluded_genes, write_case
from gen_zarr import (
    ANNDATA_DEFAULT_CODEC,
    CODECS,
    STORES,
    ZarrSpec,
    array_layout,
    codec_key,
    list_arrays,
    matrix_arrays,
    store_format,
    write_zarr_case,
)
from oracle import Options, expected_outcome
from pairwise import pairwise, required_pairs

MAX_FRACTION = 0.1
KEY = "norm_factor"

# output choices: CLI options added, and what they pin down
OUTPUTS = {
    "same": dict(args=[], fmt=None, chunk=None, shard=None),
    "h5ad": dict(args=[], fmt="h5ad", chunk=None, shard=None),
    "v2": dict(args=["--zarr-format", "2"], fmt=2, chunk=None, shard=None),
    "v3": dict(args=["--zarr-format", "3"], fmt=3, chunk=None, shard=None),
    "v3-plain": dict(args=["--zarr-format", "3", "--zarr-shard", "0"], fmt=3, chunk=None, shard=0),
    "v3-c50-s150": dict(args=["--zarr-format", "3", "--zarr-chunk", "50", "--zarr-shard", "150"], fmt=3,
                        chunk=50, shard=150),
    "v2-c50": dict(args=["--zarr-format", "2", "--zarr-chunk", "50"], fmt=2, chunk=50, shard=None),
}

ZFACTORS = {
    "store": list(STORES),
    "codec": ["anndata", *CODECS],
    "layout": ["csr", "csc", "dense"],
    "dtype": ["float32", "float64", "int32", "int64", "uint16", "uint8"],
    "index": ["int32", "int64", None],
    "chunking": ["anndata", "small"],
    "values": ["integer", "fractional"],
    "target": [None, 1e4],
    "exclude": [False, True],
    "log1p": ["none", "ln", "2"],
    "where": ["X", "layer"],
    "key": [None, KEY],
    "out": list(OUTPUTS),
    "out_codec": [None, *CODECS],
}


def zallowed(p: dict) -> bool:
    # closed under two-factor implication (see pairwise.py): dense <=> no index dtype;
    # fractional => float; .h5ad output => no zarr codec
    if "layout" in p and "index" in p and (p["layout"] == "dense") != (p["index"] is None):
        return False
    if p.get("values") == "fractional" and "dtype" in p and not p["dtype"].startswith("float"):
        return False
    if p.get("out") == "h5ad" and p.get("out_codec") is not None:
        return False
    return True


def options_of(row: dict) -> Options:
    return Options(
        target_sum=row["target"],
        exclude_highly_expressed=row["exclude"],
        max_fraction=MAX_FRACTION if row["exclude"] else None,
        key_added=row["key"],
        layer=LAYER if row["where"] == "layer" else None,
        log1p=row["log1p"] != "none",
        base=None if row["log1p"] in ("none", "ln") else float(row["log1p"]),
    )


def zsplit(row: dict):
    spec = ZarrSpec(store=row["store"], codec=row["codec"], layout=row["layout"], dtype=row["dtype"],
                    index=row["index"], chunking=row["chunking"], values=row["values"], where=row["where"])
    return spec, options_of(row), row["out"], row["out_codec"]


ZPAIRWISE = [zsplit(r) for r in pairwise(ZFACTORS, zallowed)]

HFACTORS = {
    "layout": ["csr", "csc", "dense"],
    "dtype": ["float32", "float64", "int32", "uint16"],
    "compression": [None, "gzip", "lzf"],
    "values": ["integer", "fractional"],
    "target": [None, 1e4],
    "exclude": [False, True],
    "log1p": ["none", "ln", "2"],
    "where": ["X", "layer"],
    "key": [None, KEY],
    "out": ["same", "v2", "v3-plain", "v3-c50-s150", "v2-c50"],  # "same" = .zarr, no option: anndata's defaults
    "out_codec": [None, *CODECS],
}


def hallowed(p: dict) -> bool:
    if p.get("values") == "fractional" and "dtype" in p and not p["dtype"].startswith("float"):
        return False
    return True


def hsplit(row: dict):
    dense = row["layout"] == "dense"
    spec = MatrixSpec(layout=row["layout"], dtype=row["dtype"], indptr=None if dense else "int32",
                      indices=None if dense else "int32", compression=row["compression"],
                      values=row["values"], where=row["where"])
    return spec, options_of(row), row["out"], row["out_codec"]


HPAIRWISE = [hsplit(r) for r in pairwise(HFACTORS, hallowed)]


# ---------------------------------------------------------------------------------------------
# inputs (one per distinct spec and worker)

_inputs: dict = {}


def zarr_input(spec: ZarrSpec, tmp_path_factory):
    if spec not in _inputs:
        path = tmp_path_factory.mktemp("zinputs") / f"{spec.short()}.zarr"
        seed = zlib.crc32(spec.short().encode()) % 100_000
        _inputs[spec] = (path, write_zarr_case(path, spec, seed=seed))
    return _inputs[spec]


def h5ad_input(spec: MatrixSpec, tmp_path_factory):
    if spec not in _inputs:
        path = tmp_path_factory.mktemp("hinputs") / f"{spec.short()}.h5ad"
        seed = zlib.crc32(spec.short().encode()) % 100_000
        _inputs[spec] = (path, write_case(path, spec, seed=seed))
    return _inputs[spec]


# ---------------------------------------------------------------------------------------------
# the check of one run


def cli_args(out: str, out_codec: str | None) -> list[str]:
    return list(OUTPUTS[out]["args"]) + (["--zarr-codec", out_codec] if out_codec else [])


def store_formats(store: Path) -> set[int]:
    """Metadata formats present anywhere in a store (a store must be one or the other)."""
    found = set()
    for p in Path(store).rglob("*"):
        if p.name == "zarr.json":
            found.add(3)
        elif p.name in (".zarray", ".zgroup", ".zattrs", ".zmetadata"):
            found.add(2)
    return found


def check_output_layout(out: Path, element: str, *, fmt: int, codec: tuple | None, chunk: int | None,
                        shard, in_store: Path | None, in_layout_csr: bool) -> list[str]:
    """Format/codec/chunk/shard of the normalised matrix's arrays in OUTPUT. `shard`: 0 = none,
    N = N elements, "follow" = as in `in_store`, "sharded" = some sharding, None = unchecked.
    `chunk` None with `in_store` = the input's chunking."""
    errs = []
    fmts = store_formats(out)
    if fmts != {fmt}:
        errs.append(f"store metadata formats {sorted(fmts)} != [{fmt}]")
    for rel in matrix_arrays(out, element):
        try:
            lay = array_layout(out, rel)
        except AssertionError as exc:
            errs.append(str(exc))
            continue
        if lay["format"] != fmt:
            errs.append(f"{rel}: zarr format {lay['format']} != {fmt}")
        if codec is not None and lay["codec"] != codec:
            errs.append(f"{rel}: codec {lay['codec']} != {codec}")
        one_d = len(lay["shape"]) == 1
        if chunk is not None:
            if lay["chunk"][0] != chunk:
                errs.append(f"{rel}: chunk {lay['chunk']} != {chunk} {'elements' if one_d else 'rows'}")
        elif in_store is not None:
            src = array_layout(in_store, rel)
            follow = one_d and (not rel.endswith("indptr") or in_layout_csr)
            if follow and lay["chunk"] != src["chunk"]:
                errs.append(f"{rel}: chunk {lay['chunk']} != the input's {src['chunk']}")
            if not one_d and lay["chunk"][0] != src["chunk"][0]:
                errs.append(f"{rel}: {lay['chunk'][0]} rows per chunk != the input's {src['chunk'][0]}")
        if fmt == 2 or shard == 0:
            if lay["shard"] is not None:
                errs.append(f"{rel}: sharded {lay['shard']}, expected no shards")
        elif shard == "sharded":
            if lay["shard"] is None:
                errs.append(f"{rel}: not sharded (anndata's default is sharded)")
        elif shard == "follow":
            src = array_layout(in_store, rel)
            if (src["shard"] is None) != (lay["shard"] is None):
                errs.append(f"{rel}: shard {lay['shard']} != the input's {src['shard']}")
            elif one_d and src["shard"] is not None and (not rel.endswith("indptr") or in_layout_csr) and \
                    lay["shard"] != src["shard"]:
                errs.append(f"{rel}: shard {lay['shard']} != the input's {src['shard']}")
        elif isinstance(shard, int):
            if lay["shard"] is None or lay["shard"][0] != shard:
                errs.append(f"{rel}: shard {lay['shard']} != {shard}")
            elif lay["shard"][0] % lay["chunk"][0]:
                errs.append(f"{rel}: shard {lay['shard']} not a multiple of chunk {lay['chunk']}")
    return errs


def _strip_cm(m):
    # zarr-python 3 adds an (empty) "consolidated_metadata" member to group entries of .zmetadata
    return {k: v for k, v in m.items() if k != "consolidated_metadata"} if isinstance(m, dict) else m


def consolidated_problems(store: Path) -> list[str]:
    """The consolidated metadata must exist, list every node of the store and agree with each
    node's own metadata file (anndata reads through it)."""
    store = Path(store)
    errs = []
    nodes = {}
    if (store / "zarr.json").exists():
        root = json.loads((store / "zarr.json").read_text())
        cm = root.get("consolidated_metadata")
        if not cm or cm.get("kind") != "inline":
            return ["root zarr.json has no inline consolidated_metadata"]
        cons = cm["metadata"]
        for p in store.rglob("zarr.json"):
            rel = str(p.parent.relative_to(store))
            if rel != ".":
                nodes[rel] = json.loads(p.read_text())
        for rel, meta in nodes.items():
            if rel not in cons:
                errs.append(f"consolidated metadata lacks {rel}")
                continue
            a = {k: v for k, v in meta.items() if k != "consolidated_metadata"}
            b = {k: v for k, v in cons[rel].items() if k != "consolidated_metadata"}
            if a.get("attributes", {}) != b.get("attributes", {}):
                errs.append(f"consolidated attributes of {rel} differ from {rel}/zarr.json")
            if a.get("node_type") != b.get("node_type") or a.get("shape") != b.get("shape") or \
                    a.get("data_type") != b.get("data_type") or a.get("codecs") != b.get("codecs"):
                errs.append(f"consolidated metadata of {rel} differs from {rel}/zarr.json")
        for rel in cons:
            if rel not in nodes:
                errs.append(f"consolidated metadata lists {rel}, which is not in the store")
        return errs
    if not (store / ".zmetadata").exists():
        return ["no .zmetadata (v2 consolidated metadata)"]
    cons = json.loads((store / ".zmetadata").read_text()).get("metadata", {})
    files = {}
    for p in store.rglob("*"):
        if p.name in (".zarray", ".zgroup", ".zattrs"):
            rel = str(p.relative_to(store))
            files[rel] = json.loads(p.read_text())
    for rel, meta in files.items():
        if rel not in cons:
            errs.append(f".zmetadata lacks {rel}")
        elif _strip_cm(cons[rel]) != _strip_cm(meta):
            errs.append(f".zmetadata entry {rel} differs from the file")
    for rel in cons:
        if rel not in files:
            errs.append(f".zmetadata lists {rel}, which is not in the store")
    return errs


def consolidated_attrs(store: Path, rel: str) -> dict | None:
    store = Path(store)
    if (store / "zarr.json").exists():
        cons = json.loads((store / "zarr.json").read_text())["consolidated_metadata"]["metadata"]
        return cons.get(rel, {}).get("attributes") if rel in cons else None
    cons = json.loads((store / ".zmetadata").read_text())["metadata"]
    return cons.get(f"{rel}/.zattrs")


def run_and_compare(cli, tmp_path, inp: Path, opts: Options, out_name: str, extra: list[str],
                    zarr_format: int | None, name: str = "case"):
    """Reference and CLI on one input; returns OUTPUT (or None when scanpy refuses and the CLI did)."""
    from conftest import assert_refused

    out = tmp_path / out_name
    suffix = ".zarr" if out_name.endswith(".zarr") else ".h5ad"
    exp = tmp_path / f"{name}.expected{suffix}"
    before = sha256(inp)
    expected = expected_outcome(inp, opts, exp, zarr_format=zarr_format)
    proc = run_cli(cli, ["normalize", inp, out, *opts.cli_args(), *extra])
    if isinstance(expected, BaseException):
        assert_refused(proc, inp=inp, out=out, inp_hash=before, names=[inp.name])
        return None
    assert proc.returncode == 0, f"scanpy succeeds here, the CLI failed: {describe(proc)}"
    assert not CRASH_TEXT.search(proc.stderr), describe(proc)
    assert out.exists(), "exit 0 but no OUTPUT"
    assert sha256(inp) == before, "INPUT was modified"
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".") or "partial" in p.name
                       or "tmp" in p.name.lower())
    assert not leftovers, f"temporary files left beside OUTPUT: {leftovers}"
    diffs = diff_files(exp, out)
    assert not diffs, f"{len(diffs)} difference(s) from scanpy:\n  " + "\n  ".join(diffs[:40])
    return out


def expected_zarr_layout(out_kind: str, out_codec: str | None, in_fmt: int | None, in_codec: str | None):
    """(fmt, codec key, chunk, shard rule) a run must produce. in_fmt None: input is .h5ad."""
    o = OUTPUTS[out_kind]
    fmt = o["fmt"] if isinstance(o["fmt"], int) else (in_fmt or 3)
    if out_codec is not None:
        codec = codec_key(out_codec)
    elif in_codec is not None:
        codec = codec_key(in_codec)
    else:
        codec = codec_key(ANNDATA_DEFAULT_CODEC[fmt])
    if o["shard"] is not None:
        shard = o["shard"]
    elif fmt == 2:
        shard = 0
    elif in_fmt is None:
        shard = "sharded"
    elif in_fmt == 3:
        shard = "follow"
    else:
        shard = None  # v2 input to v3 output without --zarr-shard: not pinned down
    return fmt, codec, o["chunk"], shard


# ---------------------------------------------------------------------------------------------
# equivalence


def _zid(i, case):
    spec, opts, out, oc = case
    return f"zp{i:02d}-{spec.short()}-{opts.short()}-to-{out}" + (f"-{oc.replace(':', '')}" if oc else "")


@pytest.mark.parametrize("spec,opts,out_kind,out_codec", ZPAIRWISE,
                         ids=[_zid(i, c) for i, c in enumerate(ZPAIRWISE)])
def test_zarr_pairwise(cli, tmp_path, tmp_path_factory, spec, opts, out_kind, out_codec):
    inp, dense = zarr_input(spec, tmp_path_factory)
    if opts.exclude_highly_expressed:
        n = excluded_genes(dense, opts.max_fraction)
        assert 0 < n < dense.shape[1], f"test data: {n} of {dense.shape[1]} genes excluded; want some"
    in_fmt = store_format(spec.store)
    h5 = out_kind == "h5ad"
    o = OUTPUTS[out_kind]
    zfmt = None if h5 else (o["fmt"] if isinstance(o["fmt"], int) else in_fmt)
    out = run_and_compare(cli, tmp_path, inp, opts, "result.h5ad" if h5 else "result.zarr",
                          cli_args(out_kind, out_codec), zfmt)
    if out is None or h5:
        return
    fmt, codec, chunk, shard = expected_zarr_layout(out_kind, out_codec, in_fmt, spec.matrix_codec)
    errs = check_output_layout(out, spec.element, fmt=fmt, codec=codec, chunk=chunk, shard=shard,
                               in_store=inp, in_layout_csr=spec.layout != "csc")
    errs += consolidated_problems(out)
    assert not errs, "output store:\n  " + "\n  ".join(errs)


def _hid(i, case):
    spec, opts, out, oc = case
    return f"hz{i:02d}-{spec.short()}-{opts.short()}-to-{out}" + (f"-{oc.replace(':', '')}" if oc else "")


@pytest.mark.parametrize("spec,opts,out_kind,out_codec", HPAIRWISE,
                         ids=[_hid(i, c) for i, c in enumerate(HPAIRWISE)])
def test_h5ad_to_zarr_pairwise(cli, tmp_path, tmp_path_factory, spec, opts, out_kind, out_codec):
    inp, dense = h5ad_input(spec, tmp_path_factory)
    if opts.exclude_highly_expressed:
        n = excluded_genes(dense, opts.max_fraction)
        assert 0 < n < dense.shape[1], f"test data: {n} of {dense.shape[1]} genes excluded; want some"
    o = OUTPUTS[out_kind]
    zfmt = o["fmt"] if isinstance(o["fmt"], int) else 3
    out = run_and_compare(cli, tmp_path, inp, opts, "result.zarr", cli_args(out_kind, out_codec), zfmt)
    if out is None:
        return
    fmt, codec, chunk, shard = expected_zarr_layout(out_kind, out_codec, None, None)
    errs = check_output_layout(out, spec.element, fmt=fmt, codec=codec, chunk=chunk, shard=shard,
                               in_store=None, in_layout_csr=True)
    errs += consolidated_problems(out)
    assert not errs, "output store:\n  " + "\n  ".join(errs)


@pytest.mark.parametrize("design", ["zarr", "h5ad"])
def test_pairwise_designs_cover_every_pair(design):
    factors, allowed = (ZFACTORS, zallowed) if design == "zarr" else (HFACTORS, hallowed)
    rows = pairwise(factors, allowed)
    need = required_pairs(factors, allowed)
    names = list(factors)
    got = {((a, r[a]), (b, r[b])) for r in rows for a, b in itertools.combinations(names, 2)}
    assert need <= got, f"uncovered pairs: {sorted(need - got, key=repr)[:10]}"
    assert all(allowed(r) for r in rows)
    assert rows == pairwise(factors, allowed), "design is not deterministic"


# ---------------------------------------------------------------------------------------------
# store level


def _rewrite_untouched_arrays(path: Path, store: str, skip: tuple[str, ...]) -> list[str]:
    """Give numeric arrays outside `skip` a distinctive codec and chunking (gzip level 2, 3
    chunks each) so that "kept the input's codecs and chunking" means something. Returns them."""
    import warnings

    import zarr

    from gen_zarr import zarr_compressors

    fmt = store_format(store)
    root = zarr.open_group(str(path), mode="r+", zarr_format=fmt, use_consolidated=False)
    done = []
    for rel in list_arrays(path):
        if any(rel == s or rel.startswith(s + "/") for s in skip):
            continue
        a = root[rel]
        if a.dtype.kind not in "biuf" or a.ndim == 0 or a.shape[0] < 3:
            continue
        data, attrs = a[...], dict(a.attrs)
        parent_rel, _, leaf = rel.rpartition("/")
        parent = root[parent_rel] if parent_rel else root
        del parent[leaf]
        chunks = (max(1, -(-a.shape[0] // 3)), *a.shape[1:])
        kw = dict(data=data, chunks=chunks, compressors=zarr_compressors("gzip:2", fmt), attributes=attrs)
        if store == "v3-sharded":
            kw["shards"] = tuple(c * 3 for c in chunks)
        parent.create_array(leaf, **kw)
        done.append(rel)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path), zarr_format=fmt)
    return done


@pytest.mark.parametrize("store", STORES)
def test_zarr_to_zarr_keeps_untouched_arrays_and_consolidates(cli, tmp_path, store):
    """No zarr options: every array other than the normalised matrix, obs[key] and uns/log1p keeps
    the input's format, dtype, shape, codec, chunks and shards; the consolidated metadata covers
    the new obs column (in column-order) and uns/log1p."""
    spec = ZarrSpec(store=store, codec="blosc-zstd:3", chunking="small", where="layer")
    inp = tmp_path / "input.zarr"
    write_zarr_case(inp, spec, seed=5)
    changed = _rewrite_untouched_arrays(inp, store, skip=(spec.element,))
    assert "layers/spliced/data" in changed and "obsm/X_pca" in changed and "raw/X/data" in changed
    opts = Options(key_added=KEY, layer=LAYER, base=2.0)
    out = run_and_compare(cli, tmp_path, inp, opts, "result.zarr", [], store_format(store))
    errs = consolidated_problems(out)
    col_order = (consolidated_attrs(out, "obs") or {}).get("column-order")
    if not col_order or col_order[-1] != KEY:
        errs.append(f"consolidated obs column-order {col_order} does not end with {KEY!r}")
    for rel in (f"obs/{KEY}", "uns/log1p", "uns/log1p/base"):
        if consolidated_attrs(out, rel) is None:
            errs.append(f"consolidated metadata lacks {rel}")
    base_attrs = consolidated_attrs(out, "uns/log1p/base") or {}
    if base_attrs.get("encoding-type") != "numeric-scalar":
        errs.append(f"uns/log1p/base encoding {base_attrs.get('encoding-type')!r} != 'numeric-scalar'")
    in_arrays = set(list_arrays(inp))
    out_arrays = set(list_arrays(out))
    untouched = {a for a in in_arrays if not (a == spec.element or a.startswith(spec.element + "/"))
                 and not a.startswith("uns/log1p")}
    missing = untouched - out_arrays
    if missing:
        errs.append(f"arrays missing from OUTPUT: {sorted(missing)}")
    extra = out_arrays - in_arrays - {f"obs/{KEY}", "uns/log1p/base"}
    if extra:
        errs.append(f"unexpected new arrays in OUTPUT: {sorted(extra)}")
    for rel in sorted(untouched & out_arrays):
        a, b = array_layout(inp, rel), array_layout(out, rel)
        if a != b:
            errs.append(f"{rel}: layout {b} != the input's {a}")
    assert not errs, "output store:\n  " + "\n  ".join(errs)


@pytest.mark.parametrize("zfmt", [2, 3])
def test_h5ad_to_zarr_uns_log1p_null_and_consolidated(cli, tmp_path, zfmt):
    """h5ad -> zarr, natural log: uns/log1p/base is a null element (SPEC §2: zarr 0-d bool array),
    listed in the consolidated metadata, read back as None."""
    spec = MatrixSpec(layout="csr", dtype="int32")
    inp = tmp_path / "input.h5ad"
    write_case(inp, spec, seed=9)
    out = run_and_compare(cli, tmp_path, inp, Options(key_added=KEY), "result.zarr",
                          ["--zarr-format", str(zfmt)], zfmt)
    errs = consolidated_problems(out)
    base_attrs = consolidated_attrs(out, "uns/log1p/base") or {}
    if base_attrs.get("encoding-type") != "null":
        errs.append(f"uns/log1p/base encoding {base_attrs.get('encoding-type')!r} != 'null'")
    a = read_any(out)
    if a.uns.get("log1p") != {"base": None}:
        errs.append(f"uns/log1p read back as {a.uns.get('log1p')!r}")
    assert not errs, "output store:\n  " + "\n  ".join(errs)


def test_zarr_options_on_zarr_input_follow_input_by_default(cli, tmp_path):
    """v2 input with gzip and small chunks, no options: output is v2, gzip level 6, 97-element chunks."""
    spec = ZarrSpec(store="v2", codec="gzip:6", chunking="small")
    inp = tmp_path / "input.zarr"
    write_zarr_case(inp, spec, seed=3)
    out = run_and_compare(cli, tmp_path, inp, Options(), "result.zarr", [], 2)
    errs = check_output_layout(out, "X", fmt=2, codec=("gzip", 6), chunk=None, shard=0, in_store=inp,
                               in_layout_csr=True)
    assert not errs, "\n".join(errs)


# ---------------------------------------------------------------------------------------------
# meta: the comparison notices a one-ULP change in a zarr output


def _bump_first(store: Path, rel: str) -> None:
    """Add one ULP to the first value of the array at `rel`, in place, keeping its codecs."""
    import zarr

    root = zarr.open_group(str(store), mode="r+", use_consolidated=False)
    a = root[rel]
    v = a[...]
    flat = v.reshape(-1)
    flat[:1].view({4: np.uint32, 8: np.uint64}[v.dtype.itemsize])[0] += 1
    a[...] = v


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("layout", ["csr", "dense"])
def test_one_ulp_change_in_zarr_output_is_caught(tmp_path, store, layout):
    spec = ZarrSpec(store=store, layout=layout, index=None if layout == "dense" else "int32", codec="zstd:3")
    inp = tmp_path / "input.zarr"
    write_zarr_case(inp, spec, seed=4)
    exp = expected_outcome(inp, Options(key_added=KEY), tmp_path / "expected.zarr", zarr_format=store_format(store))
    assert not isinstance(exp, BaseException), exp
    mutated = tmp_path / "mutated.zarr"
    shutil.copytree(exp, mutated)
    assert diff_files(exp, mutated) == [], "a store must equal its copy"
    _bump_first(mutated, "X/data" if layout == "csr" else "X")
    diffs = diff_files(exp, mutated)
    want = "X.data: 1 of" if layout == "csr" else "X: 1 of"
    assert len(diffs) == 1 and want in diffs[0], diffs


def test_one_ulp_off_cli_is_caught_on_zarr(tmp_path):
    """The zarr stand-in with REFERENCE_CLI_MUTATE=ulp: the suite's check reports exactly that value."""
    spec = ZarrSpec(store="v3-sharded")
    inp = tmp_path / "input.zarr"
    write_zarr_case(inp, spec, seed=6)
    exp = expected_outcome(inp, Options(key_added=KEY), tmp_path / "expected.zarr")
    out = tmp_path / "mutated.zarr"
    cli = [sys.executable, str(HERE / "reference_cli_zarr.py")]
    proc = run_cli(cli, ["normalize", inp, out, *Options(key_added=KEY).cli_args()],
                   env={"REFERENCE_CLI_MUTATE": "ulp"})
    assert proc.returncode == 0, proc.stderr
    diffs = diff_files(exp, out)
    assert len(diffs) == 1 and "X.data: 1 of" in diffs[0], diffs


def test_layout_check_notices_codec_and_chunk_changes(tmp_path):
    """check_output_layout / consolidated_problems can fail: wrong codec, wrong chunking, stale
    consolidated metadata."""
    spec = ZarrSpec(store="v3-plain", codec="zstd:3", chunking="small")
    a = tmp_path / "a.zarr"
    write_zarr_case(a, spec, seed=2)
    assert check_output_layout(a, "X", fmt=3, codec=("zstd", 3), chunk=None, shard="follow", in_store=a,
                               in_layout_csr=True) == []
    assert consolidated_problems(a) == []
    assert check_output_layout(a, "X", fmt=3, codec=("zstd", 4), chunk=None, shard=None, in_store=None,
                               in_layout_csr=True)
    assert check_output_layout(a, "X", fmt=2, codec=None, chunk=None, shard=None, in_store=None,
                               in_layout_csr=True)
    assert check_output_layout(a, "X", fmt=3, codec=None, chunk=50, shard=None, in_store=None,
                               in_layout_csr=True)
    assert check_output_layout(a, "X", fmt=3, codec=None, chunk=None, shard=150, in_store=None,
                               in_layout_csr=True)
    b = tmp_path / "b.zarr"
    from gen_zarr import write_zarr_matrix
    import scipy.sparse as sp

    write_zarr_case(b, ZarrSpec(store="v3-plain", codec="gzip:6"), seed=2)
    assert check_output_layout(b, "X", fmt=3, codec=None, chunk=None, shard=None, in_store=a,
                               in_layout_csr=True), "chunking differs from a's and must be noticed"
    # a node added without re-consolidating
    M = sp.random(60, 140, density=0.1, format="csr", dtype=np.float32, random_state=0)
    write_zarr_matrix(b, "layers/new", M, store="v3-plain", consolidate=False)
    assert consolidated_problems(b), "stale consolidated metadata must be noticed"
