//! Variable-length strings of a contiguous dataset, read from the file's bytes.
//!
//! HDF5 hands out variable-length strings one at a time: a global-heap lookup through its
//! metadata cache and an allocation per string, under its global lock (~0.5 µs a string;
//! the 101 k names in the obs and var of a pbmc68k file took 55 ms to check, a fifth of the
//! whole run). The stored form is simple. A contiguous dataset holds, per element, the
//! string's length and a global-heap ID: the file address of a heap collection and an
//! object's index in it; a collection (`GCOL`) lists its objects back to back. This module
//! reads the element bytes and the collections with `pread` and parses them
//! ([`parse_ids`], [`Collection::parse`]: no I/O).
//!
//! It takes only the plain case — contiguous storage in the file itself, no user block,
//! every object found with the size the element gives — and returns `None` otherwise,
//! before anything is decided: the caller then reads through HDF5, which judges an unusual
//! or damaged file in its own words. What it returns is what HDF5's read gives a C caller
//! (h5py): the object's bytes up to the first NUL, a null or empty element as no bytes.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use hdf5::Dataset;
use hdf5_sys::h5::{hsize_t, HADDR_UNDEF};
use hdf5_sys::h5d::{
    H5D_layout_t, H5Dget_create_plist, H5Dget_offset, H5Dget_storage_size, H5Dget_type,
};
use hdf5_sys::h5f::{H5Fclose, H5Fget_create_plist};
use hdf5_sys::h5i::H5Iget_file_id;
use hdf5_sys::h5p::{
    H5Pclose, H5Pget_external_count, H5Pget_layout, H5Pget_sizes, H5Pget_userblock,
};
use hdf5_sys::h5t::{H5T_class_t, H5Tclose, H5Tget_class, H5Tis_variable_str};

/// Bytes read at a collection's address before its header is known.
const FIRST_READ: u64 = 64 << 10;

/// A heap collection larger than this is taken as damage (HDF5 then judges it); spans
/// within one are kept as `u32`.
const MAX_COLLECTION: u64 = u32::MAX as u64;

/// Where a dataset's elements lie and how the file encodes addresses and lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stored {
    /// File offset of the first element.
    offset: u64,
    /// Bytes of raw data HDF5 allocated for the dataset.
    storage: u64,
    /// Bytes of a file address (the superblock's "size of offsets").
    addr_size: usize,
    /// Bytes of a length (the superblock's "size of lengths").
    size_size: usize,
}

impl Stored {
    fn elem_size(&self) -> usize {
        4 + self.addr_size + 4
    }
}

/// What HDF5 says of `ds`'s storage, when it is a variable-length string dataset stored
/// contiguously in its own file with no user block; `None` otherwise.
fn stored(ds: &Dataset) -> Option<Stored> {
    // SAFETY: `ds` is an open dataset; every id opened here is checked and closed once.
    hdf5::sync::sync(|| unsafe {
        let ftype = H5Dget_type(ds.id());
        if ftype < 0 {
            return None;
        }
        let vlen_string =
            H5Tget_class(ftype) == H5T_class_t::H5T_STRING && H5Tis_variable_str(ftype) > 0;
        H5Tclose(ftype);
        if !vlen_string {
            return None;
        }
        let dcpl = H5Dget_create_plist(ds.id());
        if dcpl < 0 {
            return None;
        }
        let plain =
            H5Pget_layout(dcpl) == H5D_layout_t::H5D_CONTIGUOUS && H5Pget_external_count(dcpl) == 0;
        H5Pclose(dcpl);
        if !plain {
            return None;
        }
        let offset = H5Dget_offset(ds.id());
        if offset == HADDR_UNDEF {
            return None; // never written
        }
        let storage = H5Dget_storage_size(ds.id());
        let file = H5Iget_file_id(ds.id());
        if file < 0 {
            return None;
        }
        let fcpl = H5Fget_create_plist(file);
        H5Fclose(file);
        if fcpl < 0 {
            return None;
        }
        let (mut addr_size, mut size_size, mut userblock): (usize, usize, hsize_t) = (0, 0, 1);
        let ok = H5Pget_sizes(fcpl, &mut addr_size, &mut size_size) >= 0
            && H5Pget_userblock(fcpl, &mut userblock) >= 0;
        H5Pclose(fcpl);
        let sizes = |n: usize| matches!(n, 2 | 4 | 8);
        (ok && userblock == 0 && sizes(addr_size) && sizes(size_size)).then_some(Stored {
            offset,
            storage,
            addr_size,
            size_size,
        })
    })
}

