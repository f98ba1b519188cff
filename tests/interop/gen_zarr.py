"""Zarr input writers and store inspection for the interop suite.

Stores are written with real anndata (`AnnData.write_zarr`) in one of three forms:

* ``v3-sharded`` -- anndata 0.13's default (zarr v3, `sharding_indexed`, zstd level 0);
* ``v3-plain``   -- zarr v3 without shards (`anndata.settings.auto_shard_zarr_v3 = False`);
* ``v2``         -- zarr v2 (`anndata.settings.zarr_write_format = 2`; blosc lz4 clevel 5, byte shuffle).

Then the matrix under test (X or a layer) is rewritten with zarr-python wherever anndata cannot
produce the layout wanted: codec (none, zstd, blosc lz4, blosc zstd, gzip), small chunks not aligned
with rows (and small shards), index dtypes, CSC, dense; the consolidated metadata is rebuilt
afterwards (anndata reads through it). Everything is deterministic (seeded).

`array_layout(store, "X/data")` reads an array's own metadata file (`zarr.json` or `.zarray`) and
returns a normalised description (format, dtype, shape, chunk, shard, codec) so tests can check what
the CLI wrote without depending on how a writer spells its JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gen import LAYER, counts, fractional, rich_adata, to_layout

STORES = ("v2", "v3-sharded", "v3-plain")
# CLI spellings (--zarr-codec) of the codecs the generators can write; "anndata" = leave what anndata wrote
CODECS = ("none", "zstd:3", "blosc-lz4:5", "blosc-zstd:3", "gzip:6")
ANNDATA_DEFAULT_CODEC = {2: "blosc-lz4:5", 3: "zstd:0"}

SMALL_CHUNK = 97  # elements per chunk of data/indices ("small" chunking): not aligned with rows
SMALL_INDPTR_CHUNK = 13
SMALL_DENSE_CHUNK = (7, 13)
SHARD_FACTOR = 3  # small chunking on v3-sharded: a shard holds this many chunks (per dimension)


def store_format(store: str) -> int:
    return 2 if store == "v2" else 3


# ---------------------------------------------------------------------------------------------
# codecs


def parse_codec(spec: str) -> tuple[str, int | None]:
    """'zstd:3' -> ('zstd', 3); 'none' -> ('none', None); 'gzip' -> ('gzip', None)."""
    name, _, level = spec.partition(":")
    return name, (int(level) if level else None)


def zarr_compressors(spec: str, zarr_format: int):
    """zarr-python `compressors=` for a CLI codec spelling."""
    import numcodecs
    import zarr.codecs as zc

    name, level = parse_codec(spec)
    if name == "none":
        return None
    if zarr_format == 3:
        if name == "zstd":
            return [zc.ZstdCodec(level=0 if level is None else level, checksum=False)]
        if name in ("blosc-lz4", "blosc-zstd"):
            return [zc.BloscCodec(cname=name[6:], clevel=5 if level is None else level, shuffle="shuffle")]
        if name == "gzip":
            return [zc.GzipCodec(level=5 if level is None else level)]
    else:
        if name == "zstd":
            return numcodecs.Zstd(level=0 if level is None else level)
        if name in ("blosc-lz4", "blosc-zstd"):
            return numcodecs.Blosc(cname=name[6:], clevel=5 if level is None else level, shuffle=numcodecs.Blosc.SHUFFLE)
        if name == "gzip":
            return numcodecs.GZip(level=5 if level is None else level)
    raise ValueError(f"unknown codec {spec!r}")


def codec_key(spec: str) -> tuple:
    """The normalised codec a CLI spelling asks for (as `array_layout` reports it)."""
    name, level = parse_codec(spec)
    if name == "none":
        return ("none",)
    if name.startswith("blosc-"):
        return ("blosc", name[6:], level, "byte")
    return (name, level)


_SHUFFLE = {0: "none", 1: "byte", 2: "bit", "noshuffle": "none", "shuffle": "byte", "bitshuffle": "bit"}


def _codec_from_v3(codecs: list) -> tuple:
    comp = [c for c in codecs if c["name"] not in ("bytes", "transpose")]
    if not comp:
        return ("none",)
    if len(comp) > 1:
        return ("chain", *[c["name"] for c in comp])
    c = comp[0]
    cfg = c.get("configuration", {})
    if c["name"] == "zstd":
        return ("zstd", cfg.get("level"))
    if c["name"] == "blosc":
        return ("blosc", cfg.get("cname"), cfg.get("clevel"), _SHUFFLE.get(cfg.get("shuffle"), cfg.get("shuffle")))
    if c["name"] == "gzip":
        return ("gzip", cfg.get("level"))
    return ("other", c["name"])


def _codec_from_v2(meta: dict) -> tuple:
    if meta.get("filters"):
        return ("filters", *[f.get("id") for f in meta["filters"]])
    c = meta.get("compressor")
    if c is None:
        return ("none",)
    if c["id"] == "zstd":
        return ("zstd", c.get("level"))
    if c["id"] == "blosc":
        return ("blosc", c.get("cname"), c.get("clevel"), _SHUFFLE.get(c.get("shuffle"), c.get("shuffle")))
    if c["id"] in ("gzip", "zlib"):
        return ("gzip", c.get("level"))
    return ("other", c["id"])


def node_format(store: Path, rel: str = "") -> int | None:
    p = Path(store) / rel if rel else Path(store)
    if (p / "zarr.json").exists():
        return 3
    if (p / ".zarray").exists() or (p / ".zgroup").exists():
        return 2
    return None


def array_layout(store: Path, rel: str) -> dict:
    """Normalised description of the array at `rel` from its own metadata file."""
    p = Path(store) / rel
    if (p / "zarr.json").exists():
        m = json.loads((p / "zarr.json").read_text())
        assert m.get("node_type") == "array", f"{rel}: not an array ({m.get('node_type')})"
        outer = m["chunk_grid"]["configuration"]["chunk_shape"]
        codecs = m["codecs"]
        shard = None
        chunk = list(outer)
        if codecs and codecs[0]["name"] == "sharding_indexed":
            shard = list(outer)
            chunk = list(codecs[0]["configuration"]["chunk_shape"])
            codecs = codecs[0]["configuration"]["codecs"]
        sep = m.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")
        return dict(format=3, dtype=str(m["data_type"]), shape=list(m["shape"]), chunk=chunk, shard=shard,
                    codec=_codec_from_v3(codecs), separator=sep)
    if (p / ".zarray").exists():
        m = json.loads((p / ".zarray").read_text())
        return dict(format=2, dtype=str(np.dtype(m["dtype"])), shape=list(m["shape"]), chunk=list(m["chunks"]),
                    shard=None, codec=_codec_from_v2(m), separator=m.get("dimension_separator", "."))
    raise AssertionError(f"{store}: no array metadata at {rel}")


def list_arrays(store: Path) -> list[str]:
    """Relative paths of every array in a local store (by its metadata files)."""
    store = Path(store)
    out = []
    for dirpath, _dirs, files in os.walk(store):
        rel = os.path.relpath(dirpath, store)
        if "zarr.json" in files:
            if json.loads((Path(dirpath) / "zarr.json").read_text()).get("node_type") == "array":
                out.append(rel)
        elif ".zarray" in files:
            out.append(rel)
    return sorted(out)


def matrix_arrays(store: Path, element: str) -> list[str]:
    """The arrays of the matrix element (data/indices/indptr, or the dense array itself)."""
    p = Path(store) / element
    if (p / "zarr.json").exists() and json.loads((p / "zarr.json").read_text())["node_type"] == "array":
        return [element]
    if (p / ".zarray").exists():
        return [element]
    return [f"{element}/{k}" for k in ("data", "indices", "indptr")]


# ---------------------------------------------------------------------------------------------
# writing


def write_adata_zarr(adata, path: Path, store: str) -> None:
    """anndata's own write_zarr in the given form."""
    import anndata as ad

    settings = {"zarr_write_format": store_format(store)}
    if store == "v3-plain":
        settings["auto_shard_zarr_v3"] = False
    elif store == "v3-sharded":
        settings["auto_shard_zarr_v3"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ad.settings.override(**settings):
            adata.write_zarr(path)


def _chunking(n: int | tuple, store: str, chunking: str, small: int | tuple):
    """(chunks, shards) for an array of shape n."""
    shape = (n,) if isinstance(n, int) else tuple(n)
    if chunking == "anndata":
        chunks = tuple(max(1, s) for s in shape)
    else:
        small = (small,) if isinstance(small, int) else tuple(small)
        chunks = tuple(max(1, min(c, s)) for c, s in zip(small, shape))
    shards = None
    if store == "v3-sharded":
        shards = chunks if chunking == "anndata" else tuple(c * SHARD_FACTOR for c in chunks)
    return chunks, shards


def write_zarr_matrix(path: Path, element: str, M, *, store: str, codec: str | None = None,
                      chunking: str = "anndata", index: str | None = "int32",
                      indptr: str | None = None, consolidate: bool = True,
                      layouts: dict | None = None) -> None:
    """(Re)write the matrix at `element` of the store at `path` exactly as told: M is scipy CSR/CSC
    (kept as is) or a numpy array (dense). `codec` None = the store's anndata default;
    `index` the dtype of indices (and of indptr unless `indptr` is given); `layouts` maps
    "data"/"indices"/"indptr" ("" for dense) to explicit (chunks, shards or None)."""
    import zarr

    fmt = store_format(store)
    codec = codec or ANNDATA_DEFAULT_CODEC[fmt]
    root = zarr.open_group(str(path), mode="r+", zarr_format=fmt, use_consolidated=False)
    if element in root:
        del root[element]
    comp = zarr_compressors(codec, fmt)

    def arr(group, name, data, small, attrs=None):
        data = np.ascontiguousarray(data)
        chunks, shards = _chunking(data.shape if data.ndim > 1 else len(data), store, chunking, small)
        if layouts and name in layouts:
            chunks, shards = layouts[name]
        kw = dict(data=data, chunks=chunks, compressors=comp, attributes=attrs or {}, overwrite=True)
        if shards is not None:
            kw["shards"] = shards
        return group.create_array(name, **kw)

    parent_path, _, leaf = element.rpartition("/")
    parent = root[parent_path] if parent_path else root
    if isinstance(M, np.ndarray):
        if layouts and "" in layouts:
            layouts = {leaf: layouts[""]}
        arr(parent, leaf, M, SMALL_DENSE_CHUNK, {"encoding-type": "array", "encoding-version": "0.2.0"})
    else:
        fmt_name = "csr" if M.format == "csr" else "csc"
        g = parent.create_group(leaf, attributes={
            "encoding-type": f"{fmt_name}_matrix", "encoding-version": "0.1.0", "shape": [int(s) for s in M.shape],
        })
        arr(g, "data", np.asarray(M.data), SMALL_CHUNK)
        # index None: keep the matrix's own index dtypes
        arr(g, "indices", np.asarray(M.indices).astype(index or M.indices.dtype), SMALL_CHUNK)
        arr(g, "indptr", np.asarray(M.indptr).astype(indptr or index or M.indptr.dtype), SMALL_INDPTR_CHUNK)
    if consolidate:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(path), zarr_format=fmt)


