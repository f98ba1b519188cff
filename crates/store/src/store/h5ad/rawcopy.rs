//! Copies a chunked dataset into another file stored chunk by stored chunk
//! (`H5Dread_chunk2` → `H5Dwrite_chunk`): chunk bytes and per-chunk filter masks verbatim,
//! nothing decoded or re-encoded, the creation properties (chunking, filters, fill value)
//! and attributes carried over.
//!
//! Why not `H5Ocopy`: libhdf5 (2.0.0 and the 2.2.0 built here) overflows a heap buffer when
//! it copies a filtered chunked dataset that is open in the source file with chunks in its
//! chunk cache. `H5D__chunk_copy_cb` keeps one copy buffer for all chunks and records its
//! size as the last filter left it. A cached chunk is taken from the cache — its full
//! decoded size memcpy'd into that buffer, checked only against the chunk's *stored* size —
//! and re-encoded. With deflate followed by fletcher32 (h5py's `compression="gzip",
//! fletcher32=True`) the re-encode leaves the buffer at the compressed size + 4 bytes, so the
//! next cached chunk's decoded bytes run past its end: `malloc(): corrupted top size`.
//! The normalized matrix's `indices` and `indptr` are exactly such datasets: the matrix
//! source holds them open and reads them through HDF5 (which caches their chunks) while the
//! output is being set up. Stored chunks copied here never enter that code.

use std::ffi::CString;

use hdf5::{Dataset, Group};
use hdf5_sys::h5::hsize_t;
use hdf5_sys::h5d::{
    H5Dclose, H5Dcreate2, H5Dget_create_plist, H5Dget_space, H5Dget_type, H5Dread_chunk2,
    H5Dwrite_chunk,
};
use hdf5_sys::h5p::{H5Pclose, H5P_DEFAULT};
use hdf5_sys::h5s::H5Sclose;
use hdf5_sys::h5t::H5Tclose;

use super::file::copy_attrs;

/// One stored chunk: its logical offset (rank entries) and stored size in bytes.
struct StoredChunk {
    offset: Vec<hsize_t>,
    size: u64,
}

fn error(problem: String) -> hdf5::Error {
    hdf5::Error::from(problem)
}

fn hdf5_error() -> hdf5::Error {
    hdf5::Error::query().unwrap_or_else(|e| e)
}

/// Every stored chunk of `ds`, in the order of its chunk index (`H5Dchunk_iter`).
fn stored_chunks(ds: &Dataset) -> hdf5::Result<Vec<StoredChunk>> {
    // A chunk larger than the whole file is damage, not data (and would be allocated).
    let max_size = ds.file()?.size();
    let mut chunks = Vec::new();
    let mut bad = false;
    ds.chunks_visit(|info| {
        if info.size == 0 || info.size > max_size {
            bad = true;
            return 1; // stop
        }
        chunks.push(StoredChunk {
            offset: info.offset.to_vec(),
            size: info.size,
        });
        0
    })?;
    if bad {
        return Err(error(
            "a stored chunk is larger than the whole file (the chunk index is damaged)".into(),
        ));
    }
    Ok(chunks)
}

/// An empty dataset `dst/name` with the type, shape (maximum shape included) and creation
/// properties (chunking, filters, fill value) of `src`; `Ok(None)` when HDF5 refuses to
/// create it (typically a filter this libhdf5 does not have).
fn create_like(src: &Dataset, dst: &Group, name: &str) -> hdf5::Result<Option<Dataset>> {
    let c_name = CString::new(name).map_err(|_| error("NUL in a name".into()))?;
    let id = hdf5::sync::sync(|| {
        // SAFETY: src.id() and dst.id() are open objects; every id obtained here is checked
        // before use and closed exactly once; c_name outlives the call.
        unsafe {
            let dcpl = H5Dget_create_plist(src.id());
            let dtype = H5Dget_type(src.id());
            let space = H5Dget_space(src.id());
            let id = if dcpl >= 0 && dtype >= 0 && space >= 0 {
                H5Dcreate2(
                    dst.id(),
                    c_name.as_ptr(),
                    dtype,
                    space,
                    H5P_DEFAULT,
                    dcpl,
                    H5P_DEFAULT,
                )
            } else {
                -1
            };
            if space >= 0 {
                H5Sclose(space);
            }
            if dtype >= 0 {
                H5Tclose(dtype);
            }
            if dcpl >= 0 {
                H5Pclose(dcpl);
            }
            if id >= 0 {
                H5Dclose(id);
            }
            id
        }
    });
    if id < 0 {
        // Clears HDF5's error stack; the caller decides what to do instead.
        let _ = hdf5_error();
        return Ok(None);
    }
    dst.dataset(name).map(Some)
}

