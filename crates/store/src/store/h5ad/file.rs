//! Opening .h5ad files, turning HDF5 errors into short messages, and attribute helpers.

use std::ffi::CString;
use std::io::Read;
use std::path::Path;

use hdf5::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Attribute, Dataset, File, Location, MajorErrorCode};
use hdf5_sys::h5a::{H5Acreate2, H5Aexists, H5Aget_space, H5Aget_type, H5Aread, H5Awrite};
use hdf5_sys::h5d::H5Dread;
use hdf5_sys::h5i::hid_t;
use hdf5_sys::h5p::H5P_DEFAULT;
use hdf5_sys::h5s::{H5Sclose, H5Sget_simple_extent_npoints, H5S_ALL};
use hdf5_sys::h5t::{H5T_direction_t, H5Tclose, H5Tget_native_type, H5Tget_size};

/// The first bytes of every HDF5 file (possibly after a user block of 512, 1024, ... bytes).
const HDF5_SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// Why a path cannot be opened as HDF5, in words, or `None` when it looks like HDF5.
pub(crate) fn precheck_hdf5(path: &Path) -> Option<String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some("no such file".to_string())
        }
        Err(e) => return Some(format!("cannot access the file: {e}")),
    };
    if meta.is_dir() {
        return Some("is a directory, not an .h5ad file".to_string());
    }
    if !meta.is_file() {
        return Some("not a regular file".to_string());
    }
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return Some(format!("cannot open the file: {e}")),
    };
    if meta.len() == 0 {
        return Some("the file is empty".to_string());
    }
    // The signature sits at 0, 512, 1024, 2048, ... (HDF5 user blocks).
    let mut offset: u64 = 0;
    let mut buf = [0u8; 8];
    loop {
        if offset + 8 > meta.len() {
            return Some("not an HDF5 file (no HDF5 signature)".to_string());
        }
        use std::io::Seek;
        if f.seek(std::io::SeekFrom::Start(offset)).is_err() || f.read_exact(&mut buf).is_err() {
            return Some("cannot read the file".to_string());
        }
        if &buf == HDF5_SIGNATURE {
            return None;
        }
        offset = if offset == 0 { 512 } else { offset * 2 };
    }
}

/// Per-dataset chunk cache for reads: room for the decompressed chunks a block read
/// straddles (h5py's guessed chunks are at most 1 MiB), so consecutive range reads do not
/// decompress a boundary chunk twice.
const READ_CACHE_BYTES: usize = 8 << 20;
const READ_CACHE_SLOTS: usize = 10_007;

/// Opens an HDF5 file read-only without file locking (shared and read-only file systems).
pub(crate) fn open_read(path: &Path) -> Result<File, String> {
    if let Some(problem) = precheck_hdf5(path) {
        return Err(problem);
    }
    super::filters::plugin::register();
    File::with_options()
        .with_fapl(|p| {
            p.file_locking(false)
                .chunk_cache(READ_CACHE_SLOTS, READ_CACHE_BYTES, 1.0)
        })
        .open(path)
        .map_err(|e| {
            if e.contains_major(MajorErrorCode::Io) || e.contains_major(MajorErrorCode::File) {
                "cannot open as HDF5: the file is truncated or damaged".to_string()
            } else {
                format!("cannot open as HDF5: {}", short(&e))
            }
        })
}

/// Creates (truncating) an HDF5 file for writing, without file locking; closing it closes
/// every object still open in it.
/// Bytes of a metadata block of a file written here.
const META_BLOCK: u64 = 512 << 10;

pub(crate) fn create_write(path: &Path) -> hdf5::Result<File> {
    super::filters::plugin::register();
    File::with_options()
        .with_fapl(|p| {
            // Metadata (B-tree nodes of chunked datasets above all) allocated in blocks of
            // this size rather than HDF5's 2 KiB: the nodes then lie together, not between
            // every few dozen chunks, so runs of chunks are long and written in one call.
            p.file_locking(false)
                .fclose_degree(hdf5::file::FileCloseDegree::Strong)
                .meta_block_size(META_BLOCK)
        })
        .create(path)
}

/// The gist of an HDF5 error: the innermost description, without the call stack. A failure
/// of a system call (HDF5's file driver reports "errno = N" among addresses and sizes) is
/// the OS's error as std words it ("No space left on device (os error 28)"), which
/// [`crate::Error::output`] turns into plain words.
pub(crate) fn short(e: &hdf5::Error) -> String {
    if let Some(errno) = os_errno(e) {
        return std::io::Error::from_raw_os_error(errno).to_string();
    }
    if let Some(stack) = e.stack() {
        if let Some(last) = stack.last() {
            return plain_hdf5(last.desc());
        }
    }
    plain_hdf5(&e.to_string())
}