@dataclasses.dataclass(frozen=True)
class ZarrSpec:
    """How the matrix under test is stored in a zarr input."""

    store: str = "v3-sharded"  # v2 | v3-sharded | v3-plain
    codec: str = "anndata"  # anndata (as anndata wrote it) | a CODECS spelling
    layout: str = "csr"  # csr | csc | dense
    dtype: str = "float32"
    index: str | None = "int32"  # int32 | int64 | None (dense); indices and indptr alike
    chunking: str = "anndata"  # anndata (one chunk/shard per array) | small (97-element chunks)
    values: str = "integer"  # integer | fractional
    where: str = "X"  # X | layer

    def short(self) -> str:
        s = f"{self.store}-{self.codec.replace(':', '')}-{self.layout}-{self.dtype}"
        if self.layout != "dense":
            s += f"-idx{self.index}"
        s += f"-{self.chunking}"
        if self.values != "integer":
            s += f"-{self.values}"
        return s + f"-{self.where}"

    @property
    def element(self) -> str:
        return "X" if self.where == "X" else f"layers/{LAYER}"

    @property
    def rewritten(self) -> bool:
        """Whether the matrix is rewritten with zarr-python after anndata wrote the store."""
        return not (self.codec == "anndata" and self.chunking == "anndata" and self.index in ("int32", None)
                    and self.layout in ("csr", "csc", "dense"))

    @property
    def matrix_codec(self) -> str:
        return ANNDATA_DEFAULT_CODEC[store_format(self.store)] if self.codec == "anndata" else self.codec


