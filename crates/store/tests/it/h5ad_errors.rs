//! Clear errors for bad inputs: not HDF5, truncated, not AnnData, missing layer, unsupported
//! encodings, shape mismatches, corrupt compressed chunks; temporary outputs removed on drop.

use atlasnorm_testkit::python as h5ad_common;

use std::path::Path;

use atlasnorm_store::array::DType;
use atlasnorm_store::store::h5ad::{H5adInput, H5adOutput};
use atlasnorm_store::store::{
    create_output, open_input, ElementPath, Input, InputStore as _, OutputLayout, OutputMatrixSpec,
    SparseStructure,
};
use atlasnorm_store::Error;
use h5ad_common::{run_py, s, tempdir, PY_MATRIX};

const MAKE: &str = r#"
import sys, os, shutil, numpy as np, scipy.sparse as sp, pandas as pd, anndata as ad, h5py
out = sys.argv[1]
M = matrix(37, 23)
obs = pd.DataFrame(index=[f"cell{i}" for i in range(37)])
var = pd.DataFrame({"x": np.arange(23.0)}, index=[f"gene{j}" for j in range(23)])
a = ad.AnnData(X=sp.csr_matrix(M.astype("float32")), obs=obs, var=var)
a.layers["dense"] = M.astype("float32")
a.write_h5ad(os.path.join(out, "good.h5ad"))
def variant(name, fn, base="good.h5ad"):
    p = os.path.join(out, name)
    shutil.copy(os.path.join(out, base), p)
    with h5py.File(p, "r+") as f:
        fn(f)
def x_dataframe(f):
    del f["X"]; f.copy(f["var"], "X")
variant("x_dataframe.h5ad", x_dataframe)
def layer_1d(f):
    f["layers"].create_dataset("vec", data=np.arange(5.0))
    d = f["layers"].create_dataset("strings", data=np.array([["a", "b"]] * 37, dtype=object), dtype=h5py.string_dtype())
    d.attrs["encoding-type"] = "string-array"; d.attrs["encoding-version"] = "0.2.0"
    d = f["layers"].create_dataset("raw_strings", data=np.array([["a"] * 23] * 37, dtype=object), dtype=h5py.string_dtype())
variant("layer_odd.h5ad", layer_1d)
def shape_1d(f): f["X"].attrs["shape"] = np.array([37], dtype="int64")
variant("shape_1d.h5ad", shape_1d)
def no_shape(f): del f["X"].attrs["shape"]
variant("no_shape.h5ad", no_shape)
def bad_indptr(f): f["X"].attrs["shape"] = np.array([36, 23], dtype="int64")
variant("bad_indptr.h5ad", bad_indptr)
def bad_indices(f):
    v = f["X/indices"][()]; del f["X/indices"]; f["X"].create_dataset("indices", data=v[:-1])
variant("bad_indices.h5ad", bad_indices)
def var_short(f):
    g = f["var/_index"]
    v = g["values"][()][:22]; m = g["mask"][()][:22]
    del g["values"], g["mask"]
    d = g.create_dataset("values", data=v, dtype=h5py.string_dtype()); d.attrs["encoding-type"] = "string-array"; d.attrs["encoding-version"] = "0.2.0"
    d = g.create_dataset("mask", data=m); d.attrs["encoding-type"] = "array"; d.attrs["encoding-version"] = "0.2.0"
variant("var_short.h5ad", var_short)
with h5py.File(os.path.join(out, "plain.h5"), "w") as f:
    f.create_dataset("foo", data=np.arange(3))
# corrupt gzip chunk: data in chunks of 50 values, flip bytes in the middle of chunk 3
a.write_h5ad(os.path.join(out, "gz.h5ad"), compression="gzip")
with h5py.File(os.path.join(out, "gz.h5ad"), "r+") as f:
    v = f["X/data"][()]; del f["X/data"]
    f["X"].create_dataset("data", data=v, chunks=(50,), compression="gzip")
