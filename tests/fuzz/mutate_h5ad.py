"""Mutations of an `.h5ad` file (HDF5), applied in place to a copy of a seed.

Two families:
* structure-aware, through h5py: attributes (encoding-type/-version, shape, anything else) set to
  wrong strings, wrong types, huge or negative sizes, or deleted; members deleted or replaced by an
  object of the other kind; datasets rewritten with another dtype, another length, another layout
  (contiguous, compact, 1-element chunks, shuffle/fletcher32 filters); single values of the
  matrix's indptr/indices/data set to boundary values; raw chunk bytes edited with
  read_direct_chunk/write_direct_chunk (flipped, truncated, extended, filter mask toggled);
* byte-level, on the file: bit flips, overwritten words, truncation, appended garbage (half of
  them aimed at a dataset's stored bytes, half anywhere).

Every operator draws from the `rng` it is given and returns a one-line description, so a case is
reproducible from (run seed, case number) and readable in a failure report.
"""

from __future__ import annotations

import numpy as np

from values import interesting_attr, interesting_number, mutate_bytes

INT_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")
FLOAT_DTYPES = ("float16", "float32", "float64")


def _objects(f) -> list[str]:
    names: list[str] = []
    f.visit(names.append)
    return names


def _datasets(f) -> list[str]:
    import h5py

    out: list[str] = []
    f.visititems(lambda n, o: out.append(n) if isinstance(o, h5py.Dataset) else None)
    return out


def _pick_target(rng, f, element: str, *, datasets_only: bool = False) -> str | None:
    """A path in the file: 60% inside the matrix under test (it is where the logic is)."""
    names = _datasets(f) if datasets_only else _objects(f)
    if not names:
        return None
    inside = [n for n in names if n == element or n.startswith(element + "/")]
    if inside and rng.random() < 0.85:
        return inside[rng.integers(len(inside))]
    return names[rng.integers(len(names))]


# --------------------------------------------------------------------------------------------
# structure-aware operators (h5py)


def op_attr(rng, f, element):
    """Set or delete one attribute (existing or a well-known name) of one object."""
    target = _pick_target(rng, f, element)
    if target is None:
        return "attr: empty file"
    obj = f[target] if rng.random() < 0.9 else f["/"]
    where = obj.name
    existing = list(obj.attrs.keys())
    known = ["encoding-type", "encoding-version", "shape", "h5sparse_format", "h5sparse_shape", "_index",
             "column-order", "ordered"]
    if existing and rng.random() < 0.75:
        key = existing[rng.integers(len(existing))]
    else:
        key = known[rng.integers(len(known))]
    if key in obj.attrs and rng.random() < 0.2:
        del obj.attrs[key]
        return f"attr: delete {where}@{key}"
    old = obj.attrs.get(key)
    new = interesting_attr(rng, old)
    try:
        obj.attrs[key] = new
    except (TypeError, ValueError) as e:  # a value h5py cannot store: store a string instead
        obj.attrs[key] = "x"
        return f"attr: {where}@{key} = 'x' (h5py refused {new!r}: {e})"
    return f"attr: {where}@{key} = {new!r} (was {old!r})"


def op_delete(rng, f, element):
    target = _pick_target(rng, f, element)
    if target is None:
        return "delete: nothing"
    del f[target]
    return f"delete: {target}"


def op_wrongtype(rng, f, element):
    """Replace a group by a dataset, or a dataset by an (empty) group, keeping its attributes."""
    import h5py

    target = _pick_target(rng, f, element)
    if target is None:
        return "wrongtype: nothing"
    attrs = dict(f[target].attrs)
    is_group = isinstance(f[target], h5py.Group)
    del f[target]
    if is_group:
        obj = f.create_dataset(target, data=np.arange(3, dtype=np.int64))
        what = "group -> dataset"
    else:
        obj = f.create_group(target)
        what = "dataset -> group"
    for k, v in attrs.items():
        obj.attrs[k] = v
    return f"wrongtype: {target} {what}"