def richer_adata(X, *, seed: int = 0, layers: dict | None = None):
    """gen.rich_adata plus nullable ints/booleans, a nullable string column with NA, and deeper uns,
    so that cross-format copies (h5ad <-> zarr) are tested on everything anndata writes."""
    a = rich_adata(X, seed=seed, layers=layers)
    n = a.n_obs
    rng = np.random.default_rng(seed + 11)
    ints = pd.array(rng.integers(0, 50, n), dtype="Int64")
    ints[1] = pd.NA
    a.obs["n_nullable"] = ints
    flags = pd.array(rng.random(n) > 0.5, dtype="boolean")
    flags[2] = pd.NA
    a.obs["flag_nullable"] = flags
    names = pd.array([f"donor{i}" for i in range(n)], dtype=pd.StringDtype())
    names[0] = pd.NA
    a.obs["donor"] = names
    a.obs["ordered_cat"] = pd.Categorical(rng.choice(["lo", "mid", "hi"], n), categories=["lo", "mid", "hi"],
                                          ordered=True)
    a.uns["nested"] = {"level1": {"level2": {"arr": np.arange(6, dtype=np.int16).reshape(2, 3), "s": "deep"},
                                  "f32": np.float32(1.5)}, "flag": True}
    a.uns["df"] = pd.DataFrame({"x": np.arange(3, dtype=np.float64), "y": ["a", "b", "c"]},
                               index=[f"r{i}" for i in range(3)])
    return a


