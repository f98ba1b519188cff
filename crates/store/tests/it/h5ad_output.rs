//! The output: every element but the normalized one copied exactly (checked with h5py),
//! the new matrix, obs columns and uns/log1p as anndata reads them.

use atlasnorm_testkit::python as h5ad_common;

use std::path::Path;

use atlasnorm_core::engine::uns_log1p;
use atlasnorm_store::array::{DType, NumVec};
use atlasnorm_store::store::h5ad::{H5adInput, H5adOutput};
use atlasnorm_store::store::{
    ElementPath, InputStore, MatrixLayout, OutputLayout, OutputMatrixSpec, OutputStore,
    SparseStructure,
};
use h5ad_common::{run_py, s, tempdir, PY_MATRIX};

const MAKE: &str = r#"
import sys, os, numpy as np, scipy.sparse as sp, pandas as pd, anndata as ad, h5py
out = sys.argv[1]
M = matrix(37, 23)
rng = np.random.default_rng(0)
def rich(log1p=None):
    obs = pd.DataFrame({
        "n_genes": np.arange(37, dtype="int64"),
        "score": rng.normal(size=37),
        "batch": pd.Categorical(["a", "b", "c"] * 12 + ["a"]),
        "label": [f"l{i % 4}" for i in range(37)],
        "flag": np.arange(37) % 2 == 0,
        "nint": pd.array([1, None] * 18 + [3], dtype="Int32"),
    }, index=[f"cell{i}" for i in range(37)])
    var = pd.DataFrame({"gene_ids": [f"ENSG{j}" for j in range(23)], "mean": rng.normal(size=23)},
                       index=[f"gene{j}" for j in range(23)])
    a = ad.AnnData(X=sp.csr_matrix(M.astype("float32")), obs=obs, var=var)
    a.layers["counts"] = sp.csr_matrix(M.astype("int32"))
    a.layers["dense"] = M.astype("float64")
    a.obsm["X_pca"] = rng.normal(size=(37, 5)).astype("float32")
    a.obsm["sp"] = sp.random(37, 4, density=0.3, format="csr", random_state=1)
    a.varm["loadings"] = rng.normal(size=(23, 3))
    a.obsp["connectivities"] = sp.random(37, 37, density=0.1, format="csr", random_state=2)
    a.varp["corr"] = sp.random(23, 23, density=0.1, format="csc", random_state=3)
    a.uns["nested"] = {"s": "text", "arr": np.arange(4), "n": 3.5, "none": None, "strs": np.array(["x", "y"])}
    a.uns["colors"] = ["red", "blue"]
    if log1p is not None:
        a.uns["log1p"] = log1p
    a.raw = a.copy()
    return a
rich().write_h5ad(os.path.join(out, "rich.h5ad"))
rich({"base": 10}).write_h5ad(os.path.join(out, "rich_gz.h5ad"), compression="gzip")
# dense X with chunks and filters, no obs columns, no uns
a = ad.AnnData(X=M.astype("float32"), obs=pd.DataFrame(index=[f"c{i}" for i in range(37)]),
               var=pd.DataFrame(index=[f"g{j}" for j in range(23)]))
p = os.path.join(out, "dense.h5ad")
a.write_h5ad(p)
with h5py.File(p, "r+") as f:
    v = f["X"][()]; del f["X"]
    d = f.create_dataset("X", data=v, chunks=(8, 23), compression="gzip", compression_opts=2, shuffle=True)
    d.attrs["encoding-type"] = "array"; d.attrs["encoding-version"] = "0.2.0"
    del f["uns"]
# csc X with lzf
a = ad.AnnData(X=sp.csc_matrix(M.astype("float32")), obs=pd.DataFrame(index=[f"c{i}" for i in range(37)]),
               var=pd.DataFrame(index=[f"g{j}" for j in range(23)]))
a.write_h5ad(os.path.join(out, "csc_lzf.h5ad"), compression="lzf")
"#;