def _rewrite(f, path, data, *, like=None, **kw):
    """Replace the dataset at `path` by `data`, keeping its attributes and (unless `kw` says
    otherwise) its chunking and compression."""
    ds = f[path]
    attrs = dict(ds.attrs)
    opts = {}
    if like is not None and like.chunks is not None and data.ndim == len(like.chunks) and data.size > 0:
        opts["chunks"] = tuple(max(1, min(c, max(s, 1))) for c, s in zip(like.chunks, data.shape))
        opts["maxshape"] = tuple(None for _ in data.shape)
        if like.compression is not None:
            opts["compression"] = like.compression
            if like.compression_opts is not None:
                opts["compression_opts"] = like.compression_opts
    opts.update(kw)
    del f[path]
    new = f.create_dataset(path, data=data, **opts)
    for k, v in attrs.items():
        new.attrs[k] = v
    return new


def op_dtype(rng, f, element):
    import h5py

    target = _pick_target(rng, f, element, datasets_only=True)
    if target is None:
        return "dtype: nothing"
    ds = f[target]
    if ds.shape is None or ds.dtype.kind not in "iufb":
        return f"dtype: {target} is {ds.dtype} (left alone)"
    data = ds[()]
    choices = INT_DTYPES + FLOAT_DTYPES + ("bool", ">f4", ">i4", "complex64", "str")
    new = choices[rng.integers(len(choices))]
    with np.errstate(all="ignore"):
        if new == "str":
            conv = np.asarray(data).astype(str).astype(object)
            _rewrite(f, target, conv, dtype=h5py.string_dtype())
        else:
            conv = np.asarray(data).astype(new)
            _rewrite(f, target, conv, like=ds)
    return f"dtype: {target} {ds.dtype} -> {new}"


