//! The zarr write side, end to end: an in-memory input normalized into a `ZarrOutput` (built
//! from empty through its `TreeWriter`), read back by real anndata and compared bit for bit
//! with scanpy run on the same matrix.

use atlasnorm_testkit::python as h5ad_common;

use std::path::Path;

use atlasnorm_core::memory::{layouts_of, MemoryInput, MemoryMatrix};
use atlasnorm_store::array::NumVec;
use atlasnorm_store::engine::normalize_stores;
use atlasnorm_store::options::{ZarrCodec, ZarrFormat, ZarrOutputOptions};
use atlasnorm_store::store::tree::{ArrayData, ArrayInfo, Attrs, ElemType, TreeWriter};
use atlasnorm_store::store::zarr::ZarrOutput;
use atlasnorm_store::store::{
    ElementPath, OutputLayout, OutputMatrixSpec, OutputStore, SparseStructure,
};
use atlasnorm_store::{Options, Params, Silent};
use h5ad_common::run_py;
use serde_json::json;

fn enc(kind: &str, version: &str) -> Attrs {
    let mut a = Attrs::new();
    a.insert("encoding-type".into(), json!(kind));
    a.insert("encoding-version".into(), json!(version));
    a
}

/// A minimal AnnData around the matrix: obs/var indexes (string arrays), empty mappings.
fn skeleton(out: &mut ZarrOutput, n_obs: usize, n_vars: usize) {
    out.create_group("", &enc("anndata", "0.1.0")).unwrap();
    for (name, n, prefix) in [("obs", n_obs, "cell"), ("var", n_vars, "gene")] {
        let mut attrs = enc("dataframe", "0.2.0");
        attrs.insert("_index".into(), json!("_index"));
        attrs.insert("column-order".into(), json!([]));
        out.create_group(name, &attrs).unwrap();
        let path = format!("{name}/_index");
        out.create_array(
            &path,
            &ArrayInfo {
                elem: ElemType::String,
                shape: vec![n as u64],
                attrs: enc("string-array", "0.2.0"),
            },
        )
        .unwrap();
        // in two row ranges, to exercise the carry-over
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
        let half = n / 2;
        out.write_rows(&path, 0, &ArrayData::String(names[..half].to_vec()))
            .unwrap();
        out.write_rows(
            &path,
            half as u64,
            &ArrayData::String(names[half..].to_vec()),
        )
        .unwrap();
    }
    for name in ["obsm", "varm", "obsp", "varp", "layers", "uns"] {
        out.create_group(name, &enc("dict", "0.1.0")).unwrap();
    }
    out.create_null("raw", &enc("null", "0.1.0")).unwrap();
    // some uns content of every kind
    out.create_group("uns/extra", &enc("dict", "0.1.0"))
        .unwrap();
    out.create_array(
        "uns/extra/flags",
        &ArrayInfo {
            elem: ElemType::Bool,
            shape: vec![3],
            attrs: enc("array", "0.2.0"),
        },
    )
    .unwrap();
    out.write_rows(
        "uns/extra/flags",
        0,
        &ArrayData::Bool(vec![true, false, true]),
    )
    .unwrap();
    out.create_array(
        "uns/extra/answer",
        &ArrayInfo {
            elem: ElemType::Num(atlasnorm_store::array::DType::I64),
            shape: vec![],
            attrs: enc("numeric-scalar", "0.2.0"),
        },
    )
    .unwrap();
    out.write_rows(
        "uns/extra/answer",
        0,
        &ArrayData::Num(NumVec::I64(vec![42])),
    )
    .unwrap();
    out.create_array(
        "uns/extra/title",
        &ArrayInfo {
            elem: ElemType::String,
            shape: vec![],
            attrs: enc("string", "0.2.0"),
        },
    )
    .unwrap();
    out.write_rows(
        "uns/extra/title",
        0,
        &ArrayData::String(vec!["héllo".into()]),
    )
    .unwrap();
    out.create_array(
        "obsm/pca",
        &ArrayInfo {
            elem: ElemType::Num(atlasnorm_store::array::DType::F32),
            shape: vec![n_obs as u64, 3],
            attrs: enc("array", "0.2.0"),
        },
    )
    .unwrap();
    let pca: Vec<f32> = (0..n_obs * 3).map(|i| i as f32 * 0.5).collect();
    out.write_rows("obsm/pca", 0, &ArrayData::Num(NumVec::F32(pca)))
        .unwrap();
}

/// Deterministic count-like entries, some non-integer.
fn entries(n_obs: usize, n_vars: usize) -> Vec<(usize, usize, f32)> {
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut e = Vec::new();
    for r in 0..n_obs {
        for c in 0..n_vars {
            if next() % 10 == 0 {
                let v = (next() % 30 + 1) as f32;
                e.push((r, c, if next() % 7 == 0 { v + 0.37 } else { v }));
            }
        }
    }
    e
}