/// Compares input and output with h5py: everything but `skip` (and obs's `column-order`,
/// and `uns/log1p`) must be identical: values, dtypes, attributes, chunks, filters.
const COMPARE: &str = r#"
import sys, numpy as np, h5py
inp, outp, skip = sys.argv[1], sys.argv[2], set(sys.argv[3].split(","))
diffs = []
def same_attrs(a, b, name):
    ka, kb = set(a.attrs), set(b.attrs)
    if name == "obs": ka.discard("column-order"); kb.discard("column-order")
    if ka != kb: diffs.append(f"{name}: attrs {ka} != {kb}")
    for k in ka & kb:
        va, vb = a.attrs[k], b.attrs[k]
        if type(va) != type(vb) or not np.array_equal(np.asarray(va), np.asarray(vb)):
            diffs.append(f"{name}: attr {k} {va!r} != {vb!r}")
        ta, tb = a.attrs.get_id(k).get_type(), b.attrs.get_id(k).get_type()
        if ta.get_class() != tb.get_class() or a.attrs.get_id(k).shape != b.attrs.get_id(k).shape:
            diffs.append(f"{name}: attr {k} type/shape differs")
with h5py.File(inp, "r") as fi, h5py.File(outp, "r") as fo:
    same_attrs(fi, fo, "/")
    def visit(name, obj):
        if name in skip or any(name.startswith(p + "/") for p in skip): return
        if name == "uns/log1p" or name.startswith("uns/log1p/"): return
        if name not in fo: diffs.append(f"{name}: missing"); return
        o = fo[name]
        same_attrs(obj, o, name)
        if isinstance(obj, h5py.Dataset):
            if not isinstance(o, h5py.Dataset): diffs.append(f"{name}: not a dataset"); return
            for prop in ["shape", "dtype", "chunks", "compression", "compression_opts", "shuffle", "maxshape"]:
                if getattr(obj, prop) != getattr(o, prop): diffs.append(f"{name}: {prop} {getattr(obj, prop)} != {getattr(o, prop)}")
            if obj.shape is not None and not np.array_equal(obj[()], o[()]): diffs.append(f"{name}: values differ")
        elif not isinstance(o, h5py.Group): diffs.append(f"{name}: not a group")
    fi.visititems(visit)
    def extra(name, obj):
        if name in skip or any(name.startswith(p + "/") for p in skip): return
        if name.startswith("uns/log1p") or name.startswith("obs/"): return
        if name not in fi: diffs.append(f"{name}: extra in output")
    fo.visititems(extra)
print("\n".join(diffs) if diffs else "SAME")
"#;

fn compare(input: &Path, output: &Path, skip: &str) {
    let r = run_py(COMPARE, &[s(input), s(output), skip]);
    assert_eq!(r.trim(), "SAME", "differences:\n{r}");
}

/// Streams a sparse input element into the sink, data times `factor`, in blocks of rows.
fn stream_sparse(
    input: &H5adInput,
    element: &ElementPath,
    out: &mut H5adOutput,
    dtype: DType,
    structure: SparseStructure,
    factor: f64,
) {
    let src = input.open_matrix(element).unwrap();
    let src = src.sparse().expect("a sparse matrix");
    let m = src.meta().clone();
    assert_eq!(m.layout, MatrixLayout::Csr);
    let spec = OutputMatrixSpec {
        layout: OutputLayout::Csr,
        n_obs: m.n_obs,
        n_vars: m.n_vars,
        nnz: m.nnz,
        data_dtype: dtype,
        structure,
    };
    let mut sink = out.create_matrix(element, &spec).unwrap();
    let indptr = src.read_indptr(0..m.n_obs + 1).unwrap();
    if let SparseStructure::Write { .. } = structure {
        sink.append_indptr(&indptr[..1]).unwrap();
    }
    let mut r = 0;
    while r < m.n_obs {
        let end = (r + 4).min(m.n_obs);
        let (lo, hi) = (indptr[r as usize] as u64, indptr[end as usize] as u64);
        let vals = src.read_data(lo..hi).unwrap().to_f64();
        let vals: Vec<f64> = vals.into_iter().map(|x| x * factor).collect();
        let vals = match dtype {
            DType::F32 => NumVec::F32(vals.iter().map(|&x| x as f32).collect()),
            _ => NumVec::F64(vals),
        };
        sink.append_data(&vals).unwrap();
        if let SparseStructure::Write { .. } = structure {
            let idx = src.read_indices(lo..hi).unwrap().to_i64().unwrap();
            sink.append_indices(&idx).unwrap();
            sink.append_indptr(&indptr[r as usize + 1..=end as usize])
                .unwrap();
        }
        r = end;
    }
    sink.finish().unwrap();
}

