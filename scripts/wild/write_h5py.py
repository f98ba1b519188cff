"""Files of the wild corpus written through h5py: hdf5plugin filters and storage options by hand.

    .tools/wild/anndataoom/bin/python scripts/wild/write_h5py.py OUT_DIR

Each file starts as a rich AnnData written by anndata (the venv's 0.13.4), then h5py rewrites the
matrix under test (X, sometimes a layer) with the storage option of interest:
* `filt_*`: hdf5plugin's registered filters — blosc (lz4, zstd; no/byte/bit shuffle), zstd, lz4,
  bitshuffle (plain, lz4, zstd) — on X only, or on every numeric dataset (obs/var/uns/raw too;
  not through anndata's `compression=`: blosc on variable-length strings kills HDF5 with SIGFPE);
* `hand_*`: fletcher32 (+gzip on data/indices, alone on indptr), shuffle, big-endian data and
  indices, unsigned data/indices/indptr, odd and 1-element chunks, compact layout, int64 indices
  with int32 indptr, and an AnnData written entirely by hand (minimal attributes).
"""

import os
import sys
import warnings

import anndata
import h5py
import hdf5plugin
import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

warnings.simplefilter("ignore")


def rich(x_format="csr", seed=0):
    n, nv = common.N_OBS, common.N_VARS + common.N_RAW_EXTRA
    m = common.counts(seed=seed, n_vars=nv)
    oc = common.obs_columns()
    obs = pd.DataFrame(index=pd.Index(common.obs_names()))
    obs["cell_type"] = pd.Categorical(oc["cell_type"], categories=["B", "Mono", "NK", "T"])
    obs["batch"] = pd.Categorical(oc["batch"], categories=["b1", "b2", "b3"], ordered=True)
    obs["is_doublet"] = oc["is_doublet"]
    obs["n_genes"] = oc["n_genes"]
    obs["qc_score"] = oc["qc_score"]
    obs["barcode"] = oc["barcode"]
    vc = common.var_columns()
    var = pd.DataFrame(index=pd.Index(common.var_names()))
    var["feature_type"] = pd.Categorical(vc["feature_type"])
    var["highly_variable"] = vc["highly_variable"]
    var["gene_ids"] = vc["gene_ids"]
    full = anndata.AnnData(X=sp.csr_matrix(m.astype(np.float32)), obs=obs, var=var)
    full.raw = full
    a = full[:, : common.N_VARS].copy()
    sub = m[:, : common.N_VARS].astype(np.float32)
    a.X = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "dense": np.ascontiguousarray}[x_format](sub)
    a.layers["counts"] = sp.csr_matrix(sub.astype(np.int32))
    emb = common.embeddings()
    a.obsm["X_pca"] = emb["X_pca"]
    a.varm["PCs"] = emb["PCs"]
    d, i, p = common.knn_graph()
    a.obsp["distances"] = sp.csr_matrix((d, i, p), shape=(n, n))
    a.uns = common.uns_content()
    return a


def rewrite(f, path, arr, **kw):
    """Replaces dataset `path` with `arr` written with h5py options `kw`, keeping its attributes."""
    attrs = dict(f[path].attrs) if path in f else {}
    if path in f:
        del f[path]
    if isinstance(kw.get("chunks"), tuple):  # h5py refuses chunks larger than the data
        kw = dict(kw, chunks=tuple(max(1, min(c, s)) for c, s in zip(kw["chunks"], arr.shape)))
    d = f.create_dataset(path, data=arr, **kw)
    for k, v in attrs.items():
        d.attrs[k] = v
    return d


def rewrite_sparse(f, group, data_kw=None, indices_kw=None, indptr_kw=None, dtypes=None):
    """Rewrites the three datasets of the sparse matrix at `group` (h5py options, new dtypes)."""
    dtypes = dtypes or {}
    for name, kw in (("data", data_kw), ("indices", indices_kw), ("indptr", indptr_kw)):
        arr = f[group][name][()]
        if name in dtypes:
            arr = arr.astype(dtypes[name])
        rewrite(f, "%s/%s" % (group, name), arr, **(kw or {}))


