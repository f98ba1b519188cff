//! Raw chunk I/O with the codec outside HDF5's global lock.
//!
//! libhdf5 serializes every call, so filtered reads and writes through it run on one core.
//! For datasets whose chunks hold whole rows (every 1-D chunked array; 2-D arrays chunked
//! by whole rows) and whose filter pipeline is made of steps implemented here (`shuffle`,
//! `deflate`, and the third-party filters of [`super::filters`]: blosc, lz4, bitshuffle,
//! zstd, bzip2, in any order), this module moves the stored chunk bytes with
//! `H5Dread_chunk` / `H5Dwrite_chunk` or `pread` (cheap, no codec under the lock) and runs
//! the pipeline on rayon threads. Anything else is left to HDF5's own pipeline.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use std::borrow::Cow;

use hdf5::filters::Filter;
use hdf5::Dataset;
use hdf5_sys::h5::{haddr_t, herr_t, hsize_t, HADDR_UNDEF};
use hdf5_sys::h5d::{H5Dchunk_iter, H5Dread_chunk2, H5Dwrite_chunk};
use hdf5_sys::h5p::H5P_DEFAULT;
use libdeflater::{CompressionLvl, Compressor, Decompressor};
use rayon::prelude::*;

use super::filters::{Codec, MAX_CHUNK_BYTES};
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
    /// The filter pipeline, in HDF5's order (encoding runs it forward, decoding backward).
    steps: Vec<Step>,
}

/// One filter of a chunk pipeline.
#[derive(Clone, Debug, PartialEq)]
struct Step {
    /// Position in the pipeline: the bit of a chunk's filter mask that says HDF5 skipped
    /// this filter for that chunk (an optional filter that could not compress it).
    pos: u32,
    kind: StepKind,
}

#[derive(Clone, Debug, PartialEq)]
enum StepKind {
    Shuffle,
    /// zlib stream at this level.
    Deflate(u32),
    Codec(Codec),
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

/// The stored size of the chunk at `offset` as HDF5's reads find it (`H5Dread_chunk2`
/// without a buffer: the lookup `H5Dread` makes, no data read); `None` when no chunk is
/// found there. (`H5Dget_chunk_info_by_coord` walks the whole index on every call and does
/// not go by the lookup's keys.) Call it under HDF5's lock.
pub(crate) fn stored_size(ds: &Dataset, offset: &[hsize_t]) -> Option<u64> {
    read_chunk2(ds, offset, None).map(|(_, size)| size as u64)
}

/// `H5Dread_chunk2` of the chunk at `offset`: its stored bytes into `buf`, or with no buffer
/// only HDF5's lookup of it. `(filter mask, stored size)`, or `None` when HDF5 fails (no chunk
/// there, or a buffer too small: it then writes nothing). Call it under HDF5's lock.
fn read_chunk2(ds: &Dataset, offset: &[hsize_t], buf: Option<&mut [u8]>) -> Option<(u32, usize)> {
    let mut mask: u32 = 0;
    let (ptr, mut size) = match buf {
        Some(b) => (b.as_mut_ptr().cast(), b.len()),
        None => (std::ptr::null_mut(), 0),
    };
    // SAFETY: `ds` is open; `offset` has the dataset's rank; `ptr` is null (HDF5 then only
    // reports the chunk's size) or holds `size` bytes, which HDF5 writes only when the stored
    // chunk fits (it reports the size it needs otherwise).
    let status = unsafe {
        H5Dread_chunk2(
            ds.id(),
            H5P_DEFAULT,
            offset.as_ptr(),
            &mut mask,
            ptr,
            &mut size,
        )
    };
    (status >= 0).then_some((mask, size))
}

impl ChunkMap {
    /// The chunk table of `ds` (laid out as `raw` says) in the file at `path`; `None` when it
    /// cannot be read or looks wrong (HDF5's own reads then judge the file).
    pub fn of(ds: &Dataset, raw: &RawChunks, path: &Path) -> Option<Self> {
        let file = File::open(path).ok()?;
        let file_len = file.metadata().ok()?.len();
        let map = Self::build(ds, raw, file, file_len)?;
        map.lookups_agree(ds, raw.chunk_rows).then_some(map)
    }

