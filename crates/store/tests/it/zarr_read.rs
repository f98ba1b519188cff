//! The zarr read side on stores written by anndata (zarr v3 sharded — anndata's default —,
//! v3 unsharded, v2 with blosc): the engine's result bit for bit against scanpy on the same
//! store, the tree reader, `inspect`, and clear errors for damaged stores.

use atlasnorm_testkit::python as h5ad_common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use atlasnorm_core::memory::{MemoryOutput, Written};
use atlasnorm_store::array::NumVec;
use atlasnorm_store::engine::normalize_stores;
use atlasnorm_store::store::tree::{ArrayData, ElemType, NodeKind, TreeReader};
use atlasnorm_store::store::zarr::ZarrInput;
use atlasnorm_store::store::{open_input, ElementPath, InputStore, SparseStructure};
use atlasnorm_store::{Params, Silent};
use h5ad_common::{run_py, s};

const STORES: [&str; 3] = ["v3s.zarr", "v3u.zarr", "v2.zarr"];

/// The stores, made once per test run by `tests/zarr/make_stores.py`.
fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("zarr_read");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let script = atlasnorm_testkit::repo_root().join("tests/zarr/make_stores.py");
        let code = std::fs::read_to_string(script).unwrap();
        let out = run_py(&code, &[s(&dir)]);
        assert!(out.contains("ok"), "{out}");
        dir
    })
}

fn store(name: &str) -> PathBuf {
    dir().join(name)
}

fn run(path: &Path, layer: Option<&str>) -> Result<Written, String> {
    let input = open_input(path).map_err(|e| e.to_string())?;
    let opts = Params {
        layer: layer.map(str::to_string),
        max_block_values: Some(97),
        threads: Some(2),
        ..Params::default()
    };
    let out = MemoryOutput::default();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| normalize_stores(&input, Box::new(out.clone()), &opts, &Silent))
        .map_err(|e| e.to_string())?;
    let w = out.0.lock().unwrap().clone();
    Ok(w)
}

fn read_i64(path: &Path) -> Vec<i64> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Expected data as bit patterns (widened to u64 like `Written::data_bits`).
fn expected_bits(tag: &str) -> Vec<u64> {
    let dtype = std::fs::read_to_string(dir().join(format!("{tag}.dtype"))).unwrap();
    let bytes = std::fs::read(dir().join(format!("{tag}.data"))).unwrap();
    match dtype.trim() {
        "float32" => bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as u64)
            .collect(),
        "float64" => bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        other => panic!("unexpected dtype {other}"),
    }
}

#[test]
fn engine_matches_scanpy_bit_for_bit() {
    for name in STORES {
        let path = store(name);
        for layer in [
            None,
            Some("csc"),
            Some("ints"),
            Some("dense"),
            Some("dense64"),
        ] {
            let tag = format!("{name}_{}", layer.unwrap_or("X"));
            let w = run(&path, layer).unwrap_or_else(|e| panic!("{tag}: {e}"));
            assert!(w.committed, "{tag}");
            let expected = expected_bits(&tag);
            let got = w.data_bits();
            assert_eq!(got.len(), expected.len(), "{tag}: number of values");
            let diff = got.iter().zip(&expected).filter(|(a, b)| a != b).count();
            assert_eq!(diff, 0, "{tag}: {diff} values differ from scanpy");
            let spec = w.spec.clone().unwrap();
            let indptr_file = dir().join(format!("{tag}.indptr"));
            if let SparseStructure::Write { .. } = spec.structure {
                assert_eq!(w.indptr, read_i64(&indptr_file), "{tag}: indptr");
                let indices = read_i64(&dir().join(format!("{tag}.indices")));
                assert_eq!(w.indices, indices, "{tag}: indices");
            } else if indptr_file.exists() {
                // CSR copied as is: what the source reads must be scanpy's structure.
                let input = open_input(&path).unwrap();
                let el = match layer {
                    None => ElementPath::X,
                    Some(l) => ElementPath::Layer(l.into()),
                };
                let src = input.open_matrix(&el).unwrap();
                let src = src.sparse().expect("a sparse matrix");
                let m = src.meta().clone();
                assert_eq!(
                    src.read_indptr(0..m.n_obs + 1).unwrap(),
                    read_i64(&indptr_file),
                    "{tag}: indptr"
                );
                let idx = src.read_indices(0..m.nnz).unwrap().to_i64().unwrap();
                let indices = read_i64(&dir().join(format!("{tag}.indices")));
                assert_eq!(idx, indices, "{tag}: indices");
            }
            eprintln!("{tag}: {} values identical to scanpy", got.len());
        }
    }
}

