//! The Rust codecs registered with libhdf5 as filter classes (`H5Zregister`), so that every
//! read and write through HDF5's own pipeline decodes and encodes them.
//!
//! libhdf5 calls a filter function with the chunk in a buffer it owns (allocated with its
//! allocator); the function returns a new buffer of the result, allocated with
//! `H5allocate_memory`, after freeing the old one with `H5free_memory`. Any failure returns
//! 0, which HDF5 reports as a failed filter (a pipeline error); a panic is caught before it
//! can unwind into C.
//!
//! Dynamic plugin loading is switched off: this binary links libhdf5 statically, and a
//! plugin library built against a shared libhdf5 (hdf5plugin's, via `HDF5_PLUGIN_PATH`)
//! would run against a second, uninitialised copy of it. A filter that is neither built in
//! nor registered here then fails with "not registered", which [`super::unsupported`]
//! turns into a named error.

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use hdf5_sys::h5::{herr_t, hsize_t, H5allocate_memory, H5free_memory};
use hdf5_sys::h5i::hid_t;
use hdf5_sys::h5p::{H5Pget_chunk, H5Pget_filter_by_id2, H5Pmodify_filter};
use hdf5_sys::h5t::{H5Tclose, H5Tget_class, H5Tget_size, H5Tget_super, H5T_ARRAY};
use hdf5_sys::h5z::{H5Z_class2_t, H5Z_filter_t, H5Zregister, H5Z_CLASS_T_VERS, H5Z_FLAG_REVERSE};

use super::{
    bitshuffle, blosc, Codec, BITSHUFFLE_ID, BLOSC_ID, BZIP2_ID, LZ4_ID, MAX_CHUNK_BYTES, ZSTD_ID,
};

// SAFETY: declares libhdf5's H5PLset_loading_state with its C signature (one unsigned int); linked statically.
unsafe extern "C" {
    /// libhdf5's `H5PLset_loading_state(unsigned int)` (hdf5-sys declares its argument as a
    /// pointer).
    #[link_name = "H5PLset_loading_state"]
    fn set_plugin_loading(plugin_control_mask: c_uint) -> herr_t;
}

static REGISTER: Once = Once::new();