#[test]
fn csr_x_with_copied_structure_obs_column_and_null_log1p() {
    let dir = tempdir();
    let d = dir.path();
    run_py(&format!("{PY_MATRIX}{MAKE}"), &[s(d)]);
    for name in ["rich.h5ad", "rich_gz.h5ad"] {
        let inp = d.join(name);
        let outp = d.join(format!("out_{name}"));
        let input = H5adInput::open(&inp).unwrap();
        let mut out = H5adOutput::create(&input, &outp, &ElementPath::X).unwrap();
        stream_sparse(
            &input,
            &ElementPath::X,
            &mut out,
            DType::F32,
            SparseStructure::CopyFromInput,
            2.0,
        );
        let factors: Vec<f64> = (0..37).map(|i| i as f64 / 4.0).collect();
        out.write_obs_column("size_factor", &NumVec::F64(factors))
            .unwrap();
        out.write_uns("log1p", &uns_log1p(None)).unwrap();
        Box::new(out).commit().unwrap();
        compare(&inp, &outp, "X/data");
        let r = run_py(
            r#"
import sys, numpy as np, anndata as ad, h5py
a = ad.read_h5ad(sys.argv[1]); b = ad.read_h5ad(sys.argv[2])
assert list(b.obs.columns) == list(a.obs.columns) + ["size_factor"], b.obs.columns
assert np.array_equal(b.obs["size_factor"].to_numpy(), np.arange(37) / 4.0)
assert b.obs["size_factor"].dtype == np.float64
assert b.uns["log1p"] == {"base": None}, b.uns["log1p"]
assert b.X.dtype == np.float32 and b.X.format == "csr"
assert np.array_equal(b.X.toarray(), a.X.toarray() * 2)
assert np.array_equal(b.X.indptr, a.X.indptr) and np.array_equal(b.X.indices, a.X.indices)
dense = lambda x: np.asarray(x.todense()) if hasattr(x, "todense") else np.asarray(x)
for k in [k for k in a.layers.keys() if k is not None]: assert np.array_equal(dense(a.layers[k]), dense(b.layers[k])), (k, dense(a.layers[k])[:2], dense(b.layers[k])[:2])
assert b.raw is not None and np.array_equal(b.raw.X.toarray(), a.raw.X.toarray())
assert b.uns["nested"]["s"] == "text" and b.uns["nested"]["none"] is None
with h5py.File(sys.argv[2]) as f, h5py.File(sys.argv[1]) as g:
    d, e = f["X/data"], g["X/data"]
    assert (d.chunks, d.compression, d.compression_opts, d.shuffle) == (e.chunks, e.compression, e.compression_opts, e.shuffle)
    n = f["uns/log1p/base"]
    assert n.shape is None and dict(n.attrs) == {"encoding-type": "null", "encoding-version": "0.1.0"}
    assert f["X"].attrs["shape"].dtype == np.int64
    for k in ["encoding-type", "encoding-version"]:
        t = f["X"].attrs.get_id(k).get_type(); assert t.is_variable_str() and t.get_cset() == 1
        assert f["obs/size_factor"].attrs[k] == {"encoding-type": "array", "encoding-version": "0.2.0"}[k]
print("OK")
"#,
            &[s(&inp), s(&outp)],
        );
        assert_eq!(r.trim(), "OK");
    }
}

