//! Raw chunk I/O with the codec outside HDF5's global lock.
//!
//! libhdf5 serializes every call, so filtered reads and writes through it run on one core.
//! For datasets whose chunks hold whole rows (every 1-D chunked array; 2-D arrays chunked
//! by whole rows) and whose filter pipeline is empty, `shuffle`, `deflate` or
//! `shuffle + deflate`, this module moves the stored chunk bytes with `H5Dread_chunk` /
//! `H5Dwrite_chunk` (cheap, under the lock) and runs inflate/deflate and (un)shuffling on
//! rayon threads. Anything else is left to HDF5's own pipeline.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use hdf5::filters::Filter;
use hdf5::Dataset;
use hdf5_sys::h5::{haddr_t, herr_t, hsize_t, HADDR_UNDEF};
use hdf5_sys::h5d::{H5Dchunk_iter, H5Dget_chunk_info_by_coord, H5Dread_chunk2, H5Dwrite_chunk};
use hdf5_sys::h5p::H5P_DEFAULT;
use libdeflater::{CompressionLvl, Compressor, Decompressor};
use rayon::prelude::*;

use super::layout::datatype;
use crate::array::DType;

/// Raw input bytes compressed per parallel batch on writes (bounds the compressed copies
/// held at once).
const WRITE_BATCH_BYTES: usize = 32 << 20;

/// How the chunks of an eligible dataset are laid out and filtered.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RawChunks {
    rank: usize,
    /// Chunk length along the first axis.
    chunk_rows: u64,
    /// Elements per row (product of the other dimensions; 1 for 1-D).
    row_len: u64,
    elem_size: usize,
    /// Position of the shuffle filter in the pipeline.
    shuffle: Option<u32>,
    /// Position of the deflate filter in the pipeline, and its level.
    deflate: Option<(u32, u32)>,
}

/// Where every stored chunk of a dataset lies in the file, read once with `H5Dchunk_iter`,
/// so that chunks are fetched with `pread` on a file descriptor of our own: without HDF5's
/// global lock (reads then overlap with HDF5 work on other threads) and, for unfiltered
/// chunks, straight into the caller's buffer (no intermediate copy, no allocation).
pub(crate) struct ChunkMap {
    file: File,
    /// Per chunk (by position along the first axis): file offset, stored size, filter mask.
    /// `None`: the chunk was never written.
    chunks: Vec<Option<(u64, u64, u32)>>,
}

struct IterState {
    chunk_rows: u64,
    file_len: u64,
    chunks: Vec<Option<(u64, u64, u32)>>,
    bad: bool,
}

// SAFETY: called by H5Dchunk_iter only (see `ChunkMap::of`), with `op_data` the IterState
// passed there and `offset` an array of the dataset's rank.
unsafe extern "C" fn chunk_cb(
    offset: *const hsize_t,
    filter_mask: std::ffi::c_uint,
    addr: haddr_t,
    size: hsize_t,
    op_data: *mut std::ffi::c_void,
) -> std::ffi::c_int {
    // SAFETY: op_data is the &mut IterState passed to H5Dchunk_iter below; offset has rank
    // entries (at least one).
    let st = unsafe { &mut *op_data.cast::<IterState>() };
    // SAFETY: see above.
    let first = unsafe { *offset };
    let k = first / st.chunk_rows;
    // H5Dchunk_iter reports absolute file offsets (the user block, if any, included).
    let at = addr;
    if addr == HADDR_UNDEF
        || first % st.chunk_rows != 0
        || k as usize >= st.chunks.len()
        || at.checked_add(size).is_none_or(|end| end > st.file_len)
    {
        st.bad = true;
        return 1; // stop: the caller falls back to HDF5
    }
    st.chunks[k as usize] = Some((at, size, filter_mask));
    0
}

impl ChunkMap {
    /// The chunk table of `ds` (laid out as `raw` says) in the file at `path`; `None` when it
    /// cannot be read or looks wrong (HDF5's own reads then judge the file).
    pub fn of(ds: &Dataset, raw: &RawChunks, path: &Path) -> Option<Self> {
        let file = File::open(path).ok()?;
        let file_len = file.metadata().ok()?.len();
        let n_rows = *ds.shape().first()? as u64;
        let n_chunks = n_rows.div_ceil(raw.chunk_rows) as usize;
        let mut st = IterState {
            chunk_rows: raw.chunk_rows,
            file_len,
            chunks: vec![None; n_chunks],
            bad: false,
        };
        // SAFETY: `ds` is open; `st` outlives the call and is touched only by `chunk_cb`.
        let status: herr_t = hdf5::sync::sync(|| unsafe {
            H5Dchunk_iter(
                ds.id(),
                H5P_DEFAULT,
                Some(chunk_cb),
                (&mut st as *mut IterState).cast(),
            )
        });
        if status < 0 || st.bad {
            return None;
        }
        Some(ChunkMap {
            file,
            chunks: st.chunks,
        })
    }