def matrix_for(spec: ZarrSpec, seed: int, n_obs: int = 60, n_vars: int = 140):
    rng = np.random.default_rng(seed)
    c = counts(rng, n_obs, n_vars)
    vals = fractional(rng, c) if spec.values == "fractional" else c
    dense = np.asarray(vals).astype(spec.dtype)
    return dense, to_layout(dense, spec.layout)


def write_zarr_case(path: Path, spec: ZarrSpec, seed: int = 0) -> np.ndarray:
    """Write one zarr equivalence input; returns the dense matrix under test."""
    dense, M = matrix_for(spec, seed)
    if spec.where == "X":
        a = richer_adata(M, seed=seed)
    else:
        other = sp.random(*dense.shape, density=0.3, format="csr", dtype=np.float32, random_state=seed + 3)
        a = richer_adata(other, seed=seed, layers={LAYER: M})
    write_adata_zarr(a, path, spec.store)
    if spec.rewritten:
        write_zarr_matrix(path, spec.element, M, store=spec.store, codec=spec.matrix_codec,
                          chunking=spec.chunking, index=spec.index)
    return dense


def write_zarr_simple(path: Path, M, *, store: str = "v3-sharded", seed: int = 0, minimal: bool = False,
                      rewrite: dict | None = None) -> None:
    """A store whose X is M (anndata writes it; `rewrite` kwargs then rewrite X with zarr-python)."""
    a = rich_adata(M, seed=seed, minimal=minimal)
    write_adata_zarr(a, path, store)
    if rewrite is not None:
        write_zarr_matrix(path, "X", M, store=store, **rewrite)


def copy_store(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)