#[test]
fn layer_with_written_structure_replaced_column_and_numeric_log1p() {
    let dir = tempdir();
    let d = dir.path();
    run_py(&format!("{PY_MATRIX}{MAKE}"), &[s(d)]);
    let inp = d.join("rich_gz.h5ad");
    let outp = d.join("out.h5ad");
    let input = H5adInput::open(&inp).unwrap();
    let layer = ElementPath::Layer("counts".into());
    let mut out = H5adOutput::create(&input, &outp, &layer).unwrap();
    stream_sparse(
        &input,
        &layer,
        &mut out,
        DType::F64,
        SparseStructure::Write {
            indices: DType::I32,
            indptr: DType::I64,
        },
        0.5,
    );
    out.write_obs_column("score", &NumVec::F32(vec![1.5; 37]))
        .unwrap();
    out.write_obs_column("batch", &NumVec::F64(vec![2.0; 37]))
        .unwrap();
    out.write_uns("log1p", &uns_log1p(Some(2.0))).unwrap();
    Box::new(out).commit().unwrap();
    compare(&inp, &outp, "layers/counts,obs/score,obs/batch");
    let r = run_py(
        r#"
import sys, numpy as np, anndata as ad, h5py
a = ad.read_h5ad(sys.argv[1]); b = ad.read_h5ad(sys.argv[2])
assert list(b.obs.columns) == list(a.obs.columns), b.obs.columns
assert np.array_equal(b.obs["score"].to_numpy(), np.full(37, 1.5, dtype=np.float32)) and b.obs["score"].dtype == np.float32
assert np.array_equal(b.obs["batch"].to_numpy(), np.full(37, 2.0))
assert b.uns["log1p"] == {"base": 2.0}, b.uns["log1p"]
c = b.layers["counts"]
assert c.dtype == np.float64 and c.format == "csr"
assert np.array_equal(c.toarray(), a.layers["counts"].toarray() * 0.5)
assert np.array_equal(b.X.toarray(), a.X.toarray())
with h5py.File(sys.argv[2]) as f, h5py.File(sys.argv[1]) as g:
    assert f["layers/counts/indptr"].dtype == np.int64 and f["layers/counts/indices"].dtype == np.int32
    assert f["layers/counts/data"].compression == "gzip" and f["layers/counts/data"].chunks == g["layers/counts/data"].chunks
    n = f["uns/log1p/base"]
    assert n.shape == () and n.dtype == np.float64 and n.attrs["encoding-type"] == "numeric-scalar" and n.attrs["encoding-version"] == "0.2.0"
print("OK")
"#,
        &[s(&inp), s(&outp)],
    );
    assert_eq!(r.trim(), "OK");
}

#[test]
fn dense_x_no_columns_no_uns() {
    let dir = tempdir();
    let d = dir.path();
    run_py(&format!("{PY_MATRIX}{MAKE}"), &[s(d)]);
    let inp = d.join("dense.h5ad");
    let outp = d.join("out.h5ad");
    let input = H5adInput::open(&inp).unwrap();
    let opened = input.open_matrix(&ElementPath::X).unwrap();
    let src = opened.dense().expect("a dense matrix");
    let m = src.meta().clone();
    assert_eq!(m.layout, MatrixLayout::Dense);
    let mut out = H5adOutput::create(&input, &outp, &ElementPath::X).unwrap();
    let spec = OutputMatrixSpec {
        layout: OutputLayout::Dense,
        n_obs: m.n_obs,
        n_vars: m.n_vars,
        nnz: m.n_obs * m.n_vars,
        data_dtype: DType::F32,
        structure: SparseStructure::CopyFromInput,
    };
    {
        let mut sink = out.create_matrix(&ElementPath::X, &spec).unwrap();
        // odd block sizes: 3 rows at a time, then the rest
        let mut r = 0;
        while r < m.n_obs {
            let end = (r + 3).min(m.n_obs);
            let v: Vec<f32> = src
                .read_rows(r..end)
                .unwrap()
                .to_f32()
                .iter()
                .map(|x| x + 1.0)
                .collect();
            sink.append_data(&NumVec::F32(v)).unwrap();
            r = end;
        }
        sink.finish().unwrap();
    }
    drop(opened);
    out.write_obs_column("f", &NumVec::F64(vec![0.25; 37]))
        .unwrap();
    out.write_uns("log1p", &uns_log1p(None)).unwrap();
    Box::new(out).commit().unwrap();
    compare(&inp, &outp, "X,uns");
    let r = run_py(
        r#"
import sys, numpy as np, anndata as ad, h5py
a = ad.read_h5ad(sys.argv[1]); b = ad.read_h5ad(sys.argv[2])
assert list(b.obs.columns) == ["f"], b.obs.columns
assert isinstance(b.X, np.ndarray) and b.X.dtype == np.float32
assert np.array_equal(b.X, a.X + 1)
assert b.uns["log1p"] == {"base": None}
with h5py.File(sys.argv[2]) as f:
    x = f["X"]
    assert (x.chunks, x.compression, x.compression_opts, x.shuffle) == ((8, 23), "gzip", 2, True), (x.chunks, x.compression)
    assert dict(f["uns"].attrs) == {"encoding-type": "dict", "encoding-version": "0.1.0"}
print("OK")
"#,
        &[s(&inp), s(&outp)],
    );
    assert_eq!(r.trim(), "OK");
}