/// HDF5's description of a damaged file in plainer words: its pointers to the manual and its
/// internal names of addresses dropped ("addr overflow, addr = 4201736, size = 104, eoa =
/// 121508" -> "address overflow (4201736 + 104 bytes beyond the file's end at 121508)").
fn plain_hdf5(desc: &str) -> String {
    let mut d = desc.to_string();
    if let Some(at) = d.find(". See documentation") {
        d.truncate(at);
    }
    d = d.replace(", possibly corrupted file", ": the file is damaged");
    d = d.replace("possibly corrupted file", "the file is damaged");
    d = d.replace("addr overflow", "address overflow");
    d = d.replace("addr = ", "address ");
    d = d.replace("eoa = ", "end of allocated space ");
    d
}

/// A failed copy of the input's `element` into `output`: a failed system call is the
/// output's problem (a full disk, ...); anything else is damage HDF5 found in the INPUT's
/// object (a bad heap, an address beyond the end of the file), so the input is named.
pub(crate) fn copy_error(
    input: &std::path::Path,
    output: &std::path::Path,
    element: &str,
    e: &hdf5::Error,
) -> crate::Error {
    if os_errno(e).is_some() {
        return crate::Error::output(output, format!("cannot copy {element}: {}", short(e)));
    }
    crate::Error::input(
        input,
        element,
        format!(
            "cannot be read to copy it (the file is damaged here): {}",
            short(e)
        ),
    )
}

