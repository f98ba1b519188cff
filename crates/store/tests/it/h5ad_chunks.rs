//! Raw-chunk I/O of gzip (deflate) datasets: reads through raw chunks decoded in parallel
//! equal HDF5's own (hyperslab) reads on gzip, gzip+shuffle and uncompressed chunked arrays
//! of several dtypes, at awkward ranges; parallel-written gzip arrays read back equal in
//! h5py with the same filters; a corrupt chunk still gives the clear error.

use atlasnorm_testkit::python as h5ad_common;

use std::ops::Range;
use std::path::Path;

use atlasnorm_store::array::{DType, NumVec};
use atlasnorm_store::store::h5ad::{AnnDataWriter, Compression};
use atlasnorm_store::store::{open_input, ElementPath, InputStore as _};
use atlasnorm_store::{Error, Options, Params};
use h5ad_common::{run_py, s, tempdir, PY_MATRIX};

const N_OBS: u64 = 301;
const N_VARS: u64 = 203;

/// Files `<name>.h5ad` whose X (CSR) has data/indices rewritten with the given dtype,
/// chunking and filters, and a dense layer chunked by whole rows.
const MAKE: &str = r#"
import sys, os, numpy as np, scipy.sparse as sp, pandas as pd, anndata as ad, h5py
out = sys.argv[1]
n, m = 301, 203
M = matrix(n, m)
obs = pd.DataFrame(index=[f"cell{i}" for i in range(n)])
var = pd.DataFrame(index=[f"gene{j}" for j in range(m)])
base = ad.AnnData(X=sp.csr_matrix(M.astype("float32")), obs=obs, var=var)
cases = {
    # name: (data dtype, indices dtype, chunk, filter kwargs)
    "gz_f32_i32": ("float32", "int32", 1000, dict(compression="gzip")),
    "gzshuf_f64_i64": ("float64", "int64", 777, dict(compression="gzip", shuffle=True)),
    "gz9shuf_i16_u32": ("int16", "uint32", 4096, dict(compression="gzip", compression_opts=9, shuffle=True)),
    "plain_u16_i32": ("uint16", "int32", 500, dict()),
    "shuf_f32_i64": ("float32", "int64", 333, dict(shuffle=True)),
    "gz_i8_u16": ("int8", "uint16", 64, dict(compression="gzip", compression_opts=1)),
    "onechunk_f64_i32": ("float64", "int32", 1 << 20, dict(compression="gzip")),
    "lzf_f32_i32": ("float32", "int32", 1000, dict(compression="lzf")),
    "fletcher_f32_i32": ("float32", "int32", 1000, dict(compression="gzip", fletcher32=True)),
    "bigendian_f32_i32": (">f4", ">i4", 1000, dict(compression="gzip")),
}
for name, (dt, it, chunk, kw) in cases.items():
    p = os.path.join(out, name + ".h5ad")
    base.write_h5ad(p)
    with h5py.File(p, "r+") as f:
        X = f["X"]
        d = X["data"][()].astype(dt); i = X["indices"][()].astype(it)
        del X["data"]; del X["indices"]
        c = min(chunk, len(d))
        X.create_dataset("data", data=d, chunks=(c,), maxshape=(None,), **kw)
        X.create_dataset("indices", data=i, chunks=(c,), maxshape=(None,), **kw)
        if it == "int64":
            ip = X["indptr"][()].astype("int64"); del X["indptr"]
            X.create_dataset("indptr", data=ip)
        g = f.require_group("layers")
        dd = g.create_dataset("dense", data=M.astype(dt), chunks=(7, m), **kw)
        dd.attrs["encoding-type"] = "array"; dd.attrs["encoding-version"] = "0.2.0"
"#;

const CASES: &[&str] = &[
    "gz_f32_i32",
    "gzshuf_f64_i64",
    "gz9shuf_i16_u32",
    "plain_u16_i32",
    "shuf_f32_i64",
    "gz_i8_u16",
    "onechunk_f64_i32",
    "lzf_f32_i32",
    "fletcher_f32_i32",
    "bigendian_f32_i32",
];

/// HDF5's own read of `range` of a 1-D dataset, as f64 (every value here is exact in f64).
fn hyperslab(file: &hdf5::File, path: &str, range: Range<u64>) -> Vec<f64> {
    let ds = file.dataset(path).unwrap();
    if range.is_empty() {
        return Vec::new();
    }
    ds.read_slice_1d::<f64, _>(range.start as usize..range.end as usize)
        .unwrap()
        .to_vec()
}

fn as_f64(v: NumVec) -> Vec<f64> {
    match v {
        NumVec::F32(x) => x.into_iter().map(f64::from).collect(),
        NumVec::F64(x) => x,
        other => other
            .to_i64()
            .expect("integers")
            .into_iter()
            .map(|x| x as f64)
            .collect(),
    }
}