def filter_everything(path, kw):
    """Rewrites every numeric, non-empty, non-scalar dataset of the file with h5py options `kw`
    (blosc cannot be applied to variable-length strings: HDF5 dies with SIGFPE)."""
    with h5py.File(path, "r+") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and o.dtype.kind in "biuf"
                     and o.ndim >= 1 and o.size > 0 else None)
        for n in names:
            rewrite(f, n, f[n][()], chunks=True, **kw)


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    ver = "h5py %s, hdf5plugin %s, HDF5 %s" % (h5py.__version__, hdf5plugin.version, h5py.version.hdf5_version)
    man = common.Manifest(out_dir, "h5py", ver)

    def base(name, x_format="csr", seed=0, **write_kw):
        p = os.path.join(out_dir, name)
        assert not os.path.exists(p), "refusing to overwrite " + p
        rich(x_format, seed).write_h5ad(p, **write_kw)
        return p

    # --- hdf5plugin filters ------------------------------------------------------------------
    B = hdf5plugin.Blosc
    p = base("filt_blosc_lz4_shuffle_all.h5ad")
    filter_everything(p, B(cname="lz4", clevel=5, shuffle=B.SHUFFLE))
    man.add(os.path.basename(p), "blosc (32001) lz4 byte-shuffle on every numeric dataset (obs, var, uns, raw, obsm...)")
    p = base("filt_blosc_zstd_bitshuffle_all.h5ad", seed=1)
    filter_everything(p, B(cname="zstd", clevel=3, shuffle=B.BITSHUFFLE))
    man.add(os.path.basename(p), "blosc (32001) zstd bit-shuffle on every numeric dataset")
    p = base("filt_blosc_lz4_noshuffle_dense.h5ad", "dense", seed=2)
    with h5py.File(p, "r+") as f:
        rewrite(f, "X", f["X"][()], chunks=(37, 11), **B(cname="lz4", clevel=9, shuffle=B.NOSHUFFLE))
    man.add(os.path.basename(p), "dense X, blosc lz4 no-shuffle, 37x11 chunks")
    p = base("filt_blosc_zstd_csc.h5ad", "csc", seed=3)
    with h5py.File(p, "r+") as f:
        kw = dict(chunks=(500,), **B(cname="zstd", clevel=5, shuffle=B.SHUFFLE))
        rewrite_sparse(f, "X", kw, kw, dict(chunks=(16,), **B(cname="zstd", clevel=5, shuffle=B.SHUFFLE)))
    man.add(os.path.basename(p), "CSC X, blosc zstd byte-shuffle (anndata-rs' default codec), 500/16-element chunks")
    p = base("filt_zstd_all.h5ad", seed=4)
    filter_everything(p, hdf5plugin.Zstd(clevel=3))
    man.add(os.path.basename(p), "zstd (32015) on every numeric dataset")
    p = base("filt_lz4.h5ad", seed=5)
    with h5py.File(p, "r+") as f:
        kw = dict(chunks=(700,), **hdf5plugin.LZ4(nbytes=1024))
        rewrite_sparse(f, "X", kw, kw, kw)
        rewrite_sparse(f, "layers/counts", kw, kw, kw)
    man.add(os.path.basename(p), "lz4 (32004, 1 KiB blocks) on X and layers/counts")
    p = base("filt_bitshuffle_lz4.h5ad", seed=6)
    with h5py.File(p, "r+") as f:
        kw = dict(chunks=(1000,), **hdf5plugin.Bitshuffle(cname="lz4"))
        rewrite_sparse(f, "X", kw, kw, kw)
    man.add(os.path.basename(p), "bitshuffle (32008) + lz4 on X")
    p = base("filt_bitshuffle_plain_zstd.h5ad", seed=7)
    with h5py.File(p, "r+") as f:
        rewrite_sparse(f, "X", dict(chunks=(1000,), **hdf5plugin.Bitshuffle(cname="none")),
                       dict(chunks=(1000,), **hdf5plugin.Bitshuffle(cname="zstd", clevel=3)),
                       dict(chunks=(64,), **hdf5plugin.Bitshuffle(cname="none")))
    man.add(os.path.basename(p), "bitshuffle (32008) without compression on data/indptr, + zstd on indices")

    # --- storage options by hand -------------------------------------------------------------
    p = base("hand_fletcher32.h5ad", seed=10)
    with h5py.File(p, "r+") as f:
        gz = dict(chunks=(300,), compression="gzip", fletcher32=True)
        rewrite_sparse(f, "X", gz, gz, dict(chunks=(50,), fletcher32=True))
    man.add(os.path.basename(p), "fletcher32 checksums: gzip+fletcher32 on data/indices, fletcher32 alone on indptr")
    p = base("hand_shuffle_gzip.h5ad", seed=11)
    with h5py.File(p, "r+") as f:
        kw = dict(chunks=(400,), compression="gzip", compression_opts=9, shuffle=True)
        rewrite_sparse(f, "X", kw, kw, kw)
    man.add(os.path.basename(p), "shuffle + gzip 9 on X")
    p = base("hand_bigendian_csr.h5ad", seed=12)
    with h5py.File(p, "r+") as f:
        rewrite_sparse(f, "X", dict(chunks=(512,)), None, None, dtypes={"data": ">f4", "indices": ">i4", "indptr": ">i8"})
        rewrite_sparse(f, "layers/counts", None, None, None, dtypes={"data": ">i4"})
    man.add(os.path.basename(p), "big-endian X (data >f4 chunked, indices >i4, indptr >i8) and counts layer data >i4")
    p = base("hand_bigendian_dense.h5ad", "dense", seed=13)
    with h5py.File(p, "r+") as f:
        rewrite(f, "X", f["X"][()].astype(">f4"), chunks=(16, 48))
    man.add(os.path.basename(p), "dense big-endian >f4 X, 16x48 chunks")
    p = base("hand_bigendian_f8_dense.h5ad", "dense", seed=14)
    with h5py.File(p, "r+") as f:
        rewrite(f, "X", f["X"][()].astype(">f8"))
    man.add(os.path.basename(p), "dense big-endian >f8 X, contiguous")
    p = base("hand_unsigned.h5ad", seed=15)
    with h5py.File(p, "r+") as f:
        rewrite_sparse(f, "X", None, None, None, dtypes={"data": "u2", "indices": "u4", "indptr": "u8"})
        rewrite(f, "layers/counts/data", np.minimum(f["layers/counts/data"][()], 255).astype("u1"))
        rewrite_sparse(f, "layers/counts", None, None, None, dtypes={"indices": "u2"})
    man.add(os.path.basename(p), "unsigned: X data u2, indices u4, indptr u8; counts layer data u1 (clipped at 255), indices u2")
    p = base("hand_odd_chunks.h5ad", seed=16)
    with h5py.File(p, "r+") as f:
        rewrite_sparse(f, "X", dict(chunks=(7,), compression="gzip"), dict(chunks=(13,)), dict(chunks=(1,)))
    man.add(os.path.basename(p), "odd chunks: data 7 (gzip), indices 13, indptr 1-element chunks")
    p = base("hand_1elem_chunks_dense.h5ad", "dense", seed=17)
    with h5py.File(p, "r+") as f:
        rewrite(f, "X", f["X"][()], chunks=(1, 1))
    man.add(os.path.basename(p), "dense X in 1x1-element chunks")
    p = base("hand_compact.h5ad", seed=18)
    with h5py.File(p, "r+") as f:
        for name in ("data", "indices", "indptr"):
            path = "X/" + name
            arr = f[path][()]
            del f[path]
            space = h5py.h5s.create_simple(arr.shape)
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_layout(h5py.h5d.COMPACT)
            tid = h5py.h5t.py_create(arr.dtype)
            dsid = h5py.h5d.create(f["X"].id, name.encode(), tid, space, dcpl=dcpl)
            dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, arr)
            dsid.close()
        assert f["X/data"].id.get_create_plist().get_layout() == h5py.h5d.COMPACT
    man.add(os.path.basename(p), "compact layout (data stored in the object header) for X/data, indices, indptr")
    p = base("hand_i64_indices_i32_indptr.h5ad", seed=19)
    with h5py.File(p, "r+") as f:
        rewrite_sparse(f, "X", None, None, None, dtypes={"indices": "i8", "indptr": "i4"})
    man.add(os.path.basename(p), "int64 indices with int32 indptr")

    p = os.path.join(out_dir, "hand_minimal.h5ad")
    m = common.counts(seed=20)
    data, indices, indptr = common.csr_parts(m)
    with h5py.File(p, "w") as f:
        x = f.create_group("X")
        x.attrs["encoding-type"] = "csr_matrix"
        x.attrs["encoding-version"] = "0.1.0"
        x.attrs["shape"] = np.array(m.shape, dtype=np.int64)
        x["data"] = data.astype(np.float32)
        x["indices"] = indices.astype(np.int32)
        x["indptr"] = indptr.astype(np.int64)
        for axis, names in (("obs", common.obs_names()), ("var", common.var_names(common.N_VARS))):
            g = f.create_group(axis)
            g.attrs["encoding-type"] = "dataframe"
            g.attrs["encoding-version"] = "0.2.0"
            g.attrs["_index"] = "_index"
            g.attrs["column-order"] = np.array([], dtype=h5py.string_dtype())
            idx = g.create_dataset("_index", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
            idx.attrs["encoding-type"] = "string-array"
            idx.attrs["encoding-version"] = "0.2.0"
    man.add("hand_minimal.h5ad", "written by h5py alone: X (CSR f32, int64 indptr), obs/var with only an index, no uns/obsm/layers")
    man.save()


if __name__ == "__main__":
    main(sys.argv[1])
