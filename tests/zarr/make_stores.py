"""Writes the zarr test stores of tests/zarr_read.rs and scanpy's results on them.

usage: make_stores.py OUTDIR
"""
import json, os, shutil, struct, sys, warnings

warnings.filterwarnings("ignore")
import numpy as np, pandas as pd, scipy.sparse as sp, anndata as ad, scanpy as sc, zarr
import google_crc32c

out = sys.argv[1]
rng = np.random.default_rng(7)
n_obs, n_vars = 300, 40
dense = rng.poisson(0.6, size=(n_obs, n_vars)).astype(np.float32)
dense[5] = 0  # an empty cell
X = sp.csr_matrix(dense)
obs = pd.DataFrame({"cat": pd.Categorical(["a", "b", "c"] * 100), "flag": np.arange(n_obs) % 2 == 0},
                   index=[f"cell{i}" for i in range(n_obs)])
var = pd.DataFrame({"n": np.arange(n_vars)}, index=[f"gene{j}" for j in range(n_vars)])


def make(fmt, shards):
    return ad.AnnData(X=X.copy(), obs=obs.copy(), var=var.copy())


uns = {"s": "hello", "n": 3, "f": 2.5, "none": None, "arr": np.arange(5, dtype=np.int16),
       "strs": np.array(["a", "bb", "ccc"], dtype=object)}


def write(name, fmt, shards):
    ad.settings.zarr_write_format = fmt
    ad.settings.auto_shard_zarr_v3 = shards
    path = os.path.join(out, name)
    g = zarr.open_group(path, mode="w", zarr_format=fmt)
    kw = dict(chunks=(64,))
    if shards:
        kw["shards"] = (256,)
    a = make(fmt, shards)
    ad.io.write_elem(g, "/", a, dataset_kwargs=kw)
    del g["uns"]
    ad.io.write_elem(g, "uns", uns)
    layers = g["layers"]
    ad.io.write_elem(layers, "csc", sp.csc_matrix(dense.astype(np.float64)), dataset_kwargs=kw)
    ints = sp.csr_matrix(dense.astype(np.int32))
    ad.io.write_elem(layers, "ints", ints, dataset_kwargs=kw)
    dkw = dict(chunks=(32, n_vars))
    if shards:
        dkw["shards"] = (128, n_vars)
    ad.io.write_elem(layers, "dense", dense, dataset_kwargs=dkw)
    ad.io.write_elem(layers, "dense64", dense.astype(np.float64), dataset_kwargs=dkw)
    zarr.consolidate_metadata(path)
    return path


stores = {"v3s.zarr": (3, True), "v3u.zarr": (3, False), "v2.zarr": (2, False)}
for name, (fmt, shards) in stores.items():
    path = write(name, fmt, shards)
    b = ad.read_zarr(path)
    assert (b.X != X).nnz == 0
    for layer in [None, "csc", "ints", "dense", "dense64"]:
        c = b.copy()
        sc.pp.normalize_total(c, layer=layer)
        sc.pp.log1p(c, layer=layer)
        m = c.X if layer is None else c.layers[layer]
        tag = f"{name}_{layer or 'X'}"
        if sp.issparse(m):
            m = sp.csr_matrix(m)
            np.asarray(m.indices, dtype=np.int64).tofile(os.path.join(out, tag + ".indices"))
            np.asarray(m.indptr, dtype=np.int64).tofile(os.path.join(out, tag + ".indptr"))
            data = m.data
        else:
            data = np.ascontiguousarray(m).ravel()
        data.tofile(os.path.join(out, tag + ".data"))
        with open(os.path.join(out, tag + ".dtype"), "w") as f:
            f.write(str(data.dtype))


def variant(src, name, fn):
    p = os.path.join(out, name)
    shutil.copytree(os.path.join(out, src), p)
    fn(p)


def write_text(p, text):
    with open(p, "w") as f:
        f.write(text)


def edit_json(p, fn):
    with open(p) as f:
        d = json.load(f)
    fn(d)
    write_text(p, json.dumps(d))


variant("v3u.zarr", "bad_json.zarr", lambda p: write_text(f"{p}/X/data/zarr.json", "{not json"))
variant("v3u.zarr", "bad_root.zarr", lambda p: write_text(f"{p}/zarr.json", "[1, 2"))
variant("v3u.zarr", "no_node_type.zarr", lambda p: edit_json(f"{p}/X/indptr/zarr.json", lambda d: d.pop("node_type")))
variant("v2.zarr", "bad_zattrs.zarr", lambda p: write_text(f"{p}/X/.zattrs", "{\"shape\": "))
variant("v3u.zarr", "missing_chunk.zarr", lambda p: os.remove(f"{p}/X/data/c/3"))
variant("v2.zarr", "missing_chunk_v2.zarr", lambda p: os.remove(f"{p}/X/indices/2"))
variant("v3s.zarr", "missing_shard.zarr", lambda p: os.remove(f"{p}/X/data/c/1"))
variant("v3u.zarr", "dense_missing.zarr", lambda p: os.remove(f"{p}/layers/dense/c/1/0"))


def shard_index(p):
    """(bytes, n) of the index at the end of a shard of 4 inner chunks with crc32c."""
    with open(p, "rb") as f:
        b = bytearray(f.read())
    return b, 4 * 16 + 4


def missing_inner(p):
    f = f"{p}/X/data/c/0"
    b, n = shard_index(f)
    idx = bytearray(b[-n:-4])
    idx[16:32] = struct.pack("<QQ", 2**64 - 1, 2**64 - 1)
    b[-n:] = idx + struct.pack("<I", google_crc32c.value(bytes(idx)))
    open(f, "wb").write(b)


variant("v3s.zarr", "missing_inner.zarr", missing_inner)


def corrupt_data(p):
    f = f"{p}/X/data/c/0"
    b, n = shard_index(f)
    off, size = struct.unpack("<QQ", b[-n + 16:-n + 32])  # inner chunk 1
    for i in range(off + 4, off + min(size, 40)):
        b[i] ^= 0x5A
    open(f, "wb").write(b)


variant("v3s.zarr", "corrupt_shard.zarr", corrupt_data)


def corrupt_index(p):
    f = f"{p}/X/indices/c/0"
    b, n = shard_index(f)
    b[-n + 3] ^= 0xFF
    open(f, "wb").write(b)


variant("v3s.zarr", "bad_crc.zarr", corrupt_index)


def truncate_shard(p):
    f = f"{p}/X/data/c/2"
    b, n = shard_index(f)
    open(f, "wb").write(b[: n // 2])


variant("v3s.zarr", "truncated_shard.zarr", truncate_shard)


def corrupt_blosc(p):
    f = f"{p}/X/data/1"
    b = bytearray(open(f, "rb").read())
    for i in range(16, min(len(b), 60)):
        b[i] ^= 0x33
    open(f, "wb").write(b)


variant("v2.zarr", "corrupt_v2.zarr", corrupt_blosc)


def lzma(d):
    d["codecs"][1]["name"] = "lzma"


variant("v3u.zarr", "bad_codec.zarr", lambda p: edit_json(f"{p}/X/data/zarr.json", lzma))
variant("v2.zarr", "bad_codec_v2.zarr",
        lambda p: edit_json(f"{p}/X/indptr/.zarray", lambda d: d.update(compressor={"id": "lzma"})))
g = zarr.open_group(os.path.join(out, "not_anndata.zarr"), mode="w")
g.create_array("foo", shape=(3,), dtype="int32")
os.makedirs(os.path.join(out, "empty.zarr"))
print("ok")