with h5py.File(os.path.join(out, "gz.h5ad"), "r") as f:
    info = f["X/data"].id.get_chunk_info(3)
    print(info.byte_offset, info.size, f["X/data"].shape[0])
shutil.copy(os.path.join(out, "gz.h5ad"), os.path.join(out, "corrupt.h5ad"))
"#;

fn problem(e: Error) -> (String, String) {
    match e {
        Error::Input {
            element, problem, ..
        } => {
            eprintln!("MSG {element}: {problem}");
            (element, problem)
        }
        other => panic!("expected an input error, got {other}"),
    }
}

fn open_err(p: &Path) -> (String, String) {
    match H5adInput::open(p) {
        Ok(_) => panic!("{} opened", p.display()),
        Err(e) => problem(e),
    }
}

fn matrix_err(p: &Path, element: ElementPath) -> (String, String) {
    let input = open_input(p).unwrap_or_else(|e| panic!("{e}"));
    let result = match input.open_matrix(&element) {
        Ok(_) => panic!("{} {element:?} opened", p.display()),
        Err(e) => problem(e),
    };
    result
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = tempdir();
    let d = dir.path();
    let info = run_py(&format!("{PY_MATRIX}{MAKE}"), &[s(d)]);
    let nums: Vec<u64> = info
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let (offset, size, nnz) = (nums[0], nums[1], nums[2]);

    // not a file, not HDF5, empty, truncated, not AnnData
    let (_, p) = open_err(&d.join("missing.h5ad"));
    assert!(p.contains("no such file"), "{p}");
    let (_, p) = open_err(d);
    assert!(p.contains("directory"), "{p}");
    std::fs::write(d.join("text.h5ad"), "hello, this is not HDF5 at all").unwrap();
    let (_, p) = open_err(&d.join("text.h5ad"));
    assert!(p.contains("not an HDF5 file"), "{p}");
    std::fs::write(d.join("empty.h5ad"), "").unwrap();
    let (_, p) = open_err(&d.join("empty.h5ad"));
    assert!(p.contains("empty"), "{p}");
    let bytes = std::fs::read(d.join("gz.h5ad")).unwrap();
    std::fs::write(d.join("truncated.h5ad"), &bytes[..bytes.len() / 2]).unwrap();
    let (_, p) = open_err(&d.join("truncated.h5ad"));
    assert!(p.contains("truncated"), "{p}");
    assert!(!p.contains("H5F"), "no raw HDF5 stack: {p}");
    let (e, p) = open_err(&d.join("plain.h5"));
    assert_eq!(e, "/");
    assert!(p.contains("not an AnnData file"), "{p}");

    // missing layer, unsupported encodings
    let good = d.join("good.h5ad");
    let (e, p) = matrix_err(&good, ElementPath::Layer("nope".into()));
    assert_eq!(e, "layers/nope");
    assert!(p.contains("no layer named 'nope'"), "{p}");
    let (e, p) = matrix_err(&d.join("x_dataframe.h5ad"), ElementPath::X);
    assert_eq!(e, "X");
    assert!(p.contains("dataframe"), "{p}");
    let odd = d.join("layer_odd.h5ad");
    let (e, p) = matrix_err(&odd, ElementPath::Layer("vec".into()));
    assert_eq!(e, "layers/vec");
    assert!(p.contains("1-D"), "{p}");
    let (_, p) = matrix_err(&odd, ElementPath::Layer("strings".into()));
    assert!(p.contains("string-array"), "{p}");
    let (_, p) = matrix_err(&odd, ElementPath::Layer("raw_strings".into()));
    assert!(p.contains("string data"), "{p}");

    // structure
    let (_, p) = matrix_err(&d.join("shape_1d.h5ad"), ElementPath::X);
    assert!(p.contains("shape"), "{p}");
    let (_, p) = matrix_err(&d.join("no_shape.h5ad"), ElementPath::X);
    assert!(p.contains("without a 'shape'"), "{p}");
    let (e, p) = matrix_err(&d.join("bad_indptr.h5ad"), ElementPath::X);
    assert_eq!(e, "X/indptr");
    assert!(p.contains("38 entries, expected 37"), "{p}");
    let (e, p) = matrix_err(&d.join("bad_indices.h5ad"), ElementPath::X);
    assert_eq!(e, "X/indices");
    assert!(p.contains("but data has"), "{p}");
    let (e, p) = matrix_err(&d.join("var_short.h5ad"), ElementPath::X);
    assert_eq!(e, "X");
    assert!(p.contains("does not match the 22 entries of var"), "{p}");
    let (e, p) = matrix_err(
        &d.join("var_short.h5ad"),
        ElementPath::Layer("dense".into()),
    );
    assert_eq!(e, "layers/dense");
    assert!(p.contains("22 entries of var"), "{p}");

    // corrupt compressed chunk: flip bytes inside chunk 3 (values 150..200)
    let corrupt = d.join("corrupt.h5ad");
    let mut bytes = std::fs::read(&corrupt).unwrap();
    for b in &mut bytes[(offset + size / 3) as usize..(offset + size / 3 + 8) as usize] {
        *b ^= 0x5a;
    }
    std::fs::write(&corrupt, &bytes).unwrap();
    let input = open_input(&corrupt).unwrap();
    let src = input.open_matrix(&ElementPath::X).unwrap();
    let src = src.sparse().expect("a sparse X");
    assert_eq!(src.meta().nnz, nnz);
    assert!(src.read_data(0..150).is_ok());
    let (e, p) = problem(src.read_data(100..nnz).unwrap_err());
    assert_eq!(e, "X/data");
    assert!(
        p.contains(&format!("cannot read elements 100..{nnz}"))
            && p.contains("corrupt or truncated"),
        "{p}"
    );
    assert!(src.read_data(200..nnz).is_ok());
}