def op_resize(rng, f, element):
    target = _pick_target(rng, f, element, datasets_only=True)
    if target is None:
        return "resize: nothing"
    ds = f[target]
    if ds.shape is None or len(ds.shape) == 0:
        return f"resize: {target} is scalar (left alone)"
    data = ds[()]
    n = data.shape[0]
    how = rng.choice(["shorter", "longer", "empty", "one", "2d", "flat"])
    if how == "shorter" and n > 0:
        data = data[: rng.integers(0, n)]
    elif how == "longer":
        extra = data[: max(1, min(n, 5))] if n else np.zeros((1, *data.shape[1:]), data.dtype)
        data = np.concatenate([data, extra])
    elif how == "empty":
        data = data[:0]
    elif how == "one":
        data = data[:1]
    elif how == "2d" and data.ndim == 1 and n % 2 == 0 and n > 0:
        data = data.reshape(2, n // 2)
    elif how == "flat" and data.ndim == 2:
        data = data.reshape(-1)
    _rewrite(f, target, np.ascontiguousarray(data), like=ds)
    return f"resize: {target} {ds.shape} -> {data.shape} ({how})"


def op_value(rng, f, element):
    """One or a few values of the matrix's arrays set to boundary values (or two swapped)."""
    cands = [n for n in _datasets(f) if n == element or n.startswith(element + "/")]
    if not cands:
        return op_attr(rng, f, element)
    target = cands[rng.integers(len(cands))]
    ds = f[target]
    if ds.size == 0 or ds.dtype.kind not in "iuf":
        return f"value: {target} empty/not numeric"
    data = ds[()]
    flat = data.reshape(-1)
    n = flat.size
    how = rng.choice(["set", "set", "set", "swap", "sort-desc", "many"])
    with np.errstate(all="ignore"):
        if how == "swap" and n > 1:
            i, j = rng.integers(n, size=2)
            flat[i], flat[j] = flat[j], flat[i]
            desc = f"swap [{i}] <-> [{j}]"
        elif how == "sort-desc" and n > 1:
            lo = rng.integers(n - 1)
            hi = min(n, lo + 2 + rng.integers(6))
            flat[lo:hi] = np.sort(flat[lo:hi])[::-1]
            desc = f"reverse-sort [{lo}:{hi}]"
        else:
            k = 1 if how != "many" else int(rng.integers(2, 8))
            idx = rng.integers(n, size=k)
            parts = []
            for i in idx:
                flat[i] = interesting_number(rng, flat, ds.dtype)
                parts.append(f"[{i}]={flat[i]!r}")
            desc = "set " + ", ".join(parts)
    ds[...] = data
    return f"value: {target} {desc}"


def op_layout(rng, f, element):
    """The same values stored another way: contiguous, compact, 1-element chunks, filters."""
    target = _pick_target(rng, f, element, datasets_only=True)
    if target is None:
        return "layout: nothing"
    ds = f[target]
    if ds.shape is None or len(ds.shape) == 0 or ds.size == 0:
        return f"layout: {target} scalar/empty (left alone)"
    data = ds[()]
    how = rng.choice(["contiguous", "compact", "chunk1", "shuffle-gzip", "fletcher32", "gzip9", "lzf",
                      "bigchunk"])
    kw: dict = {}
    if how == "contiguous":
        pass
    elif how == "compact":
        if data.nbytes > 60000:
            return f"layout: {target} too big for compact"
        import h5py

        attrs = dict(ds.attrs)
        del f[target]
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        space = h5py.h5s.create_simple(data.shape)
        tid = h5py.h5t.py_create(data.dtype, logical=True)
        dsid = h5py.h5d.create(f.id, target.encode(), tid, space, dcpl=dcpl)
        dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(data))
        new = f[target]
        for k, v in attrs.items():
            new.attrs[k] = v
        return f"layout: {target} -> compact"
    elif how == "chunk1":
        kw = dict(chunks=tuple(1 for _ in data.shape), maxshape=tuple(None for _ in data.shape))
    elif how == "bigchunk":
        kw = dict(chunks=tuple(s * 3 for s in data.shape), maxshape=tuple(None for _ in data.shape))
    elif how == "shuffle-gzip":
        kw = dict(shuffle=True, compression="gzip", compression_opts=1)
    elif how == "fletcher32":
        kw = dict(fletcher32=True, chunks=tuple(max(1, min(7, s)) for s in data.shape))
    elif how == "gzip9":
        kw = dict(compression="gzip", compression_opts=9, chunks=tuple(max(1, min(5, s)) for s in data.shape))
    elif how == "lzf":
        kw = dict(compression="lzf")
    if data.dtype.kind in "OSU" and how in ("shuffle-gzip",):
        kw.pop("shuffle", None)
    _rewrite(f, target, data, **kw)
    return f"layout: {target} -> {how}"


def op_chunk(rng, f, element):
    """Edit the stored bytes of one chunk (still compressed) through the direct-chunk API."""
    cands = []
    for n in _datasets(f):
        ds = f[n]
        if ds.chunks is not None and ds.id.get_num_chunks() > 0:
            cands.append(n)
    if not cands:
        return "chunk: no chunked dataset"
    inside = [n for n in cands if n == element or n.startswith(element + "/")]
    pool = inside if inside and rng.random() < 0.75 else cands
    target = pool[rng.integers(len(pool))]
    ds = f[target]
    k = int(rng.integers(ds.id.get_num_chunks()))
    info = ds.id.get_chunk_info(k)
    mask, raw = ds.id.read_direct_chunk(info.chunk_offset)
    how = rng.choice(["bytes", "bytes", "bytes", "mask"])
    if how == "mask":
        new_mask = mask ^ (1 << int(rng.integers(0, 3)))
        ds.id.write_direct_chunk(info.chunk_offset, raw, new_mask)
        return f"chunk: {target} chunk {k} filter mask {mask} -> {new_mask}"
    new, desc = mutate_bytes(rng, bytes(raw))
    if len(new) == 0:
        new = b"\0"
        desc += " (empty -> 1 zero byte)"
    ds.id.write_direct_chunk(info.chunk_offset, new, mask)
    return f"chunk: {target} chunk {k} ({len(raw)} B): {desc}"