    /// Whether HDF5's own lookup of each chunk — what `H5Dread`, and so anndata, goes by —
    /// finds it as the iteration listed it. A damaged key in an inner node of a chunk B-tree
    /// can hide a chunk from lookups (HDF5 then reads fill values there) while the iteration,
    /// which walks every leaf, still lists it; reading it from the listing would give other
    /// values than anndata reads.
    fn lookups_agree(&self, ds: &Dataset, chunk_rows: u64) -> bool {
        let mut offset = vec![0 as hsize_t; ds.ndim().max(1)];
        hdf5::sync::sync(|| {
            self.chunks.iter().enumerate().all(|(k, listed)| {
                let Some((_, size, _)) = *listed else {
                    return true;
                };
                offset[0] = k as u64 * chunk_rows;
                stored_size(ds, &offset) == Some(size)
            })
        })
    }

    /// The chunk table of `ds`, a dataset being written in the file at `path` whose chunks
    /// were all allocated when it was created (see [`super::layout::Storage`]'s
    /// preallocation), with a descriptor open for writing; `None` when a chunk is missing
    /// or not a whole unfiltered chunk. The file on disk may still be shorter than HDF5's
    /// end of allocation, so addresses are checked against no length.
    pub fn of_output(ds: &Dataset, raw: &RawChunks, path: &Path) -> Option<Self> {
        let file = std::fs::OpenOptions::new().write(true).open(path).ok()?;
        let map = Self::build(ds, raw, file, u64::MAX)?;
        let cb = raw.chunk_bytes() as u64;
        let whole = !map.chunks.is_empty()
            && map
                .chunks
                .iter()
                .all(|c| matches!(c, Some((_, size, 0)) if *size == cb));
        whole.then_some(map)
    }

    fn build(ds: &Dataset, raw: &RawChunks, file: File, file_len: u64) -> Option<Self> {
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

    /// Number of chunks along the first axis.
    pub fn len(&self) -> u64 {
        self.chunks.len() as u64
    }

    /// The file ranges `(offset, bytes)` holding the stored chunks `chunks`, in order, one
    /// range per run of chunks that lie back to back in the file; `None` when one of them
    /// was never written.
    pub fn runs(&self, chunks: Range<u64>) -> Option<Vec<(u64, u64)>> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for k in chunks {
            let (addr, size, _) = self.get(k)?;
            match runs.last_mut() {
                Some((start, n)) if *start + *n == addr => *n += size,
                _ => runs.push((addr, size)),
            }
        }
        Some(runs)
    }
}

/// Unfiltered bytes are copied with `preadv` in pieces of about this size, in parallel.
const PREAD_PIECE: usize = 4 << 20;

/// Gaps between chunks up to this size are read over (into a scratch buffer) rather than
/// splitting a `preadv`.
const MAX_GAP: usize = 64 << 10;

/// Buffers per `preadv` (Linux's IOV_MAX is 1024).
const MAX_IOV: usize = 1024;

/// One buffer of a `preadv`: where the caller wants the bytes, or a gap to skip.
enum Part<'a> {
    Out(&'a mut [u8]),
    Gap(usize),
}

/// Reads the file from `addr` into `parts` in order: one `preadv` (the gaps into one shared
/// scratch buffer), completed part by part with `pread` if the kernel returns less.
fn preadv_all(file: &File, addr: u64, parts: &mut [Part]) -> Result<(), NotRaw> {
    use std::os::fd::AsRawFd;
    let gap_max = parts
        .iter()
        .map(|p| match p {
            Part::Gap(n) => *n,
            Part::Out(_) => 0,
        })
        .max()
        .unwrap_or(0);
    let mut scratch = vec![0u8; gap_max];
    let total: usize = parts
        .iter()
        .map(|p| match p {
            Part::Gap(n) => *n,
            Part::Out(b) => b.len(),
        })
        .sum();
    let iov: Vec<libc::iovec> = parts
        .iter_mut()
        .map(|p| match p {
            Part::Out(b) => libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            },
            Part::Gap(n) => libc::iovec {
                iov_base: scratch.as_mut_ptr().cast(),
                iov_len: *n,
            },
        })
        .collect();
    let done = if parts.len() == 1 {
        0
    } else {
        // SAFETY: every iovec points into a distinct live `&mut [u8]` of `parts` or into
        // `scratch` (the gaps may share it: its bytes are thrown away), each with its
        // length; the descriptor is open; `iov.len()` <= MAX_IOV <= IOV_MAX.
        let n = unsafe {
            libc::preadv(
                file.as_raw_fd(),
                iov.as_ptr(),
                iov.len() as libc::c_int,
                addr as libc::off_t,
            )
        };
        if n < 0 {
            0
        } else {
            n as usize
        }
    };
    drop(iov);
    if done == total {
        return Ok(());
    }
    // What the kernel did not deliver, part by part.
    let mut off = 0usize;
    for p in parts.iter_mut() {
        let len = match p {
            Part::Gap(n) => *n,
            Part::Out(b) => b.len(),
        };
        if let Part::Out(b) = p {
            if off + len > done {
                let skip = done.saturating_sub(off);
                file.read_exact_at(&mut b[skip..], addr + (off + skip) as u64)
                    .map_err(|_| NotRaw)?;
            }
        }
        off += len;
    }
    Ok(())
}

