//! Carrying a whole AnnData through the format-neutral tree: .h5ad → [`TreeReader`] →
//! [`H5adTreeWriter`] gives back the same file (h5py: every group, dataset, attribute with
//! its HDF5 type, chunking; anndata: every element equal), in bounded row blocks; and
//! [`H5adOutput::create_from_tree`] builds an output the engine can finish.

use atlasnorm_testkit::python as h5ad_common;

use std::path::Path;

use atlasnorm_core::engine::uns_log1p;
use atlasnorm_store::array::{DType, NumVec};
use atlasnorm_store::store::h5ad::{H5adInput, H5adOutput, H5adTreeWriter};
use atlasnorm_store::store::tree::{
    copy_tree, ArrayData, ArrayInfo, Attrs, TreeReader, TreeWriter,
};
use atlasnorm_store::store::{
    ElementPath, InputStore, MatrixLayout, OutputLayout, OutputMatrixSpec, OutputStore,
    SparseStructure,
};
use h5ad_common::{run_py, s, tempdir};

const RICH: &str = include_str!("tree_copy_py/rich.py");
const COMPARE: &str = include_str!("tree_copy_py/compare.py");

fn make_rich(path: &Path, n_obs: u64, n_vars: u64) {
    run_py(RICH, &[s(path), &n_obs.to_string(), &n_vars.to_string()]);
}

/// Compares two files with h5py and anndata; `skip`: comma-separated element paths.
fn compare(a: &Path, b: &Path, skip: &str) {
    let r = run_py(COMPARE, &[s(a), s(b), skip]);
    assert_eq!(r.trim(), "SAME", "differences:\n{r}");
}

fn round_trip(input: &Path, writer: &mut dyn TreeWriter, budget: u64) {
    let reader = H5adInput::open(input).unwrap();
    copy_tree(&reader, writer, &[], budget).unwrap();
}

#[test]
fn h5ad_round_trip_through_the_tree_is_identical() {
    let dir = tempdir();
    let inp = dir.path().join("rich.h5ad");
    let outp = dir.path().join("copy.h5ad");
    make_rich(&inp, 37, 23);
    let mut w = H5adTreeWriter::create(&outp).unwrap();
    round_trip(&inp, &mut w, 1 << 20);
    w.finish().unwrap();
    compare(&inp, &outp, "");
}

/// Passes everything to an [`H5adTreeWriter`], recording the blocks.
struct Counting {
    inner: H5adTreeWriter,
    infos: std::collections::HashMap<String, ArrayInfo>,
    /// (array, rows, approximate bytes) per write.
    writes: Vec<(String, u64, u64)>,
}

impl TreeWriter for Counting {
    fn create_group(&mut self, group: &str, attrs: &Attrs) -> atlasnorm_store::Result<()> {
        self.inner.create_group(group, attrs)
    }
    fn create_array(&mut self, array: &str, info: &ArrayInfo) -> atlasnorm_store::Result<()> {
        self.infos.insert(array.to_string(), info.clone());
        self.inner.create_array(array, info)
    }
    fn write_rows(
        &mut self,
        array: &str,
        first_row: u64,
        data: &ArrayData,
    ) -> atlasnorm_store::Result<()> {
        let info = &self.infos[array];
        let len = match data {
            ArrayData::Num(v) => v.len(),
            ArrayData::Bool(v) => v.len(),
            ArrayData::String(v) => v.len(),
        } as u64;
        let rows = len / info.row_len().max(1);
        self.writes.push((
            array.to_string(),
            rows,
            len * info.elem.approx_size() as u64,
        ));
        self.inner.write_rows(array, first_row, data)
    }
    fn create_null(&mut self, path: &str, attrs: &Attrs) -> atlasnorm_store::Result<()> {
        self.inner.create_null(path, attrs)
    }
}

#[test]
fn small_budget_copies_large_arrays_in_many_blocks() {
    let dir = tempdir();
    let inp = dir.path().join("big.h5ad");
    let outp = dir.path().join("copy.h5ad");
    make_rich(&inp, 3000, 400);
    let budget = 4096;
    let mut w = Counting {
        inner: H5adTreeWriter::create(&outp).unwrap(),
        infos: Default::default(),
        writes: Vec::new(),
    };
    round_trip(&inp, &mut w, budget);
    let blocks = |name: &str| w.writes.iter().filter(|(a, ..)| a == name).count();
    // 3000 x 400 float64 = 9.6 MB in rows of 3200 bytes: one row a block.
    assert_eq!(blocks("layers/dense"), 3000);
    assert!(
        blocks("layers/counts/data") > 100,
        "{}",
        blocks("layers/counts/data")
    );
    assert!(blocks("obs/_index/values") > 10);
    assert!(blocks("obsm/X_pca") > 10);
    for (a, rows, bytes) in &w.writes {
        let row_bytes = bytes / rows;
        assert!(
            *bytes <= budget || *rows == 1,
            "{a}: {rows} rows of {row_bytes} bytes in one block"
        );
    }
    w.inner.finish().unwrap();
    compare(&inp, &outp, "");
}

