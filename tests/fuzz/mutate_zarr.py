"""Mutations of a `.zarr` directory store (v2 or v3), applied to a private copy of a seed.

The copy is cheap: `clone` hard-links every chunk file and copies only the metadata files, and
every operator that writes a chunk file first replaces that link by a copy (`own`), so the seed is
never touched (the driver checks the seeds' hashes at the end of a run to prove it).

Operators:
* metadata JSON (`zarr.json`, `.zarray`, `.zattrs`, `.zgroup`): one key deleted or one value
  replaced (shape, data_type/dtype, chunk shape, codecs and their configuration, fill_value,
  attributes such as encoding-type/shape), in the node's own document, in the consolidated copy
  (v3: inline in the root zarr.json; v2: `.zmetadata`), or in both;
* metadata text: truncated, emptied, not JSON, not UTF-8;
* chunk files: bits flipped, a word overwritten, truncated, extended, emptied, deleted, two
  swapped; for sharded arrays the shard index (offsets, sizes, crc32c) edited;
* nodes: a metadata file or a whole array/group deleted, in one place or both;
* values: one of the matrix's arrays rewritten with zarr-python with boundary values (indptr,
  indices, data), another dtype, or another length (metadata kept consistent).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from values import interesting_number, mutate_bytes, mutate_json

META_NAMES = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")


def clone(src: Path, dst: Path) -> None:
    """Copy the store: metadata files copied, chunk files hard-linked (read-only sharing)."""
    for dirpath, dirs, files in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        out = dst if rel == "." else dst / rel
        out.mkdir(parents=True, exist_ok=True)
        for name in files:
            s = os.path.join(dirpath, name)
            if name in META_NAMES:
                shutil.copyfile(s, out / name)
            else:
                os.link(s, out / name)


def own(path: Path) -> None:
    """Replace a hard link by a private copy before it is written."""
    if path.exists() and path.stat().st_nlink > 1:
        data = path.read_bytes()
        path.unlink()
        path.write_bytes(data)


def own_tree(path: Path) -> None:
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            own(Path(dirpath) / name)


def zarr_format(store: Path) -> int:
    return 3 if (store / "zarr.json").exists() else 2


def _nodes(store: Path) -> list[tuple[str, str]]:
    """(relative path, "array" | "group") of every node, from its own metadata file."""
    out = []
    for dirpath, _dirs, files in os.walk(store):
        rel = os.path.relpath(dirpath, store)
        rel = "" if rel == "." else rel
        if "zarr.json" in files:
            try:
                kind = json.loads((Path(dirpath) / "zarr.json").read_text()).get("node_type", "group")
            except Exception:  # noqa: BLE001
                kind = "group"
            out.append((rel, kind))
        elif ".zarray" in files:
            out.append((rel, "array"))
        elif ".zgroup" in files:
            out.append((rel, "group"))
    return sorted(out)


def _pick_node(rng, store: Path, element: str, kind: str | None = None) -> str | None:
    nodes = [n for n, k in _nodes(store) if kind is None or k == kind]
    if not nodes:
        return None
    inside = [n for n in nodes if n == element or n.startswith(element + "/")]
    if inside and rng.random() < 0.85:
        return inside[int(rng.integers(len(inside)))]
    return nodes[int(rng.integers(len(nodes)))]


def _chunk_files(store: Path, node: str) -> list[Path]:
    base = store / node if node else store
    out = []
    for dirpath, dirs, files in os.walk(base):
        # do not descend into child nodes
        if Path(dirpath) != base and any(m in files for m in ("zarr.json", ".zarray", ".zgroup")):
            dirs[:] = []
            continue
        for name in files:
            if name not in META_NAMES:
                out.append(Path(dirpath) / name)
    return sorted(out)


# --------------------------------------------------------------------------------------------
# consolidated metadata


def _consolidated(store: Path):
    """(document, entries dict, path of the file) of the consolidated metadata, or None."""
    if zarr_format(store) == 3:
        p = store / "zarr.json"
        doc = json.loads(p.read_text())
        cm = doc.get("consolidated_metadata")
        if isinstance(cm, dict) and isinstance(cm.get("metadata"), dict):
            return doc, cm["metadata"], p
        return None
    p = store / ".zmetadata"
    if not p.exists():
        return None
    doc = json.loads(p.read_text())
    if isinstance(doc.get("metadata"), dict):
        return doc, doc["metadata"], p
    return None


def _own_meta_file(store: Path, node: str, fmt: int, rng) -> Path:
    base = store / node if node else store
    if fmt == 3:
        return base / "zarr.json"
    files = [n for n in (".zarray", ".zattrs", ".zgroup") if (base / n).exists()]
    return base / files[int(rng.integers(len(files)))] if files else base / ".zattrs"


def op_json(rng, store: Path, element: str) -> str:
    fmt = zarr_format(store)
    node = _pick_node(rng, store, element)
    if node is None:
        return "json: no node"
    where = rng.choice(["both", "own", "consolidated"], p=[0.5, 0.25, 0.25])
    own_file = _own_meta_file(store, node, fmt, rng)
    desc = []
    mseed = int(rng.integers(2**32))
    if where in ("both", "own") and own_file.exists():
        doc = json.loads(own_file.read_text())
        if fmt == 3 and node == "" and "consolidated_metadata" in doc and rng.random() < 0.7:
            # the root document: edit outside the consolidated copy most of the time
            inner = {k: v for k, v in doc.items() if k != "consolidated_metadata"}
            new, d = mutate_json(np.random.default_rng(mseed), inner)
            if isinstance(new, dict):
                new["consolidated_metadata"] = doc["consolidated_metadata"]
            doc = new
        else:
            doc, d = mutate_json(np.random.default_rng(mseed), doc)
        own_file.write_text(json.dumps(doc))
        desc.append(f"{own_file.relative_to(store)}: {d}")
    if where in ("both", "consolidated"):
        c = _consolidated(store)
        if c is not None:
            doc, entries, cpath = c
            key = node if fmt == 3 else f"{node + '/' if node else ''}{own_file.name}"
            if key in entries:
                new, d = mutate_json(np.random.default_rng(mseed), entries[key])
                entries[key] = new
                cpath.write_text(json.dumps(doc))
                desc.append(f"consolidated[{key}]: {d}")
    return "json: " + (" + ".join(desc) if desc else f"{node}: nothing to edit")


def op_json_text(rng, store: Path, element: str) -> str:
    fmt = zarr_format(store)
    node = _pick_node(rng, store, element)
    if node is None:
        return "json-text: no node"
    if rng.random() < 0.3:
        p = store / ("zarr.json" if fmt == 3 else ".zmetadata")
    else:
        p = _own_meta_file(store, node, fmt, rng)
    if not p.exists():
        return f"json-text: {p.relative_to(store)} absent"
    text = p.read_bytes()
    how = rng.choice(["truncate", "empty", "garbage", "latin1", "bom", "nul"])
    if how == "truncate":
        text = text[: int(rng.integers(0, max(1, len(text))))]
    elif how == "empty":
        text = b""
    elif how == "garbage":
        text = b"{not json"
    elif how == "latin1":
        text = text.replace(b'"', b'"\xff', 1)
    elif how == "bom":
        text = b"\xef\xbb\xbf" + text
    else:
        text = text + b"\x00"
    p.write_bytes(text)
    return f"json-text: {p.relative_to(store)}: {how}"


def op_chunk(rng, store: Path, element: str) -> str:
    node = _pick_node(rng, store, element, kind="array")
    if node is None:
        return "chunk: no array"
    files = _chunk_files(store, node)
    if not files:
        return f"chunk: {node} has no chunk files"
    p = files[int(rng.integers(len(files)))]
    rel = p.relative_to(store)
    how = rng.choice(["bytes", "bytes", "bytes", "delete", "swap", "shard-index"])
    if how == "delete":
        p.unlink()
        return f"chunk: delete {rel}"
    if how == "swap" and len(files) > 1:
        q = files[int(rng.integers(len(files)))]
        a, b = p.read_bytes(), q.read_bytes()
        p.unlink()
        q.unlink()
        p.write_bytes(b)
        q.write_bytes(a)
        return f"chunk: swap {rel} <-> {q.relative_to(store)}"
    own(p)
    raw = p.read_bytes()
    meta = store / node / "zarr.json"
    sharded = meta.exists() and "sharding_indexed" in meta.read_text()
    if how == "shard-index" and sharded:
        # index at the end: n_chunks x (offset u64, nbytes u64) + crc32c
        tail = min(len(raw), 16 * int(rng.integers(1, 4)) + 4)
        head, idx = raw[: len(raw) - tail], raw[len(raw) - tail:]
        idx2, d = mutate_bytes(rng, idx, keep_length=True)
        p.write_bytes(head + idx2)
        return f"chunk: {rel} shard index tail {tail} B: {d}"
    new, d = mutate_bytes(rng, raw)
    p.write_bytes(new)
    return f"chunk: {rel} ({len(raw)} B): {d}"


def op_delete(rng, store: Path, element: str) -> str:
    fmt = zarr_format(store)
    node = _pick_node(rng, store, element)
    if node is None or node == "":
        return "delete: nothing"
    how = rng.choice(["node", "node", "meta-own", "meta-consolidated"])
    desc = []
    if how in ("node",):
        shutil.rmtree(store / node)
        desc.append(f"rm -r {node}")
    if how in ("node", "meta-consolidated"):
        c = _consolidated(store)
        if c is not None and (how == "meta-consolidated" or rng.random() < 0.7):
            doc, entries, cpath = c
            for k in [k for k in entries if k == node or k.startswith(node + "/")]:
                del entries[k]
            cpath.write_text(json.dumps(doc))
            desc.append("dropped from consolidated metadata")
    if how == "meta-own":
        p = _own_meta_file(store, node, fmt, rng)
        if p.exists():
            p.unlink()
            desc.append(f"rm {p.relative_to(store)}")
    return f"delete: {node}: " + ", ".join(desc or ["nothing"])


def op_values(rng, store: Path, element: str) -> str:
    """Rewrite one array of the matrix with zarr-python (values, dtype or length), keeping the
    codecs and chunking and the consolidated metadata consistent."""
    import zarr

    fmt = zarr_format(store)
    arrays = [n for n, k in _nodes(store) if k == "array" and (n == element or n.startswith(element + "/"))]
    if not arrays:
        return op_json(rng, store, element)
    node = arrays[int(rng.integers(len(arrays)))]
    own_tree(store / node)
    for name in ("zarr.json", ".zmetadata"):
        own(store / name)
    a = zarr.open_array(str(store / node), mode="r+", zarr_format=fmt)
    data = a[...]
    how = rng.choice(["value", "value", "value", "dtype", "length"])
    desc = ""
    if how == "value" and data.size:
        flat = data.reshape(-1)
        k = 1 if rng.random() < 0.7 else int(rng.integers(2, 6))
        parts = []
        for i in rng.integers(flat.size, size=k):
            flat[i] = interesting_number(rng, flat, data.dtype)
            parts.append(f"[{int(i)}]={flat[i]!r}")
        a[...] = data
        desc = "set " + ", ".join(parts)
    else:
        if how == "dtype":
            choices = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32",
                       "float64", "bool"]
            new_dtype = choices[int(rng.integers(len(choices)))]
            with np.errstate(all="ignore"):
                new = data.astype(new_dtype)
            desc = f"dtype {data.dtype} -> {new_dtype}"
        else:
            n = data.shape[0]
            new = data[: int(rng.integers(0, n))] if (n and rng.random() < 0.5) else np.concatenate(
                [data, data[: max(1, min(3, n))]] if n else [data])
            desc = f"length {data.shape} -> {new.shape}"
        kw = dict(chunks=a.chunks, compressors=a.compressors, attributes=dict(a.attrs), overwrite=True)
        if fmt == 3 and a.shards is not None:
            kw["shards"] = a.shards
            # a shard must hold whole chunks and the array must be non-empty for zarr-python
        if new.size == 0:
            kw.pop("shards", None)
            kw["chunks"] = (1,) * new.ndim
        try:
            zarr.create_array(str(store), name=node, data=new, zarr_format=fmt, **kw)
        except Exception as e:  # noqa: BLE001 - zarr-python cannot write this variant
            return f"values: {node}: {desc}: not applied ({type(e).__name__})"
    if _consolidated(store) is not None and rng.random() < 0.85:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(store), zarr_format=fmt)
        desc += " (consolidated)"
    return f"values: {node}: {desc}"


OPS = {
    "json": (op_json, 36),
    "json-text": (op_json_text, 5),
    "chunk": (op_chunk, 30),
    "delete": (op_delete, 9),
    "values": (op_values, 20),
}


def mutate(rng, store: Path, element: str) -> str:
    n_ops = 1 if rng.random() < 0.9 else int(rng.integers(2, 4))
    names = list(OPS)
    w = np.array([OPS[n][1] for n in names], dtype=float)
    done = []
    for _ in range(n_ops):
        name = names[rng.choice(len(names), p=w / w.sum())]
        try:
            done.append(OPS[name][0](rng, store, element))
        except Exception as e:  # noqa: BLE001 - an earlier edit may leave the store unreadable to us
            done.append(f"{name}: not applied ({type(e).__name__}: {str(e)[:80]})")
    return " ; ".join(done)
