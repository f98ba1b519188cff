//! New AnnData files from the writer read back (in Rust and with anndata); `inspect` lists
//! them.

use atlasnorm_testkit::python as h5ad_common;

use atlasnorm_store::array::{DType, NumVec};
use atlasnorm_store::store::h5ad::{AnnDataWriter, Compression, H5adInput};
use atlasnorm_store::store::{ElementPath, InputStore, MatrixLayout};
use h5ad_common::{run_py, s, tempdir, value};

const N_OBS: u64 = 1000;
const N_VARS: u64 = 57;

/// Writes the test matrix row by row; returns nnz.
fn write(path: &std::path::Path, compression: Compression, data: DType, indptr: DType) -> u64 {
    let mut w = AnnDataWriter::create(path, N_OBS, N_VARS, compression, 300).unwrap();
    let obs: Vec<String> = (0..N_OBS).map(|i| format!("cell-{i}")).collect();
    let var: Vec<String> = (0..N_VARS).map(|j| format!("gene-{j}")).collect();
    w.write_obs_index(&obs).unwrap();
    w.write_var_index(&var).unwrap();
    let mut nnz = 0i64;
    {
        let mut x = w.csr_x(data, DType::I32, indptr).unwrap();
        x.append_indptr(&[0]).unwrap();
        for i in 0..N_OBS {
            let mut idx = Vec::new();
            let mut vals = Vec::new();
            for j in 0..N_VARS {
                let v = value(i, j);
                if v != 0.0 {
                    idx.push(j as i64);
                    vals.push(v);
                }
            }
            nnz += idx.len() as i64;
            x.append_indices(&idx).unwrap();
            let vals = match data {
                DType::F32 => NumVec::F32(vals.iter().map(|&v| v as f32).collect()),
                DType::I32 => NumVec::I32(vals.iter().map(|&v| v as i32).collect()),
                DType::U16 => NumVec::U16(vals.iter().map(|&v| v as u16).collect()),
                _ => NumVec::F64(vals),
            };
            x.append_data(&vals).unwrap();
            x.append_indptr(&[nnz]).unwrap();
        }
        x.finish().unwrap();
    }
    w.finish().unwrap();
    nnz as u64
}

#[test]
fn written_files_read_back() {
    let dir = tempdir();
    let d = dir.path();
    let cases = [
        ("plain.h5ad", Compression::None, DType::F32, DType::I32),
        ("gzip.h5ad", Compression::Gzip(4), DType::I32, DType::I64),
        ("lzf.h5ad", Compression::Lzf, DType::U16, DType::I32),
    ];
    for (name, comp, data, indptr) in cases {
        let p = d.join(name);
        let nnz = write(&p, comp, data, indptr);
        let input = H5adInput::open(&p).unwrap();
        let src = input.open_matrix(&ElementPath::X).unwrap();
        let src = src.sparse().expect("a sparse matrix");
        let m = src.meta();
        assert_eq!(m.layout, MatrixLayout::Csr);
        assert_eq!((m.n_obs, m.n_vars, m.nnz), (N_OBS, N_VARS, nnz));
        assert_eq!(m.data_dtype, data);
        assert_eq!(m.indptr_dtype, Some(indptr));
        let ptr = src.read_indptr(0..N_OBS + 1).unwrap();
        let idx = src.read_indices(0..nnz).unwrap().to_i64().unwrap();
        let vals = src.read_data(0..nnz).unwrap().to_f64();
        for i in 0..N_OBS as usize {
            for k in ptr[i] as usize..ptr[i + 1] as usize {
                assert_eq!(vals[k], value(i as u64, idx[k] as u64));
            }
        }
        assert_eq!(
            input.var_names(&[0, 56]).unwrap(),
            vec!["gene-0", "gene-56"]
        );
        let listing = atlasnorm_store::inspect::inspect(&p).unwrap();
        assert!(
            listing.contains(&format!(
                "csr_matrix 0.1.0  shape ({N_OBS}, {N_VARS})  nnz {nnz}"
            )),
            "{listing}"
        );
        assert!(listing.contains("chunks (300,)"), "{listing}");
        match comp {
            Compression::Gzip(_) => assert!(listing.contains("gzip 4"), "{listing}"),
            Compression::Lzf => assert!(listing.contains("lzf"), "{listing}"),
            Compression::None => assert!(!listing.contains("gzip"), "{listing}"),
        }
    }
    let r = run_py(
        r#"
import sys, numpy as np, anndata as ad, h5py
n, m = 1000, 57
i = np.arange(n)[:, None]; j = np.arange(m)[None, :]
M = np.where((i * 7 + j * 3) % 10 < 3, (i + 2 * j) % 11 + 1, 0)
for name, dt in [("plain.h5ad", np.float32), ("gzip.h5ad", np.int32), ("lzf.h5ad", np.uint16)]:
    a = ad.read_h5ad(sys.argv[1] + "/" + name)
    assert a.shape == (n, m) and a.X.format == "csr" and a.X.dtype == dt, (a.shape, a.X.dtype)
    assert np.array_equal(a.X.toarray(), M)
    assert list(a.obs_names[:2]) == ["cell-0", "cell-1"] and a.var_names[-1] == "gene-56"
    assert len(a.obs.columns) == 0 and set(a.uns.keys()) == set() and [k for k in a.layers.keys() if k is not None] == []
    with h5py.File(sys.argv[1] + "/" + name) as f:
        assert dict(f.attrs) == {"encoding-type": "anndata", "encoding-version": "0.1.0"}
        for k in ["obsm", "varm", "obsp", "varp", "layers", "uns"]:
            assert dict(f[k].attrs) == {"encoding-type": "dict", "encoding-version": "0.1.0"}
        assert f["obs/_index"].attrs["encoding-type"] == "nullable-string-array"
print("OK")
"#,
        &[s(d)],
    );
    assert_eq!(r.trim(), "OK");
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn incomplete_writes_are_refused_and_removed() {
    let dir = tempdir();
    let p = dir.path().join("bad.h5ad");
    // X never written
    let w = AnnDataWriter::create(&p, 3, 2, Compression::None, 10).unwrap();
    assert!(w.finish().is_err());
    assert!(!p.exists());
    // indptr not ending at nnz
    let mut w = AnnDataWriter::create(&p, 2, 2, Compression::None, 10).unwrap();
    {
        let mut x = w.csr_x(DType::F32, DType::I32, DType::I32).unwrap();
        x.append_indptr(&[0, 1, 3]).unwrap();
        x.append_indices(&[0, 1]).unwrap();
        x.append_data(&NumVec::F32(vec![1.0, 2.0])).unwrap();
        assert!(x.finish().is_err());
    }
    assert!(w.finish().is_err());
    // sink dropped without finish (buffered values never written)
    let mut w = AnnDataWriter::create(&p, 1, 2, Compression::Gzip(1), 10).unwrap();
    {
        let mut x = w.csr_x(DType::F32, DType::I32, DType::I32).unwrap();
        x.append_indptr(&[0, 1]).unwrap();
        x.append_indices(&[0]).unwrap();
        x.append_data(&NumVec::F32(vec![1.0])).unwrap();
        // too many indptr entries
        assert!(x.append_indptr(&[1]).is_err());
    }
    assert!(w.finish().is_err());
    assert!(!p.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