#[test]
fn ranges_read_the_same_as_one_read() {
    for name in STORES {
        let input = open_input(&store(name)).unwrap();
        let src = input.open_matrix(&ElementPath::X).unwrap();
        let src = src.sparse().expect("a sparse matrix");
        let nnz = src.meta().nnz;
        let all = src.read_data(0..nnz).unwrap();
        let NumVec::F32(all) = all else {
            panic!("X/data is float32")
        };
        let mut pos = 0u64;
        let mut step = 1u64;
        while pos < nnz {
            let end = (pos + step).min(nnz);
            let NumVec::F32(part) = src.read_data(pos..end).unwrap() else {
                panic!()
            };
            assert_eq!(part, all[pos as usize..end as usize], "{name} {pos}..{end}");
            pos = end;
            step = step * 3 + 1;
        }
        assert!(src.read_data(0..0).unwrap().is_empty());
        let e = src.read_data(nnz - 1..nnz + 1).unwrap_err().to_string();
        assert!(e.contains("X/data") && e.contains("requested"), "{e}");
        // dense rows
        let d = input
            .open_matrix(&ElementPath::Layer("dense".into()))
            .unwrap();
        let d = d.dense().expect("a dense matrix");
        assert_eq!(d.meta().n_obs, 300);
        let rows = d.read_rows(30..70).unwrap();
        assert_eq!(rows.len(), 40 * 40);
        let (ip, ix) = (
            src.read_indptr(30..71).unwrap(),
            src.read_indices(0..nnz).unwrap(),
        );
        let ix = ix.to_i64().unwrap();
        let mut dense = vec![0f32; 40 * 40];
        for r in 0..40 {
            for k in ip[r]..ip[r + 1] {
                dense[r * 40 + ix[k as usize] as usize] = all[k as usize];
            }
        }
        assert_eq!(rows, NumVec::F32(dense), "{name}: dense layer rows 30..70");
    }
}

#[test]
fn tree_reader_covers_what_anndata_writes() {
    for name in STORES {
        let z = ZarrInput::open(&store(name)).unwrap();
        let top: Vec<String> = z.children("").unwrap().into_iter().map(|c| c.0).collect();
        for m in ["X", "layers", "obs", "obsm", "uns", "var", "varm"] {
            assert!(top.iter().any(|t| t == m), "{name}: {m} in {top:?}");
        }
        let mut sorted = top.clone();
        sorted.sort();
        assert_eq!(top, sorted);
        let attrs = z.group_attrs("").unwrap();
        assert_eq!(attrs["encoding-type"], "anndata");
        assert_eq!(
            z.group_attrs("X").unwrap()["shape"],
            serde_json::json!([300, 40])
        );
        let kinds: Vec<(String, NodeKind)> = z.children("X").unwrap();
        assert_eq!(
            kinds.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(),
            ["data", "indices", "indptr"]
        );
        assert!(kinds.iter().all(|k| k.1 == NodeKind::Array));

        let info = z.array_info("uns/s").unwrap();
        assert_eq!((info.elem, info.shape.clone()), (ElemType::String, vec![]));
        assert_eq!(info.attrs["encoding-type"], "string");
        assert_eq!(
            z.read_rows("uns/s", 0..1).unwrap(),
            ArrayData::String(vec!["hello".into()])
        );
        assert_eq!(
            z.read_rows("uns/n", 0..1).unwrap(),
            ArrayData::Num(NumVec::I64(vec![3]))
        );
        assert_eq!(
            z.read_rows("uns/f", 0..1).unwrap(),
            ArrayData::Num(NumVec::F64(vec![2.5]))
        );
        let none = z.array_info("uns/none").unwrap();
        assert_eq!(none.attrs["encoding-type"], "null");
        assert_eq!((none.elem, none.shape), (ElemType::Bool, vec![]));
        assert_eq!(
            z.read_rows("uns/arr", 1..4).unwrap(),
            ArrayData::Num(NumVec::I16(vec![1, 2, 3]))
        );
        assert_eq!(
            z.read_rows("uns/strs", 0..3).unwrap(),
            ArrayData::String(vec!["a".into(), "bb".into(), "ccc".into()])
        );
        let flag = z.read_rows("obs/flag", 0..4).unwrap();
        assert_eq!(flag, ArrayData::Bool(vec![true, false, true, false]));
        assert_eq!(
            z.array_info("obs/cat/codes").unwrap().elem,
            ElemType::Num(atlasnorm_store::array::DType::I8)
        );
        let values = z.read_rows("var/_index/values", 38..40).unwrap();
        assert_eq!(
            values,
            ArrayData::String(vec!["gene38".into(), "gene39".into()])
        );
        let names = z.read_rows("obs/_index/values", 0..300).unwrap();
        let ArrayData::String(names) = names else {
            panic!()
        };
        assert_eq!(names[299], "cell299");
        let dense = z.array_info("layers/dense").unwrap();
        assert_eq!(dense.shape, vec![300, 40]);
        let ArrayData::Num(rows) = z.read_rows("layers/dense", 298..300).unwrap() else {
            panic!()
        };
        assert_eq!(rows.len(), 80);
        assert_eq!(z.var_names(&[0, 39]).unwrap(), ["gene0", "gene39"]);
        assert!(!z.has_uns("log1p").unwrap());
        let e = z.read_rows("uns/arr", 3..9).unwrap_err().to_string();
        assert!(e.contains("uns/arr"), "{e}");
        let e = z.array_info("nope").unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("missing"), "{e}");
        eprintln!("{name}: tree ok ({top:?})");
    }
    // zarr v3 stores `raw` as a null element
    let z = ZarrInput::open(&store("v3s.zarr")).unwrap();
    assert_eq!(z.array_info("raw").unwrap().attrs["encoding-type"], "null");
}

