//! One contract, every backend (zarrs' `store_test` is the model): the same count matrix
//! written by real anndata as `.h5ad`, zarr v3 and zarr v2 (CSR `X`, a dense layer, a CSC
//! float64 layer, an int32 CSR layer), by hand as a 10x matrix directory, and held by the
//! in-memory backend, is opened through [`InputStore::open_matrix`] and read through the
//! sparse or dense source it comes back as. Every source must give the same meta, the same
//! values for any range as for one whole read, the same through the reusing `_into` reads
//! (whatever the buffer held), empty reads of empty ranges, and an error (never a panic)
//! for a range past the end.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use atlasnorm_core::memory::{MemoryInput, MemoryMatrix};
use atlasnorm_store::array::{DType, NumVec};
use atlasnorm_store::store::tenx::{TenxInput, TenxOptions};
use atlasnorm_store::store::{
    open_input, DenseSource, ElementPath, InputStore, MatrixLayout, MatrixMeta, MatrixSource,
    SparseSource,
};
use atlasnorm_testkit::python::{run_py, s};

const N_OBS: usize = 61;
const N_VARS: usize = 37;

/// Writes the inputs and the truth (`truth.f64`: the dense matrix, row-major).
const MAKE: &str = r#"
import sys, numpy as np, scipy.sparse as sp, anndata as ad, scipy.io
d = sys.argv[1]
rng = np.random.default_rng(20261203)
x = rng.integers(1, 50, size=(61, 37)).astype(np.float64)
x[rng.random((61, 37)) < 0.7] = 0
x[[3, 4, 40, 60]] = 0   # empty rows, the last one too
x.tofile(f"{d}/truth.f64")
a = ad.AnnData(sp.csr_matrix(x.astype(np.float32)))
a.layers["dense"] = x.astype(np.float32)
a.layers["csc"] = sp.csc_matrix(x)
a.layers["counts"] = sp.csr_matrix(x.astype(np.int32))
a.write_h5ad(f"{d}/m.h5ad")
a.write_zarr(f"{d}/v3.zarr")
ad.settings.zarr_write_format = 2
a.write_zarr(f"{d}/v2.zarr")
import os
os.makedirs(f"{d}/tenx")
scipy.io.mmwrite(f"{d}/tenx/matrix.mtx", sp.coo_matrix(x.T.astype(np.int64)), field="integer")
with open(f"{d}/tenx/genes.tsv", "w") as f:
    f.writelines(f"ENSG{j}\tgene{j}\n" for j in range(37))
with open(f"{d}/tenx/barcodes.tsv", "w") as f:
    f.writelines(f"cell{i}-1\n" for i in range(61))
# Cell Ranger 3: gzipped, with feature types; scanpy keeps the "Gene Expression" ones.
import gzip
os.makedirs(f"{d}/tenx3")
antibody = {5, 11, 12, 30}
keep = [j for j in range(37) if j not in antibody]
x[:, keep].tofile(f"{d}/truth_gex.f64")
with gzip.open(f"{d}/tenx3/matrix.mtx.gz", "wb") as f:
    scipy.io.mmwrite(f, sp.coo_matrix(x.T.astype(np.int64)), field="integer")
with gzip.open(f"{d}/tenx3/features.tsv.gz", "wt") as f:
    f.writelines(f"ENSG{j}\tgene{j}\t{'Antibody Capture' if j in antibody else 'Gene Expression'}\n"
                 for j in range(37))
with gzip.open(f"{d}/tenx3/barcodes.tsv.gz", "wt") as f:
    f.writelines(f"cell{i}-1\n" for i in range(61))
print("ok")
"#;

fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("source_conformance");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(run_py(MAKE, &[s(&dir)]).contains("ok"));
        dir
    })
}

fn truth() -> Vec<f64> {
    read_f64("truth.f64")
}

fn read_f64(name: &str) -> Vec<f64> {
    let bytes = std::fs::read(dir().join(name)).unwrap();
    bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// The truth as the in-memory backend holds it: CSR float32 (as anndata's X).
fn memory_input() -> MemoryInput {
    let t = truth();
    let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::new());
    for i in 0..N_OBS {
        for j in 0..N_VARS {
            let v = t[i * N_VARS + j];
            if v != 0.0 {
                indices.push(j as i64);
                data.push(v as f32);
            }
        }
        indptr.push(indices.len() as i64);
    }
    MemoryInput {
        path: "memory".into(),
        matrix: MemoryMatrix {
            meta: MatrixMeta {
                layout: MatrixLayout::Csr,
                n_obs: N_OBS as u64,
                n_vars: N_VARS as u64,
                data_dtype: DType::F32,
                nnz: data.len() as u64,
                indices_dtype: Some(DType::I64),
                indptr_dtype: Some(DType::I64),
            },
            indptr,
            indices,
            data: NumVec::F32(data),
        },
    }
}