/// The errno of a failed system call named anywhere in the error stack.
fn os_errno(e: &hdf5::Error) -> Option<i32> {
    let parse = |text: &str| {
        let at = text.find("errno = ")?;
        let digits: String = text[at + "errno = ".len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse::<i32>().ok().filter(|&n| n > 0)
    };
    match e.stack() {
        Some(stack) => stack.iter().find_map(|frame| parse(frame.desc())),
        None => parse(&e.to_string()),
    }
}

/// Describes a failed read of `what` (`elements a..b`, `rows a..b`) of `ds`. A filter this
/// build cannot decode is named ("HDF5 filter 32017 (SZ) is not supported"), not taken for
/// corruption.
pub(crate) fn read_problem(ds: &Dataset, what: &str, e: &hdf5::Error) -> String {
    // Whatever HDF5's words (a missing filter is not always reported as a pipeline error),
    // a filter this build cannot decode is the cause.
    if let Some(problem) = super::filters::unsupported(ds) {
        return problem;
    }
    let cause = if fails_checksum(e) {
        "a chunk fails its Fletcher32 checksum: the stored data is damaged".to_string()
    } else if e.contains_major(MajorErrorCode::Pipeline) {
        "a compressed chunk is corrupt or truncated".to_string()
    } else if e.contains_major(MajorErrorCode::Io)
        || e.contains_major(MajorErrorCode::VirtualFileLayer)
    {
        "the file is truncated or damaged".to_string()
    } else {
        short(e)
    };
    format!("cannot read {what}: {cause}")
}

/// Whether HDF5's fletcher32 filter rejected a chunk (the error sits deep in the stack,
/// under generic "filter returned failure" frames).
fn fails_checksum(e: &hdf5::Error) -> bool {
    e.stack().is_some_and(|s| {
        s.iter()
            .any(|f| f.desc().contains("detected by Fletcher32 checksum"))
    })
}

fn cstr(s: &str) -> CString {
    CString::new(s.replace('\0', "")).expect("no interior NUL")
}

/// Whether `loc` has an attribute `name`.
pub(crate) fn has_attr(loc: &Location, name: &str) -> bool {
    let c = cstr(name);
    // SAFETY: `loc` is open and `c` a CString alive for the call.
    hdf5::sync::sync(|| unsafe { H5Aexists(loc.id(), c.as_ptr()) } > 0)
}

/// A string attribute (variable- or fixed-length, scalar or one-element array).
pub(crate) fn str_attr(loc: &Location, name: &str) -> Option<String> {
    if !has_attr(loc, name) {
        return None;
    }
    let attr = loc.attr(name).ok()?;
    let mut v = attr_strings(&attr).ok()?;
    if v.len() == 1 {
        v.pop()
    } else {
        None
    }
}

/// All values of a string attribute.
pub(crate) fn attr_strings(attr: &Attribute) -> hdf5::Result<Vec<String>> {
    match attr.dtype()?.to_descriptor()? {
        TypeDescriptor::VarLenUnicode => Ok(attr
            .read_raw::<VarLenUnicode>()?
            .iter()
            .map(|s| s.as_str().to_string())
            .collect()),
        TypeDescriptor::VarLenAscii => Ok(attr
            .read_raw::<VarLenAscii>()?
            .iter()
            .map(|s| s.as_str().to_string())
            .collect()),
        TypeDescriptor::FixedAscii(n) | TypeDescriptor::FixedUnicode(n) => {
            fixed_strings(attr.id(), true, n)
        }
        other => Err(format!("not a string attribute ({other})").into()),
    }
}

/// All values of a 1-D (or scalar) string dataset.
pub(crate) fn dataset_strings(ds: &Dataset) -> hdf5::Result<Vec<String>> {
    match ds.dtype()?.to_descriptor()? {
        TypeDescriptor::VarLenUnicode => Ok(ds
            .read_raw::<VarLenUnicode>()?
            .iter()
            .map(|s| s.as_str().to_string())
            .collect()),
        TypeDescriptor::VarLenAscii => Ok(ds
            .read_raw::<VarLenAscii>()?
            .iter()
            .map(|s| s.as_str().to_string())
            .collect()),
        TypeDescriptor::FixedAscii(n) | TypeDescriptor::FixedUnicode(n) => {
            fixed_strings(ds.id(), false, n)
        }
        other => Err(format!("not a string dataset ({other})").into()),
    }
}

/// Reads fixed-length strings with the stored type as memory type.
fn fixed_strings(id: hid_t, is_attr: bool, size: usize) -> hdf5::Result<Vec<String>> {
    let n = if is_attr {
        // SAFETY: `id` is an open attribute of the caller's; the dataspace is closed once (an
        // invalid one makes the count call return -1).
        hdf5::sync::sync(|| unsafe {
            let space = H5Aget_space(id);
            let n = H5Sget_simple_extent_npoints(space);
            H5Sclose(space);
            n
        })
    } else {
        // SAFETY: as above, for an open dataset.
        hdf5::sync::sync(|| unsafe {
            let space = hdf5_sys::h5d::H5Dget_space(id);
            let n = H5Sget_simple_extent_npoints(space);
            H5Sclose(space);
            n
        })
    };
    if n < 0 {
        return Err("cannot get the size of a string array".into());
    }
    let n = n as usize;
    let mut buf = vec![0u8; n * size];
    // SAFETY: `size` is the stored fixed-length string type's size (from its descriptor) and
    // `n` the number of elements, so reading all of them with the stored type as memory type
    // writes exactly n * size bytes into `buf`; the type ids are closed once.
    let status = hdf5::sync::sync(|| unsafe {
        if is_attr {
            let t = H5Aget_type(id);
            let r = H5Aread(id, t, buf.as_mut_ptr().cast());
            H5Tclose(t);
            r
        } else {
            let t = hdf5_sys::h5d::H5Dget_type(id);
            let r = H5Dread(
                id,
                t,
                H5S_ALL,
                H5S_ALL,
                H5P_DEFAULT,
                buf.as_mut_ptr().cast(),
            );
            H5Tclose(t);
            r
        }
    });
    if status < 0 {
        return Err("cannot read a fixed-length string array".into());
    }
    Ok(buf
        .chunks(size.max(1))
        .take(n)
        .map(|c| {
            let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
            String::from_utf8_lossy(&c[..end]).trim_end().to_string()
        })
        .collect())
}

/// An integer array attribute (e.g. `shape`), widened to i64.
pub(crate) fn int_array_attr(loc: &Location, name: &str) -> Option<Vec<i64>> {
    if !has_attr(loc, name) {
        return None;
    }
    let attr = loc.attr(name).ok()?;
    match attr.dtype().ok()?.to_descriptor().ok()? {
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => attr.read_raw::<i64>().ok(),
        TypeDescriptor::Float(_) => {
            let v = attr.read_raw::<f64>().ok()?;
            v.iter()
                .all(|x| x.fract() == 0.0 && *x >= 0.0)
                .then(|| v.iter().map(|x| *x as i64).collect())
        }
        _ => None,
    }
}

/// Writes a variable-length UTF-8 scalar string attribute (anndata's convention), replacing
/// one of that name.
pub(crate) fn set_str_attr(loc: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    if has_attr(loc, name) {
        loc.delete_attr(name)?;
    }
    let v: VarLenUnicode = value
        .parse()
        .map_err(|_| hdf5::Error::from("string with a NUL byte"))?;
    loc.new_attr::<VarLenUnicode>()
        .shape(())
        .create(name)?
        .write_scalar(&v)
}

/// Writes a 1-D int64 attribute (`shape`), replacing one of that name.
pub(crate) fn set_i64_array_attr(loc: &Location, name: &str, values: &[i64]) -> hdf5::Result<()> {
    if has_attr(loc, name) {
        loc.delete_attr(name)?;
    }
    loc.new_attr::<i64>()
        .shape(values.len())
        .create(name)?
        .write_raw(values)
}

/// Writes a 1-D variable-length UTF-8 string array attribute; an empty list becomes an
/// empty float64 array, as anndata writes an empty `column-order`.
pub(crate) fn set_str_array_attr(
    loc: &Location,
    name: &str,
    values: &[String],
) -> hdf5::Result<()> {
    if has_attr(loc, name) {
        loc.delete_attr(name)?;
    }
    if values.is_empty() {
        return loc.new_attr::<f64>().shape(0).create(name).map(|_| ());
    }
    let v: Vec<VarLenUnicode> = values
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|_| hdf5::Error::from("string with a NUL byte"))
        })
        .collect::<hdf5::Result<_>>()?;
    loc.new_attr::<VarLenUnicode>()
        .shape(v.len())
        .create(name)?
        .write_raw(&v)
}