    fn get(&self, k: u64) -> Option<(u64, u64, u32)> {
        self.chunks.get(k as usize).copied().flatten()
    }
}

/// Unfiltered bytes are copied with `pread` in pieces of this size, in parallel.
const PREAD_PIECE: usize = 4 << 20;

/// Why the raw path did not deliver; the caller then reads through HDF5's pipeline
/// (which reports a damaged file in its own words).
#[derive(Debug)]
pub(crate) struct NotRaw;

impl RawChunks {
    /// The raw-chunk plan of `ds` holding `dtype` values, or `None` when the dataset is not
    /// eligible (contiguous, chunks not covering whole rows, other filters, a stored type
    /// other than the native one).
    pub fn of(ds: &Dataset, dtype: DType) -> Option<Self> {
        let chunk = ds.chunk()?;
        let shape = ds.shape();
        if chunk.is_empty() || chunk.len() != shape.len() || chunk[0] == 0 {
            return None;
        }
        if chunk[1..].iter().zip(&shape[1..]).any(|(c, s)| c != s) {
            return None;
        }
        let row_len = shape[1..].iter().product::<usize>() as u64;
        if row_len == 0 {
            return None;
        }
        let mut shuffle = None;
        let mut deflate = None;
        for (i, f) in ds.filters().iter().enumerate() {
            match f {
                Filter::Shuffle if shuffle.is_none() && deflate.is_none() => {
                    shuffle = Some(i as u32)
                }
                Filter::Deflate(level) if deflate.is_none() => {
                    deflate = Some((i as u32, u32::from(*level)))
                }
                _ => return None,
            }
        }
        let stored = ds.dtype().ok()?;
        if stored != datatype(dtype).ok()? || stored.size() != dtype.size() {
            return None;
        }
        Some(RawChunks {
            rank: chunk.len(),
            chunk_rows: chunk[0] as u64,
            row_len,
            elem_size: dtype.size(),
            shuffle,
            deflate,
        })
    }

    /// Elements in one chunk.
    pub fn chunk_elems(&self) -> u64 {
        self.chunk_rows * self.row_len
    }

    fn chunk_bytes(&self) -> usize {
        self.chunk_elems() as usize * self.elem_size
    }

    fn offset(&self, chunk: u64) -> Vec<hsize_t> {
        let mut o = vec![0; self.rank];
        o[0] = chunk * self.chunk_rows;
        o
    }

    /// Reads elements `range` (row-major over the whole dataset) into `out`
    /// (`range.len() * elem_size` bytes): the stored chunks are fetched under the lock,
    /// then decoded in parallel straight into `out`.
    pub fn read(
        &self,
        ds: &Dataset,
        map: Option<&ChunkMap>,
        range: Range<u64>,
        out: &mut [u8],
    ) -> Result<(), NotRaw> {
        let es = self.elem_size;
        debug_assert_eq!(out.len() as u64, (range.end - range.start) * es as u64);
        if range.is_empty() {
            return Ok(());
        }
        let ce = self.chunk_elems();
        let cb = self.chunk_bytes();
        let (c0, c1) = (range.start / ce, range.end.div_ceil(ce));
        if let Some(map) = map {
            if self.deflate.is_none() && self.shuffle.is_none() {
                return self.pread_plain(map, range, out);
            }
        }
        // A stored chunk is never much larger than the chunk itself (deflate's worst case
        // is a few bytes per 16 KiB block); anything bigger is damage: let HDF5 judge it.
        let max_stored = cb + cb / 8 + 4096;
        let fetched = match map {
            Some(map) => (c0..c1)
                .into_par_iter()
                .map(|k| {
                    let (addr, size, mask) = map.get(k).ok_or(NotRaw)?;
                    if size == 0 || size as usize > max_stored {
                        return Err(NotRaw);
                    }
                    let mut buf = vec![0u8; size as usize];
                    map.file.read_exact_at(&mut buf, addr).map_err(|_| NotRaw)?;
                    Ok((mask, buf))
                })
                .collect::<Result<Vec<_>, NotRaw>>(),
            None => self.fetch_locked(ds, c0..c1, max_stored),
        };
        let raws = fetched?;
        self.decode_into(range, out, raws)
    }

