"""The values mutations put in: boundary numbers, wrong-typed attributes, edited bytes, edited JSON.

Shared by the .h5ad and the .zarr mutators. Every function draws only from the numpy Generator it
is given (deterministic per case) and, where it edits, says what it did.
"""

from __future__ import annotations

import copy

import numpy as np

ENCODINGS = ["csr_matrix", "csc_matrix", "array", "dataframe", "dict", "categorical", "string-array",
             "nullable-string-array", "nullable-integer", "nullable-boolean", "numeric-scalar", "string",
             "anndata", "raw", "coo_matrix", "awkward-array", "", "CSR_MATRIX", "csr_matrix "]
VERSIONS = ["0.1.0", "0.2.0", "0.0.0", "9.9.9", "0.1", "1.0.0", "", "x"]
HUGE = [2**31 - 1, 2**31, 2**32, 2**40, 2**53 + 1, 2**62, 2**63 - 1]


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def interesting_attr(rng, old):
    """A replacement for an attribute whose current value is `old` (None: a new attribute)."""
    r = rng.random()
    if isinstance(old, np.ndarray) and old.dtype.kind in "iu" and old.ndim == 1:
        a = old.astype(np.int64)
        variants = [a[::-1], a + 1, a - 1, np.zeros_like(a), -a, a[:1], np.concatenate([a, a[:1]]),
                    a.astype(np.float64), a.astype(np.float64) + 0.5, a.astype(np.uint64), a.astype(np.int8),
                    np.array([], dtype=np.int64), a.astype(str).astype(object)]
        if a.size:
            for h in HUGE:
                b = a.copy()
                b[int(rng.integers(a.size))] = h
                variants.append(b)
            b = a.copy()
            b[int(rng.integers(a.size))] = -1
            variants.append(b)
        v = _pick(rng, variants)
        if isinstance(v, np.ndarray) and v.dtype == object:
            import h5py

            return np.array(v.tolist(), dtype=h5py.string_dtype())
        return v
    if isinstance(old, str):
        if r < 0.45:
            return _pick(rng, ENCODINGS)
        if r < 0.7:
            return _pick(rng, VERSIONS)
        if r < 0.8:
            return old.encode()  # fixed-length bytes instead of a variable-length str
        if r < 0.85:
            return old + "x" * int(rng.integers(1, 3000))
        if r < 0.92:
            return int(rng.integers(-2, 3))
        return np.array([old, old], dtype=object).astype("S")
    if isinstance(old, (bool, np.bool_)):
        return _pick(rng, [not old, 2, "true", np.array([True, False])])
    if isinstance(old, np.ndarray) and old.dtype.kind in "OSU":
        vals = [str(x) for x in old.tolist()]
        variants = [vals[::-1], vals + ["nope"], vals[:-1], [], ["_index"], [v + "x" for v in vals],
                    vals + vals[:1]]
        v = _pick(rng, variants)
        if not v:
            return np.array([], dtype="S1")
        import h5py

        return np.array(v, dtype=h5py.string_dtype())
    # unknown or absent: something of a wrong kind
    return _pick(rng, [_pick(rng, ENCODINGS), _pick(rng, VERSIONS), -1, 0, 2**40, 0.5,
                       np.array([50, 40], dtype=np.int64), np.array([2**40, 40], dtype=np.int64),
                       np.array([-1, 40], dtype=np.int64), np.array([1.5, 2.5]), b"csr_matrix"])


def interesting_number(rng, flat: np.ndarray, dtype: np.dtype):
    """A boundary value for one element of `flat` (already cast to `dtype`, wrapping)."""
    dtype = np.dtype(dtype)
    n = flat.size
    mx = flat.max() if n else 0
    mn = flat.min() if n else 0
    pool = [0, 1, -1, int(mx) + 1 if np.isfinite(mx) else 1, int(mx) if np.isfinite(mx) else 0,
            n, n + 1, int(mn) - 1 if np.isfinite(mn) else -1, 2**31 - 1, 2**31, 2**32, 2**53, 2**63 - 1]
    if dtype.kind == "f":
        pool += [np.nan, np.inf, -np.inf, -0.0, 1e-45, 0.5, 1e30, -1e30, 1e308, np.finfo(dtype).max,
                 np.finfo(dtype).tiny]
    else:
        info = np.iinfo(dtype)
        pool += [info.max, info.min]
    v = _pick(rng, pool)
    with np.errstate(all="ignore"):
        if dtype.kind == "f":
            return np.asarray(v, dtype=np.float64).astype(dtype)
        # wrap like a C cast would
        return np.asarray(int(v) & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64).astype(dtype)