#[test]
fn inspect_lists_format_chunks_shards_codecs() {
    let v3 = atlasnorm_store::inspect::inspect(&store("v3s.zarr")).unwrap();
    eprintln!("{v3}");
    for want in [
        "zarr v3",
        "csr_matrix 0.1.0  shape (300, 40)",
        "shards (256,)  chunks (64,)",
        "sharding[bytes little+zstd 0; index bytes little+crc32c]",
        "str (variable-length UTF-8)",
        "= \"hello\"",
    ] {
        assert!(v3.contains(want), "missing {want:?}");
    }
    let v2 = atlasnorm_store::inspect::inspect(&store("v2.zarr")).unwrap();
    eprintln!("{v2}");
    for want in [
        "zarr v2",
        "chunks (64,)  blosc lz4 5 shuffle",
        "vlen-utf8+blosc",
    ] {
        assert!(v2.contains(want), "missing {want:?}");
    }
}

fn open_err(name: &str) -> String {
    match ZarrInput::open(&store(name)) {
        Ok(_) => panic!("{name}: opened"),
        Err(e) => e.to_string(),
    }
}

fn has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
    eprintln!("OK {msg}");
}

#[test]
fn bad_stores_give_clear_errors() {
    has(
        &open_err("bad_root.zarr"),
        &["bad_root.zarr", "zarr.json", "malformed"],
    );
    has(
        &open_err("not_anndata.zarr"),
        &["not an AnnData store", "foo"],
    );
    has(&open_err("empty.zarr"), &["not a zarr store"]);
    has(&open_err("nothing_here.zarr"), &["no such directory"]);

    let matrix_err = |name: &str, layer: Option<&str>| -> String {
        let input = open_input(&store(name)).unwrap();
        let el = match layer {
            None => ElementPath::X,
            Some(l) => ElementPath::Layer(l.into()),
        };
        let r = match input.open_matrix(&el) {
            Ok(_) => panic!("{name}: opened"),
            Err(e) => e.to_string(),
        };
        r
    };
    has(
        &matrix_err("bad_json.zarr", None),
        &["X/data", "malformed 'X/data/zarr.json'"],
    );
    has(
        &matrix_err("no_node_type.zarr", None),
        &["X/indptr", "malformed 'X/indptr/zarr.json': no 'node_type'"],
    );
    has(
        &matrix_err("bad_zattrs.zarr", None),
        &["X", "malformed 'X/.zattrs'"],
    );
    has(&matrix_err("bad_codec.zarr", None), &["X/data", "lzma"]);
    has(
        &matrix_err("bad_codec_v2.zarr", None),
        &["X/indptr", "lzma"],
    );
    has(
        &matrix_err("v3s.zarr", Some("nope")),
        &["no layer named 'nope'"],
    );

    let run_err = |name: &str| -> String {
        match run(&store(name), None) {
            Ok(_) => panic!("{name}: normalized"),
            Err(e) => e,
        }
    };
    has(
        &run_err("missing_chunk.zarr"),
        &["X/data", "chunk 'X/data/c/3' is missing"],
    );
    has(
        &run_err("missing_chunk_v2.zarr"),
        &["X/indices", "chunk 'X/indices/2' is missing"],
    );
    has(
        &run_err("missing_shard.zarr"),
        &["X/data", "shard 'X/data/c/1' is missing"],
    );
    has(
        &run_err("missing_inner.zarr"),
        &["X/data", "inner chunk 1 of shard 'X/data/c/0'"],
    );
    has(&run_err("corrupt_shard.zarr"), &["X/data", "cannot read"]);
    has(
        &run_err("bad_crc.zarr"),
        &["X/indices", "corrupt shard 'X/indices/c/0'"],
    );
    has(
        &run_err("truncated_shard.zarr"),
        &["X/data", "shard 'X/data/c/2'"],
    );
    has(&run_err("corrupt_v2.zarr"), &["X/data", "cannot read"]);
}

#[test]
fn missing_dense_chunk_reads_as_fill_value() {
    let input = open_input(&store("dense_missing.zarr")).unwrap();
    let d = input
        .open_matrix(&ElementPath::Layer("dense".into()))
        .unwrap();
    let d = d.dense().expect("a dense matrix");
    let NumVec::F32(rows) = d.read_rows(0..96).unwrap() else {
        panic!()
    };
    assert!(rows[32 * 40..64 * 40].iter().all(|&v| v == 0.0));
    assert!(rows[..32 * 40].iter().any(|&v| v != 0.0));
    assert!(run(&store("dense_missing.zarr"), Some("dense")).is_ok());
}
