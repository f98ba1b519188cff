#!/usr/bin/env python3
"""The scanpy stand-in of `atlasnorm normalize` (reference_cli.py) extended to `.zarr` stores.

It proves the zarr tests (test_zarr.py, test_zarr_bad_input.py) before the Rust side exists:

    ATLASNORM_BIN="python tests/interop/reference_cli_zarr.py" .tools/py312/bin/python -m pytest \
        tests/interop/test_zarr.py tests/interop/test_zarr_bad_input.py -n 2

.h5ad -> .h5ad runs are handed to reference_cli.py unchanged. With a `.zarr` INPUT or OUTPUT:
* INPUT checks (one line `atlasnorm: error: STORE: ELEMENT: PROBLEM`, exit 1): a zarr store at all,
  metadata files parse, AnnData root, the matrix element exists, its arrays use known codecs, every
  chunk/shard they need exists, shard indexes are sane (size, crc32c, bounds), every chunk decodes,
  and the sparse structure (indptr, indices, shape) is consistent.
* read_zarr / read_h5ad -> normalize_total -> log1p (oracle.scanpy_pipeline).
* OUTPUT written to a temporary directory beside it, renamed on success, removed on any failure
  (SIGINT too). zarr -> zarr in the same format: a copy of the input store with the matrix, obs[key]
  and uns/log1p replaced and the consolidated metadata rebuilt (so untouched arrays keep their codecs
  and chunking); otherwise anndata's write_zarr in the format asked, then the matrix rewritten.
  The matrix's format/codec/chunk/shard: the --zarr-* options, else the input's (zarr input), else
  anndata's defaults (v3, sharded, zstd level 0).
REFERENCE_CLI_MUTATE=ulp: one ULP added to the first stored value of the normalised matrix.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import reference_cli  # noqa: E402
from reference_cli import MEMORY_RE, Refuse, _same_file, mutate_one_ulp  # noqa: E402
from oracle import Options, scanpy_pipeline  # noqa: E402

KNOWN_V3_CODECS = {"bytes", "zstd", "blosc", "gzip", "sharding_indexed", "crc32c", "transpose"}
KNOWN_V2_COMPRESSORS = {None, "blosc", "zstd", "gzip", "zlib"}
CODEC_NAMES = ("none", "zstd", "blosc-lz4", "blosc-zstd", "gzip")


def is_zarr(p) -> bool:
    return str(p).rstrip("/").endswith(".zarr")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="atlasnorm")
    sub = p.add_subparsers(dest="command", required=True)
    n = sub.add_parser("normalize")
    n.add_argument("input")
    n.add_argument("output")
    n.add_argument("--target-sum", type=float)
    n.add_argument("--exclude-highly-expressed", action="store_true")
    n.add_argument("--max-fraction", type=float)
    n.add_argument("--key-added")
    n.add_argument("--layer")
    n.add_argument("--no-log1p", action="store_true")
    n.add_argument("--log1p-base", type=float)
    n.add_argument("--threads", type=int)
    n.add_argument("--memory")
    n.add_argument("--force", action="store_true")
    n.add_argument("--zarr-format", type=int, choices=[2, 3])
    n.add_argument("--zarr-codec")
    n.add_argument("--zarr-chunk", type=int)
    n.add_argument("--zarr-shard", type=int)
    a = p.parse_args(argv)
    if a.max_fraction is not None and not (0.0 <= a.max_fraction <= 1.0):
        p.error(f"--max-fraction {a.max_fraction}: must be between 0 and 1")
    if a.memory is not None and not MEMORY_RE.match(a.memory):
        p.error(f"--memory {a.memory!r}: not a size")
    if a.zarr_codec is not None and a.zarr_codec.partition(":")[0] not in CODEC_NAMES:
        p.error(f"--zarr-codec {a.zarr_codec!r}: unknown codec (none, zstd, blosc-lz4, blosc-zstd, gzip)")
    if a.zarr_chunk is not None and a.zarr_chunk < 1:
        p.error("--zarr-chunk must be at least 1")
    if a.zarr_shard is not None and a.zarr_shard < 0:
        p.error("--zarr-shard must be 0 (no shards) or more")
    return a


# ---------------------------------------------------------------------------------------------
# input checks


def _json(path: Path, src: str, rel: str):
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refuse(f"{src}: {rel}: malformed zarr metadata ({path.name} is not valid JSON: {exc})")


def _meta(store: Path, rel: str, src: str) -> tuple[int, dict, str] | None:
    """(format, metadata, kind) of the node at rel, from its own files; None if absent."""
    p = store / rel if rel else store
    name = rel or "/"
    if (p / "zarr.json").exists():
        m = _json(p / "zarr.json", src, f"{name} (zarr.json)")
        if not isinstance(m, dict) or m.get("node_type") not in ("group", "array"):
            raise Refuse(f"{src}: {name}: malformed zarr metadata (zarr.json without a valid node_type)")
        if m["node_type"] == "array":
            lacking = [k for k in ("shape", "data_type", "chunk_grid", "codecs") if k not in m]
            if lacking:
                raise Refuse(f"{src}: {name}: malformed zarr metadata (zarr.json lacks {', '.join(lacking)})")
        return 3, m, m["node_type"]
    if (p / ".zarray").exists():
        m = _json(p / ".zarray", src, f"{name} (.zarray)")
        if not isinstance(m, dict) or "shape" not in m or "chunks" not in m or "dtype" not in m:
            raise Refuse(f"{src}: {name}: malformed zarr metadata (.zarray lacks shape/chunks/dtype)")
        attrs = _json(p / ".zattrs", src, f"{name} (.zattrs)") if (p / ".zattrs").exists() else {}
        return 2, dict(m, attributes=attrs), "array"
    if (p / ".zgroup").exists():
        _json(p / ".zgroup", src, f"{name} (.zgroup)")
        attrs = _json(p / ".zattrs", src, f"{name} (.zattrs)") if (p / ".zattrs").exists() else {}
        return 2, {"attributes": attrs}, "group"
    return None


def _check_codecs(fmt: int, m: dict, src: str, rel: str) -> None:
    if fmt == 3:
        def walk(codecs):
            for c in codecs:
                if c.get("name") not in KNOWN_V3_CODECS:
                    raise Refuse(f"{src}: {rel}: unsupported codec {c.get('name')!r}")
                if c["name"] == "sharding_indexed":
                    walk(c["configuration"]["codecs"])
                    walk(c["configuration"]["index_codecs"])
        walk(m.get("codecs", []))
    else:
        comp = m.get("compressor")
        cid = None if comp is None else comp.get("id")
        if cid not in KNOWN_V2_COMPRESSORS:
            raise Refuse(f"{src}: {rel}: unsupported codec (compressor id {cid!r})")
        for f in m.get("filters") or []:
            raise Refuse(f"{src}: {rel}: unsupported codec (filter {f.get('id')!r})")


def _chunk_keys(fmt: int, m: dict):
    shape = m["shape"]
    if fmt == 3:
        outer = m["chunk_grid"]["configuration"]["chunk_shape"]
        enc = m.get("chunk_key_encoding", {"name": "default"})
        sep = enc.get("configuration", {}).get("separator", "/" if enc["name"] == "default" else ".")
    else:
        outer = m["chunks"]
        sep = m.get("dimension_separator", ".")
        enc = {"name": "v2"}
    grid = [math.ceil(s / c) if c else 0 for s, c in zip(shape, outer)]
    if any(g == 0 for g in grid) and shape:
        return outer, []
    import itertools

    keys = []
    for idx in itertools.product(*[range(g) for g in grid]) if shape else [()]:
        if fmt == 3 and enc["name"] == "default":
            keys.append(("c" + sep + sep.join(map(str, idx))) if idx else "c")
        else:
            keys.append(sep.join(map(str, idx)) if idx else "0")
    return outer, list(zip(keys, itertools.product(*[range(g) for g in grid]) if shape else [()]))


def _check_shard(path: Path, src: str, rel: str, key: str, idx, shape, outer, cfg) -> None:
    import google_crc32c
    import numpy as np

    inner = cfg["chunk_shape"]
    per = [o // i for o, i in zip(outer, inner)]
    n = int(np.prod(per)) if per else 1
    has_crc = any(c["name"] == "crc32c" for c in cfg.get("index_codecs", []))
    isize = 16 * n + (4 if has_crc else 0)
    raw = path.read_bytes()
    if len(raw) < isize:
        raise Refuse(f"{src}: {rel}: corrupt shard {key}: truncated ({len(raw)} bytes, index alone needs {isize})")
    at_end = cfg.get("index_location", "end") == "end"
    index = raw[-isize:] if at_end else raw[:isize]
    body = index[:16 * n]
    if has_crc:
        want = int.from_bytes(index[16 * n:], "little")
        if google_crc32c.value(body) != want:
            raise Refuse(f"{src}: {rel}: corrupt shard {key}: index checksum mismatch (truncated or damaged)")
    ent = np.frombuffer(body, dtype="<u8").reshape(-1, 2)
    import itertools

    for j, sub in enumerate(itertools.product(*[range(p) for p in per])):
        start = [c * o + s * i for c, o, s, i in zip(idx, outer, sub, inner)]
        inside = all(st < sh for st, sh in zip(start, shape))
        off, nb = int(ent[j, 0]), int(ent[j, 1])
        if off == 2**64 - 1 and nb == 2**64 - 1:
            if inside:
                raise Refuse(f"{src}: {rel}: missing chunk {sub} in shard {key}")
            continue
        lo = isize if not at_end else 0
        hi = len(raw) - (isize if at_end else 0)
        if off < lo or off + nb > hi:
            raise Refuse(f"{src}: {rel}: corrupt shard {key}: index entry {j} points outside the shard")


def _check_array(store: Path, rel: str, src: str):
    import numpy as np
    import zarr

    got = _meta(store, rel, src)
    if got is None or got[2] != "array":
        raise Refuse(f"{src}: {rel}: missing (no array metadata)")
    fmt, m, _ = got
    _check_codecs(fmt, m, src, rel)
    outer, keys = _chunk_keys(fmt, m)
    sharding = fmt == 3 and m.get("codecs") and m["codecs"][0]["name"] == "sharding_indexed"
    for key, idx in keys:
        p = store / rel / key
        if not p.exists():
            raise Refuse(f"{src}: {rel}: missing chunk {key}")
        if sharding:
            _check_shard(p, src, rel, key, idx, m["shape"], outer, m["codecs"][0]["configuration"])
    try:
        root = zarr.open_group(str(store), mode="r", zarr_format=fmt, use_consolidated=False)
        return np.asarray(root[rel][...])
    except Exception as exc:  # noqa: BLE001
        raise Refuse(f"{src}: {rel}: cannot decode (corrupt chunk?): {type(exc).__name__}: {exc}")


def check_zarr_input(inp: Path, layer: str | None) -> tuple[str, int]:
    import numpy as np

    src = str(inp)
    if not inp.exists():
        raise Refuse(f"{src}: no such file or directory")
    if not inp.is_dir():
        raise Refuse(f"{src}: not a zarr store (not a directory)")
    root = _meta(inp, "", src)
    if root is None:
        raise Refuse(f"{src}: not a zarr store (no zarr.json or .zgroup)")
    fmt, m, kind = root
    if kind != "group":
        raise Refuse(f"{src}: not an AnnData store (root is an array)")
    if fmt == 2 and (inp / ".zmetadata").exists():
        _json(inp / ".zmetadata", src, ".zmetadata")
    if m.get("attributes", {}).get("encoding-type") != "anndata" and \
            not (_meta(inp, "X", src) or _meta(inp, "obs", src)):
        raise Refuse(f"{src}: not an AnnData store (no encoding-type 'anndata', no X, no obs)")
    element = "X" if layer is None else f"layers/{layer}"
    node = _meta(inp, element, src)
    if node is None:
        raise Refuse(f"{src}: {element}: no such element" + (f" (layer {layer!r} missing)" if layer else ""))

    def length(df: str):
        try:
            d = _meta(inp, df, src)[1]["attributes"]["_index"]
            sub = _meta(inp, f"{df}/{d}", src)
            if sub[2] == "group":
                return _meta(inp, f"{df}/{d}/values", src)[1]["shape"][0]
            return sub[1]["shape"][0]
        except Exception:  # noqa: BLE001
            return None

    n_obs, n_vars = length("obs"), length("var")
    if node[2] == "array":
        X = _check_array(inp, element, src)
        if X.ndim != 2 or (n_obs is not None and X.shape[0] != n_obs) or (n_vars is not None and X.shape[1] != n_vars):
            raise Refuse(f"{src}: {element}: shape {X.shape} does not match obs x var ({n_obs}, {n_vars})")
        return element, fmt
    attrs = node[1]["attributes"]
    enc = attrs.get("encoding-type")
    if enc not in ("csr_matrix", "csc_matrix"):
        raise Refuse(f"{src}: {element}: unsupported encoding {enc!r}")
    shape = tuple(int(x) for x in attrs["shape"])
    arrays = {k: _check_array(inp, f"{element}/{k}", src) for k in ("data", "indices", "indptr")}
    data, indices, indptr = arrays["data"], arrays["indices"], arrays["indptr"]
    major, minor = (shape[0], shape[1]) if enc == "csr_matrix" else (shape[1], shape[0])
    if (n_obs is not None and shape[0] != n_obs) or (n_vars is not None and shape[1] != n_vars):
        raise Refuse(f"{src}: {element}: shape {shape} does not match obs x var ({n_obs}, {n_vars})")
    if len(indptr) != major + 1:
        raise Refuse(f"{src}: {element}/indptr: length {len(indptr)}, shape {shape} needs {major + 1}")
    if len(data) != len(indices):
        raise Refuse(f"{src}: {element}: data has {len(data)} values, indices {len(indices)}")
    if len(indptr) and indptr[0] != 0:
        raise Refuse(f"{src}: {element}/indptr: starts at {indptr[0]}, not 0")
    if np.any(np.diff(indptr.astype(np.int64)) < 0):
        raise Refuse(f"{src}: {element}/indptr: not monotone (non-decreasing)")
    if len(indptr) and int(indptr[-1]) != len(data):
        raise Refuse(f"{src}: {element}/indptr: ends at {indptr[-1]}, but nnz is {len(data)}")
    if len(indices) and (indices.astype(np.int64).min() < 0 or indices.astype(np.int64).max() >= minor):
        raise Refuse(f"{src}: {element}/indices: index out of range [0, {minor})")
    return element, fmt


# ---------------------------------------------------------------------------------------------
# output


def _codec_spelling(key: tuple) -> str:
    if key[0] == "none":
        return "none"
    if key[0] == "blosc":
        return f"blosc-{key[1]}:{key[2]}"
    return f"{key[0]}:{key[1]}"


def write_zarr_output(adata, a, inp: Path, in_fmt: int | None, element: str, tmp: Path) -> None:
    import anndata
    import numpy as np
    import zarr

    from gen_zarr import ANNDATA_DEFAULT_CODEC, array_layout, write_zarr_matrix

    out_fmt = a.zarr_format or in_fmt or 3
    M = adata.X if a.layer is None else adata.layers[a.layer]
    dense = isinstance(M, np.ndarray)
    names = [""] if dense else ["data", "indices", "indptr"]
    src_lay = {}
    if in_fmt is not None:
        for nm in names:
            rel = element if nm == "" else f"{element}/{nm}"
            try:
                src_lay[nm] = array_layout(inp, rel)
            except AssertionError:
                pass
        first = src_lay.get("" if dense else "data")
    else:
        first = None
    codec = a.zarr_codec or (_codec_spelling(first["codec"]) if first else ANNDATA_DEFAULT_CODEC[out_fmt])
    layouts = {}
    for nm in names:
        arr = M if dense else getattr(M, nm)
        shape = arr.shape
        s = src_lay.get(nm)
        if a.zarr_chunk:
            chunks = (a.zarr_chunk, *shape[1:])
        elif s is not None:
            chunks = tuple(s["chunk"])
        else:
            chunks = tuple(max(1, x) for x in shape)
        chunks = tuple(max(1, c) for c in chunks)
        if out_fmt == 2 or a.zarr_shard == 0:
            shards = None
        elif a.zarr_shard:
            shards = (a.zarr_shard, *shape[1:])
        elif s is not None:
            shards = tuple(s["shard"]) if s["shard"] else None
        else:
            shards = chunks  # anndata's default: one shard holding the one chunk
        if shards is not None and any(sh % c for sh, c in zip(shards, chunks)):
            shards = tuple(-(-sh // c) * c for sh, c in zip(shards, chunks))
        layouts[nm] = (chunks, shards)
    store_kind = "v2" if out_fmt == 2 else "v3-sharded"
    settings = {"zarr_write_format": out_fmt, "auto_shard_zarr_v3": a.zarr_shard != 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if in_fmt == out_fmt:
            shutil.copytree(inp, tmp)
            with anndata.settings.override(**settings):
                write_zarr_matrix(tmp, element, M, store=store_kind, codec=codec, index=None,
                                  consolidate=False, layouts=layouts)
                root = zarr.open_group(str(tmp), mode="r+", zarr_format=out_fmt, use_consolidated=False)
                if a.key_added:
                    obs = root["obs"]
                    if a.key_added in obs:
                        del obs[a.key_added]
                    anndata.io.write_elem(obs, a.key_added, adata.obs[a.key_added].to_numpy())
                    obs.attrs["column-order"] = list(adata.obs.columns)
                if "log1p" in adata.uns:
                    uns = root["uns"]
                    if "log1p" in uns:
                        del uns["log1p"]
                    anndata.io.write_elem(uns, "log1p", adata.uns["log1p"])
        else:
            with anndata.settings.override(**settings):
                adata.write_zarr(tmp)
                write_zarr_matrix(tmp, element, M, store=store_kind, codec=codec, index=None,
                                  consolidate=False, layouts=layouts)
        zarr.consolidate_metadata(str(tmp), zarr_format=out_fmt)


def normalize(a) -> None:
    inp, out = Path(a.input), Path(a.output)
    if _same_file(inp, out):
        raise Refuse(f"{out}: OUTPUT is the same file as INPUT {inp}; refusing to overwrite the input")
    if out.exists() and not a.force:
        raise Refuse(f"{out}: OUTPUT exists (use --force to replace it)")
    if not out.parent.is_dir():
        raise Refuse(f"{out}: directory {out.parent} does not exist")
    if is_zarr(inp):
        element, in_fmt = check_zarr_input(inp, a.layer)
    else:
        element, in_fmt = reference_cli.check_input(inp, a.layer), None
    opts = Options(target_sum=a.target_sum, exclude_highly_expressed=a.exclude_highly_expressed,
                   max_fraction=a.max_fraction, key_added=a.key_added, layer=a.layer,
                   log1p=not a.no_log1p, base=a.log1p_base)
    import anndata

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            adata = anndata.read_zarr(inp) if in_fmt else anndata.read_h5ad(inp)
        except Exception as exc:  # noqa: BLE001
            raise Refuse(f"{inp}: cannot read as AnnData: {type(exc).__name__}: {exc}")
        try:
            scanpy_pipeline(adata, opts)
        except Exception as exc:  # noqa: BLE001
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise Refuse(f"{inp}: {element}: scanpy refuses this input ({type(exc).__name__}: {msg})")
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"atlasnorm: warning: {inp}: {element}: {w.message}", file=sys.stderr)
    if os.environ.get("REFERENCE_CLI_MUTATE") == "ulp":
        mutate_one_ulp(adata, a.layer)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    try:
        if is_zarr(out):
            tmp.rmdir()
            write_zarr_output(adata, a, inp, in_fmt, element, tmp)
        else:
            tmp.rmdir()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                adata.write_h5ad(tmp)
        if out.exists() or out.is_symlink():
            if out.is_dir() and not out.is_symlink():
                shutil.rmtree(out)
            else:
                out.unlink()
        os.replace(tmp, out)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = parse_args(argv)
    zopts = [a.zarr_format, a.zarr_codec, a.zarr_chunk, a.zarr_shard]
    if not is_zarr(a.input) and not is_zarr(a.output) and all(o is None for o in zopts):
        return reference_cli.main(argv)
    try:
        normalize(a)
    except Refuse as exc:
        print(f"atlasnorm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"atlasnorm: error: {a.output}: interrupted; nothing written", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001
        print(f"atlasnorm: error: {a.input}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