/// Registers the filters once per process (called before any file is opened or created).
pub(crate) fn register() {
    REGISTER.call_once(|| {
        let classes: [(H5Z_filter_t, &'static [u8], bool); 5] = [
            (BLOSC_ID, b"blosc\0", true),
            (LZ4_ID, b"lz4\0", false),
            (BITSHUFFLE_ID, b"bitshuffle\0", true),
            (ZSTD_ID, b"zstd\0", false),
            (BZIP2_ID, b"bzip2\0", false),
        ];
        // `sync` also initialises the library first.
        hdf5::sync::sync(|| {
            for (id, name, set_local) in classes {
                let class = H5Z_class2_t {
                    version: H5Z_CLASS_T_VERS as c_int,
                    id,
                    encoder_present: 1,
                    decoder_present: 1,
                    name: name.as_ptr().cast::<c_char>(),
                    can_apply: None,
                    set_local: if set_local { Some(set_local_cb) } else { None },
                    filter: Some(filter_cb(id)),
                };
                // SAFETY: `class` is a valid H5Z_class2_t whose name is a static
                // NUL-terminated string; HDF5 copies the struct. Called under HDF5's lock.
                unsafe { H5Zregister((&class as *const H5Z_class2_t).cast::<c_void>()) };
            }
            // SAFETY: a plain setter of a library-wide flag, under HDF5's lock.
            unsafe { set_plugin_loading(0) };
        });
    });
}

// SAFETY: the H5Z_func_t signature libhdf5 calls filter callbacks with; only `filter_fn` has it.
type FilterFn = unsafe extern "C" fn(
    c_uint,
    usize,
    *const c_uint,
    usize,
    *mut usize,
    *mut *mut c_void,
) -> usize;

/// The filter function of filter `id` (one monomorphic function per id, since HDF5 does not
/// pass the id).
fn filter_cb(id: H5Z_filter_t) -> FilterFn {
    match id {
        BLOSC_ID => filter_fn::<BLOSC_ID>,
        LZ4_ID => filter_fn::<LZ4_ID>,
        BITSHUFFLE_ID => filter_fn::<BITSHUFFLE_ID>,
        ZSTD_ID => filter_fn::<ZSTD_ID>,
        _ => filter_fn::<BZIP2_ID>,
    }
}

/// HDF5's filter callback for filter `ID`: decodes (`H5Z_FLAG_REVERSE`) or encodes the
/// `nbytes` bytes at `*buf` and replaces the buffer by the result.
///
/// # Safety
/// Called by libhdf5 only, with `cd_values` holding `cd_nelmts` values, `*buf` a buffer
/// of at least `nbytes` bytes allocated by HDF5's allocator, and `buf_size` its size.
// SAFETY: callers (libhdf5 only) meet the contract of the `# Safety` section above.
unsafe extern "C" fn filter_fn<const ID: H5Z_filter_t>(
    flags: c_uint,
    cd_nelmts: usize,
    cd_values: *const c_uint,
    nbytes: usize,
    buf_size: *mut usize,
    buf: *mut *mut c_void,
) -> usize {
    // Nothing below may unwind into C: a panic becomes a failed filter.
    let run = AssertUnwindSafe(|| -> Option<usize> {
        if buf.is_null() || buf_size.is_null() {
            return None;
        }
        // SAFETY: per this function's contract, `cd_values` holds `cd_nelmts` values and
        // `*buf` holds at least `nbytes` bytes; both stay valid for the whole call (HDF5
        // holds its lock and owns them; nothing else touches them meanwhile).
        let cd: &[u32] = if cd_nelmts == 0 || cd_values.is_null() {
            &[]
        } else {
            // SAFETY: non-null `cd_values` holds `cd_nelmts` values (this function's contract).
            unsafe { std::slice::from_raw_parts(cd_values, cd_nelmts) }
        };
        // SAFETY: `buf` was checked non-null above and points at HDF5's buffer pointer.
        let src = unsafe { *buf };
        if src.is_null() && nbytes > 0 {
            return None;
        }
        let input: &[u8] = if nbytes == 0 {
            &[]
        } else {
            // SAFETY: `src` is non-null here and holds at least `nbytes` bytes (contract).
            unsafe { std::slice::from_raw_parts(src.cast::<u8>(), nbytes) }
        };
        let codec = Codec::of(ID, cd).ok()??;
        let out = if flags & H5Z_FLAG_REVERSE != 0 {
            codec.decode_vec(input, None).ok()?
        } else {
            codec.encode(input).ok()?
        };
        if out.is_empty() || out.len() > MAX_CHUNK_BYTES {
            return None;
        }
        // SAFETY: HDF5's allocator, as the pipeline requires for the buffers it frees;
        // the new buffer has `out.len()` bytes and does not overlap `out`.
        let dst = unsafe { H5allocate_memory(out.len(), 0) };
        if dst.is_null() {
            return None;
        }
        // SAFETY: `dst` holds `out.len()` bytes and does not overlap `out`; `src` came from HDF5's allocator and is freed once, then replaced in `*buf`/`*buf_size` (both checked non-null).
        unsafe {
            std::ptr::copy_nonoverlapping(out.as_ptr(), dst.cast::<u8>(), out.len());
            H5free_memory(src);
            *buf = dst;
            *buf_size = out.len();
        }
        Some(out.len())
    });
    catch_unwind(run).ok().flatten().unwrap_or(0)
}

/// Fills in the type-dependent `cd_values` when a dataset with blosc or bitshuffle is
/// created, as the reference filters do: blosc `[2]` typesize and `[3]` chunk bytes;
/// bitshuffle `[2]` element size (the version slots first when the user gave none). The
/// other values (the input's options) are kept as given.
extern "C" fn set_local_cb(dcpl_id: hid_t, type_id: hid_t, _space_id: hid_t) -> herr_t {
    let run = AssertUnwindSafe(|| -> Option<()> {
        const MAX_CD: usize = 20;
        const MAX_NDIMS: usize = 32;
        let mut which: Option<H5Z_filter_t> = None;
        let mut flags: c_uint = 0;
        let mut n: usize = MAX_CD;
        let mut values = [0 as c_uint; MAX_CD];
        for id in [BLOSC_ID, BITSHUFFLE_ID] {
            n = MAX_CD;
            // SAFETY: called by HDF5 (under its lock) with a valid dcpl; the buffers hold
            // MAX_CD values and one flag; the name is not asked for.
            let r = unsafe {
                H5Pget_filter_by_id2(
                    dcpl_id,
                    id,
                    &mut flags,
                    &mut n,
                    values.as_mut_ptr(),
                    0,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            if r >= 0 {
                which = Some(id);
                break;
            }
        }
        let id = which?;
        let n = n.min(MAX_CD);
        // SAFETY: `type_id` is the valid datatype HDF5 passes; the super type is closed.
        let typesize = unsafe { H5Tget_size(type_id) };
        if typesize == 0 {
            return None;
        }
        // SAFETY: `type_id` is the valid datatype HDF5 passes; the super type opened here is closed here.
        let base = unsafe {
            if H5Tget_class(type_id) == H5T_ARRAY {
                let sup = H5Tget_super(type_id);
                let s = H5Tget_size(sup);
                H5Tclose(sup);
                s
            } else {
                typesize
            }
        };
        let mut cd: Vec<c_uint> = values[..n].to_vec();
        if id == BLOSC_ID {
            if cd.len() < 4 {
                cd.resize(4, 0);
            }
            cd[0] = blosc::FILTER_VERSION;
            cd[1] = blosc::FORMAT_VERSION;
            cd[2] = if base > blosc::MAX_TYPESIZE {
                1
            } else {
                base as c_uint
            };
            let mut dims = [0 as hsize_t; MAX_NDIMS];
            // SAFETY: `dims` has room for MAX_NDIMS dimensions.
            let rank = unsafe { H5Pget_chunk(dcpl_id, MAX_NDIMS as c_int, dims.as_mut_ptr()) };
            if rank < 0 || rank as usize > MAX_NDIMS {
                return None;
            }
            let bytes = dims[..rank as usize]
                .iter()
                .fold(typesize as u64, |a, &d| a.saturating_mul(d));
            cd[3] = bytes.min(u64::from(u32::MAX)) as c_uint;
        } else if cd.len() >= 3 {
            cd[2] = typesize as c_uint;
        } else {
            let mut full = vec![
                bitshuffle::VERSION.0,
                bitshuffle::VERSION.1,
                typesize as c_uint,
            ];
            full.extend_from_slice(&cd);
            cd = full;
        }
        // SAFETY: `cd` holds `cd.len()` values; HDF5 copies them.
        let r = unsafe { H5Pmodify_filter(dcpl_id, id, flags, cd.len(), cd.as_ptr()) };
        (r >= 0).then_some(())
    });
    match catch_unwind(run) {
        Ok(Some(())) => 1,
        _ => -1,
    }
}