#[test]
fn csc_input_to_csr_output() {
    let dir = tempdir();
    let d = dir.path();
    run_py(&format!("{PY_MATRIX}{MAKE}"), &[s(d)]);
    let inp = d.join("csc_lzf.h5ad");
    let outp = d.join("out.h5ad");
    let input = H5adInput::open(&inp).unwrap();
    let opened = input.open_matrix(&ElementPath::X).unwrap();
    let src = opened.sparse().expect("a sparse matrix");
    let m = src.meta().clone();
    assert_eq!(m.layout, MatrixLayout::Csc);
    // transpose in memory (small test) and write CSR
    let colptr = src.read_indptr(0..m.n_vars + 1).unwrap();
    let rows = src.read_indices(0..m.nnz).unwrap().to_i64().unwrap();
    let vals = src.read_data(0..m.nnz).unwrap().to_f32();
    let mut dense = vec![0f32; (m.n_obs * m.n_vars) as usize];
    for j in 0..m.n_vars as usize {
        for k in colptr[j] as usize..colptr[j + 1] as usize {
            dense[rows[k] as usize * m.n_vars as usize + j] = vals[k];
        }
    }
    drop(opened);
    let mut out = H5adOutput::create(&input, &outp, &ElementPath::X).unwrap();
    let spec = OutputMatrixSpec {
        layout: OutputLayout::Csr,
        n_obs: m.n_obs,
        n_vars: m.n_vars,
        nnz: m.nnz,
        data_dtype: DType::F32,
        structure: SparseStructure::Write {
            indices: DType::I32,
            indptr: DType::I32,
        },
    };
    let mut sink = out.create_matrix(&ElementPath::X, &spec).unwrap();
    let mut ptr = vec![0i64];
    for i in 0..m.n_obs as usize {
        let mut idx = Vec::new();
        let mut v = Vec::new();
        for j in 0..m.n_vars as usize {
            let x = dense[i * m.n_vars as usize + j];
            if x != 0.0 {
                idx.push(j as i64);
                v.push(x);
            }
        }
        ptr.push(ptr.last().unwrap() + idx.len() as i64);
        sink.append_indices(&idx).unwrap();
        sink.append_data(&NumVec::F32(v)).unwrap();
    }
    sink.append_indptr(&ptr).unwrap();
    // wrong dtype is refused
    assert!(sink.append_data(&NumVec::F64(vec![])).is_err());
    sink.finish().unwrap();
    Box::new(out).commit().unwrap();
    compare(&inp, &outp, "X");
    let r = run_py(
        r#"
import sys, numpy as np, anndata as ad, h5py
a = ad.read_h5ad(sys.argv[1]); b = ad.read_h5ad(sys.argv[2])
assert b.X.format == "csr" and np.array_equal(b.X.toarray(), a.X.toarray())
with h5py.File(sys.argv[2]) as f:
    assert f["X/data"].compression == "lzf" and f["X/indices"].compression == "lzf"
    assert f["X"].attrs["encoding-type"] == "csr_matrix"
print("OK")
"#,
        &[s(&inp), s(&outp)],
    );
    assert_eq!(r.trim(), "OK");
}
