# A rich AnnData written by anndata (plus pre-pandas-3 string-array columns added with h5py).
# usage: rich.py OUT.h5ad N_OBS N_VARS
import sys, numpy as np, scipy.sparse as sp, pandas as pd, anndata as ad, h5py
out, n, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
M = rng.poisson(0.5, size=(n, m)).astype("float32")
obs = pd.DataFrame({
    "n_genes": np.arange(n, dtype="int64"),
    "score": rng.normal(size=n),
    "batch": pd.Categorical(np.array(["a", "b", "c"])[np.arange(n) % 3]),
    "ordcat": pd.Categorical(np.array(["lo", "hi"])[np.arange(n) % 2], categories=["lo", "hi"], ordered=True),
    "label": pd.array([f"l{i % 4}" for i in range(n)], dtype="string"),
    "nlabel": pd.array([None if i % 5 == 0 else f"x{i}" for i in range(n)], dtype="string"),
    "objstr": np.array([f"o{i}" for i in range(n)], dtype=object),
    "flag": np.arange(n) % 2 == 0,
    "nint": pd.array([None if i % 3 == 1 else i for i in range(n)], dtype="Int32"),
    "nbool": pd.array([None if i % 3 == 1 else i % 2 == 0 for i in range(n)], dtype="boolean"),
    "f32": np.linspace(0, 1, n, dtype="float32"),
    "u16": (np.arange(n) % 7).astype("uint16"),
}, index=[f"cell{i}" for i in range(n)])
var = pd.DataFrame({"gene_ids": [f"ENSG{j}" for j in range(m)], "mean": rng.normal(size=m)},
                   index=[f"gene{j}" for j in range(m)])
a = ad.AnnData(X=sp.csr_matrix(M), obs=obs, var=var)
a.layers["counts"] = sp.csr_matrix(M.astype("int32"))
a.layers["dense"] = M.astype("float64")
a.obsm["X_pca"] = rng.normal(size=(n, 5)).astype("float32")
a.obsm["df"] = pd.DataFrame({"u": np.arange(n), "s": [f"s{i}" for i in range(n)]}, index=obs.index)
a.varm["loadings"] = rng.normal(size=(m, 3))
a.obsp["connectivities"] = sp.random(n, n, density=0.05, format="csr", random_state=2)
a.varp["corr"] = sp.random(m, m, density=0.1, format="csc", random_state=3)
a.uns["nested"] = {"s": "text", "arr": np.arange(4), "n": 3.5, "i": 7, "b": True, "none": None,
                   "strs": np.array(["x", "y"]), "deeper": {"m": np.eye(2)}, "empty": {},
                   "f32": np.float32(1.5), "u8": np.arange(3, dtype=np.uint8)}
a.uns["colors"] = ["red", "blue"]
a.uns["ints"] = [1, 2, 3]
a.uns["bools"] = np.array([True, False])
a.uns["cube"] = np.arange(24, dtype="int16").reshape(2, 3, 4)
a.uns["strmat"] = np.array([["a", "b"], ["c", "ü"]])
a.uns["log1p"] = {"base": None}
a.uns["emptydf"] = pd.DataFrame(index=["a", "b"])
a.uns["unicode"] = "naïve ✓"
a.raw = a.copy()
a.write_h5ad(out)
with h5py.File(out, "r+") as f:
    # Older files: string columns and indexes as `string-array` datasets.
    obs = f["obs"]
    d = obs.create_dataset("oldstr", data=np.array([f"old{i}" for i in range(n)], dtype=object),
                           dtype=h5py.string_dtype())
    d.attrs["encoding-type"] = "string-array"; d.attrs["encoding-version"] = "0.2.0"
    obs.attrs["column-order"] = list(obs.attrs["column-order"]) + ["oldstr"]
    names = f["var/_index/values"].asstr()[()]
    del f["var/_index"]
    d = f["var"].create_dataset("_index", data=names.astype(object), dtype=h5py.string_dtype())
    d.attrs["encoding-type"] = "string-array"; d.attrs["encoding-version"] = "0.2.0"