STRUCT_OPS = {
    "attr": (op_attr, 22),
    "delete": (op_delete, 7),
    "wrongtype": (op_wrongtype, 5),
    "dtype": (op_dtype, 12),
    "resize": (op_resize, 9),
    "value": (op_value, 20),
    "layout": (op_layout, 7),
    "chunk": (op_chunk, 18),
}


def _storage_ranges(path) -> list[tuple[str, int, int]]:
    """(dataset, file offset, size) of stored bytes: contiguous data and every chunk; none when
    an earlier mutation of the same case left a file h5py cannot open (truncated, ...)."""
    import h5py

    out = []
    try:
        f = h5py.File(path, "r")
    except OSError:
        return out
    try:
        with f:
            _collect_ranges(f, out)
    except (OSError, RuntimeError, KeyError, ValueError):  # a damaged object tree: what was found
        pass
    return out


def _collect_ranges(f, out: list) -> None:
    for n in _datasets(f):
        ds = f[n]
        try:
            if ds.chunks is None:
                off = ds.id.get_offset()
                if off is not None and ds.id.get_storage_size() > 0:
                    out.append((n, off, ds.id.get_storage_size()))
            else:
                for k in range(ds.id.get_num_chunks()):
                    info = ds.id.get_chunk_info(k)
                    out.append((f"{n}#chunk{k}", info.byte_offset, info.size))
        except Exception:  # noqa: BLE001 - compact datasets have no offset
            continue


def op_bytes(rng, path, element):
    """Byte-level edit of the whole file: half aimed at stored dataset bytes, half anywhere."""
    data = bytearray(path.read_bytes())
    size = len(data)
    how = rng.choice(["region", "anywhere", "anywhere", "truncate", "append"])
    if how == "truncate":
        cut = int(rng.integers(0, size))
        path.write_bytes(bytes(data[:cut]))
        return f"bytes: truncate to {cut} of {size}"
    if how == "append":
        extra = bytes(rng.integers(0, 256, size=int(rng.integers(1, 4096)), dtype=np.uint8))
        path.write_bytes(bytes(data) + extra)
        return f"bytes: append {len(extra)} random bytes"
    if how == "region":
        regions = [r for r in _storage_ranges(path) if r[0].split("#")[0].startswith(element)] or _storage_ranges(path)
        if regions:
            name, off, n = regions[rng.integers(len(regions))]
            seg, desc = mutate_bytes(rng, bytes(data[off: off + n]), keep_length=True)
            data[off: off + n] = seg
            path.write_bytes(bytes(data))
            return f"bytes: in {name} @{off}+{n}: {desc}"
    seg, desc = mutate_bytes(rng, bytes(data), keep_length=True, max_edits=4)
    path.write_bytes(seg)
    return f"bytes: file: {desc}"


def mutate(rng, path, element: str) -> str:
    """Apply one (sometimes two or three) mutations to the .h5ad at `path`; returns what was done."""
    import h5py

    n_ops = 1 if rng.random() < 0.9 else int(rng.integers(2, 4))
    done = []
    for _ in range(n_ops):
        if rng.random() < 0.2:
            done.append(op_bytes(rng, path, element))
            continue
        names = list(STRUCT_OPS)
        w = np.array([STRUCT_OPS[n][1] for n in names], dtype=float)
        name = names[rng.choice(len(names), p=w / w.sum())]
        try:
            with h5py.File(path, "r+") as f:
                done.append(STRUCT_OPS[name][0](rng, f, element))
        except Exception as e:  # noqa: BLE001 - an earlier byte edit may leave h5py unable to open
            done.append(f"{name}: not applied ({type(e).__name__}: {str(e)[:80]})")
    return " ; ".join(done)