fn write_f32(path: &Path, v: &[f32]) {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

const CHECK: &str = r#"
import sys, json, numpy as np, anndata as ad, scanpy as sc, scipy.sparse as sp
out, dense_path, n_obs, n_vars, layout, base = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
dense = np.fromfile(dense_path, dtype='<f4').reshape(n_obs, n_vars)
X = dense if layout == 'dense' else sp.csr_matrix(dense)
ref = ad.AnnData(X)
sc.pp.normalize_total(ref, key_added='nf')
sc.pp.log1p(ref, base=None if base == 'none' else float(base))
got = ad.read_zarr(out)
assert got.shape == ref.shape, (got.shape, ref.shape)
if layout == 'dense':
    assert isinstance(got.X, np.ndarray), type(got.X)
    assert got.X.dtype == ref.X.dtype
    assert np.array_equal(got.X.view(np.uint32), ref.X.view(np.uint32))
else:
    assert sp.issparse(got.X) and got.X.format == 'csr', type(got.X)
    for a in ('data', 'indices', 'indptr'):
        g, r = getattr(got.X, a), getattr(ref.X, a)
        assert g.dtype == r.dtype or a != 'data', (a, g.dtype, r.dtype)
        assert np.array_equal(g, r), a
    assert np.array_equal(got.X.data.view(np.uint32), ref.X.data.view(np.uint32))
assert list(got.obs.columns) == ['nf'], list(got.obs.columns)
assert got.obs['nf'].dtype == ref.obs['nf'].dtype
assert np.array_equal(got.obs['nf'].to_numpy().view(np.uint32), ref.obs['nf'].to_numpy().view(np.uint32))
assert list(got.obs_names[:2]) == ['cell0', 'cell1'] and got.var_names[-1] == f'gene{n_vars-1}'
assert got.uns['log1p'] == ref.uns['log1p'], (got.uns['log1p'], ref.uns['log1p'])
assert list(got.uns['extra']['flags']) == [True, False, True]
assert got.uns['extra']['answer'] == 42 and got.uns['extra']['title'] == 'héllo'
assert np.array_equal(got.obsm['pca'], (np.arange(n_obs * 3, dtype=np.float32) * 0.5).reshape(n_obs, 3))
print('ok')
"#;

struct Case {
    zarr: ZarrOutputOptions,
    layout: &'static str,
    base: Option<f64>,
}

fn run_case(case: &Case) -> std::path::PathBuf {
    let (n_obs, n_vars) = (3000, 40);
    let e = entries(n_obs, n_vars);
    let (csr, csc, dense) = layouts_of(n_obs, n_vars, &e);
    let matrix: MemoryMatrix = match case.layout {
        "csr" => csr,
        "csc" => csc,
        _ => dense.clone(),
    };
    let dir = tempfile::tempdir().unwrap().keep();
    let out_path = dir.join(format!("{}.zarr", case.layout));
    let opts = Options {
        params: Params {
            key_added: Some("nf".into()),
            log1p_base: case.base,
            max_block_values: Some(1777),
            ..Params::default()
        },
        zarr: case.zarr.clone(),
        ..Options::default()
    };
    let out = if case.layout == "csr" {
        // CSR in, CSR out copies indices/indptr from a zarr input: make one (a CSC run of the
        // same matrix), then copy everything but X from it, raw.
        let first = run_case(&Case {
            zarr: case.zarr.clone(),
            layout: "csc",
            base: None,
        });
        let store: atlasnorm_store::store::zarr::Storage =
            std::sync::Arc::new(zarrs::filesystem::FilesystemStore::new(&first).unwrap());
        let format = case.zarr.format.unwrap_or(ZarrFormat::V3);
        ZarrOutput::create(Some((&store, format)), &out_path, &ElementPath::X, &opts).unwrap()
    } else {
        let mut out = ZarrOutput::create_empty(&out_path, &opts).unwrap();
        skeleton(&mut out, n_obs, n_vars);
        out
    };
    let input = MemoryInput {
        path: "memory.h5ad".into(),
        matrix,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| normalize_stores(&input, Box::new(out), &opts.params, &Silent))
        .unwrap();
    assert!(out_path
        .join(match case.zarr.format {
            Some(ZarrFormat::V2) => ".zmetadata",
            _ => "zarr.json",
        })
        .exists());
    let NumVec::F32(d) = &dense.data else {
        unreachable!()
    };
    let dense_path = dir.join("dense.f32");
    write_f32(&dense_path, d);
    let layout = if case.layout == "dense" {
        "dense"
    } else {
        "csr"
    };
    let base = case.base.map(|b| b.to_string()).unwrap_or("none".into());
    let stdout = run_py(
        CHECK,
        &[
            out_path.to_str().unwrap(),
            dense_path.to_str().unwrap(),
            &n_obs.to_string(),
            &n_vars.to_string(),
            layout,
            &base,
        ],
    );
    assert_eq!(stdout.trim(), "ok");
    // nothing left next to the output
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("atlasnorm")),
        "temporaries left: {names:?}"
    );
    out_path
}

fn meta(out: &Path, key: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join(key)).unwrap()).unwrap()
}

