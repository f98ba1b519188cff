//! Pre-0.7 AnnData: `obs`/`var` stored as one compound (record) dataset whose first field
//! is the index.

use std::ffi::CStr;

use hdf5::Dataset;
use hdf5_sys::h5d::{H5Dget_type, H5Dread};
use hdf5_sys::h5p::H5P_DEFAULT;
use hdf5_sys::h5s::{H5Sclose, H5Sget_simple_extent_npoints, H5S_ALL};
use hdf5_sys::h5t::H5Treclaim;
use hdf5_sys::h5t::{
    H5T_class_t, H5Tclose, H5Tcreate, H5Tget_class, H5Tget_member_name, H5Tget_member_type,
    H5Tget_nmembers, H5Tget_size, H5Tinsert, H5Tis_variable_str,
};

/// The strings of the first field of a compound dataset (the index of a legacy dataframe).
pub(crate) fn compound_first_field(ds: &Dataset) -> Result<Vec<String>, String> {
    // SAFETY: under HDF5's lock, with `ds` open: what `read_first_field` requires.
    hdf5::sync::sync(|| unsafe { read_first_field(ds) })
}

/// # Safety
/// Call with HDF5's global lock held (`hdf5::sync::sync`) and `ds` open. Inside: `buf` holds
/// n * size bytes for the one-member memory compound of `size` bytes; a variable-length cell
/// is a `char *` HDF5 allocated (NUL-terminated or null), read before `H5Treclaim` frees it;
/// every id and the member name are released once.
// SAFETY: see `# Safety` above.
unsafe fn read_first_field(ds: &Dataset) -> Result<Vec<String>, String> {
    let ftype = H5Dget_type(ds.id());
    if ftype < 0 {
        return Err("cannot read its type".into());
    }
    let result = (|| {
        if H5Tget_class(ftype) != H5T_class_t::H5T_COMPOUND || H5Tget_nmembers(ftype) < 1 {
            return Err("not a dataframe (neither a group nor a record array)".to_string());
        }
        let mtype = H5Tget_member_type(ftype, 0);
        let name = H5Tget_member_name(ftype, 0);
        if mtype < 0 || name.is_null() {
            return Err("cannot read its first field".to_string());
        }
        let out = (|| {
            if H5Tget_class(mtype) != H5T_class_t::H5T_STRING {
                return Err("its first field does not hold strings".to_string());
            }
            let vlen = H5Tis_variable_str(mtype) > 0;
            let size = H5Tget_size(mtype);
            let memtype = H5Tcreate(H5T_class_t::H5T_COMPOUND, size);
            H5Tinsert(memtype, name, 0, mtype);
            let space = hdf5_sys::h5d::H5Dget_space(ds.id());
            let n = H5Sget_simple_extent_npoints(space).max(0) as usize;
            let mut buf = vec![0u8; n * size];
            let status = H5Dread(
                ds.id(),
                memtype,
                H5S_ALL,
                H5S_ALL,
                H5P_DEFAULT,
                buf.as_mut_ptr().cast(),
            );
            let mut strings = Vec::with_capacity(n);
            if status >= 0 {
                for i in 0..n {
                    let cell = &buf[i * size..(i + 1) * size];
                    if vlen {
                        let ptr = usize::from_ne_bytes(
                            cell[..std::mem::size_of::<usize>()].try_into().unwrap(),
                        ) as *const std::ffi::c_char;
                        strings.push(if ptr.is_null() {
                            String::new()
                        } else {
                            CStr::from_ptr(ptr).to_string_lossy().into_owned()
                        });
                    } else {
                        let end = cell.iter().position(|&b| b == 0).unwrap_or(cell.len());
                        strings.push(String::from_utf8_lossy(&cell[..end]).into_owned());
                    }
                }
                if vlen {
                    H5Treclaim(memtype, space, H5P_DEFAULT, buf.as_mut_ptr().cast());
                }
            }
            H5Sclose(space);
            H5Tclose(memtype);
            if status < 0 {
                Err("cannot read its first field".to_string())
            } else {
                Ok(strings)
            }
        })();
        H5Tclose(mtype);
        hdf5_sys::h5::H5free_memory(name.cast());
        out
    })();
    H5Tclose(ftype);
    result
}