def mutate_bytes(rng, data: bytes, *, keep_length: bool = False, max_edits: int = 3) -> tuple[bytes, str]:
    """Flip bits, overwrite a word, zero or 0xFF a span; unless keep_length: also truncate, extend,
    empty. Returns the new bytes and a description."""
    b = bytearray(data)
    n = len(b)
    kinds = ["flip", "flip", "word", "span"]
    if not keep_length:
        kinds += ["truncate", "extend", "empty", "truncate1"]
    how = _pick(rng, kinds)
    if n == 0:
        return (bytes(b) if keep_length else b"\x00\x01"), "empty input (extended)"
    if how == "flip":
        k = int(rng.integers(1, max_edits + 1))
        pos = rng.integers(n, size=k)
        bits = rng.integers(8, size=k)
        for p, bit in zip(pos, bits):
            b[p] ^= 1 << int(bit)
        return bytes(b), f"flip {k} bit(s) at {sorted(int(p) for p in pos)}"
    if how == "word":
        width = _pick(rng, [1, 2, 4, 8])
        if n < width:
            width = 1
        p = int(rng.integers(0, n - width + 1))
        v = _pick(rng, [0, 2**(8 * width) - 1, 2**(8 * width - 1), 2**(8 * width - 1) - 1, 1,
                        int(rng.integers(0, 2**(8 * width) - 1, dtype=np.uint64))])
        b[p: p + width] = int(v).to_bytes(width, "little")
        return bytes(b), f"{width}-byte word at {p} = {v:#x}"
    if how == "span":
        p = int(rng.integers(0, n))
        length = int(min(n - p, rng.integers(1, 64)))
        fill = _pick(rng, [0x00, 0xFF])
        b[p: p + length] = bytes([fill]) * length
        return bytes(b), f"{length} bytes at {p} = {fill:#04x}"
    if how == "truncate":
        cut = int(rng.integers(0, n))
        return bytes(b[:cut]), f"truncate {n} -> {cut}"
    if how == "truncate1":
        return bytes(b[:-1]), f"truncate {n} -> {n - 1}"
    if how == "extend":
        extra = bytes(rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8))
        return bytes(b) + extra, f"extend by {len(extra)} bytes"
    return b"", "empty"


def _paths(obj, prefix=()):
    """Every path into a JSON value (dict keys and list indices)."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


DTYPE_NAMES = ["float32", "float64", "int32", "int64", "uint16", "uint32", "int8", "uint8", "bool", "float16",
               "string", "complex64", "<f4", "<f8", "<i4", ">i4", ">f4", "|O", "<i8", "<u2", "|b1", "<c8", "r32",
               "int128", ""]


def interesting_json(rng, old):
    if isinstance(old, bool):
        return _pick(rng, [not old, 0, "true", None])
    if isinstance(old, int):
        return _pick(rng, [0, -1, old + 1, old - 1, old * 2, old // 2 if old else 1, *HUGE, 2**64, 1e300, 0.5,
                           str(old), None, [old], True])
    if isinstance(old, float):
        return _pick(rng, [float("nan"), "NaN", "Infinity", 0, -1.0, 1e308, None, "0x7fc00000", True])
    if isinstance(old, str):
        return _pick(rng, [*ENCODINGS[:8], *VERSIONS[:4], *DTYPE_NAMES, old + "x", old.upper(), 7, None, "__x"])
    if isinstance(old, list):
        v = list(old)
        return _pick(rng, [v[:-1], v + v[:1], [], v[::-1], v[0] if v else 0, {"a": 1}, None])
    if isinstance(old, dict):
        v = dict(old)
        return _pick(rng, [{}, [], None, "x", {**v, "must_understand": True}, {**v, "unknown_key": 1}])
    return _pick(rng, [0, "x", [], {}, True])


def mutate_json(rng, doc):
    """Edit one place of a JSON document (delete a key, or replace a value). Returns (doc, desc)."""
    doc = copy.deepcopy(doc)
    paths = list(_paths(doc))
    path = paths[int(rng.integers(len(paths)))]
    if not path:
        new = interesting_json(rng, doc)
        return new, f"whole document -> {str(new)[:60]}"
    parent = _get(doc, path[:-1])
    key = path[-1]
    old = parent[key]
    if isinstance(parent, dict) and rng.random() < 0.25:
        del parent[key]
        return doc, f"delete {'/'.join(map(str, path))}"
    new = interesting_json(rng, old)
    parent[key] = new
    return doc, f"{'/'.join(map(str, path))}: {str(old)[:40]} -> {str(new)[:40]}"