/// Little-endian unsigned integer of 1 to 8 bytes.
fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// One stored element: the string's length in bytes and its global-heap ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HeapId {
    len: u32,
    /// File address of the collection; 0 for a null element.
    collection: u64,
    index: u32,
}

/// The elements' heap IDs, from their stored bytes (`4 + addr_size + 4` each).
fn parse_ids(bytes: &[u8], addr_size: usize) -> Vec<HeapId> {
    bytes
        .chunks_exact(4 + addr_size + 4)
        .map(|e| HeapId {
            len: le(&e[..4]) as u32,
            collection: le(&e[4..4 + addr_size]),
            index: le(&e[4 + addr_size..]) as u32,
        })
        .collect()
}

/// A parsed global heap collection: each object's byte range in the collection's bytes, by
/// object index (a 16-bit number in the format, so the table stays small).
#[derive(Debug, Default, PartialEq, Eq)]
struct Collection {
    objects: Vec<Option<(u32, u32)>>,
}

fn align8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

/// Bytes of a collection's header: signature, version, reserved, size; rounded up to 8.
fn header_size(size_size: usize) -> usize {
    align8(8 + size_size as u64) as usize
}

/// The collection size a collection's header gives, when `head` starts a version-1
/// collection; `None` otherwise.
fn collection_size(head: &[u8], size_size: usize) -> Option<u64> {
    (head.len() >= 8 + size_size && &head[..4] == b"GCOL" && head[4] == 1)
        .then(|| le(&head[8..8 + size_size]))
}

impl Collection {
    /// Parses a whole collection (`bytes` = its collection size, below 4 GiB) as HDF5 does:
    /// objects back to back, each a header (index, reference count, reserved, size) and its
    /// data padded to 8 bytes; index 0 is the free space, which ends the list. `None` when
    /// an object runs past the end or an index repeats.
    fn parse(bytes: &[u8], size_size: usize) -> Option<Self> {
        let obj_header = 8 + size_size;
        let mut objects: Vec<Option<(u32, u32)>> = Vec::new();
        let mut at = header_size(size_size);
        while at + obj_header <= bytes.len() {
            let index = le(&bytes[at..at + 2]) as usize;
            if index == 0 {
                break;
            }
            let size = le(&bytes[at + 8..at + obj_header]);
            let start = at + obj_header;
            let end = (start as u64).checked_add(size)?;
            if end > bytes.len() as u64 {
                return None;
            }
            if objects.len() <= index {
                objects.resize(index + 1, None);
            }
            if objects[index].replace((start as u32, end as u32)).is_some() {
                return None;
            }
            at = (start as u64).checked_add(align8(size))? as usize;
        }
        Some(Collection { objects })
    }

    fn object(&self, index: u32) -> Option<(u32, u32)> {
        self.objects.get(index as usize).copied().flatten()
    }
}

/// The strings read: the collections' bytes and each string's place in them.
pub(super) struct Strings {
    collections: Vec<Vec<u8>>,
    /// Per element: (collection, start, end); a null or empty element is `(0, 0, 0)` over
    /// an empty first entry.
    spans: Vec<(u32, u32, u32)>,
}

impl Strings {
    /// Each element's bytes as HDF5's read gives them to a C caller: up to the first NUL.
    pub(super) fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.spans.iter().map(|&(c, start, end)| {
            let s = &self.collections[c as usize][start as usize..end as usize];
            s.iter().position(|&b| b == 0).map_or(s, |nul| &s[..nul])
        })
    }
}

