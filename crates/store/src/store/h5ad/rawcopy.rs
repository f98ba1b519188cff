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
use hdf5_sys::h5d::{H5D_alloc_time_t, H5D_fill_time_t};
use hdf5_sys::h5d::{
    H5Dclose, H5Dcreate2, H5Dget_create_plist, H5Dget_space, H5Dget_type, H5Dread_chunk2,
    H5Dwrite_chunk,
};
use hdf5_sys::h5p::{H5Pclose, H5Pset_alloc_time, H5Pset_fill_time, H5P_DEFAULT};
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

/// What a raw copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Copied {
    /// The dataset was copied.
    Done,
    /// Nothing was created: HDF5 cannot create a dataset with the source's creation
    /// properties (copy it another way).
    Declined,
    /// Nothing was created: the chunk index is damaged — a chunk it lists is not found by
    /// HDF5's lookup (so `H5Dread`, and anndata, read fill values there). Copying by the
    /// listing would make that chunk visible in the output; copy the values as HDF5 reads
    /// them instead.
    IndexDamaged,
}

/// Why a chunk could not be copied.
enum Failed {
    /// HDF5 reported an error (read it from its error stack).
    Hdf5,
    /// The chunk is listed but HDF5's lookup does not find it.
    Hidden,
    /// The chunk holds this many bytes, not what its index says.
    Size(usize),
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
///
/// `prealloc`: every chunk allocated at creation, no fill value written
/// (`H5D_ALLOC_TIME_EARLY`, `H5D_FILL_TIME_NEVER`), for [`copy_plain`].
fn create_like(
    src: &Dataset,
    dst: &Group,
    name: &str,
    prealloc: bool,
) -> hdf5::Result<Option<Dataset>> {
    let c_name = CString::new(name).map_err(|_| error("NUL in a name".into()))?;
    let id = hdf5::sync::sync(|| {
        // SAFETY: src.id() and dst.id() are open objects; every id obtained here is checked
        // before use and closed exactly once; c_name outlives the call.
        unsafe {
            let dcpl = H5Dget_create_plist(src.id());
            let dtype = H5Dget_type(src.id());
            let space = H5Dget_space(src.id());
            let set = !prealloc
                || (dcpl >= 0
                    && H5Pset_alloc_time(dcpl, H5D_alloc_time_t::H5D_ALLOC_TIME_EARLY) >= 0
                    && H5Pset_fill_time(dcpl, H5D_fill_time_t::H5D_FILL_TIME_NEVER) >= 0);
            let id = if set && dcpl >= 0 && dtype >= 0 && space >= 0 {
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
/// module doc). [`Copied::Declined`] without creating anything when HDF5 cannot create a
/// dataset with `src`'s creation properties (a filter it does not have: it cannot have
/// decoded, hence cached, any of `src`'s chunks either, and `H5Ocopy` is then safe);
/// [`Copied::IndexDamaged`] when a listed chunk is not where HDF5's lookup finds it.
pub(crate) fn copy_chunked(src: &Dataset, dst: &Group, name: &str) -> hdf5::Result<Copied> {
    if let Some(done) = copy_plain(src, dst, name)? {
        return Ok(done);
    }
    let chunks = stored_chunks(src)?;
    let Some(out) = create_like(src, dst, name, false)? else {
        return Ok(Copied::Declined);
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
                    return Err(match super::chunks::stored_size(src, &chunk.offset) {
                        None => Failed::Hidden,
                        Some(_) => Failed::Hdf5,
                    });
                }
                if n != buf.len() {
                    return Err(Failed::Size(n));
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
                    return Err(Failed::Hdf5);
                }
                Ok(())
            }
        });
        match status {
            Ok(()) => {}
            Err(Failed::Hdf5) => return Err(hdf5_error()),
            Err(Failed::Hidden) => {
                drop(out);
                dst.unlink(name)?;
                return Ok(Copied::IndexDamaged);
            }
            Err(Failed::Size(n)) => {
                return Err(error(format!(
                    "the chunk at {:?} holds {n} bytes, but its index says {}",
                    chunk.offset, chunk.size
                )))
            }
        }
    }
    copy_attrs(src, &out)?;
    Ok(Copied::Done)
}

/// Where one stored chunk lies: logical offset, file address, stored size.
type Placed = (Vec<hsize_t>, u64, u64);

/// Whether HDF5's lookup finds every chunk the iteration listed, with the listed size (see
/// `ChunkMap::lookups_agree` in chunks.rs): a damaged chunk B-tree can hide a listed chunk
/// from lookups, and so from every reader; copying it by the listing would make it visible
/// in the output.
fn found_by_lookup<'a>(
    ds: &Dataset,
    listed: impl IntoIterator<Item = (&'a [hsize_t], u64)>,
) -> bool {
    hdf5::sync::sync(|| {
        listed
            .into_iter()
            .all(|(offset, size)| super::chunks::stored_size(ds, offset) == Some(size))
    })
}

/// Every stored chunk of `ds` with its file address, sorted by logical offset; `None` when a
/// chunk had a filter skipped (impossible without filters) or looks damaged.
fn placed_chunks(ds: &Dataset, max_size: u64) -> hdf5::Result<Option<Vec<Placed>>> {
    let mut chunks = Vec::new();
    let mut bad = false;
    ds.chunks_visit(|info| {
        if info.size == 0 || info.size > max_size || info.filter_mask != 0 {
            bad = true;
            return 1; // stop
        }
        chunks.push((info.offset.to_vec(), info.addr, info.size));
        0
    })?;
    if bad {
        return Ok(None);
    }
    chunks.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Some(chunks))
}

/// Copies an unfiltered chunked dataset whose chunks are all stored with
/// `copy_file_range`, in the kernel: the output's chunks are allocated back to back at
/// creation, and each run of chunks adjacent in both files is one call (the number of
/// system calls does not grow with the number of chunks, only with the runs).
/// `Ok(None)`: not such a dataset (filtered, a chunk never written, a file that cannot
/// be opened); nothing was created then.
fn copy_plain(src: &Dataset, dst: &Group, name: &str) -> hdf5::Result<Option<Copied>> {
    if !src.filters().is_empty() {
        return Ok(None);
    }
    let (Some(chunk), shape) = (src.chunk(), src.shape()) else {
        return Ok(None);
    };
    if chunk.len() != shape.len() || shape.is_empty() || shape.contains(&0) {
        return Ok(None);
    }
    let grid: usize = shape
        .iter()
        .zip(&chunk)
        .map(|(&s, &c)| s.div_ceil(c.max(1)))
        .product();
    let elem = src.dtype()?.size() as u64;
    let chunk_bytes = chunk.iter().map(|&c| c as u64).product::<u64>() * elem;
    let src_path = src.filename();
    let Ok(src_file) = std::fs::File::open(&src_path) else {
        return Ok(None);
    };
    let src_len = src_file.metadata().map_err(|e| error(e.to_string()))?.len();
    let Some(from) = placed_chunks(src, src_len)? else {
        return Ok(None);
    };
    if from.len() != grid
        || from.iter().any(|(_, addr, size)| {
            *size != chunk_bytes || addr.checked_add(*size).is_none_or(|e| e > src_len)
        })
    {
        return Ok(None);
    }
    if !found_by_lookup(
        src,
        from.iter().map(|(offset, _, size)| (&offset[..], *size)),
    ) {
        return Ok(Some(Copied::IndexDamaged));
    }
    let Some(out) = create_like(src, dst, name, true)? else {
        return Ok(Some(Copied::Declined));
    };
    let to = placed_chunks(&out, u64::MAX)?.unwrap_or_default();
    let same =
        to.len() == from.len() && to.iter().zip(&from).all(|(t, f)| t.0 == f.0 && t.2 == f.2);
    let out_path = out.filename();
    let dst_file = std::fs::OpenOptions::new().write(true).open(&out_path);
    let (true, Ok(dst_file)) = (same, dst_file) else {
        // Not allocated as asked: the chunk-by-chunk copy below rewrites every chunk.
        drop(out);
        dst.unlink(name)?;
        return Ok(None);
    };
    // Runs (source address, destination address, bytes).
    let mut runs: Vec<(u64, u64, u64)> = Vec::new();
    for (f, t) in from.iter().zip(&to) {
        match runs.last_mut() {
            Some((s, d, n)) if *s + *n == f.1 && *d + *n == t.1 => *n += f.2,
            _ => runs.push((f.1, t.1, f.2)),
        }
    }
    for (s, d, n) in runs {
        copy_range(&src_file, s, &dst_file, d, n)
            .map_err(|e| error(format!("cannot copy {n} bytes of stored chunks: {e}")))?;
    }
    copy_attrs(src, &out)?;
    Ok(Some(Copied::Done))
}

/// `len` bytes from `src` at `from` to `dst` at `to`: `copy_file_range` (no copy through
/// user space), else `pread`/`pwrite` in pieces.
fn copy_range(
    src: &std::fs::File,
    mut from: u64,
    dst: &std::fs::File,
    mut to: u64,
    mut len: u64,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    while len > 0 {
        let mut off_in = from as libc::loff_t;
        let mut off_out = to as libc::loff_t;
        let want = len.min(1 << 30) as usize;
        // SAFETY: both descriptors are open files owned by the caller for the call; the
        // offsets are locals the kernel updates; no user-space buffer is involved.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                want,
                0,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP) => break,
                _ => return Err(e),
            }
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the input file ends early",
            ));
        }
        from += n as u64;
        to += n as u64;
        len -= n as u64;
    }
    let mut buf = vec![0u8; len.min(4 << 20) as usize];
    while len > 0 {
        let k = len.min(buf.len() as u64) as usize;
        src.read_exact_at(&mut buf[..k], from)?;
        dst.write_all_at(&buf[..k], to)?;
        from += k as u64;
        to += k as u64;
        len -= k as u64;
    }
    Ok(())
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
            assert_eq!(copy_chunked(&ds, &out, "a").unwrap(), Copied::Done);
            // A dataset copied after a read in the same file as well (same chunk cache).
            let root: &Group = &input;
            let g = out.create_group("g").unwrap();
            assert_eq!(
                copy_chunked(&root.dataset("a").unwrap(), &g, "b").unwrap(),
                Copied::Done
            );
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
        assert_eq!(copy_chunked(&ds, &out, "a").unwrap(), Copied::Done);
        out.close().unwrap();
        let out = open_read(&out_path).unwrap();
        assert!(out.dataset("a").unwrap().read_raw::<i32>().is_err());
    }
}