    /// Unfiltered chunks: their bytes go straight from the file into `out`, one `pread` per
    /// run of chunks that lie back to back in the file (split into pieces copied in parallel).
    fn pread_plain(&self, map: &ChunkMap, range: Range<u64>, out: &mut [u8]) -> Result<(), NotRaw> {
        let es = self.elem_size as u64;
        let ce = self.chunk_elems();
        let cb = self.chunk_bytes() as u64;
        // Runs of (file offset, bytes), in the order they fill `out`.
        let mut runs: Vec<(u64, usize)> = Vec::new();
        let mut at = range.start;
        while at < range.end {
            let k = at / ce;
            let (addr, size, mask) = map.get(k).ok_or(NotRaw)?;
            if size != cb || mask != 0 {
                return Err(NotRaw);
            }
            let hi = range.end.min((k + 1) * ce);
            let file_at = addr + (at - k * ce) * es;
            let len = ((hi - at) * es) as usize;
            match runs.last_mut() {
                Some((start, n)) if *start + *n as u64 == file_at => *n += len,
                _ => runs.push((file_at, len)),
            }
            at = hi;
        }
        let mut work: Vec<(u64, &mut [u8])> = Vec::new();
        let mut rest = out;
        for (addr, len) in runs {
            let (run, tail) = rest.split_at_mut(len);
            rest = tail;
            let mut off = addr;
            for part in run.chunks_mut(PREAD_PIECE) {
                let n = part.len() as u64;
                work.push((off, part));
                off += n;
            }
        }
        work.into_par_iter()
            .try_for_each(|(addr, dst)| map.file.read_exact_at(dst, addr).map_err(|_| NotRaw))
    }

    /// The stored chunks `chunks` through `H5Dread_chunk` (under HDF5's lock).
    fn fetch_locked(
        &self,
        ds: &Dataset,
        chunks: Range<u64>,
        max_stored: usize,
    ) -> Result<Vec<(u32, Vec<u8>)>, NotRaw> {
        let (c0, c1) = (chunks.start, chunks.end);
        hdf5::sync::sync(|| -> Result<Vec<(u32, Vec<u8>)>, NotRaw> {
            let mut raws = Vec::with_capacity((c1 - c0) as usize);
            for k in c0..c1 {
                let offset = self.offset(k);
                let mut mask: u32 = 0;
                let mut addr: haddr_t = 0;
                let mut size: hsize_t = 0;
                // SAFETY: `offset` has the dataset's rank; the out-pointers are locals.
                let status = unsafe {
                    H5Dget_chunk_info_by_coord(
                        ds.id(),
                        offset.as_ptr(),
                        &mut mask,
                        &mut addr,
                        &mut size,
                    )
                };
                // size 0: the chunk was never written (fill values).
                if status < 0 || size == 0 || size as usize > max_stored {
                    return Err(NotRaw);
                }
                let mut buf = vec![0u8; size as usize];
                let mut buf_size = buf.len();
                // SAFETY: `buf` holds buf_size bytes; H5Dread_chunk2 writes only when the
                // stored chunk fits (it reports the size it needs otherwise).
                let status = unsafe {
                    H5Dread_chunk2(
                        ds.id(),
                        H5P_DEFAULT,
                        offset.as_ptr(),
                        &mut mask,
                        buf.as_mut_ptr().cast(),
                        &mut buf_size,
                    )
                };
                if status < 0 || buf_size != buf.len() {
                    return Err(NotRaw);
                }
                raws.push((mask, buf));
            }
            Ok(raws)
        })
    }

    /// Decodes the stored chunks covering `range` in parallel into `out`.
    fn decode_into(
        &self,
        range: Range<u64>,
        out: &mut [u8],
        raws: Vec<(u32, Vec<u8>)>,
    ) -> Result<(), NotRaw> {
        let es = self.elem_size;
        let ce = self.chunk_elems();
        let (c0, c1) = (range.start / ce, range.end.div_ceil(ce));
        // The part of `out` each chunk fills.
        let mut parts: Vec<(u64, &mut [u8], usize)> = Vec::with_capacity(raws.len());
        let mut rest = out;
        for k in c0..c1 {
            let lo = range.start.max(k * ce);
            let hi = range.end.min((k + 1) * ce);
            let (head, tail) = rest.split_at_mut(((hi - lo) as usize) * es);
            parts.push((k, head, (lo - k * ce) as usize));
            rest = tail;
        }
        parts
            .into_par_iter()
            .zip(raws.into_par_iter())
            .try_for_each_init(
                || None,
                |dec: &mut Option<Decompressor>, ((_, dst, first), (mask, raw))| {
                    self.decode(dec, mask, &raw, dst, first)
                },
            )
    }