/// Ranges of `0..len` a reader might ask for: empty ones, single elements at both ends,
/// pieces of a few sizes, and the whole.
fn ranges(len: u64) -> Vec<std::ops::Range<u64>> {
    let mut r = vec![0..0, len..len, 0..len];
    if len > 0 {
        r.extend([0..1, len - 1..len]);
    }
    for step in [1, 7, 50] {
        let mut a = 0;
        while a < len {
            let b = (a + step).min(len);
            r.push(a..b);
            a = b + step / 2;
        }
    }
    r
}

/// Bits of a buffer with its dtype, so that a changed dtype or value shows.
fn bits(v: &NumVec) -> (DType, Vec<u64>) {
    let bits = match v {
        NumVec::F32(x) => x.iter().map(|f| u64::from(f.to_bits())).collect(),
        NumVec::F64(x) => x.iter().map(|f| f.to_bits()).collect(),
        other => other
            .clone()
            .to_i64()
            .unwrap()
            .iter()
            .map(|&i| i as u64)
            .collect(),
    };
    (v.dtype(), bits)
}

fn garbage() -> NumVec {
    NumVec::I16(vec![7; 13])
}

/// The sparse contract; returns the matrix, dense, as f64.
fn sparse_contract(name: &str, src: &dyn SparseSource) -> Vec<f64> {
    let m = src.meta().clone();
    let major = match m.layout {
        MatrixLayout::Csr => m.n_obs,
        MatrixLayout::Csc => m.n_vars,
        MatrixLayout::Dense => panic!("{name}: a dense matrix served as sparse"),
    };
    let indptr = src.read_indptr(0..major + 1).unwrap();
    assert_eq!(
        (indptr[0], *indptr.last().unwrap()),
        (0, m.nnz as i64),
        "{name}"
    );
    let data = src.read_data(0..m.nnz).unwrap();
    let indices = src.read_indices(0..m.nnz).unwrap();
    assert_eq!(data.dtype(), m.data_dtype, "{name}: data dtype");
    assert_eq!(
        Some(indices.dtype()),
        m.indices_dtype,
        "{name}: indices dtype"
    );
    let (data_bits, index_bits) = (bits(&data).1, bits(&indices).1);
    for r in ranges(major + 1) {
        let piece = src.read_indptr(r.clone()).unwrap();
        assert_eq!(
            piece,
            indptr[r.start as usize..r.end as usize],
            "{name}: indptr {r:?}"
        );
    }
    let (mut data_buf, mut index_buf) = (garbage(), garbage());
    for r in ranges(m.nnz) {
        let (lo, hi) = (r.start as usize, r.end as usize);
        let got = src.read_data(r.clone()).unwrap();
        assert_eq!(
            bits(&got),
            (m.data_dtype, data_bits[lo..hi].to_vec()),
            "{name}: data {r:?}"
        );
        src.read_data_into(r.clone(), &mut data_buf).unwrap();
        assert_eq!(bits(&data_buf), bits(&got), "{name}: data_into {r:?}");
        let got = src.read_indices(r.clone()).unwrap();
        assert_eq!(bits(&got).1, index_bits[lo..hi], "{name}: indices {r:?}");
        src.read_indices_into(r.clone(), &mut index_buf).unwrap();
        assert_eq!(bits(&index_buf), bits(&got), "{name}: indices_into {r:?}");
    }
    for past in [m.nnz..m.nnz + 1, 0..m.nnz + 5] {
        assert!(
            src.read_data(past.clone()).is_err(),
            "{name}: data {past:?}"
        );
        assert!(
            src.read_indices(past.clone()).is_err(),
            "{name}: indices {past:?}"
        );
    }
    assert!(
        src.read_indptr(0..major + 2).is_err(),
        "{name}: indptr past the end"
    );
    let (values, idx) = (data.to_f64(), indices.clone().to_i64().unwrap());
    let mut dense = vec![0.0; (m.n_obs * m.n_vars) as usize];
    for a in 0..major as usize {
        for k in indptr[a] as usize..indptr[a + 1] as usize {
            let (i, j) = match m.layout {
                MatrixLayout::Csr => (a, idx[k] as usize),
                _ => (idx[k] as usize, a),
            };
            dense[i * m.n_vars as usize + j] = values[k];
        }
    }
    dense
}