/// The collection at `addr` of `file` (`file_len` bytes), read with one `pread` of
/// [`FIRST_READ`] bytes when it fits (h5py's collections are 4 to 64 KiB), else two; `None`
/// when no version-1 collection of a plausible size starts there.
fn read_collection(file: &File, file_len: u64, addr: u64, size_size: usize) -> Option<Vec<u8>> {
    let head_len = header_size(size_size) as u64;
    let first = FIRST_READ.min(file_len.checked_sub(addr)?);
    if first < head_len {
        return None;
    }
    let mut bytes = vec![0u8; first as usize];
    file.read_exact_at(&mut bytes, addr).ok()?;
    let size = collection_size(&bytes, size_size)?;
    if size < head_len || size > MAX_COLLECTION || addr.checked_add(size)? > file_len {
        return None;
    }
    if size <= first {
        bytes.truncate(size as usize);
    } else {
        bytes.resize(size as usize, 0);
        file.read_exact_at(&mut bytes[first as usize..], addr + first)
            .ok()?;
    }
    Some(bytes)
}

/// Elements `first..first + n` of the variable-length string dataset `ds` in the file at
/// `path`; `None` when the dataset is not one this module reads (see the module's doc) or
/// anything in it looks other than HDF5 would read it. Every element is located before
/// any is returned, so a caller that falls back on `None` has decided nothing yet.
pub(super) fn read(ds: &Dataset, path: &Path, first: u64, n: usize) -> Option<Strings> {
    let st = stored(ds)?;
    let es = st.elem_size() as u64;
    let end = first.checked_add(n as u64)?.checked_mul(es)?;
    if end > st.storage {
        return None;
    }
    let file = File::open(path).ok()?;
    let file_len = file.metadata().ok()?.len();
    let mut raw = vec![0u8; n * es as usize];
    let at = st.offset.checked_add(first * es)?;
    if at.checked_add(raw.len() as u64)? > file_len {
        return None;
    }
    file.read_exact_at(&mut raw, at).ok()?;
    let ids = parse_ids(&raw, st.addr_size);
    drop(raw);

    // Collections in use, each read and parsed once; entry 0 is the empty one of null
    // elements. Consecutive elements mostly share a collection: the last one is kept.
    let mut bytes: Vec<Vec<u8>> = vec![Vec::new()];
    let mut parsed: Vec<Collection> = vec![Collection::default()];
    let mut by_addr: HashMap<u64, u32> = HashMap::new();
    let mut last: Option<(u64, u32)> = None;
    let mut spans = Vec::with_capacity(n);
    for id in ids {
        if id.collection == 0 {
            // A null element (HDF5 gives a null pointer): only with no length.
            if id.len != 0 {
                return None;
            }
            spans.push((0, 0, 0));
            continue;
        }
        let c = match last {
            Some((addr, c)) if addr == id.collection => c,
            _ => {
                let c = match by_addr.get(&id.collection) {
                    Some(&c) => c,
                    None => {
                        let b = read_collection(&file, file_len, id.collection, st.size_size)?;
                        parsed.push(Collection::parse(&b, st.size_size)?);
                        bytes.push(b);
                        let c = (bytes.len() - 1) as u32;
                        by_addr.insert(id.collection, c);
                        c
                    }
                };
                last = Some((id.collection, c));
                c
            }
        };
        let (start, stop) = parsed[c as usize].object(id.index)?;
        if stop - start != id.len {
            return None;
        }
        spans.push((c, start, stop));
    }
    Some(Strings {
        collections: bytes,
        spans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::{c_char, CString};
    use std::ops::Range;

    use hdf5::types::VarLenUnicode;
    use hdf5::Datatype;

    /// A file at `dir/name` with a variable-length UTF-8 string dataset `s` holding
    /// `values` (`None`: a null pointer), written through HDF5 as h5py writes them;
    /// `chunk`: chunked storage instead of contiguous.
    fn written(
        dir: &Path,
        name: &str,
        values: &[Option<Vec<u8>>],
        chunk: Option<usize>,
    ) -> (hdf5::File, Dataset) {
        let path = dir.join(name);
        let file = hdf5::File::create(&path).unwrap();
        let builder = file.new_dataset::<VarLenUnicode>().shape(values.len());
        let ds = match chunk {
            Some(c) => builder.chunk(c).create("s"),
            None => builder.create("s"),
        }
        .unwrap();
        let owned: Vec<Option<CString>> = values
            .iter()
            .map(|v| v.as_ref().map(|b| CString::new(b.clone()).unwrap()))
            .collect();
        let mut ptrs: Vec<*const c_char> = owned
            .iter()
            .map(|c| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()))
            .collect();
        let mem = Datatype::from_type::<VarLenUnicode>().unwrap();
        let buf = (ptrs.as_mut_ptr().cast(), std::mem::size_of_val(&ptrs[..]));
        let shape = [values.len() as u64];
        super::super::tree::transfer(&ds, &shape, &(0..values.len() as u64), mem.id(), buf, true)
            .unwrap();
        file.flush().unwrap();
        (file, ds)
    }

    fn through_hdf5(ds: &Dataset, rows: Range<u64>) -> Vec<Vec<u8>> {
        let mem = Datatype::from_type::<VarLenUnicode>().unwrap();
        let shape = [ds.shape()[0] as u64];
        let n = (rows.end - rows.start) as usize;
        super::super::tree::hdf5_vlen(ds, &shape, &rows, mem.id(), n).unwrap()
    }

    fn direct(ds: &Dataset, path: &Path, rows: Range<u64>) -> Option<Vec<Vec<u8>>> {
        let n = (rows.end - rows.start) as usize;
        read(ds, path, rows.start, n).map(|s| s.iter().map(<[u8]>::to_vec).collect())
    }

    #[test]
    fn strings_read_from_the_file_equal_hdf5s_read() {
        let dir = tempfile::tempdir().unwrap();
        // Many short strings (many collections), empty and null ones, bytes that are not
        // UTF-8, and strings larger than a collection's default size.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut values: Vec<Option<Vec<u8>>> = (0..50_000)
            .map(|i| match next() % 50 {
                0 => None,
                1 => Some(Vec::new()),
                2 => Some(vec![b'x'; 5000 + (next() % 100_000) as usize]),
                3 => Some((0..next() % 40).map(|_| 1 + (next() % 255) as u8).collect()),
                _ => Some(format!("cell-{i}-{}", next() % 1000).into_bytes()),
            })
            .collect();
        values.push(Some("ü€😀".as_bytes().to_vec()));
        let (_file, ds) = written(dir.path(), "a.h5", &values, None);
        let path = dir.path().join("a.h5");
        let n = values.len() as u64;
        for rows in [0..n, 0..1, 17..4000, n - 1..n, 123..123] {
            let fast = direct(&ds, &path, rows.clone()).expect("a contiguous dataset is read");
            assert_eq!(fast, through_hdf5(&ds, rows.clone()), "rows {rows:?}");
        }
        let expected: Vec<Vec<u8>> = values.into_iter().map(Option::unwrap_or_default).collect();
        assert_eq!(direct(&ds, &path, 0..n).unwrap(), expected);
    }

    #[test]
    fn other_storage_is_left_to_hdf5() {
        let dir = tempfile::tempdir().unwrap();
        let values = vec![Some(b"a".to_vec()); 10];
        let (_file, ds) = written(dir.path(), "c.h5", &values, Some(4));
        assert!(direct(&ds, &dir.path().join("c.h5"), 0..10).is_none());
        // A range past the stored elements.
        let (_f, ds) = written(dir.path(), "d.h5", &values, None);
        assert!(read(&ds, &dir.path().join("d.h5"), 5, 6).is_none());
    }

    #[test]
    fn a_damaged_heap_is_left_to_hdf5() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<Option<Vec<u8>>> = (0..100)
            .map(|i| Some(format!("v{i}").into_bytes()))
            .collect();
        let (file, ds) = written(dir.path(), "e.h5", &values, None);
        let path = dir.path().join("e.h5");
        assert!(direct(&ds, &path, 0..100).is_some());
        drop((ds, file));
        // Overwrite the collection's signature: HDF5 must judge this file, not this module.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(4).position(|w| w == b"GCOL").unwrap();
        bytes[at..at + 4].copy_from_slice(b"XXXX");
        std::fs::write(&path, bytes).unwrap();
        let file = hdf5::File::open(&path).unwrap();
        let ds = file.dataset("s").unwrap();
        assert!(direct(&ds, &path, 0..100).is_none());
    }

    /// A version-1 collection with 8-byte lengths holding `objects` (index, bytes), then
    /// free space up to `size`.
    fn collection(objects: &[(u16, &[u8])], size: usize) -> Vec<u8> {
        let mut c = b"GCOL\x01\0\0\0".to_vec();
        c.extend_from_slice(&(size as u64).to_le_bytes());
        for (index, data) in objects {
            c.extend_from_slice(&index.to_le_bytes());
            c.extend_from_slice(&1u16.to_le_bytes());
            c.extend_from_slice(&[0; 4]);
            c.extend_from_slice(&(data.len() as u64).to_le_bytes());
            c.extend_from_slice(data);
            c.resize(align8(c.len() as u64) as usize, 0);
        }
        let free = size - c.len();
        c.extend_from_slice(&0u16.to_le_bytes());
        c.extend_from_slice(&[0; 6]);
        c.extend_from_slice(&(free as u64).to_le_bytes());
        c.resize(size, 0);
        c
    }

    #[test]
    fn a_collection_parses_to_its_objects() {
        let c = collection(&[(1, b"AAACCTG-1"), (2, b""), (7, b"gene\0tail")], 4096);
        assert_eq!(collection_size(&c, 8), Some(4096));
        let parsed = Collection::parse(&c, 8).unwrap();
        assert_eq!(parsed.objects.iter().flatten().count(), 3);
        let bytes = |i| parsed.object(i).map(|(s, e)| &c[s as usize..e as usize]);
        assert_eq!(bytes(1), Some(&b"AAACCTG-1"[..]));
        assert_eq!(bytes(2), Some(&b""[..]));
        assert_eq!(bytes(7), Some(&b"gene\0tail"[..]));
        assert_eq!(bytes(3), None);
        assert_eq!(bytes(70_000), None);
    }

    #[test]
    fn damaged_collections_are_not_parsed() {
        let mut c = collection(&[(1, b"abc"), (2, b"de")], 64);
        // An object longer than the collection.
        let mut long = c.clone();
        long[16 + 8..16 + 16].copy_from_slice(&1000u64.to_le_bytes());
        assert_eq!(Collection::parse(&long, 8), None);
        // A repeated index.
        c[16 + 16 + 8..16 + 16 + 10].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(Collection::parse(&c, 8), None);
        // Not a collection.
        assert_eq!(collection_size(b"GCOL\x02\0\0\0\0\0\0\0\0\0\0\0", 8), None);
        assert_eq!(collection_size(b"HEAP\x01\0\0\0\0\0\0\0\0\0\0\0", 8), None);
    }

    #[test]
    fn ids_parse_in_little_endian() {
        let mut e = 5u32.to_le_bytes().to_vec();
        e.extend_from_slice(&0x0102_0304_0506u64.to_le_bytes());
        e.extend_from_slice(&9u32.to_le_bytes());
        e.extend_from_slice(&[0; 16]);
        assert_eq!(
            parse_ids(&e, 8),
            vec![
                HeapId {
                    len: 5,
                    collection: 0x0102_0304_0506,
                    index: 9
                },
                HeapId {
                    len: 0,
                    collection: 0,
                    index: 0
                }
            ]
        );
    }
}