/// Copies the chunked dataset `src` to `dst/name` stored chunk by stored chunk (see the
/// module doc). Returns `false` without creating anything when HDF5 cannot create a
/// dataset with `src`'s creation properties (a filter it does not have: it cannot have
/// decoded, hence cached, any of `src`'s chunks either, and `H5Ocopy` is then safe).
pub(crate) fn copy_chunked(src: &Dataset, dst: &Group, name: &str) -> hdf5::Result<bool> {
    let chunks = stored_chunks(src)?;
    let Some(out) = create_like(src, dst, name)? else {
        return Ok(false);
    };
    let mut buf: Vec<u8> = Vec::new();
    for chunk in &chunks {
        buf.clear();
        buf.resize(chunk.size as usize, 0);
        let status = hdf5::sync::sync(|| {
            let mut mask: u32 = 0;
            let mut n = buf.len();
            // SAFETY: both ids are open datasets of the same rank; `chunk.offset` has that
            // rank; `buf` holds `n` writable bytes and H5Dread_chunk2 writes only when the
            // stored chunk fits in `n` (it then sets `n` to the bytes written); H5Dwrite_chunk
            // reads `n` bytes of `buf`.
            unsafe {
                let r = H5Dread_chunk2(
                    src.id(),
                    H5P_DEFAULT,
                    chunk.offset.as_ptr(),
                    &mut mask,
                    buf.as_mut_ptr().cast(),
                    &mut n,
                );
                if r < 0 {
                    return Err(None);
                }
                if n != buf.len() {
                    return Err(Some(n));
                }
                if H5Dwrite_chunk(
                    out.id(),
                    H5P_DEFAULT,
                    mask,
                    chunk.offset.as_ptr(),
                    n,
                    buf.as_ptr().cast(),
                ) < 0
                {
                    return Err(None);
                }
                Ok(())
            }
        });
        match status {
            Ok(()) => {}
            Err(None) => return Err(hdf5_error()),
            Err(Some(n)) => {
                return Err(error(format!(
                    "the chunk at {:?} holds {n} bytes, but its index says {}",
                    chunk.offset, chunk.size
                )))
            }
        }
    }
    copy_attrs(src, &out)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use hdf5::filters::Filter;

    use super::super::file::{create_write, open_read};
    use super::super::layout::{create_dataset, Storage};
    use super::*;
    use crate::array::DType;

    /// Writes `/a`: `n` int32 values in chunks of `chunk` with `filters`.
    fn source(path: &std::path::Path, n: u64, chunk: u64, filters: Vec<Filter>) -> Vec<i32> {
        let file = create_write(path).unwrap();
        let storage = Storage {
            chunk: Some(vec![chunk]),
            filters,
        };
        let ds = create_dataset(&file, "a", DType::I32, &[n], &storage).unwrap();
        let values: Vec<i32> = (0..n as i32).map(|i| (i * 7919) % 301).collect();
        ds.write_raw(&values).unwrap();
        ds.new_attr::<i64>()
            .create("answer")
            .unwrap()
            .write_scalar(&42)
            .unwrap();
        file.close().unwrap();
        values
    }

    /// The regression test of the heap overflow: the source dataset is open and every
    /// chunk is in its chunk cache (read through HDF5) when it is copied. With `H5Ocopy`
    /// this corrupts the heap (memcheck: "Invalid write" in H5D__chunk_copy_cb).
    #[test]
    fn copies_a_cached_gzip_fletcher32_dataset_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        for (i, filters) in [
            vec![Filter::Deflate(4), Filter::Fletcher32],
            vec![Filter::Shuffle, Filter::Deflate(1), Filter::Fletcher32],
            vec![Filter::Fletcher32],
            vec![Filter::Deflate(6)],
            vec![],
        ]
        .into_iter()
        .enumerate()
        {
            let src_path = dir.path().join(format!("src{i}.h5"));
            let values = source(&src_path, 200_000, 5_000, filters.clone());
            let input = open_read(&src_path).unwrap();
            let ds = input.dataset("a").unwrap();
            assert_eq!(ds.read_raw::<i32>().unwrap(), values); // fills the chunk cache
            let out_path = dir.path().join(format!("out{i}.h5"));
            let out = create_write(&out_path).unwrap();
            assert!(copy_chunked(&ds, &out, "a").unwrap());
            // A dataset copied after a read in the same file as well (same chunk cache).
            let root: &Group = &input;
            let g = out.create_group("g").unwrap();
            assert!(copy_chunked(&root.dataset("a").unwrap(), &g, "b").unwrap());
            out.close().unwrap();
            let out = open_read(&out_path).unwrap();
            for name in ["a", "g/b"] {
                let copy = out.dataset(name).unwrap();
                assert_eq!(copy.read_raw::<i32>().unwrap(), values, "{i} {name}");
                assert_eq!(copy.filters(), ds.filters(), "{i} {name}");
                assert_eq!(copy.chunk(), ds.chunk(), "{i} {name}");
                assert_eq!(copy.shape(), ds.shape(), "{i} {name}");
                assert_eq!(
                    copy.attr("answer").unwrap().read_scalar::<i64>().unwrap(),
                    42
                );
            }
        }
    }

    /// The stored bytes are copied, not re-encoded: a chunk with a bad checksum stays bad
    /// (and reading it fails), it is not silently given a fresh checksum.
    #[test]
    fn a_damaged_chunk_is_copied_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src.h5");
        source(
            &src_path,
            20_000,
            5_000,
            vec![Filter::Deflate(4), Filter::Fletcher32],
        );
        // Flip a byte of the checksum of the first chunk (the last 4 bytes of its stored bytes).
        let (addr, size) = {
            let f = open_read(&src_path).unwrap();
            let info = f.dataset("a").unwrap().chunk_info(0).unwrap();
            (info.addr, info.size)
        };
        let mut bytes = std::fs::read(&src_path).unwrap();
        bytes[(addr + size - 1) as usize] ^= 0x5a;
        std::fs::write(&src_path, &bytes).unwrap();
        let input = open_read(&src_path).unwrap();
        let ds = input.dataset("a").unwrap();
        assert!(ds.read_raw::<i32>().is_err());
        let out_path = dir.path().join("out.h5");
        let out = create_write(&out_path).unwrap();
        assert!(copy_chunked(&ds, &out, "a").unwrap());
        out.close().unwrap();
        let out = open_read(&out_path).unwrap();
        assert!(out.dataset("a").unwrap().read_raw::<i32>().is_err());
    }
}