/// The output of `create_from_tree` minus the normalized element equals the input; the
/// engine's part (matrix with copied structure, obs column, uns/log1p) completes it.
#[test]
fn output_from_a_tree_reader() {
    let dir = tempdir();
    let inp = dir.path().join("rich.h5ad");
    make_rich(&inp, 37, 23);
    let input = H5adInput::open(&inp).unwrap();
    let reader: &dyn TreeReader = &input;
    for (i, element) in [ElementPath::X, ElementPath::Layer("counts".into())]
        .into_iter()
        .enumerate()
    {
        let outp = dir.path().join(format!("out{i}.h5ad"));
        let mut out = H5adOutput::create_from_tree(reader, &inp, &outp, &element, 1024).unwrap();
        assert_eq!(out.input_path(), inp.as_path());
        let src = input.open_matrix(&element).unwrap();
        let src = src.sparse().expect("a sparse matrix");
        let m = src.meta().clone();
        assert_eq!(m.layout, MatrixLayout::Csr);
        let spec = OutputMatrixSpec {
            layout: OutputLayout::Csr,
            n_obs: m.n_obs,
            n_vars: m.n_vars,
            nnz: m.nnz,
            data_dtype: DType::F32,
            structure: SparseStructure::CopyFromInput,
        };
        {
            let mut sink = out.create_matrix(&element, &spec).unwrap();
            let half: Vec<f32> = src
                .read_data(0..m.nnz)
                .unwrap()
                .to_f64()
                .into_iter()
                .map(|x| (x / 2.0) as f32)
                .collect();
            for part in half.chunks(100) {
                sink.append_data(&NumVec::F32(part.to_vec())).unwrap();
            }
            sink.finish().unwrap();
        }
        out.write_obs_column("factor", &NumVec::F64((0..37).map(f64::from).collect()))
            .unwrap();
        out.write_uns("log1p", &uns_log1p(Some(2.0))).unwrap();
        Box::new(out).commit().unwrap();
        let path = element.store_path();
        compare(&inp, &outp, &format!("{path},uns/log1p,obs"));
        let r = run_py(
            r#"
import sys, numpy as np, anndata as ad, h5py
a, b, path = ad.read_h5ad(sys.argv[1]), ad.read_h5ad(sys.argv[2]), sys.argv[3]
get = lambda x: x.X if path == "X" else x.layers[path.split("/")[1]]
x, y = get(a), get(b)
assert y.format == "csr" and y.dtype == np.float32, (y.format, y.dtype)
assert np.array_equal(x.indices, y.indices) and np.array_equal(x.indptr, y.indptr)
assert np.array_equal(y.data, (x.data.astype(np.float64) / 2).astype(np.float32))
assert list(b.obs.columns) == list(a.obs.columns) + ["factor"]
import pandas as pd
pd.testing.assert_frame_equal(a.obs, b.obs.drop(columns="factor"), check_exact=True)
assert np.array_equal(b.obs["factor"].to_numpy(), np.arange(37.0))
assert b.uns["log1p"] == {"base": 2.0}
with h5py.File(sys.argv[2]) as f:
    for m in ("data", "indices", "indptr"):
        d = f[path][m]
        assert d.chunks is not None and d.maxshape == (None,), (m, d.chunks, d.maxshape)
print("OK")
"#,
            &[s(&inp), s(&outp), &path],
        );
        assert_eq!(r.trim(), "OK");
    }
}