#[test]
fn v3_sharded_default_is_read_by_anndata_bit_for_bit() {
    let out = run_case(&Case {
        zarr: ZarrOutputOptions::default(),
        layout: "csc",
        base: None,
    });
    let m = meta(&out, "X/data/zarr.json");
    assert_eq!(m["codecs"][0]["name"], "sharding_indexed");
    assert_eq!(
        m["codecs"][0]["configuration"]["codecs"][1],
        json!({"name": "zstd", "configuration": {"level": 0, "checksum": false}})
    );
    let root = meta(&out, "zarr.json");
    let cm = &root["consolidated_metadata"];
    assert_eq!(cm["kind"], "inline");
    for node in [
        "X/data",
        "obs/nf",
        "uns/log1p/base",
        "uns/extra/title",
        "raw",
    ] {
        assert!(
            cm["metadata"].get(node).is_some(),
            "{node} not consolidated"
        );
    }
}

#[test]
fn v3_many_small_shards_written_in_parallel() {
    let out = run_case(&Case {
        zarr: ZarrOutputOptions {
            chunk: Some(250),
            shard: Some(1000),
            codec: Some(ZarrCodec::BloscZstd(3)),
            ..Default::default()
        },
        layout: "csr",
        base: Some(2.0),
    });
    let m = meta(&out, "X/data/zarr.json");
    assert_eq!(
        m["chunk_grid"]["configuration"]["chunk_shape"],
        json!([1000])
    );
    let nnz = m["shape"][0].as_u64().unwrap();
    let shards = std::fs::read_dir(out.join("X/data/c")).unwrap().count() as u64;
    assert_eq!(shards, nnz.div_ceil(1000));
}

#[test]
fn v3_unsharded_dense() {
    let out = run_case(&Case {
        zarr: ZarrOutputOptions {
            shard: Some(0),
            chunk: Some(100),
            codec: Some(ZarrCodec::Gzip(4)),
            ..Default::default()
        },
        layout: "dense",
        base: None,
    });
    let m = meta(&out, "X/zarr.json");
    assert_eq!(
        m["chunk_grid"]["configuration"]["chunk_shape"],
        json!([100, 40])
    );
    assert_eq!(m["codecs"][1]["name"], "gzip");
}

#[test]
fn v2_with_many_chunks() {
    let out = run_case(&Case {
        zarr: ZarrOutputOptions {
            format: Some(ZarrFormat::V2),
            chunk: Some(500),
            ..Default::default()
        },
        layout: "csc",
        base: Some(10.0),
    });
    let m = meta(&out, "X/data/.zarray");
    assert_eq!(m["chunks"], json!([500]));
    assert_eq!(m["compressor"]["cname"], "lz4");
    let zm = meta(&out, ".zmetadata");
    assert!(zm["metadata"].get("obs/nf/.zarray").is_some());
    assert!(zm["metadata"].get("uns/log1p/base/.zattrs").is_some());
}

#[test]
fn dropped_or_failed_outputs_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.zarr");
    let opts = Options::default();
    // dropped without commit
    let mut out = ZarrOutput::create_empty(&out_path, &opts).unwrap();
    let tmp = out.temp_path().unwrap().to_path_buf();
    skeleton(&mut out, 10, 4);
    assert!(tmp.exists());
    drop(out);
    assert!(!tmp.exists());
    // a sink that gets too few values fails, and the output goes away
    let mut out = ZarrOutput::create_empty(&out_path, &opts).unwrap();
    let tmp = out.temp_path().unwrap().to_path_buf();
    skeleton(&mut out, 10, 4);
    let spec = OutputMatrixSpec {
        layout: OutputLayout::Csr,
        n_obs: 10,
        n_vars: 4,
        nnz: 5,
        data_dtype: atlasnorm_store::array::DType::F32,
        structure: SparseStructure::Write {
            indices: atlasnorm_store::array::DType::I32,
            indptr: atlasnorm_store::array::DType::I32,
        },
    };
    let mut sink = out.create_matrix(&ElementPath::X, &spec).unwrap();
    sink.append_data(&NumVec::F32(vec![1.0; 3])).unwrap();
    assert!(sink
        .append_data(&NumVec::F32(vec![1.0; 3]))
        .is_err_and(|e| e.to_string().contains("more values")));
    assert!(sink.finish().is_err());
    drop(out);
    assert!(!tmp.exists());
    assert!(!out_path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn commit_replaces_an_existing_output() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.zarr");
    std::fs::create_dir(&out_path).unwrap();
    std::fs::write(out_path.join("stale"), b"x").unwrap();
    let opts = Options::default();
    let mut out = ZarrOutput::create_empty(&out_path, &opts).unwrap();
    skeleton(&mut out, 10, 4);
    Box::new(out).commit().unwrap();
    assert!(!out_path.join("stale").exists());
    assert!(out_path.join("zarr.json").exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn an_existing_output_is_refused_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.h5ad");
    std::fs::write(&input, b"not really").unwrap();
    let out_path = dir.path().join("out.zarr");
    std::fs::create_dir(&out_path).unwrap();
    let err =
        atlasnorm_store::normalize(&input, &out_path, &Options::default(), &Silent).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}