fn ranges(n: u64, chunk: u64) -> Vec<Range<u64>> {
    let mut r = vec![
        0..n,
        0..0,
        0..1,
        n - 1..n,
        n / 2..n / 2 + 1,
        1..n - 1,
        chunk - 1..chunk + 1,
        chunk..2 * chunk,
        chunk + 3..3 * chunk - 5,
        5..5,
        n - 1..n - 1,
    ];
    // consecutive blocks of an awkward size, as the engine reads them
    let step = chunk * 2 + 37;
    let mut a = 0;
    while a < n {
        r.push(a..(a + step).min(n));
        a += step;
    }
    r.retain(|x| x.start <= x.end && x.end <= n);
    r
}

#[test]
fn raw_chunk_reads_equal_hyperslab_reads() {
    let dir = tempdir();
    let d = dir.path();
    run_py(&format!("{PY_MATRIX}{MAKE}"), &[s(d)]);
    for name in CASES {
        let path = d.join(format!("{name}.h5ad"));
        let file = hdf5::File::with_options()
            .with_fapl(|p| p.file_locking(false))
            .open(&path)
            .unwrap();
        let chunk = file.dataset("X/data").unwrap().chunk().unwrap()[0] as u64;
        let input = open_input(&path).unwrap();
        // A big-endian *sparse* X is refused (scipy, hence anndata, cannot hold it); its dense
        // big-endian layer below is still read.
        let opened = input.open_matrix(&ElementPath::X);
        if name.starts_with("bigendian") {
            let e = opened
                .err()
                .expect("big-endian sparse X is refused")
                .to_string();
            assert!(
                e.contains("X/data") && e.contains("big-endian"),
                "{name}: {e}"
            );
        } else {
            let src = opened.unwrap();
            let src = src.sparse().expect("a sparse X");
            let nnz = src.meta().nnz;
            assert!(nnz > 15_000, "{name}: {nnz}");
            let stored = src.meta().data_dtype;
            for r in ranges(nnz, chunk.min(nnz / 3)) {
                let got = src.read_data(r.clone()).unwrap();
                assert_eq!(got.dtype(), stored, "{name}");
                assert_eq!(got.len() as u64, r.end - r.start);
                assert!(
                    as_f64(got) == hyperslab(&file, "X/data", r.clone()),
                    "{name}: data {r:?}"
                );
                let got = src.read_indices(r.clone()).unwrap();
                assert!(
                    as_f64(got) == hyperslab(&file, "X/indices", r.clone()),
                    "{name}: indices {r:?}"
                );
            }
            // out of range: the same error as before
            assert!(src.read_data(0..nnz + 1).is_err());
        }
        // the dense layer chunked by whole rows (7 rows a chunk)
        let dense = input
            .open_matrix(&ElementPath::Layer("dense".into()))
            .unwrap();
        let dense = dense.dense().expect("a dense layer");
        let ds = file.dataset("layers/dense").unwrap();
        let all: Vec<f64> = ds.read_raw::<f64>().unwrap();
        for rows in [
            0..N_OBS,
            0..1,
            6..8,
            7..14,
            3..290,
            N_OBS - 1..N_OBS,
            10..10,
        ] {
            let got = as_f64(dense.read_rows(rows.clone()).unwrap());
            let want = &all[(rows.start * N_VARS) as usize..(rows.end * N_VARS) as usize];
            assert!(got == want, "{name}: dense rows {rows:?}");
        }
    }
}

/// A gzip X written by the library (whole chunks deflated on rayon threads and written raw,
/// the last partial chunk through HDF5) reads back equal in h5py and anndata, with the
/// filters asked for.
#[test]
fn parallel_written_gzip_reads_back_in_h5py() {
    let dir = tempdir();
    let path = dir.path().join("w.h5ad");
    let (n_obs, n_vars) = (N_OBS, N_VARS);
    let mut w = AnnDataWriter::create(&path, n_obs, n_vars, Compression::Gzip(4), 1000).unwrap();
    w.write_obs_index(&(0..n_obs).map(|i| format!("cell{i}")).collect::<Vec<_>>())
        .unwrap();
    w.write_var_index(&(0..n_vars).map(|j| format!("gene{j}")).collect::<Vec<_>>())
        .unwrap();
    {
        let mut x = w.csr_x(DType::F32, DType::I32, DType::I64).unwrap();
        let mut indptr = vec![0i64];
        let (mut data, mut indices) = (Vec::new(), Vec::new());
        let mut nnz = 0i64;
        for i in 0..n_obs {
            for j in 0..n_vars {
                let v = h5ad_common::value(i, j);
                if v != 0.0 {
                    data.push(v as f32);
                    indices.push(j as i64);
                    nnz += 1;
                }
            }
            indptr.push(nnz);
            // appends of odd sizes: whole chunks go raw, the rest is held back
            if i % 13 == 12 || i == n_obs - 1 {
                x.append_data(&NumVec::F32(std::mem::take(&mut data)))
                    .unwrap();
                x.append_indices(&std::mem::take(&mut indices)).unwrap();
            }
        }
        x.append_indptr(&indptr).unwrap();
        x.finish().unwrap();
    }
    w.finish().unwrap();
    let out = run_py(
        &format!(
            "{PY_MATRIX}{}",
            r#"
import sys, numpy as np, anndata as ad, h5py
p = sys.argv[1]
with h5py.File(p, "r") as f:
    for k in ("data", "indices"):
        d = f["X"][k]
        print(k, d.compression, d.compression_opts, d.shuffle, d.chunks, d.dtype)
a = ad.read_h5ad(p)
M = matrix(301, 203).astype("float32")
assert a.X.dtype == np.float32
assert np.array_equal(a.X.toarray(), M), "values differ"
print("equal")
"#
        ),
        &[s(&path)],
    );
    assert!(out.contains("data gzip 4 False (1000,) float32"), "{out}");
    assert!(out.contains("indices gzip 4 False (1000,) int32"), "{out}");
    assert!(out.contains("equal"), "{out}");
}