    /// Decodes one stored chunk and copies its elements `first..first + dst.len()/es`
    /// into `dst`.
    fn decode(
        &self,
        dec: &mut Option<Decompressor>,
        mask: u32,
        raw: &[u8],
        dst: &mut [u8],
        first: usize,
    ) -> Result<(), NotRaw> {
        let es = self.elem_size;
        let cb = self.chunk_bytes();
        let applied = |pos: Option<u32>| pos.is_some_and(|p| mask & (1 << p) == 0);
        let inflate = applied(self.deflate.map(|(p, _)| p));
        let unshuffle = applied(self.shuffle) && es > 1;
        let whole = first == 0 && dst.len() == cb;
        let mut tmp = Vec::new();
        let plain: &[u8] = if inflate {
            let dec = dec.get_or_insert_with(Decompressor::new);
            let target: &mut [u8] = if whole && !unshuffle {
                &mut *dst
            } else {
                tmp.resize(cb, 0);
                &mut tmp
            };
            match dec.zlib_decompress(raw, target) {
                Ok(n) if n == cb => {}
                _ => return Err(NotRaw),
            }
            if whole && !unshuffle {
                return Ok(());
            }
            &tmp
        } else {
            if raw.len() != cb {
                return Err(NotRaw);
            }
            raw
        };
        if unshuffle {
            let ne = cb / es;
            let n = dst.len() / es;
            for (i, out) in dst.chunks_exact_mut(es).enumerate() {
                let src = first + i;
                for (b, o) in out.iter_mut().enumerate() {
                    *o = plain[b * ne + src];
                }
            }
            debug_assert_eq!(n * es, dst.len());
        } else {
            dst.copy_from_slice(&plain[first * es..first * es + dst.len()]);
        }
        Ok(())
    }

    /// Encodes whole chunks (`bytes`: a multiple of the chunk size) in parallel and writes
    /// them as chunks `first_chunk..` of `ds`, which must already be large enough.
    pub fn write(&self, ds: &Dataset, first_chunk: u64, bytes: &[u8]) -> Result<(), String> {
        let cb = self.chunk_bytes();
        debug_assert_eq!(bytes.len() % cb, 0);
        let per_batch = (WRITE_BATCH_BYTES / cb).max(1);
        let mut k = first_chunk;
        for batch in bytes.chunks(per_batch * cb) {
            let encoded: Vec<Vec<u8>> = if self.deflate.is_none() && self.shuffle.is_none() {
                Vec::new()
            } else {
                batch
                    .par_chunks(cb)
                    .map_init(
                        || None,
                        |c: &mut Option<Compressor>, chunk| self.encode(c, chunk),
                    )
                    .collect()
            };
            let result = hdf5::sync::sync(|| -> Result<(), u64> {
                for (i, chunk) in batch.chunks(cb).enumerate() {
                    let data: &[u8] = encoded.get(i).map_or(chunk, |e| e.as_slice());
                    let offset = self.offset(k + i as u64);
                    // SAFETY: H5Dwrite_chunk reads data.len() bytes of `data`; `offset`
                    // has the dataset's rank.
                    let status = unsafe {
                        H5Dwrite_chunk(
                            ds.id(),
                            H5P_DEFAULT,
                            0,
                            offset.as_ptr(),
                            data.len(),
                            data.as_ptr().cast(),
                        )
                    };
                    if status < 0 {
                        return Err(k + i as u64);
                    }
                }
                Ok(())
            });
            if let Err(chunk) = result {
                let e = hdf5::Error::query().unwrap_or_else(|e| e);
                return Err(format!(
                    "cannot write chunk {chunk}: {}",
                    super::file::short(&e)
                ));
            }
            k += (batch.len() / cb) as u64;
        }
        Ok(())
    }