/// `encoding-type` and `encoding-version` as anndata writes them.
pub(crate) fn set_encoding(loc: &Location, kind: &str, version: &str) -> hdf5::Result<()> {
    set_str_attr(loc, "encoding-type", kind)?;
    set_str_attr(loc, "encoding-version", version)
}

/// Copies every attribute of `src` onto `dst` as it is (any type; variable-length data
/// included).
///
/// Attributes holding HDF5 references are left out: their values are positions in `src`'s
/// file, and [`super::refs::relink`] re-creates them once the output is complete.
pub(crate) fn copy_attrs(src: &Location, dst: &Location) -> hdf5::Result<()> {
    for name in src.attr_names()? {
        let attr = src.attr(&name)?;
        if super::refs::attr_has_refs(attr.id()) {
            continue;
        }
        copy_attr(&attr, dst, &name)?;
    }
    Ok(())
}

fn copy_attr(attr: &Attribute, dst: &Location, name: &str) -> hdf5::Result<()> {
    let c = cstr(name);
    // SAFETY: `attr` and `dst` are open; `buf` holds npoints * size(mtype) bytes (at least 1),
    // what H5Aread writes with the native memory type; variable-length data HDF5 allocates on
    // read is reclaimed once, after the write; every id obtained is closed once.
    let status = hdf5::sync::sync(|| unsafe {
        let ftype = H5Aget_type(attr.id());
        if ftype < 0 {
            return -1;
        }
        let space = H5Aget_space(attr.id());
        let mtype = H5Tget_native_type(ftype, H5T_direction_t::H5T_DIR_ASCEND);
        let npoints = H5Sget_simple_extent_npoints(space).max(0) as usize;
        let size = H5Tget_size(mtype);
        let mut buf = vec![0u8; npoints.max(1) * size.max(1)];
        let mut ok = H5Aread(attr.id(), mtype, buf.as_mut_ptr().cast()) >= 0;
        if ok {
            let new = H5Acreate2(dst.id(), c.as_ptr(), ftype, space, H5P_DEFAULT, H5P_DEFAULT);
            ok = new >= 0 && H5Awrite(new, mtype, buf.as_ptr().cast()) >= 0;
            if new >= 0 {
                hdf5_sys::h5a::H5Aclose(new);
            }
            if npoints > 0 {
                // Frees variable-length data HDF5 allocated on read; a no-op for other types.
                hdf5_sys::h5t::H5Treclaim(mtype, space, H5P_DEFAULT, buf.as_mut_ptr().cast());
            }
        }
        H5Tclose(mtype);
        H5Tclose(ftype);
        H5Sclose(space);
        if ok {
            0
        } else {
            -1
        }
    });
    if status < 0 {
        return Err(format!("cannot copy attribute {name}").into());
    }
    Ok(())
}

/// Dimensions of a dataset (empty for scalars; `None` for null dataspaces).
pub(crate) fn dims(ds: &Dataset) -> Option<Vec<u64>> {
    let space = ds.space().ok()?;
    if space.is_null() {
        return None;
    }
    Some(space.shape().iter().map(|&d| d as u64).collect())
}