/// The dense contract; returns the matrix as f64.
fn dense_contract(name: &str, src: &dyn DenseSource) -> Vec<f64> {
    let m = src.meta().clone();
    assert_eq!(m.layout, MatrixLayout::Dense, "{name}");
    assert_eq!(m.nnz, m.n_obs * m.n_vars, "{name}");
    let all = src.read_rows(0..m.n_obs).unwrap();
    assert_eq!(all.dtype(), m.data_dtype, "{name}: dtype");
    let all_bits = bits(&all).1;
    let mut buf = garbage();
    let n = m.n_vars as usize;
    for r in ranges(m.n_obs) {
        let got = src.read_rows(r.clone()).unwrap();
        let want = all_bits[r.start as usize * n..r.end as usize * n].to_vec();
        assert_eq!(bits(&got), (m.data_dtype, want), "{name}: rows {r:?}");
        src.read_rows_into(r.clone(), &mut buf).unwrap();
        assert_eq!(bits(&buf), bits(&got), "{name}: rows_into {r:?}");
    }
    assert!(
        src.read_rows(m.n_obs..m.n_obs + 1).is_err(),
        "{name}: rows past the end"
    );
    all.to_f64()
}

/// Opens `element` of `input` and holds it to the contract of its kind.
fn conforms(name: &str, input: &dyn InputStore, element: ElementPath, layout: MatrixLayout) {
    conforms_to(name, input, element, layout, &truth());
}

/// [`conforms`], with `t` (`N_OBS` rows, row-major) the matrix the input holds.
fn conforms_to(
    name: &str,
    input: &dyn InputStore,
    element: ElementPath,
    layout: MatrixLayout,
    t: &[f64],
) {
    let name = format!("{name} {}", element.store_path());
    let opened = input
        .open_matrix(&element)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let m = opened.meta().clone();
    let n_vars = (t.len() / N_OBS) as u64;
    assert_eq!(
        (m.layout, m.n_obs, m.n_vars),
        (layout, N_OBS as u64, n_vars),
        "{name}"
    );
    let got = match &opened {
        MatrixSource::Sparse(src) => {
            assert_eq!(
                m.nnz,
                t.iter().filter(|v| **v != 0.0).count() as u64,
                "{name}: nnz"
            );
            sparse_contract(&name, src.as_ref())
        }
        MatrixSource::Dense(src) => dense_contract(&name, src.as_ref()),
    };
    assert!(got == t, "{name}: the values differ from what was written");
    assert!(
        input
            .open_matrix(&ElementPath::Layer("absent".into()))
            .is_err(),
        "{name}: a missing layer opened"
    );
}

#[test]
fn every_anndata_backend_serves_every_layout_alike() {
    for store in ["m.h5ad", "v3.zarr", "v2.zarr"] {
        let input = open_input(&dir().join(store)).unwrap_or_else(|e| panic!("{store}: {e}"));
        conforms(store, &input, ElementPath::X, MatrixLayout::Csr);
        let layer = |n: &str| ElementPath::Layer(n.into());
        conforms(store, &input, layer("dense"), MatrixLayout::Dense);
        conforms(store, &input, layer("csc"), MatrixLayout::Csc);
        conforms(store, &input, layer("counts"), MatrixLayout::Csr);
    }
}

#[test]
fn the_memory_backend_keeps_the_contract() {
    conforms("memory", &memory_input(), ElementPath::X, MatrixLayout::Csr);
}

#[test]
fn a_10x_matrix_directory_keeps_the_contract() {
    let scratch = tempfile::tempdir().unwrap();
    let open = |name: &str| {
        TenxInput::open(
            &dir().join(name),
            &TenxOptions::default(),
            scratch.path(),
            64 << 20,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    conforms("10x", &open("tenx"), ElementPath::X, MatrixLayout::Csr);
    // Cell Ranger 3 with feature types: the served matrix is a selection of the stored one
    // (its columns renumbered), read through the same contract.
    let input = open("tenx3");
    let gex = read_f64("truth_gex.f64");
    conforms_to("10x v3", &input, ElementPath::X, MatrixLayout::Csr, &gex);
}