    /// One chunk through the filter pipeline: shuffle, then deflate.
    fn encode(&self, comp: &mut Option<Compressor>, chunk: &[u8]) -> Vec<u8> {
        let es = self.elem_size;
        let shuffled;
        let plain: &[u8] = if self.shuffle.is_some() && es > 1 {
            let ne = chunk.len() / es;
            let mut s = vec![0u8; chunk.len()];
            for (i, elem) in chunk.chunks_exact(es).enumerate() {
                for (b, &v) in elem.iter().enumerate() {
                    s[b * ne + i] = v;
                }
            }
            shuffled = s;
            &shuffled
        } else {
            chunk
        };
        let Some((_, level)) = self.deflate else {
            return plain.to_vec();
        };
        let comp = comp.get_or_insert_with(|| {
            let lvl = CompressionLvl::new(level.clamp(1, 9) as i32).unwrap_or_default();
            Compressor::new(lvl)
        });
        let mut out = vec![0u8; comp.zlib_compress_bound(plain.len())];
        let n = comp
            .zlib_compress(plain, &mut out)
            .expect("the output buffer has the compress bound");
        out.truncate(n);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::file::create_write;
    use super::super::layout::{create_dataset, Storage};
    use super::*;

    fn storage(chunk: &[u64], filters: Vec<Filter>) -> Storage {
        Storage {
            chunk: Some(chunk.to_vec()),
            filters,
        }
    }

    #[test]
    fn eligible_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let file = create_write(&dir.path().join("t.h5")).unwrap();
        let make = |name: &str, shape: &[u64], s: &Storage| {
            let ds = create_dataset(&file, name, DType::F32, shape, s).unwrap();
            RawChunks::of(&ds, DType::F32)
        };
        let gz = vec![Filter::Deflate(4)];
        let sgz = vec![Filter::Shuffle, Filter::Deflate(4)];
        assert!(make("a", &[100], &storage(&[10], gz.clone())).is_some());
        assert!(make("b", &[100], &storage(&[10], sgz.clone())).is_some());
        assert!(make("c", &[100], &storage(&[10], vec![])).is_some());
        assert!(make("d", &[100], &Storage::contiguous()).is_none());
        assert!(make("e", &[100], &storage(&[10], vec![Filter::LZF])).is_none());
        let fl = vec![Filter::Deflate(4), Filter::Fletcher32];
        assert!(make("f", &[100], &storage(&[10], fl)).is_none());
        assert!(make("g", &[10, 6], &storage(&[3, 6], sgz.clone())).is_some());
        assert!(make("h", &[10, 6], &storage(&[3, 4], sgz)).is_none());
        // the stored type must be the native one of the dtype asked for
        let ds = create_dataset(&file, "i", DType::F64, &[100], &storage(&[10], gz)).unwrap();
        assert!(RawChunks::of(&ds, DType::F32).is_none());
    }

    #[test]
    fn raw_writes_and_reads_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = create_write(&dir.path().join("t.h5")).unwrap();
        for (i, filters) in [
            vec![Filter::Deflate(1)],
            vec![Filter::Shuffle, Filter::Deflate(6)],
            vec![Filter::Shuffle],
            vec![],
        ]
        .into_iter()
        .enumerate()
        {
            let n = 10 * 97;
            let ds = create_dataset(
                &file,
                &format!("v{i}"),
                DType::F64,
                &[n],
                &storage(&[97], filters),
            )
            .unwrap();
            let raw = RawChunks::of(&ds, DType::F64).unwrap();
            let values: Vec<f64> = (0..n).map(|x| (x % 13) as f64 * 0.5).collect();
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
            raw.write(&ds, 0, &bytes[..4 * 97 * 8]).unwrap();
            raw.write(&ds, 4, &bytes[4 * 97 * 8..]).unwrap();
            assert_eq!(ds.read_raw::<f64>().unwrap(), values, "filters {i}");
            file.flush().unwrap();
            let map = ChunkMap::of(&ds, &raw, &dir.path().join("t.h5"));
            assert!(map.is_some());
            for r in [0..n, 0..1, 96..98, 100..900, n - 1..n, 3..3] {
                let mut out = vec![0u8; (r.end - r.start) as usize * 8];
                raw.read(&ds, None, r.clone(), &mut out).unwrap();
                let mut out2 = vec![0u8; out.len()];
                raw.read(&ds, map.as_ref(), r.clone(), &mut out2).unwrap();
                assert_eq!(out, out2, "{r:?} through the chunk map");
                assert_eq!(
                    out,
                    bytes[r.start as usize * 8..r.end as usize * 8],
                    "{r:?}"
                );
            }
        }
    }
}