/// Why the raw path did not deliver; the caller then reads through HDF5's pipeline
/// (which reports a damaged file in its own words).
#[derive(Debug)]
pub(crate) struct NotRaw;

impl RawChunks {
    /// The raw-chunk plan of `ds` holding `dtype` values, or `None` when the dataset is not
    /// eligible (contiguous, chunks not covering whole rows, a filter not implemented here
    /// such as fletcher32 or lzf, a stored type other than the native one).
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
        let mut steps = Vec::new();
        for (i, f) in ds.filters().iter().enumerate() {
            let kind = match f {
                Filter::Shuffle => StepKind::Shuffle,
                Filter::Deflate(level) => StepKind::Deflate(u32::from(*level)),
                Filter::User(id, cd) => StepKind::Codec(Codec::of(*id, cd).ok()??),
                _ => return None,
            };
            steps.push(Step {
                pos: i as u32,
                kind,
            });
        }
        // The filter mask has 32 bits.
        if steps.len() > 32 {
            return None;
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
            steps,
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
            if self.steps.is_empty() {
                return self.pread_plain(map, range, out);
            }
        }
        // A stored chunk is never much larger than the chunk itself (deflate's worst case
        // is a few bytes per 16 KiB block, blosc's 16 bytes, lz4's and bitshuffle's a few
        // per block); anything bigger is damage: let HDF5 judge it.
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