#[test]
fn temporary_output_is_removed_on_drop() {
    let dir = tempdir();
    let d = dir.path();
    run_py(&format!("{PY_MATRIX}{MAKE}"), &[s(d)]);
    let h5ad_input = H5adInput::open(&d.join("good.h5ad")).unwrap();
    let target = d.join("out.h5ad");
    let tmps = || -> Vec<String> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("atlasnorm") && n.ends_with(".tmp"))
            .collect()
    };
    {
        let out = H5adOutput::create(&h5ad_input, &target, &ElementPath::X).unwrap();
        assert!(out.temp_path().exists());
        assert_eq!(tmps().len(), 1);
        assert!(out
            .temp_path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".out.h5ad.atlasnorm-"));
    }
    assert!(tmps().is_empty());
    assert!(!target.exists());
    // error path: a sink that is asked for the wrong thing, then dropped
    let input = Input::H5ad(h5ad_input);
    {
        let mut out = create_output(
            &input,
            &target,
            &ElementPath::X,
            &atlasnorm_store::Options::default(),
        )
        .unwrap();
        let spec = OutputMatrixSpec {
            layout: OutputLayout::Csr,
            n_obs: 37,
            n_vars: 23,
            nnz: 5,
            data_dtype: DType::F32,
            structure: SparseStructure::CopyFromInput,
        };
        assert!(out.create_matrix(&ElementPath::X, &spec).is_err());
        let spec = OutputMatrixSpec {
            nnz: 0,
            structure: SparseStructure::Write {
                indices: DType::I32,
                indptr: DType::I32,
            },
            ..spec
        };
        let sink = out.create_matrix(&ElementPath::X, &spec).unwrap();
        // finish without any data: indptr count is wrong
        assert!(sink.finish().is_err());
        assert_eq!(tmps().len(), 1);
    }
    assert!(tmps().is_empty());
    assert!(!target.exists());
}
