//! Reading X and layers of every supported encoding, dtype and filter back with the right
//! values (inputs written by anndata/h5py).

use atlasnorm_testkit::python as h5ad_common;

use std::path::Path;

use atlasnorm_store::array::DType;
use atlasnorm_store::store::h5ad::H5adInput;
use atlasnorm_store::store::{open_input, ElementPath, InputStore, MatrixLayout, MatrixSource};
use h5ad_common::{run_py, s, tempdir, value, PY_MATRIX};

const N_OBS: u64 = 37;
const N_VARS: u64 = 23;

const MAKE: &str = r#"
import sys, os, numpy as np, scipy.sparse as sp, pandas as pd, anndata as ad, h5py
out = sys.argv[1]
M = matrix(37, 23)
obs = pd.DataFrame(index=[f"cell{i}" for i in range(37)])
var = pd.DataFrame(index=[f"gene{j}" for j in range(23)])
def write(name, X, **kw):
    a = ad.AnnData(X=X, obs=obs.copy(), var=var.copy())
    a.write_h5ad(os.path.join(out, name), **kw)
for dt in ["float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]:
    write(f"csr_{dt}.h5ad", sp.csr_matrix(M.astype(dt)))
write("csc_float32.h5ad", sp.csc_matrix(M.astype("float32")))
write("dense_float32.h5ad", M.astype("float32"))
write("dense_int64.h5ad", M.astype("int64"))
write("csr_gzip.h5ad", sp.csr_matrix(M.astype("float32")), compression="gzip")
write("csr_lzf.h5ad", sp.csr_matrix(M.astype("float32")), compression="lzf")
write("csc_gzip.h5ad", sp.csc_matrix(M.astype("float64")), compression="gzip")
write("dense_gzip.h5ad", M.astype("float64"), compression="gzip")
# a layer
a = ad.AnnData(X=sp.csr_matrix(M.astype("float32")), obs=obs.copy(), var=var.copy())
a.layers["counts"] = sp.csr_matrix(M.astype("int32"))
a.write_h5ad(os.path.join(out, "layer_int32.h5ad"))
# h5py-made variants of the members of X
def variant(name, base, fn):
    import shutil
    p = os.path.join(out, name)
    shutil.copy(os.path.join(out, base), p)
    with h5py.File(p, "r+") as f:
        fn(f)
def redo(f, member, dtype=None, **kw):
    v = f["X"][member][()]
    del f["X"][member]
    f["X"].create_dataset(member, data=v.astype(dtype) if dtype else v, **kw)
variant("csr_shuffle_gzip_smallchunks.h5ad", "csr_float32.h5ad", lambda f: [
    redo(f, "data", chunks=(10,), shuffle=True, compression="gzip", compression_opts=6),
    redo(f, "indices", "uint16", chunks=(7,), compression="lzf"),
    redo(f, "indptr", "int64", chunks=(5,), shuffle=True, compression="gzip")])
variant("csr_contiguous.h5ad", "csr_float64.h5ad", lambda f: [
    redo(f, "data"), redo(f, "indices", "uint32"), redo(f, "indptr", "uint64")])
def dense_chunked(f):
    v = f["X"][()]
    del f["X"]
    d = f.create_dataset("X", data=v, chunks=(4, 5), compression="gzip", shuffle=True)
    d.attrs["encoding-type"] = "array"; d.attrs["encoding-version"] = "0.2.0"
variant("dense_chunked.h5ad", "dense_float32.h5ad", dense_chunked)
def legacy(f):
    g = f["X"]
    shape = g.attrs["shape"]
    for k in list(g.attrs): del g.attrs[k]
    g.attrs["h5sparse_format"] = "csr"
    g.attrs["h5sparse_shape"] = shape
    # pre-0.7 obs/var: record arrays whose first field is the index
    for name, n, prefix in [("obs", 37, "cell"), ("var", 23, "gene")]:
        del f[name]
        rec = np.array([(f"{prefix}{i}".encode(), i) for i in range(n)], dtype=[("index", "S10"), ("n", "i8")])
        f.create_dataset(name, data=rec)
    for k in list(f.attrs): del f.attrs[k]
variant("legacy_csr.h5ad", "csr_float32.h5ad", legacy)
def string_index(f):
    for name in ["obs", "var"]:
        vals = f[name]["_index"]["values"][()]
        del f[name]["_index"]
        d = f[name].create_dataset("_index", data=vals, dtype=h5py.string_dtype())
        d.attrs["encoding-type"] = "string-array"; d.attrs["encoding-version"] = "0.2.0"
variant("string_array_index.h5ad", "csr_float32.h5ad", string_index)
def categorical_index(f):
    vals = f["var"]["_index"]["values"][()]
    del f["var"]["_index"]
    g = f["var"].create_group("_index")
    g.attrs["encoding-type"] = "categorical"; g.attrs["encoding-version"] = "0.2.0"; g.attrs["ordered"] = False
    g.create_dataset("categories", data=vals[::-1], dtype=h5py.string_dtype())
    g.create_dataset("codes", data=np.arange(len(vals))[::-1].astype("int8"))
variant("categorical_index.h5ad", "csr_float32.h5ad", categorical_index)
"#;

fn make_inputs(dir: &Path) {
    run_py(&format!("{PY_MATRIX}{MAKE}"), &[s(dir)]);
}

/// Reads the whole matrix into a dense f64 vector, in blocks of a few rows/columns.
fn read_dense(src: &MatrixSource) -> Vec<f64> {
    let m = src.meta().clone();
    let (n, v) = (m.n_obs as usize, m.n_vars as usize);
    let mut out = vec![0.0; n * v];
    match src {
        MatrixSource::Dense(src) => {
            let mut r = 0;
            while r < m.n_obs {
                let end = (r + 6).min(m.n_obs);
                let vals = src.read_rows(r..end).unwrap();
                assert_eq!(vals.dtype(), m.data_dtype);
                for (k, x) in vals.to_f64().into_iter().enumerate() {
                    out[r as usize * v + k] = x;
                }
                r = end;
            }
        }
        MatrixSource::Sparse(src) => {
            let major = if m.layout == MatrixLayout::Csr {
                m.n_obs
            } else {
                m.n_vars
            };
            let indptr = src.read_indptr(0..major + 1).unwrap();
            assert_eq!(*indptr.last().unwrap() as u64, m.nnz);
            let mut a = 0u64;
            while a < major {
                let b = (a + 5).min(major);
                // indptr in pieces too
                let piece = src.read_indptr(a..b + 1).unwrap();
                assert_eq!(&piece[..], &indptr[a as usize..=b as usize]);
                let (lo, hi) = (indptr[a as usize] as u64, indptr[b as usize] as u64);
                let idx = src.read_indices(lo..hi).unwrap();
                assert_eq!(Some(idx.dtype()), m.indices_dtype);
                let idx = idx.to_i64().unwrap();
                let data = src.read_data(lo..hi).unwrap();
                assert_eq!(data.dtype(), m.data_dtype);
                let data = data.to_f64();
                for row in a..b {
                    for k in indptr[row as usize] as u64..indptr[row as usize + 1] as u64 {
                        let (i, j) = if m.layout == MatrixLayout::Csr {
                            (row as usize, idx[(k - lo) as usize] as usize)
                        } else {
                            (idx[(k - lo) as usize] as usize, row as usize)
                        };
                        out[i * v + j] = data[(k - lo) as usize];
                    }
                }
                a = b;
            }
        }
    }
    out
}

fn expected() -> Vec<f64> {
    let mut e = Vec::new();
    for i in 0..N_OBS {
        for j in 0..N_VARS {
            e.push(value(i, j));
        }
    }
    e
}

fn check(dir: &Path, name: &str, element: ElementPath, layout: MatrixLayout, dtype: DType) {
    let input = open_input(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let src = input
        .open_matrix(&element)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let m = src.meta();
    assert_eq!(m.layout, layout, "{name}");
    assert_eq!(m.data_dtype, dtype, "{name}");
    assert_eq!((m.n_obs, m.n_vars), (N_OBS, N_VARS), "{name}");
    let dense = read_dense(&src);
    let exp = expected();
    if layout != MatrixLayout::Dense {
        assert_eq!(
            m.nnz,
            exp.iter().filter(|x| **x != 0.0).count() as u64,
            "{name}"
        );
    }
    assert_eq!(dense, exp, "{name}: values differ");
}

#[test]
fn every_encoding_dtype_and_filter_reads_back() {
    let dir = tempdir();
    make_inputs(dir.path());
    let d = dir.path();
    use DType::*;
    for (dt, t) in [
        ("float32", F32),
        ("float64", F64),
        ("int8", I8),
        ("int16", I16),
        ("int32", I32),
        ("int64", I64),
        ("uint8", U8),
        ("uint16", U16),
        ("uint32", U32),
        ("uint64", U64),
    ] {
        check(
            d,
            &format!("csr_{dt}.h5ad"),
            ElementPath::X,
            MatrixLayout::Csr,
            t,
        );
    }
    check(
        d,
        "csc_float32.h5ad",
        ElementPath::X,
        MatrixLayout::Csc,
        F32,
    );
    check(
        d,
        "dense_float32.h5ad",
        ElementPath::X,
        MatrixLayout::Dense,
        F32,
    );
    check(
        d,
        "dense_int64.h5ad",
        ElementPath::X,
        MatrixLayout::Dense,
        I64,
    );
    check(d, "csr_gzip.h5ad", ElementPath::X, MatrixLayout::Csr, F32);
    check(d, "csr_lzf.h5ad", ElementPath::X, MatrixLayout::Csr, F32);
    check(d, "csc_gzip.h5ad", ElementPath::X, MatrixLayout::Csc, F64);
    check(
        d,
        "dense_gzip.h5ad",
        ElementPath::X,
        MatrixLayout::Dense,
        F64,
    );
    check(
        d,
        "dense_chunked.h5ad",
        ElementPath::X,
        MatrixLayout::Dense,
        F32,
    );
    check(
        d,
        "csr_shuffle_gzip_smallchunks.h5ad",
        ElementPath::X,
        MatrixLayout::Csr,
        F32,
    );
    check(
        d,
        "csr_contiguous.h5ad",
        ElementPath::X,
        MatrixLayout::Csr,
        F64,
    );
    check(d, "legacy_csr.h5ad", ElementPath::X, MatrixLayout::Csr, F32);
    check(
        d,
        "layer_int32.h5ad",
        ElementPath::Layer("counts".into()),
        MatrixLayout::Csr,
        I32,
    );

    // index dtypes as stored
    let input = open_input(&d.join("csr_shuffle_gzip_smallchunks.h5ad")).unwrap();
    let src = input.open_matrix(&ElementPath::X).unwrap();
    assert_eq!(src.meta().indices_dtype, Some(U16));
    assert_eq!(src.meta().indptr_dtype, Some(I64));
    let input = open_input(&d.join("csr_contiguous.h5ad")).unwrap();
    let MatrixSource::Sparse(src) = input.open_matrix(&ElementPath::X).unwrap() else {
        panic!("a CSR matrix opened as dense");
    };
    assert_eq!(src.meta().indices_dtype, Some(U32));
    assert_eq!(src.meta().indptr_dtype, Some(U64));
    // out-of-range reads are errors naming the member
    let e = src.read_data(0..10_000).unwrap_err().to_string();
    assert!(e.contains("X/data"), "{e}");
    // empty ranges
    assert!(src.read_data(5..5).unwrap().is_empty());
}

#[test]
fn var_names_and_uns_log1p() {
    let dir = tempdir();
    make_inputs(dir.path());
    let d = dir.path();
    for name in [
        "csr_float32.h5ad",
        "string_array_index.h5ad",
        "legacy_csr.h5ad",
        "categorical_index.h5ad",
    ] {
        let input = H5adInput::open(&d.join(name)).unwrap();
        assert_eq!(
            input.var_names(&[0, 5, 22]).unwrap(),
            vec!["gene0", "gene5", "gene22"],
            "{name}"
        );
        assert_eq!(input.n_obs(), Some(N_OBS), "{name}");
        assert_eq!(input.n_vars(), Some(N_VARS), "{name}");
        assert!(!input.has_uns("log1p").unwrap());
        let e = input.var_names(&[23]).unwrap_err().to_string();
        assert!(e.contains("var"), "{e}");
    }
    let p = d.join("with_log1p.h5ad");
    run_py(
        "import anndata as ad, numpy as np, sys\n\
         a = ad.AnnData(X=np.ones((2, 3), dtype='float32'))\n\
         a.uns['log1p'] = {'base': None}\n\
         a.write_h5ad(sys.argv[1])",
        &[s(&p)],
    );
    assert!(H5adInput::open(&p).unwrap().has_uns("log1p").unwrap());
}