    /// Unfiltered chunks: their bytes go straight from the file into `out`. Chunks that
    /// lie back to back in the file, or with small gaps between them (HDF5 places its
    /// B-tree nodes among the chunks it writes), are read with one `preadv` per piece of
    /// about [`PREAD_PIECE`] bytes (pieces read in parallel): the bytes of a gap go to a
    /// scratch buffer, so the number of system calls does not grow with the chunk count.
    fn pread_plain(&self, map: &ChunkMap, range: Range<u64>, out: &mut [u8]) -> Result<(), NotRaw> {
        let es = self.elem_size as u64;
        let ce = self.chunk_elems();
        let cb = self.chunk_bytes() as u64;
        // Runs of (file offset, bytes) back to back in the file, in the order they fill `out`.
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
        // Calls: (file offset, parts), a part either a piece of `out` or a gap to skip.
        let mut calls: Vec<(u64, Vec<Part>)> = Vec::new();
        let mut end_of_last = u64::MAX;
        let mut bytes_in_last = 0usize;
        let mut rest = out;
        for (addr, len) in runs {
            let (run, tail) = rest.split_at_mut(len);
            rest = tail;
            let mut off = addr;
            for piece in run.chunks_mut(PREAD_PIECE) {
                let n = piece.len();
                let gap = off.wrapping_sub(end_of_last);
                let joins = off >= end_of_last
                    && gap <= MAX_GAP as u64
                    && bytes_in_last + n <= PREAD_PIECE + MAX_GAP
                    && calls.last().is_some_and(|c| c.1.len() + 2 <= MAX_IOV);
                match calls.last_mut() {
                    Some((_, parts)) if joins => {
                        if gap > 0 {
                            parts.push(Part::Gap(gap as usize));
                        }
                        parts.push(Part::Out(piece));
                        bytes_in_last += gap as usize + n;
                    }
                    _ => {
                        calls.push((off, vec![Part::Out(piece)]));
                        bytes_in_last = n;
                    }
                }
                off += n as u64;
                end_of_last = off;
            }
        }
        calls
            .into_par_iter()
            .try_for_each(|(addr, mut parts)| preadv_all(&map.file, addr, &mut parts))
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
                // None: the chunk was never written (fill values).
                let size = match stored_size(ds, &offset) {
                    Some(size) if size > 0 && size as usize <= max_stored => size,
                    _ => return Err(NotRaw),
                };
                let mut buf = vec![0u8; size as usize];
                match read_chunk2(ds, &offset, Some(&mut buf)) {
                    Some((mask, read)) if read == buf.len() => raws.push((mask, buf)),
                    _ => return Err(NotRaw),
                }
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
    /// into `dst`: the filters the chunk's mask says were applied, last to first; the
    /// first filter decodes straight into `dst` when the whole chunk is wanted.
    fn decode(
        &self,
        dec: &mut Option<Decompressor>,
        mask: u32,
        raw: &[u8],
        dst: &mut [u8],
        first: usize,
    ) -> Result<(), NotRaw> {
        let cb = self.chunk_bytes();
        let applied: Vec<&Step> = self
            .steps
            .iter()
            .filter(|s| mask & (1 << s.pos) == 0)
            .collect();
        let mut cur: Cow<[u8]> = Cow::Borrowed(raw);
        for i in (0..applied.len()).rev() {
            if i == 0 {
                return self.decode_last(&applied[0].kind, dec, &cur, dst, first);
            }
            // What this step decodes to is what the earlier steps produced: the chunk's
            // size when they all keep sizes (shuffle), else whatever the data says.
            let keeps = applied[..i]
                .iter()
                .all(|s| matches!(s.kind, StepKind::Shuffle));
            let hint = keeps.then_some(cb);
            cur = Cow::Owned(self.decode_step(&applied[i].kind, dec, &cur, hint)?);
        }
        // No filter was applied to this chunk: it is stored as it is.
        if cur.len() != cb {
            return Err(NotRaw);
        }
        let es = self.elem_size;
        dst.copy_from_slice(&cur[first * es..first * es + dst.len()]);
        Ok(())
    }

    /// The first filter of the pipeline, whose output is the chunk: decodes `input` and
    /// copies the wanted elements into `dst`.
    fn decode_last(
        &self,
        kind: &StepKind,
        dec: &mut Option<Decompressor>,
        input: &[u8],
        dst: &mut [u8],
        first: usize,
    ) -> Result<(), NotRaw> {
        let es = self.elem_size;
        let cb = self.chunk_bytes();
        let whole = first == 0 && dst.len() == cb;
        if let StepKind::Shuffle = kind {
            if input.len() != cb {
                return Err(NotRaw);
            }
            if es == 1 {
                dst.copy_from_slice(&input[first..first + dst.len()]);
                return Ok(());
            }
            // Unshuffle only the wanted elements, straight into `dst`.
            let ne = cb / es;
            for (i, out) in dst.chunks_exact_mut(es).enumerate() {
                let src = first + i;
                for (b, o) in out.iter_mut().enumerate() {
                    *o = input[b * ne + src];
                }
            }
            return Ok(());
        }
        if whole {
            return step_decode_into(kind, dec, input, dst);
        }
        let mut tmp = vec![0u8; cb];
        step_decode_into(kind, dec, input, &mut tmp)?;
        dst.copy_from_slice(&tmp[first * es..first * es + dst.len()]);
        Ok(())
    }

    /// Decodes one inner step of the pipeline (`hint`: its decoded size, when known).
    fn decode_step(
        &self,
        kind: &StepKind,
        dec: &mut Option<Decompressor>,
        input: &[u8],
        hint: Option<usize>,
    ) -> Result<Vec<u8>, NotRaw> {
        match (kind, hint) {
            (StepKind::Shuffle, _) => Ok(unshuffle(input, self.elem_size)),
            (StepKind::Codec(c), _) => c.decode_vec(input, hint).map_err(|_| NotRaw),
            (StepKind::Deflate(_), Some(n)) => {
                let mut out = vec![0u8; n];
                step_decode_into(kind, dec, input, &mut out)?;
                Ok(out)
            }
            (StepKind::Deflate(_), None) => {
                // A zlib stream does not record its size: grow until it fits.
                let dec = dec.get_or_insert_with(Decompressor::new);
                let mut n = (input.len() * 4).max(1 << 16);
                loop {
                    let mut out = vec![0u8; n];
                    match dec.zlib_decompress(input, &mut out) {
                        Ok(k) => {
                            out.truncate(k);
                            return Ok(out);
                        }
                        Err(libdeflater::DecompressionError::InsufficientSpace)
                            if n < MAX_CHUNK_BYTES =>
                        {
                            n = n.saturating_mul(2).min(MAX_CHUNK_BYTES)
                        }
                        Err(_) => return Err(NotRaw),
                    }
                }
            }
        }
    }

    /// Encodes whole chunks (`bytes`: a multiple of the chunk size) in parallel and writes
    /// them as chunks `first_chunk..` of `ds`, which must already be large enough.
    pub fn write(&self, ds: &Dataset, first_chunk: u64, bytes: &[u8]) -> Result<(), String> {
        let cb = self.chunk_bytes();
        debug_assert_eq!(bytes.len() % cb, 0);
        let per_batch = (WRITE_BATCH_BYTES / cb).max(1);
        let mut k = first_chunk;
        for batch in bytes.chunks(per_batch * cb) {
            let encoded: Vec<Vec<u8>> = if self.steps.is_empty() {
                Vec::new()
            } else {
                batch
                    .par_chunks(cb)
                    .map_init(
                        || None,
                        |c: &mut Option<Compressor>, chunk| self.encode(c, chunk),
                    )
                    .collect::<Result<_, String>>()?
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

    /// Whether chunks are stored as they are (no filter).
    pub fn is_plain(&self) -> bool {
        self.steps.is_empty()
    }

    /// Writes `bytes` as chunks `first_chunk..` of an unfiltered dataset whose chunks are
    /// all allocated (`map`: [`ChunkMap::of_output`]) straight into the file, one `pwrite`
    /// per run of chunks that lie back to back in the file, outside HDF5 (which never
    /// holds these chunks: it did not write them and nothing reads them through it).
    /// `bytes` is whole chunks, except that the dataset's last chunk may be partial: it is
    /// padded with zeros, as HDF5 stores an edge chunk whole.
    pub fn pwrite_plain(
        &self,
        map: &ChunkMap,
        first_chunk: u64,
        bytes: &[u8],
    ) -> Result<(), String> {
        let cb = self.chunk_bytes();
        let n_chunks = bytes.len().div_ceil(cb) as u64;
        let pad = n_chunks as usize * cb - bytes.len();
        if pad > 0 && first_chunk + n_chunks != map.len() {
            return Err(format!(
                "a partial chunk ({} bytes) before the last one",
                cb - pad
            ));
        }
        let runs = map
            .runs(first_chunk..first_chunk + n_chunks)
            .ok_or_else(|| "a chunk was not allocated".to_string())?;
        let fail = |e: std::io::Error| format!("cannot write: {e}");
        let mut rest = bytes;
        for (addr, len) in runs {
            let take = (len as usize).min(rest.len());
            let (head, tail) = rest.split_at(take);
            map.file.write_all_at(head, addr).map_err(fail)?;
            rest = tail;
            if take < len as usize {
                let zeros = vec![0u8; len as usize - take];
                map.file
                    .write_all_at(&zeros, addr + take as u64)
                    .map_err(fail)?;
            }
        }
        Ok(())
    }

    /// One chunk through the filter pipeline, first filter first.
    fn encode(&self, comp: &mut Option<Compressor>, chunk: &[u8]) -> Result<Vec<u8>, String> {
        let mut cur: Cow<[u8]> = Cow::Borrowed(chunk);
        for step in &self.steps {
            cur = Cow::Owned(match &step.kind {
                StepKind::Shuffle => shuffle(&cur, self.elem_size),
                StepKind::Deflate(level) => {
                    let comp = comp.get_or_insert_with(|| {
                        let lvl =
                            CompressionLvl::new((*level).clamp(1, 9) as i32).unwrap_or_default();
                        Compressor::new(lvl)
                    });
                    let mut out = vec![0u8; comp.zlib_compress_bound(cur.len())];
                    let n = comp
                        .zlib_compress(&cur, &mut out)
                        .map_err(|_| "deflate failed".to_string())?;
                    out.truncate(n);
                    out
                }
                StepKind::Codec(c) => c
                    .encode(&cur)
                    .map_err(|e| format!("cannot encode a chunk ({}): {e}", c.describe()))?,
            });
        }
        Ok(cur.into_owned())
    }
}

/// Decodes one filter's output into `out`, which must be exactly the decoded size.
fn step_decode_into(
    kind: &StepKind,
    dec: &mut Option<Decompressor>,
    input: &[u8],
    out: &mut [u8],
) -> Result<(), NotRaw> {
    match kind {
        StepKind::Shuffle => Err(NotRaw),
        StepKind::Deflate(_) => {
            let dec = dec.get_or_insert_with(Decompressor::new);
            match dec.zlib_decompress(input, out) {
                Ok(n) if n == out.len() => Ok(()),
                _ => Err(NotRaw),
            }
        }
        StepKind::Codec(c) => c.decode_into(input, out).map_err(|_| NotRaw),
    }
}

/// HDF5's shuffle: byte `b` of element `i` goes to `b * n + i`; bytes past the last whole
/// element stay where they are.
fn shuffle(src: &[u8], es: usize) -> Vec<u8> {
    let mut out = src.to_vec();
    if es > 1 {
        let n = src.len() / es;
        for (i, elem) in src[..n * es].chunks_exact(es).enumerate() {
            for (b, &v) in elem.iter().enumerate() {
                out[b * n + i] = v;
            }
        }
    }
    out
}

/// The inverse of [`shuffle`].
fn unshuffle(src: &[u8], es: usize) -> Vec<u8> {
    let mut out = src.to_vec();
    if es > 1 {
        let n = src.len() / es;
        for (i, elem) in out[..n * es].chunks_exact_mut(es).enumerate() {
            for (b, o) in elem.iter_mut().enumerate() {
                *o = src[b * n + i];
            }
        }
    }
    out
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

    /// The third-party filters, alone and after shuffle: chunks written on the raw path
    /// are read back by HDF5's pipeline (our registered filter classes) and chunks written
    /// by HDF5 are read back on the raw path, bit for bit.
    #[test]
    fn plugin_filters_round_trip_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.h5");
        let file = create_write(&path).unwrap();
        let blosc =
            |shuffle: u32, comp: u32| Filter::User(32001, vec![2, 2, 4, 0, 5, shuffle, comp]);
        let pipelines: Vec<Vec<Filter>> = vec![
            vec![blosc(0, 0)],
            vec![blosc(1, 1)],
            vec![blosc(2, 5)],
            vec![Filter::User(32015, vec![3])],
            vec![Filter::Shuffle, Filter::User(32015, vec![1])],
            vec![Filter::User(32004, vec![])],
            vec![Filter::User(32004, vec![1000])],
            vec![Filter::User(32008, vec![0, 4, 4, 0, 0])],
            vec![Filter::User(32008, vec![0, 4, 4, 0, 2])],
            vec![Filter::User(32008, vec![0, 4, 4, 256, 3, 5])],
            vec![Filter::User(307, vec![9])],
            vec![Filter::User(32008, vec![0, 4, 4, 0, 0]), Filter::Deflate(4)],
        ];
        for (i, filters) in pipelines.into_iter().enumerate() {
            for dtype in [DType::F64, DType::I32] {
                let n = 10 * 97 + 13;
                let name = format!("v{i}_{}", dtype.numpy_name());
                let ds =
                    create_dataset(&file, &name, dtype, &[n], &storage(&[97], filters.clone()))
                        .unwrap();
                let raw = RawChunks::of(&ds, dtype).unwrap_or_else(|| panic!("{filters:?}"));
                let bytes: Vec<u8> = match dtype {
                    DType::F64 => (0..n)
                        .flat_map(|x| ((x % 13) as f64 * 0.5).to_ne_bytes())
                        .collect(),
                    _ => (0..n as i32).flat_map(|x| (x % 29).to_ne_bytes()).collect(),
                };
                let es = dtype.size();
                let whole = (n as usize / 97) * 97 * es;
                // raw writes of whole chunks, the tail chunk through HDF5
                raw.write(&ds, 0, &bytes[..whole]).unwrap();
                let ds2 = file.dataset(&name).unwrap();
                let tail = hdf5::Hyperslab::from(vec![hdf5::SliceOrIndex::from(
                    (whole / es)..(n as usize),
                )]);
                match dtype {
                    DType::F64 => {
                        let v: Vec<f64> = bytes[whole..]
                            .chunks(8)
                            .map(|b| f64::from_ne_bytes(b.try_into().unwrap()))
                            .collect();
                        ds2.write_slice(&v, tail).unwrap();
                        let all = ds2.read_raw::<f64>().unwrap();
                        let back: Vec<u8> = all.iter().flat_map(|v| v.to_ne_bytes()).collect();
                        assert_eq!(back, bytes, "{filters:?} read by HDF5");
                    }
                    _ => {
                        let v: Vec<i32> = bytes[whole..]
                            .chunks(4)
                            .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                            .collect();
                        ds2.write_slice(&v, tail).unwrap();
                        let all = ds2.read_raw::<i32>().unwrap();
                        let back: Vec<u8> = all.iter().flat_map(|v| v.to_ne_bytes()).collect();
                        assert_eq!(back, bytes, "{filters:?} read by HDF5");
                    }
                }
                file.flush().unwrap();
                let map = ChunkMap::of(&ds, &raw, &path);
                assert!(map.is_some());
                for r in [0..n, 0..1, 96..98, 100..900, n - 5..n, 3..3] {
                    let mut out = vec![0u8; (r.end - r.start) as usize * es];
                    raw.read(&ds, None, r.clone(), &mut out).unwrap();
                    let want = &bytes[r.start as usize * es..r.end as usize * es];
                    assert_eq!(out, want, "{filters:?} {r:?}");
                    let mut out2 = vec![0u8; out.len()];
                    raw.read(&ds, map.as_ref(), r.clone(), &mut out2).unwrap();
                    assert_eq!(out2, want, "{filters:?} {r:?} through the chunk map");
                }
            }
        }
    }

    /// A damaged chunk is refused on the raw path (HDF5 then judges it), never a panic.
    #[test]
    fn damaged_plugin_chunks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = create_write(&dir.path().join("d.h5")).unwrap();
        for (i, f) in [
            Filter::User(32001, vec![2, 2, 4, 0, 5, 1, 5]),
            Filter::User(32015, vec![3]),
            Filter::User(32004, vec![]),
            Filter::User(32008, vec![0, 4, 4, 0, 2]),
            Filter::User(307, vec![9]),
        ]
        .into_iter()
        .enumerate()
        {
            let ds = create_dataset(
                &file,
                &format!("d{i}"),
                DType::F32,
                &[400],
                &storage(&[100], vec![f]),
            )
            .unwrap();
            let raw = RawChunks::of(&ds, DType::F32).unwrap();
            let bytes: Vec<u8> = (0..400u32).flat_map(|x| (x as f32).to_ne_bytes()).collect();
            raw.write(&ds, 0, &bytes).unwrap();
            let chunk = raw.encode(&mut None, &bytes[..400]).unwrap();
            for cut in [chunk.len() / 2, chunk.len() - 1, 3] {
                let mut dst = vec![0u8; 400];
                assert!(raw
                    .decode(&mut None, 0, &chunk[..cut], &mut dst, 0)
                    .is_err());
            }
            let mut flipped = chunk.clone();
            let k = flipped.len() / 2;
            flipped[k] ^= 0x5a;
            let mut dst = vec![0u8; 400];
            let _ = raw.decode(&mut None, 0, &flipped, &mut dst, 0);
        }
    }
}