#[test]
fn create_from_tree_leaves_nothing_on_failure() {
    let dir = tempdir();
    let inp = dir.path().join("rich.h5ad");
    make_rich(&inp, 5, 4);
    let input = H5adInput::open(&inp).unwrap();
    // A reader whose arrays cannot be read: the temporary file goes away.
    struct Broken<'a>(&'a H5adInput);
    impl TreeReader for Broken<'_> {
        fn children(
            &self,
            g: &str,
        ) -> atlasnorm_store::Result<Vec<(String, atlasnorm_store::store::tree::NodeKind)>>
        {
            self.0.children(g)
        }
        fn group_attrs(&self, g: &str) -> atlasnorm_store::Result<Attrs> {
            self.0.group_attrs(g)
        }
        fn array_info(&self, a: &str) -> atlasnorm_store::Result<ArrayInfo> {
            self.0.array_info(a)
        }
        fn read_rows(
            &self,
            a: &str,
            _rows: std::ops::Range<u64>,
        ) -> atlasnorm_store::Result<ArrayData> {
            Err(atlasnorm_store::Error::input(
                Path::new("broken"),
                a,
                "unreadable",
            ))
        }
    }
    let outp = dir.path().join("out.h5ad");
    let err = H5adOutput::create_from_tree(&Broken(&input), &inp, &outp, &ElementPath::X, 1024)
        .err()
        .expect("fails");
    assert!(err.to_string().contains("unreadable"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

/// A tree given in memory, the way the zarr side presents anndata's zarr stores (JSON
/// attributes: `ordered` as a JSON bool, `shape` as a list, an empty `column-order` as `[]`;
/// `null` elements as 0-d bool arrays, a root-level null `raw`).
struct MemReader {
    nodes: std::collections::BTreeMap<String, (Attrs, Option<(ArrayInfo, ArrayData)>)>,
}

impl TreeReader for MemReader {
    fn children(
        &self,
        group: &str,
    ) -> atlasnorm_store::Result<Vec<(String, atlasnorm_store::store::tree::NodeKind)>> {
        Ok(atlasnorm_store::store::tree::members_in(&self.nodes, group)
            .into_iter()
            .map(|(name, (_, a))| {
                let kind = if a.is_some() {
                    atlasnorm_store::store::tree::NodeKind::Array
                } else {
                    atlasnorm_store::store::tree::NodeKind::Group
                };
                (name.to_string(), kind)
            })
            .collect())
    }
    fn group_attrs(&self, group: &str) -> atlasnorm_store::Result<Attrs> {
        Ok(self.nodes[group].0.clone())
    }
    fn array_info(&self, array: &str) -> atlasnorm_store::Result<ArrayInfo> {
        Ok(self.nodes[array].1.as_ref().unwrap().0.clone())
    }
    fn read_rows(
        &self,
        array: &str,
        rows: std::ops::Range<u64>,
    ) -> atlasnorm_store::Result<ArrayData> {
        let (info, data) = self.nodes[array].1.as_ref().unwrap();
        assert_eq!(rows, 0..info.n_rows(), "one block in this test");
        Ok(data.clone())
    }
}

fn json_attrs(v: serde_json::Value) -> Attrs {
    v.as_object().unwrap().clone()
}

#[test]
fn zarr_like_tree_becomes_an_anndata_h5ad() {
    use atlasnorm_store::store::tree::ElemType;
    use serde_json::json;
    let mut nodes = std::collections::BTreeMap::new();
    let enc = |t: &str, v: &str| json!({"encoding-type": t, "encoding-version": v});
    let mut group = |p: &str, a: serde_json::Value| {
        nodes.insert(p.to_string(), (json_attrs(a), None));
    };
    group("", enc("anndata", "0.1.0"));
    group(
        "obs",
        json!({"encoding-type": "dataframe", "encoding-version": "0.2.0",
               "_index": "_index", "column-order": []}),
    );
    group(
        "var",
        json!({"encoding-type": "dataframe", "encoding-version": "0.2.0",
               "_index": "_index", "column-order": ["kind"]}),
    );
    group(
        "var/kind",
        json!({"encoding-type": "categorical", "encoding-version": "0.2.0", "ordered": true}),
    );
    group(
        "X",
        json!({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": [3, 2]}),
    );
    group("layers", enc("dict", "0.1.0"));
    group("uns", enc("dict", "0.1.0"));
    let mut array = |p: &str, a: serde_json::Value, elem, shape: Vec<u64>, d: ArrayData| {
        let attrs = json_attrs(a);
        let info = ArrayInfo {
            elem,
            shape,
            attrs: attrs.clone(),
        };
        nodes.insert(p.to_string(), (attrs, Some((info, d))));
    };
    let strs = |v: &[&str]| ArrayData::String(v.iter().map(|s| s.to_string()).collect());
    array(
        "obs/_index",
        enc("string-array", "0.2.0"),
        ElemType::String,
        vec![3],
        strs(&["c0", "c1", "c2"]),
    );
    array(
        "var/_index",
        enc("string-array", "0.2.0"),
        ElemType::String,
        vec![2],
        strs(&["g0", "g1"]),
    );
    array(
        "var/kind/codes",
        enc("array", "0.2.0"),
        ElemType::Num(DType::I8),
        vec![2],
        ArrayData::Num(NumVec::I8(vec![1, 0])),
    );
    array(
        "var/kind/categories",
        enc("string-array", "0.2.0"),
        ElemType::String,
        vec![2],
        strs(&["lo", "hi"]),
    );
    array(
        "X/data",
        json!({}),
        ElemType::Num(DType::F32),
        vec![3],
        ArrayData::Num(NumVec::F32(vec![1.0, 2.0, 3.0])),
    );
    array(
        "X/indices",
        json!({}),
        ElemType::Num(DType::I32),
        vec![3],
        ArrayData::Num(NumVec::I32(vec![0, 0, 1])),
    );
    array(
        "X/indptr",
        json!({}),
        ElemType::Num(DType::I32),
        vec![4],
        ArrayData::Num(NumVec::I32(vec![0, 1, 1, 3])),
    );
    let null = || json!({"encoding-type": "null", "encoding-version": "0.1.0"});
    array(
        "raw",
        null(),
        ElemType::Bool,
        vec![],
        ArrayData::Bool(vec![false]),
    );
    array(
        "uns/none",
        null(),
        ElemType::Bool,
        vec![],
        ArrayData::Bool(vec![false]),
    );
    array(
        "uns/flag",
        enc("numeric-scalar", "0.2.0"),
        ElemType::Bool,
        vec![],
        ArrayData::Bool(vec![true]),
    );
    array(
        "uns/mask",
        enc("array", "0.2.0"),
        ElemType::Bool,
        vec![3],
        ArrayData::Bool(vec![true, false, true]),
    );
    array(
        "uns/title",
        enc("string", "0.2.0"),
        ElemType::String,
        vec![],
        strs(&["héllo"]),
    );
    array(
        "uns/x",
        enc("numeric-scalar", "0.2.0"),
        ElemType::Num(DType::F64),
        vec![],
        ArrayData::Num(NumVec::F64(vec![0.25])),
    );
    let reader = MemReader { nodes };
    let dir = tempdir();
    let outp = dir.path().join("from_tree.h5ad");
    let mut w = H5adTreeWriter::create(&outp).unwrap();
    copy_tree(&reader, &mut w, &[], 1 << 20).unwrap();
    w.finish().unwrap();
    let r = run_py(
        r#"
import sys, numpy as np, h5py, anndata as ad
a = ad.read_h5ad(sys.argv[1])
assert a.shape == (3, 2) and list(a.obs_names) == ["c0", "c1", "c2"]
assert a.X.format == "csr" and a.X.dtype == np.float32
assert np.array_equal(a.X.toarray(), [[1, 0], [0, 0], [2, 3]])
assert list(a.var["kind"]) == ["hi", "lo"] and a.var["kind"].cat.ordered
assert a.raw is None
assert a.uns["none"] is None and a.uns["flag"] == True
assert a.uns["title"] == "héllo" and a.uns["x"] == 0.25
assert a.uns["mask"].dtype == bool and list(a.uns["mask"]) == [True, False, True]
with h5py.File(sys.argv[1]) as f:
    assert "raw" not in f
    co = f["obs"].attrs["column-order"]
    assert co.dtype == np.float64 and co.shape == (0,), co
    assert f["var"].attrs.get_id("column-order").get_type().is_variable_str()
    o = f["var/kind"].attrs.get_id("ordered")
    assert o.get_type().get_class() == h5py.h5t.ENUM and o.shape == ()
    s = f["X"].attrs["shape"]
    assert s.dtype == np.int64 and list(s) == [3, 2]
    t = f["X"].attrs.get_id("encoding-type").get_type()
    assert t.is_variable_str() and t.get_cset() == h5py.h5t.CSET_UTF8
    n = f["uns/none"]
    assert n.shape is None and n.dtype == np.float32
    assert f["uns/mask"].id.get_type().get_class() == h5py.h5t.ENUM
    assert f["uns/title"].shape == () and f["uns/flag"].shape == ()
    for m in ("data", "indices", "indptr"):
        assert f["X"][m].chunks is not None and f["X"][m].maxshape == (None,)
    assert f["obs/_index"].chunks is None
print("OK")
"#,
        &[s(&outp)],
    );
    assert_eq!(r.trim(), "OK");
}
