//! New-style HDF5 references (`H5T_STD_REF`: object, region, attribute; HDF5 1.12+), which
//! h5py cannot write, resolve in the output to the objects at the same paths of the output
//! itself (not of the input, which a new-style reference can also name), in datasets and in
//! attributes. Old-style references are covered by tests/interop/test_legacy_refs.py.

use std::ffi::{c_char, CString};
use std::path::Path;
use std::process::Command;

use hdf5::File;
use hdf5_sys::h5a::{H5Aclose, H5Acreate2, H5Aopen, H5Aread, H5Awrite};
use hdf5_sys::h5d::{H5Dclose, H5Dcreate2, H5Dopen2, H5Dread, H5Dwrite};
use hdf5_sys::h5i::hid_t;
use hdf5_sys::h5p::H5P_DEFAULT;
use hdf5_sys::h5r::{
    H5R_ref_t, H5R_type_t, H5Rcreate_attr, H5Rcreate_object, H5Rcreate_region, H5Rdestroy,
    H5Rget_attr_name, H5Rget_file_name, H5Rget_obj_name, H5Rget_type, H5Ropen_region,
};
use hdf5_sys::h5s::{
    H5S_class_t, H5S_seloper_t, H5Sclose, H5Screate, H5Screate_simple, H5Sget_select_bounds,
    H5Sget_select_npoints, H5Sselect_hyperslab, H5S_ALL,
};

const BIN: &str = env!("CARGO_BIN_EXE_atlasnorm");