/// normalize on gzip+shuffle input: the output keeps the filters and equals scanpy.
#[test]
fn normalize_gzip_shuffle_output_matches_scanpy() {
    let dir = tempdir();
    let d = dir.path();
    run_py(&format!("{PY_MATRIX}{MAKE}"), &[s(d)]);
    for name in ["gzshuf_f64_i64", "gz_f32_i32"] {
        let input = d.join(format!("{name}.h5ad"));
        let output = d.join(format!("{name}.out.h5ad"));
        let opts = Options {
            params: Params {
                max_block_values: Some(2500),
                ..Params::default()
            },
            ..Options::default()
        };
        atlasnorm_store::normalize(&input, &output, &opts, &atlasnorm_store::Silent).unwrap();
        let out = run_py(
            r#"
import sys, numpy as np, anndata as ad, scanpy as sc, h5py
inp, outp = sys.argv[1], sys.argv[2]
a = ad.read_h5ad(inp)
sc.pp.normalize_total(a); sc.pp.log1p(a)
b = ad.read_h5ad(outp)
assert a.X.dtype == b.X.dtype, (a.X.dtype, b.X.dtype)
assert np.array_equal(a.X.data.view(np.uint8), b.X.data.view(np.uint8)), "data differ"
assert np.array_equal(a.X.indices, b.X.indices) and np.array_equal(a.X.indptr, b.X.indptr)
with h5py.File(inp, "r") as f, h5py.File(outp, "r") as g:
    di, do = f["X/data"], g["X/data"]
    assert (di.compression, di.compression_opts, di.shuffle, di.chunks) == \
        (do.compression, do.compression_opts, do.shuffle, do.chunks), "filters differ"
print("equal")
"#,
            &[s(&input), s(&output)],
        );
        assert!(out.contains("equal"), "{name}: {out}");
    }
}

fn input_problem(e: Error) -> (String, String) {
    match e {
        Error::Input {
            element, problem, ..
        } => (element, problem),
        other => panic!("expected an input error, got {other}"),
    }
}

/// A damaged deflate stream in one chunk: the reads that cover it fail with the clear
/// message, the others succeed.
#[test]
fn corrupt_chunk_gives_the_clear_error() {
    let dir = tempdir();
    let d = dir.path();
    let info = run_py(
        &format!(
            "{PY_MATRIX}{}",
            r#"
import sys, os, numpy as np, scipy.sparse as sp, pandas as pd, anndata as ad, h5py
p = os.path.join(sys.argv[1], "c.h5ad")
M = matrix(301, 203)
a = ad.AnnData(X=sp.csr_matrix(M.astype("float32")),
    obs=pd.DataFrame(index=[f"c{i}" for i in range(301)]),
    var=pd.DataFrame(index=[f"g{j}" for j in range(203)]))
a.write_h5ad(p)
with h5py.File(p, "r+") as f:
    v = f["X/data"][()]; del f["X/data"]
    f["X"].create_dataset("data", data=v, chunks=(1000,), compression="gzip", shuffle=True)
with h5py.File(p, "r") as f:
    info = f["X/data"].id.get_chunk_info(5)
    print(info.byte_offset, info.size, f["X/data"].shape[0])
"#
        ),
        &[s(d)],
    );
    let nums: Vec<u64> = info
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let (offset, size, nnz) = (nums[0], nums[1], nums[2]);
    let p = d.join("c.h5ad");
    corrupt(&p, offset + size / 3, 8);
    let input = open_input(&p).unwrap();
    let src = input.open_matrix(&ElementPath::X).unwrap();
    let src = src.sparse().expect("a sparse X");
    assert!(src.read_data(0..5000).is_ok());
    assert!(src.read_data(6000..nnz).is_ok());
    for r in [4500..7000, 5999..6000, 0..nnz] {
        let (e, msg) = input_problem(src.read_data(r.clone()).unwrap_err());
        assert_eq!(e, "X/data");
        assert!(
            msg.contains(&format!("cannot read elements {}..{}", r.start, r.end))
                && msg.contains("a compressed chunk is corrupt or truncated"),
            "{msg}"
        );
    }
}

fn corrupt(p: &Path, at: u64, n: usize) {
    let mut bytes = std::fs::read(p).unwrap();
    for b in &mut bytes[at as usize..at as usize + n] {
        *b ^= 0x5a;
    }
    std::fs::write(p, &bytes).unwrap();
}
