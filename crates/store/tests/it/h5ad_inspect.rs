//! `inspect` lists encodings, shapes, dtypes, chunks, filters, nnz and legacy formats.

use atlasnorm_testkit::python as h5ad_common;

use h5ad_common::{run_py, s, tempdir};

#[test]
fn inspect_lists_every_element() {
    let dir = tempdir();
    let p = dir.path().join("a.h5ad");
    let legacy = dir.path().join("legacy.h5ad");
    run_py(
        r#"
import sys, numpy as np, scipy.sparse as sp, pandas as pd, anndata as ad, h5py
X = sp.random(30, 8, density=0.25, format="csr", dtype=np.float32, random_state=0)
a = ad.AnnData(X=X, obs=pd.DataFrame({"q": np.arange(30.0), "cat": pd.Categorical(["a", "b"] * 15)}))
a.layers["dense"] = X.toarray().astype(np.int16)
a.uns["log1p"] = {"base": None}
a.uns["title"] = "hello"
a.write_h5ad(sys.argv[1], compression="lzf")
a.write_h5ad(sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:
    g = f["X"]; shape = g.attrs["shape"]
    for k in list(g.attrs): del g.attrs[k]
    g.attrs["h5sparse_format"] = "csr"; g.attrs["h5sparse_shape"] = shape
"#,
        &[s(&p), s(&legacy)],
    );
    let t = atlasnorm_store::inspect::inspect(&p).unwrap();
    println!("{t}");
    let nnz = 60;
    for needle in [
        "/  anndata 0.1.0",
        &format!("X/  csr_matrix 0.1.0  shape (30, 8)  nnz {nnz}"),
        &format!("data  float32  ({nnz},)  chunks ({nnz},)  lzf"),
        "indptr  int32  (31,)",
        "dense  array 0.2.0  int16  (30, 8)",
        "obs/  dataframe 0.2.0  index '_index'  2 column(s): q, cat",
        "cat/  categorical 0.2.0  ordered=false",
        "_index/  nullable-string-array 0.1.0",
        "base  null 0.1.0  float32  empty (null dataspace)",
        "title  string 0.2.0  str (variable-length UTF-8)  ()  = \"hello\"",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in\n{t}");
    }
    let t = atlasnorm_store::inspect::inspect(&legacy).unwrap();
    assert!(
        t.contains("X/  legacy sparse (h5sparse_format 'csr')  shape (30, 8)  nnz 60"),
        "{t}"
    );
    assert!(t.contains("contiguous"), "{t}");
    let e = atlasnorm_store::inspect::inspect(&dir.path().join("missing.h5ad")).unwrap_err();
    assert!(e.to_string().contains("no such file"), "{e}");
}