/// The CLI under test: `ATLASNORM_BIN` (e.g. an older build, to see this test fail), else
/// this crate's binary.
fn bin() -> String {
    std::env::var("ATLASNORM_BIN").unwrap_or_else(|_| BIN.to_string())
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn name_of(get: impl Fn(*mut c_char, usize) -> isize) -> String {
    let mut buf = vec![0u8; 1024];
    let n = get(buf.as_mut_ptr().cast(), buf.len());
    assert!(n >= 0, "cannot read a reference's name");
    buf.truncate(n as usize);
    String::from_utf8(buf).unwrap()
}

/// Adds to `path` (an AnnData file): `uns/newrefs` = [obj /obs, region /uns/vals[2..5],
/// attribute /uns/vals@units, null, obj /X/data], and an attribute `uns@to_var` = obj /var.
fn add_new_style_refs(path: &Path) {
    let f = File::open_rw(path).unwrap();
    let uns = if f.link_exists("uns") {
        f.group("uns").unwrap()
    } else {
        f.create_group("uns").unwrap()
    };
    let vals = uns.new_dataset::<f64>().shape(10).create("vals").unwrap();
    vals.write_raw(&(0..10).map(|i| i as f64 * 1.5).collect::<Vec<_>>())
        .unwrap();
    vals.new_attr::<i32>()
        .shape(())
        .create("units")
        .unwrap()
        .write_scalar(&7)
        .unwrap();
    let fid = f.id();
    // SAFETY: every id used below is created and checked in this block; buffers match the datatypes written.
    hdf5::sync::sync(|| unsafe {
        let mut refs = vec![H5R_ref_t::default(); 5];
        assert!(H5Rcreate_object(fid, c("/obs").as_ptr(), H5P_DEFAULT, &mut refs[0]) >= 0);
        let dims = [10u64];
        let space = H5Screate_simple(1, dims.as_ptr(), std::ptr::null());
        let (start, count) = ([2u64], [3u64]);
        H5Sselect_hyperslab(
            space,
            H5S_seloper_t::H5S_SELECT_SET,
            start.as_ptr(),
            std::ptr::null(),
            count.as_ptr(),
            std::ptr::null(),
        );
        assert!(
            H5Rcreate_region(
                fid,
                c("/uns/vals").as_ptr(),
                space,
                H5P_DEFAULT,
                &mut refs[1]
            ) >= 0
        );
        H5Sclose(space);
        assert!(
            H5Rcreate_attr(
                fid,
                c("/uns/vals").as_ptr(),
                c("units").as_ptr(),
                H5P_DEFAULT,
                &mut refs[2]
            ) >= 0
        );
        // refs[3] stays null.
        assert!(H5Rcreate_object(fid, c("/X/data").as_ptr(), H5P_DEFAULT, &mut refs[4]) >= 0);
        let rt = *hdf5_sys::h5t::H5T_STD_REF;
        let dims = [5u64];
        let space = H5Screate_simple(1, dims.as_ptr(), std::ptr::null());
        let ds = H5Dcreate2(
            uns.id(),
            c("newrefs").as_ptr(),
            rt,
            space,
            H5P_DEFAULT,
            H5P_DEFAULT,
            H5P_DEFAULT,
        );
        assert!(ds >= 0);
        assert!(H5Dwrite(ds, rt, H5S_ALL, H5S_ALL, H5P_DEFAULT, refs.as_ptr().cast()) >= 0);
        H5Dclose(ds);
        H5Sclose(space);
        for (i, r) in refs.iter_mut().enumerate() {
            if i != 3 {
                H5Rdestroy(r);
            }
        }
        let mut r = H5R_ref_t::default();
        assert!(H5Rcreate_object(fid, c("/var").as_ptr(), H5P_DEFAULT, &mut r) >= 0);
        let scalar = H5Screate(H5S_class_t::H5S_SCALAR);
        let a = H5Acreate2(
            uns.id(),
            c("to_var").as_ptr(),
            rt,
            scalar,
            H5P_DEFAULT,
            H5P_DEFAULT,
        );
        assert!(a >= 0);
        assert!(H5Awrite(a, rt, (&r as *const H5R_ref_t).cast()) >= 0);
        H5Aclose(a);
        H5Sclose(scalar);
        H5Rdestroy(&mut r);
    });
}

fn file_of(r: &H5R_ref_t) -> String {
    // SAFETY: `r` is a valid reference; `name_of` passes a buffer of `n` bytes.
    name_of(|b, n| unsafe { H5Rget_file_name(r, b, n) })
}

fn obj_of(r: &H5R_ref_t) -> String {
    // SAFETY: `r` is a valid reference; `name_of` passes a buffer of `n` bytes.
    name_of(|b, n| unsafe { H5Rget_obj_name(r, H5P_DEFAULT, b, n) })
}

fn read_refs(f: &File, ds_path: &str, n: usize) -> Vec<H5R_ref_t> {
    let mut refs = vec![H5R_ref_t::default(); n];
    // SAFETY: `refs` has room for the `n` references read; the dataset id is checked and closed in the block.
    hdf5::sync::sync(|| unsafe {
        let ds: hid_t = H5Dopen2(f.id(), c(ds_path).as_ptr(), H5P_DEFAULT);
        assert!(ds >= 0, "no {ds_path}");
        let rt = *hdf5_sys::h5t::H5T_STD_REF;
        assert!(
            H5Dread(
                ds,
                rt,
                H5S_ALL,
                H5S_ALL,
                H5P_DEFAULT,
                refs.as_mut_ptr().cast()
            ) >= 0
        );
        H5Dclose(ds);
    });
    refs
}

#[test]
fn new_style_references_point_into_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("in.h5ad");
    let out = dir.path().join("out.h5ad");
    let st = Command::new(BIN)
        .args([
            "synth",
            inp.to_str().unwrap(),
            "--cells",
            "50",
            "--genes",
            "20",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    add_new_style_refs(&inp);
    let run = Command::new(bin())
        .args([
            "normalize",
            inp.to_str().unwrap(),
            out.to_str().unwrap(),
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let f = File::open(&out).unwrap();
    let out_name = f.filename();
    let mut refs = read_refs(&f, "/uns/newrefs", 5);
    // SAFETY: `refs` holds valid references read above; each is destroyed once at the end.
    hdf5::sync::sync(|| unsafe {
        for (i, want) in [
            (0, "/obs"),
            (1, "/uns/vals"),
            (2, "/uns/vals"),
            (4, "/X/data"),
        ] {
            assert_eq!(obj_of(&refs[i]), want, "reference {i}");
            assert_eq!(
                file_of(&refs[i]),
                out_name,
                "reference {i} names another file"
            );
        }
        assert_eq!(H5Rget_type(&refs[0]), H5R_type_t::H5R_OBJECT2);
        assert_eq!(H5Rget_type(&refs[1]), H5R_type_t::H5R_DATASET_REGION2);
        assert_eq!(H5Rget_type(&refs[2]), H5R_type_t::H5R_ATTR);
        let space = H5Ropen_region(&refs[1], H5P_DEFAULT, H5P_DEFAULT);
        assert!(space >= 0);
        assert_eq!(H5Sget_select_npoints(space), 3);
        let (mut lo, mut hi) = ([0u64], [0u64]);
        assert!(H5Sget_select_bounds(space, lo.as_mut_ptr(), hi.as_mut_ptr()) >= 0);
        assert_eq!((lo[0], hi[0]), (2, 4));
        H5Sclose(space);
        assert_eq!(
            name_of(|b, n| H5Rget_attr_name(&refs[2], b, n)),
            "units".to_string()
        );
        let bytes: &[u8; 64] = &*(&refs[3] as *const H5R_ref_t).cast::<[u8; 64]>();
        assert!(
            bytes.iter().all(|&b| b == 0),
            "the null reference stays null"
        );
        for (i, r) in refs.iter_mut().enumerate() {
            if i != 3 {
                H5Rdestroy(r);
            }
        }
        // The attribute.
        let uns = f.group("uns").unwrap();
        let a = H5Aopen(uns.id(), c("to_var").as_ptr(), H5P_DEFAULT);
        assert!(a >= 0, "uns@to_var is missing");
        let mut r = H5R_ref_t::default();
        assert!(
            H5Aread(
                a,
                *hdf5_sys::h5t::H5T_STD_REF,
                (&mut r as *mut H5R_ref_t).cast()
            ) >= 0
        );
        H5Aclose(a);
        assert_eq!(obj_of(&r), "/var");
        assert_eq!(file_of(&r), out_name);
        H5Rdestroy(&mut r);
    });
    // The region selects the same values as in the input.
    let vals = f.dataset("uns/vals").unwrap().read_raw::<f64>().unwrap();
    assert_eq!(vals[2..5], [3.0, 4.5, 6.0]);
}
