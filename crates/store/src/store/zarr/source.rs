//! Reads of zarr arrays: [`ZArray`] (any array, by rows along axis 0) and [`ZarrSource`]
//! (a stored matrix, [`SparseSource`] and [`DenseSource`]).
//!
//! Numeric reads decode straight into the returned buffer (no staging copy) through zarrs,
//! which decodes the chunks (or a shard's inner chunks) a range covers in parallel on the
//! current rayon pool. zarr reads a missing chunk as the fill value; that is kept for every
//! array but the members of a sparse matrix (`data`, `indices`, `indptr`), where a missing
//! chunk, shard or inner chunk of a shard is an error: zeros there would be wrong data.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU64;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Mutex;

use rayon::prelude::*;
use serde_json::Value;
use unsafe_cell_slice::UnsafeCellSlice;
use zarrs::array::codec::ShardingCodec;
use zarrs::array::{
    Array, ArrayBytes, ArrayBytesDecodeIntoTarget, ArrayBytesFixedDisjointView, ArraySubset,
    CodecOptions,
};
use zarrs::metadata_ext::codec::sharding::ShardingCodecConfiguration;
use zarrs::storage::byte_range::ByteRange;
use zarrs::storage::ReadableWritableListableStorageTraits;

use super::input::ZarrInput;
use super::node::{NodeMeta, Problem};
use super::sharding::ShardLayout;
use super::Storage;
use crate::array::by_dtype;
use crate::array::{as_bytes_mut, DType, NumVec, Plain};
use crate::error::{Error, Result};
use crate::store::anndata::{self, Member, ShapeAttr};
use crate::store::tree::{ElemType, NodeKind};
use crate::store::{DenseSource, InputStore as _, MatrixMeta, SparseSource, StoredMatrix};

type ZStore = dyn ReadableWritableListableStorageTraits;

/// One zarr array opened for reading.
pub(crate) struct ZArray {
    /// Element path (`X/data`).
    pub path: String,
    pub elem: ElemType,
    pub shape: Vec<u64>,
    array: Array<ZStore>,
    /// Present for sparse-matrix members: every chunk must exist.
    strict: Option<Strict>,
    /// Code points per element of a fixed-width unicode array (`<U5`), read as strings.
    utf32: Option<usize>,
    /// 1-D numeric arrays: the decode unit the last read ended inside.
    edge: Option<EdgeCache>,
    /// Object storage: whole chunks (or a shard's inner chunks, as byte ranges) fetched
    /// ahead of the reads that need them.
    prefetch: Option<std::sync::Arc<dyn super::Prefetch>>,
    /// A sharded array's read-ahead so far.
    ahead: Mutex<Ahead>,
}

/// Where a sharded array's read-ahead stands, in inner chunks numbered along the array.
#[derive(Default)]
struct Ahead {
    /// The first inner chunk of the last read (a read before it starts a new pass).
    reading: u64,
    /// The first inner chunk not yet asked for.
    next: u64,
    /// The element after the last read: a read that starts there (or at 0) streams.
    read_end: u64,
}

/// When reads follow each other (a pass streaming the array), a sharded array's inner
/// chunks are fetched ahead up to this many bytes past the current read's start: enough
/// requests in flight to cover a round trip, bounded. Other reads (a task scheduler's
/// chunks) fetch their own inner chunks only.
const READ_AHEAD_BYTES: u64 = 32 << 20;

/// Adjacent inner chunks are fetched together in pieces of up to this many bytes.
const PIECE_BYTES: u64 = 4 << 20;

/// Presence checks of the chunks (shards) of a 1-D array, each done once.
struct Strict {
    storage: Storage,
    /// Elements per chunk (per shard when sharded).
    chunk_len: u64,
    shard: Option<ShardCheck>,
    checked: Mutex<HashSet<u64>>,
    /// The indexes of the shards checked, by shard number, when read ahead uses them.
    indexes: Mutex<HashMap<u64, std::sync::Arc<ShardIndex>>>,
    /// Chunks are gzip streams, checked as zarr-python decodes them.
    gzip: bool,
}

struct ShardCheck {
    codec: ShardingCodec,
    layout: ShardLayout,
}

/// A checked shard's size and decoded index (offset, length per inner chunk).
struct ShardIndex {
    size: u64,
    entries: Vec<u64>,
}

/// Decodes `subset` straight into a new `Vec<T>` (`T` the array's element type).
fn decode_into<T: Plain>(
    array: &Array<ZStore>,
    subset: &ArraySubset,
    n: usize,
) -> std::result::Result<Vec<T>, String> {
    let mut v = vec![T::default(); n];
    if n == 0 {
        return Ok(v);
    }
    decode_into_slice(
        array,
        subset,
        std::mem::size_of::<T>(),
        as_bytes_mut(&mut v),
    )?;
    Ok(v)
}

/// Decodes `subset` straight into `bytes` (exactly its elements of `elem_size` bytes).
fn decode_into_slice(
    array: &Array<ZStore>,
    subset: &ArraySubset,
    elem_size: usize,
    bytes: &mut [u8],
) -> std::result::Result<(), String> {
    let shape = subset.shape().to_vec();
    // SAFETY: the view covers the whole buffer (its elements of `elem_size` bytes in
    // `shape`) and is the only one over it: `bytes` is borrowed mutably until the decode
    // below has returned, and zarrs writes only through the view.
    let mut view = unsafe {
        ArrayBytesFixedDisjointView::new(
            UnsafeCellSlice::new(bytes),
            elem_size,
            &shape,
            ArraySubset::new_with_shape(shape.clone()),
        )
    }
    .map_err(|e| e.to_string())?;
    array
        .retrieve_array_subset_into_opt(
            subset,
            ArrayBytesDecodeIntoTarget::Fixed(&mut view),
            &CodecOptions::default(),
        )
        .map_err(read_failure)
}

/// Decodes elements `rows` (`n` of them) of a 1-D array through its edge cache.
fn read_through<T: Plain>(
    edge: &EdgeCache,
    array: &Array<ZStore>,
    len: u64,
    rows: &Range<u64>,
    n: usize,
) -> std::result::Result<Vec<T>, String> {
    let mut v = vec![T::default(); n];
    edge.read(
        array,
        len,
        std::mem::size_of::<T>(),
        rows.clone(),
        as_bytes_mut(&mut v),
    )?;
    Ok(v)
}

/// The last decode unit (a shard's inner chunk, else a chunk) of a 1-D numeric array that a
/// read ended inside. Row blocks cut data at row boundaries, not at chunks, so consecutive
/// reads share a unit at every block boundary: the next read takes its part from here
/// instead of decoding the unit a second time.
struct EdgeCache {
    /// Elements per decode unit.
    unit_len: u64,
    /// `(unit number, decoded bytes)`.
    last: Mutex<Option<(u64, Vec<u8>)>>,
}

/// The subset of elements `range` of a 1-D array.
fn unit_subset(range: Range<u64>) -> ArraySubset {
    ArraySubset::new_with_ranges(std::slice::from_ref(&range))
}

/// Units above this size are not kept (an unsharded chunk can be large).
const EDGE_CACHE_MAX_BYTES: u64 = 16 << 20;

impl EdgeCache {
    fn for_array(meta: &NodeMeta, shape: &[u64], elem: ElemType) -> Option<Self> {
        let ElemType::Num(dtype) = elem else {
            return None;
        };
        let unit = match meta.inner_chunk_shape() {
            Some(inner) => inner,
            None => meta.chunk_shape()?,
        };
        match (shape, unit.as_slice()) {
            ([_], &[u]) if u > 0 && u * dtype.size() as u64 <= EDGE_CACHE_MAX_BYTES => {
                Some(EdgeCache {
                    unit_len: u,
                    last: Mutex::new(None),
                })
            }
            _ => None,
        }
    }

    /// The number of the unit kept, if any.
    fn kept(&self) -> Option<u64> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(k, _)| *k)
    }

    /// Copies elements `range` of unit `k` (all inside it) into `out`, decoding the unit
    /// unless it is the one kept; the unit is kept afterwards.
    fn copy_from_unit(
        &self,
        array: &Array<ZStore>,
        len: u64,
        es: usize,
        k: u64,
        range: Range<u64>,
        out: &mut [u8],
    ) -> std::result::Result<(), String> {
        let start = k * self.unit_len;
        let at = |i: u64| (i - start) as usize * es;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(&*last, Some((kept, _)) if *kept == k) {
            let end = (start + self.unit_len).min(len);
            let mut unit = vec![0u8; (end - start) as usize * es];
            decode_into_slice(array, &unit_subset(start..end), es, &mut unit)?;
            *last = Some((k, unit));
        }
        let (_, unit) = last.as_ref().expect("kept above");
        out.copy_from_slice(&unit[at(range.start)..at(range.end)]);
        Ok(())
    }

    /// Decodes elements `rows` (non-empty) into `out`: whole units straight into it, a unit
    /// the range starts or ends inside through the cache.
    fn read(
        &self,
        array: &Array<ZStore>,
        len: u64,
        es: usize,
        rows: Range<u64>,
        out: &mut [u8],
    ) -> std::result::Result<(), String> {
        let u = self.unit_len;
        let (a, b) = (rows.start, rows.end);
        let unit_end = |k: u64| ((k + 1) * u).min(len);
        let (first, last) = (a / u, (b - 1) / u);
        let head_partial = a > first * u || b < unit_end(first);
        let tail_partial = last != first && b < unit_end(last);
        let mut out = out;
        let mut pos = a;
        if head_partial {
            let end = b.min(unit_end(first));
            let (head, rest) = out.split_at_mut((end - a) as usize * es);
            self.copy_from_unit(array, len, es, first, a..end, head)?;
            out = rest;
            pos = end;
        }
        if pos == b {
            return Ok(());
        }
        let mid_end = if tail_partial { last * u } else { b };
        let (mid, tail) = out.split_at_mut((mid_end - pos) as usize * es);
        let decode_mid = || match pos < mid_end {
            true => decode_into_slice(array, &unit_subset(pos..mid_end), es, mid),
            false => Ok(()),
        };
        let decode_tail = || match tail_partial {
            true => self.copy_from_unit(array, len, es, last, last * u..b, tail),
            false => Ok(()),
        };
        let (m, t) = rayon::join(decode_mid, decode_tail);
        m.and(t)
    }
}

/// A failed read of stored chunks, worded: a codec's failure is said to be one (zarrs shows
/// the library's own text alone, e.g. zstd's "Dictionary is corrupted" for damaged data).
fn read_failure(e: zarrs::array::ArrayError) -> String {
    match e {
        zarrs::array::ArrayError::CodecError(c) => {
            format!("a stored chunk cannot be decoded: {c}")
        }
        other => other.to_string(),
    }
}

/// Runs a zarrs call, turning a panic inside it (damaged data zarrs did not expect) into an
/// error message.
fn guarded<T>(
    f: impl FnOnce() -> std::result::Result<T, String>,
) -> std::result::Result<T, String> {
    let _quiet = QuietPanics::begin();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown failure".into());
            Err(format!("the zarr decoder failed: {msg}"))
        }
    }
}

/// While a guarded decode runs, panics print nothing: the decoder's panic (raised on whichever
/// rayon thread decoded the chunk) becomes the one clear error `guarded` returns, instead of
/// Rust's panic text and backtrace on stderr. Other panics meanwhile still surface as errors
/// where their thread is joined.
struct QuietPanics;

static GUARDED_DECODES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl QuietPanics {
    fn begin() -> Self {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if GUARDED_DECODES.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    previous(info);
                }
            }));
        });
        GUARDED_DECODES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        QuietPanics
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        GUARDED_DECODES.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl ZArray {
    /// Opens the array at `path` (described by `meta`). `strict`: a missing chunk is an
    /// error (1-D arrays only).
    pub fn open(
        storage: &Storage,
        path: &str,
        meta: &NodeMeta,
        strict: bool,
    ) -> std::result::Result<Self, Problem> {
        if meta.kind != NodeKind::Array {
            return Err(Problem::new(path, "is a group, expected an array"));
        }
        let elem = meta
            .elem_type()
            .map_err(|what| Problem::new(path, format!("unsupported: holds {what}")))?;
        let shape = meta
            .shape()
            .ok_or_else(|| Problem::new(path, "malformed metadata: no valid 'shape'"))?;
        let array = guarded(|| {
            let (handle, node) = super::rebase::array_handle(storage, path);
            Array::open(handle, &node).map_err(|e| e.to_string())
        })
        .map_err(|e| Problem::new(path, format!("cannot open the array: {e}")))?;
        if array.shape() != shape.as_slice() {
            return Err(Problem::new(path, "inconsistent array metadata (shape)"));
        }
        let strict = if strict && shape.len() == 1 {
            Some(Strict::new(storage, path, meta)?)
        } else {
            None
        };
        let utf32 = if meta.is_utf32() {
            let bytes = array
                .data_type()
                .fixed_size()
                .ok_or_else(|| Problem::new(path, "fixed-width unicode without a fixed size"))?;
            Some(bytes / 4)
        } else {
            None
        };
        let edge = EdgeCache::for_array(meta, &shape, elem);
        Ok(ZArray {
            path: path.to_string(),
            elem,
            shape,
            array,
            strict,
            utf32,
            edge,
            prefetch: None,
            ahead: Mutex::new(Ahead::default()),
        })
    }

    /// Fetch ahead of the reads through `prefetch` (all at once, up to the storage's request
    /// limit; zarrs alone reads one chunk per thread at a time, so over a slow link reads
    /// wait a round trip each): the chunks of each read and of as many elements after it,
    /// or, sharded, the inner chunks of the next [`READ_AHEAD_BYTES`] as byte ranges
    /// ([`ZArray::fetch_inner_chunks_ahead`]). For a 1-D array opened at its own path
    /// (sharded: a sparse matrix's member, whose shard indexes the reads check).
    pub fn read_ahead(&mut self, prefetch: std::sync::Arc<dyn super::Prefetch>, meta: &NodeMeta) {
        let direct = zarrs::node::NodePath::validate(&format!("/{}", self.path));
        let indexed = self.strict.as_ref().is_some_and(|s| s.shard.is_some());
        if self.shape.len() == 1
            && (meta.sharding().is_none() || indexed)
            && direct
            && self.edge.is_some()
        {
            self.prefetch = Some(prefetch);
        }
    }

    /// Starts fetching what the read of `rows` and the reads after it need.
    fn fetch_ahead(&self, rows: &Range<u64>) {
        let (Some(prefetch), Some(edge)) = (&self.prefetch, &self.edge) else {
            return;
        };
        if let Some((strict, shard)) = self
            .strict
            .as_ref()
            .and_then(|s| s.shard.as_ref().map(|shard| (s, shard)))
        {
            self.fetch_inner_chunks_ahead(prefetch.as_ref(), strict, shard, rows);
            return;
        }
        let u = edge.unit_len;
        let end = (rows.end + (rows.end - rows.start)).min(self.n_rows());
        let kept = edge.kept();
        let keys = (rows.start / u..end.div_ceil(u))
            .filter(|&k| Some(k) != kept)
            .map(|k| self.array.chunk_key(&[k]))
            .collect();
        prefetch.prefetch(keys);
    }

    /// Starts fetching the inner chunks of `rows` and, when the read continues the last one,
    /// those after it up to [`READ_AHEAD_BYTES`] from its start (those asked for by earlier
    /// reads are not asked again), as pieces of adjacent inner chunks; it stops at the first
    /// shard not yet checked (its index is not known yet). The pieces hold exactly the byte
    /// ranges zarrs reads.
    fn fetch_inner_chunks_ahead(
        &self,
        prefetch: &dyn super::Prefetch,
        strict: &Strict,
        shard: &ShardCheck,
        rows: &Range<u64>,
    ) {
        if rows.start >= rows.end {
            return;
        }
        let (inner, per_shard) = (shard.layout.inner_len, shard.layout.per_shard);
        let first = rows.start / inner;
        let units = self.n_rows().div_ceil(inner);
        let indexes = strict.indexes.lock().unwrap_or_else(|e| e.into_inner());
        let entry = |unit: u64| -> Option<(u64, u64, &ShardIndex)> {
            let index = indexes.get(&(unit / per_shard))?;
            let j = (2 * (unit % per_shard)) as usize;
            match (index.entries.get(j), index.entries.get(j + 1)) {
                (Some(&off), Some(&n)) if off != u64::MAX => Some((off, n, index)),
                _ => None,
            }
        };
        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        if first < ahead.reading {
            ahead.next = first; // a new pass, or reads out of order
        }
        ahead.reading = first;
        let streaming = rows.start == ahead.read_end || rows.start == 0;
        ahead.read_end = rows.end;
        let read_end = ((rows.end - 1) / inner + 1).min(units);
        let limit = if streaming { units } else { read_end };
        let mut unit = ahead.next.max(first);
        // Bytes already asked for between the read's start and `unit`.
        let mut window: u64 = (first..unit).filter_map(&entry).map(|(_, n, _)| n).sum();
        // (shard, its size, pieces: (bytes, units)), in order.
        let mut asks: Vec<(u64, u64, Vec<super::PieceAhead>)> = Vec::new();
        while unit < limit && (unit < read_end || window < READ_AHEAD_BYTES) {
            let Some((off, n, index)) = entry(unit) else {
                break;
            };
            let k = unit / per_shard;
            if asks.last().is_none_or(|(shard, _, _)| *shard != k) {
                asks.push((k, index.size, Vec::new()));
            }
            let pieces = &mut asks.last_mut().expect("pushed above").2;
            match pieces.last_mut() {
                Some((bytes, covered))
                    if bytes.end == off && bytes.end - bytes.start + n <= PIECE_BYTES =>
                {
                    bytes.end += n;
                    covered.end = unit + 1;
                }
                _ if n > 0 => pieces.push((off..off + n, unit..unit + 1)),
                _ => {}
            }
            window += n;
            unit += 1;
        }
        ahead.next = unit;
        drop(ahead);
        drop(indexes);
        for (k, size, pieces) in asks {
            prefetch.prefetch_ranges(&self.array.chunk_key(&[k]), size, pieces, first..unit);
        }
    }

    /// Rows along axis 0 (1 for a scalar).
    pub fn n_rows(&self) -> u64 {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Elements per row (product of all but the first dimension).
    pub fn row_len(&self) -> u64 {
        self.shape.iter().skip(1).product()
    }

    fn fail(&self, rows: &Range<u64>, problem: impl std::fmt::Display) -> Problem {
        let what = if self.shape.is_empty() {
            "the value".to_string()
        } else if self.shape.len() == 1 {
            format!("elements {}..{}", rows.start, rows.end)
        } else {
            format!("rows {}..{}", rows.start, rows.end)
        };
        Problem::new(&self.path, format!("cannot read {what}: {problem}"))
    }

    /// The subset for `rows` (checked against the shape) and its number of elements.
    fn subset(&self, rows: &Range<u64>) -> std::result::Result<(ArraySubset, usize), Problem> {
        let n_rows = self.n_rows();
        if rows.start > rows.end || rows.end > n_rows {
            let what = if self.shape.len() == 1 {
                "elements"
            } else {
                "rows"
            };
            return Err(Problem::new(
                &self.path,
                format!(
                    "{what} {}..{} requested, but it has {n_rows}",
                    rows.start, rows.end
                ),
            ));
        }
        if self.shape.is_empty() {
            return Ok((ArraySubset::new_with_shape(Vec::new()), 1));
        }
        let mut ranges = vec![rows.clone()];
        ranges.extend(self.shape.iter().skip(1).map(|&d| 0..d));
        let n = (rows.end - rows.start)
            .checked_mul(self.row_len())
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.fail(rows, "too many elements for memory"))?;
        Ok((ArraySubset::new_with_ranges(&ranges), n))
    }

    /// Numeric rows in the stored dtype, C order.
    pub fn read_num(&self, rows: Range<u64>) -> std::result::Result<NumVec, Problem> {
        let ElemType::Num(dtype) = self.elem else {
            return Err(Problem::new(&self.path, "holds no numbers"));
        };
        let (subset, n) = self.subset(&rows)?;
        if n == 0 {
            return by_dtype!(dtype, empty()).map_err(|e: String| self.fail(&rows, e));
        }
        if let Some(strict) = &self.strict {
            strict.check(&self.path, &self.array, &rows, self.prefetch.as_deref())?;
        }
        let array = &self.array;
        self.fetch_ahead(&rows);
        if let Some(edge) = &self.edge {
            let len = self.n_rows();
            return guarded(|| by_dtype!(dtype, read_through(edge, array, len, &rows, n)))
                .map_err(|e| self.fail(&rows, e));
        }
        guarded(|| by_dtype!(dtype, decode_into(array, &subset, n)))
            .map_err(|e| self.fail(&rows, e))
    }

    pub fn read_bools(&self, rows: Range<u64>) -> std::result::Result<Vec<bool>, Problem> {
        let (subset, n) = self.subset(&rows)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        guarded(|| {
            self.array
                .retrieve_array_subset_opt::<Vec<bool>>(&subset, &CodecOptions::default())
                .map_err(read_failure)
        })
        .map_err(|e| self.fail(&rows, e))
    }

    pub fn read_strings(&self, rows: Range<u64>) -> std::result::Result<Vec<String>, Problem> {
        let (subset, n) = self.subset(&rows)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        if let Some(width) = self.utf32 {
            return guarded(|| {
                let bytes = self
                    .array
                    .retrieve_array_subset_opt::<ArrayBytes<'static>>(
                        &subset,
                        &CodecOptions::default(),
                    )
                    .map_err(read_failure)?
                    .into_fixed()
                    .map_err(|e| e.to_string())?;
                decode_utf32(&bytes, width)
            })
            .map_err(|e| self.fail(&rows, e));
        }
        guarded(|| {
            self.array
                .retrieve_array_subset_opt::<Vec<String>>(&subset, &CodecOptions::default())
                .map_err(read_failure)
        })
        .map_err(|e| self.fail(&rows, e))
    }
}

/// numpy fixed-width unicode (`<U{width}`): `width` UTF-32LE code points per element, the
/// trailing NULs padding (numpy drops them too).
fn decode_utf32(bytes: &[u8], width: usize) -> std::result::Result<Vec<String>, String> {
    if width == 0 {
        return Ok(vec![String::new(); if bytes.is_empty() { 0 } else { 1 }]);
    }
    bytes
        .chunks(width * 4)
        .map(|elem| {
            let mut s = String::new();
            for cp in elem.chunks_exact(4) {
                let c = u32::from_le_bytes([cp[0], cp[1], cp[2], cp[3]]);
                if c == 0 {
                    break;
                }
                s.push(char::from_u32(c).ok_or_else(|| format!("invalid code point {c:#x}"))?);
            }
            Ok(s)
        })
        .collect()
}

fn empty<T>() -> std::result::Result<Vec<T>, String> {
    Ok(Vec::new())
}

impl Strict {
    fn new(storage: &Storage, path: &str, meta: &NodeMeta) -> std::result::Result<Self, Problem> {
        let bad_grid = || Problem::new(path, "unsupported chunk grid (expected a regular grid)");
        let chunk_len = match meta.chunk_shape().as_deref() {
            Some([c]) if *c > 0 => *c,
            _ => return Err(bad_grid()),
        };
        let shard = match meta.sharding() {
            None => None,
            Some(conf) => Some(ShardCheck::new(path, conf, chunk_len)?),
        };
        Ok(Strict {
            storage: storage.clone(),
            chunk_len,
            shard,
            checked: Mutex::new(HashSet::new()),
            indexes: Mutex::new(HashMap::new()),
            gzip: meta.stored_as_gzip(),
        })
    }

    /// Checks that every chunk (shard, inner chunk) holding elements `range` exists. A
    /// shard's index is kept (and handed to `prefetch`, for zarrs' reads of it).
    fn check(
        &self,
        path: &str,
        array: &Array<ZStore>,
        range: &Range<u64>,
        prefetch: Option<&dyn super::Prefetch>,
    ) -> std::result::Result<(), Problem> {
        let first = range.start / self.chunk_len;
        let last = (range.end - 1) / self.chunk_len;
        let todo: Vec<u64> = {
            let checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            (first..=last).filter(|k| !checked.contains(k)).collect()
        };
        if todo.is_empty() {
            return Ok(());
        }
        let len = array.shape().first().copied().unwrap_or(0);
        todo.par_iter()
            .try_for_each(|&k| self.check_one(path, array, k, len, prefetch))?;
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        checked.extend(todo);
        Ok(())
    }

    fn check_one(
        &self,
        path: &str,
        array: &Array<ZStore>,
        k: u64,
        array_len: u64,
        prefetch: Option<&dyn super::Prefetch>,
    ) -> std::result::Result<(), Problem> {
        let key = array.chunk_key(&[k]);
        let what = if self.shard.is_some() {
            "shard"
        } else {
            "chunk"
        };
        let size = self
            .storage
            .size_key(&key)
            .map_err(|e| Problem::new(path, format!("cannot read {what} '{}': {e}", key.as_str())))?
            .ok_or_else(|| {
                Problem::new(
                    path,
                    format!(
                        "{what} '{}' is missing (a sparse matrix's arrays must be complete)",
                        key.as_str()
                    ),
                )
            })?;
        let Some(shard) = &self.shard else {
            if self.gzip && size > 0 {
                let bytes = self
                    .storage
                    .get(&key)
                    .map_err(|e| {
                        Problem::new(path, format!("cannot read chunk '{}': {e}", key.as_str()))
                    })?
                    .ok_or_else(|| {
                        Problem::new(path, format!("chunk '{}' is missing", key.as_str()))
                    })?;
                crate::store::check::check_gzip_like_python(&bytes).map_err(|why| {
                    Problem::new(path, format!("corrupt chunk '{}': {why}", key.as_str()))
                })?;
            }
            return Ok(());
        };
        let corrupt =
            |why: String| Problem::new(path, format!("corrupt shard '{}': {why}", key.as_str()));
        if size < shard.layout.index_len {
            return Err(corrupt(format!(
                "{size} bytes, smaller than its index ({} bytes)",
                shard.layout.index_len
            )));
        }
        let range = if shard.layout.index_at_start {
            ByteRange::FromStart(0, Some(shard.layout.index_len))
        } else {
            ByteRange::Suffix(shard.layout.index_len)
        };
        let bytes = self
            .storage
            .get_partial(&key, range)
            .map_err(|e| Problem::new(path, format!("cannot read shard '{}': {e}", key.as_str())))?
            .ok_or_else(|| Problem::new(path, format!("shard '{}' is missing", key.as_str())))?;
        let per_shard = NonZeroU64::new(shard.layout.per_shard)
            .ok_or_else(|| corrupt("no inner chunks".into()))?;
        let index = guarded(|| {
            shard
                .codec
                .decode_index(&bytes, &[per_shard], &CodecOptions::default())
                .map_err(|e| e.to_string())
        })
        .map_err(|e| corrupt(format!("bad index: {e}")))?;
        let (lo, hi) = if shard.layout.index_at_start {
            (shard.layout.index_len, size)
        } else {
            (0, size - shard.layout.index_len)
        };
        for j in 0..shard.layout.per_shard {
            let start = k * self.chunk_len + j * shard.layout.inner_len;
            if start >= array_len {
                break;
            }
            let (Some(&off), Some(&n)) = (index.get(2 * j as usize), index.get(2 * j as usize + 1))
            else {
                return Err(corrupt("index too short".into()));
            };
            if off == u64::MAX && n == u64::MAX {
                return Err(Problem::new(
                    path,
                    format!(
                        "inner chunk {j} of shard '{}' is missing (a sparse matrix's arrays must be complete)",
                        key.as_str()
                    ),
                ));
            }
            match off.checked_add(n) {
                Some(end) if off >= lo && end <= hi => {}
                _ => {
                    return Err(corrupt(format!(
                        "index entry {j} (offset {off}, {n} bytes) lies outside the shard's {size} bytes"
                    )))
                }
            }
        }
        // Read ahead (object storage) works from the index; zarrs reads it again on
        // every read of the shard, which `keep` answers from memory.
        if let Some(prefetch) = prefetch {
            let at = if shard.layout.index_at_start {
                0..shard.layout.index_len
            } else {
                size - shard.layout.index_len..size
            };
            prefetch.keep(&key, size, at, bytes);
            self.indexes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    k,
                    std::sync::Arc::new(ShardIndex {
                        size,
                        entries: index,
                    }),
                );
        }
        Ok(())
    }
}

impl ShardCheck {
    fn new(path: &str, conf: &Value, shard_len: u64) -> std::result::Result<Self, Problem> {
        let bad =
            |why: &str| Problem::new(path, format!("unsupported sharding configuration: {why}"));
        let config: ShardingCodecConfiguration =
            serde_json::from_value(conf.clone()).map_err(|e| bad(&e.to_string()))?;
        let codec =
            ShardingCodec::new_with_configuration(&config).map_err(|e| bad(&e.to_string()))?;
        let layout = ShardLayout::parse(conf, shard_len).map_err(|why| bad(&why))?;
        Ok(ShardCheck { codec, layout })
    }
}

enum Arrays {
    Sparse {
        data: Box<ZArray>,
        indices: Box<ZArray>,
        indptr: Box<ZArray>,
    },
    Dense(Box<ZArray>),
}

/// A matrix of a `.zarr` store, opened for reading.
pub struct ZarrSource {
    file: PathBuf,
    element: String,
    meta: MatrixMeta,
    arrays: Arrays,
}

/// Whether a zarr v2 array is stored big-endian (`>f4`), which zarr-python hands to anndata
/// as it is (a v3 `bytes` codec's endianness is undone on read, so only v2 counts).
fn v2_big_endian(m: &NodeMeta) -> bool {
    let dt = m
        .array
        .as_ref()
        .and_then(|a| a.get("dtype"))
        .and_then(Value::as_str);
    dt.is_some_and(|dt| dt.starts_with('>') && dt.len() > 2)
}

/// The dtype of an array, or what it holds instead, in the words of
/// [`crate::store::anndata`].
fn numeric_dtype(m: &NodeMeta) -> std::result::Result<DType, String> {
    match m.elem_type()? {
        ElemType::Num(t) => Ok(t),
        ElemType::Bool => Err("boolean data".into()),
        ElemType::String | ElemType::Bytes => Err("string data".into()),
    }
}

fn unsupported(path: &str, meta: &NodeMeta) -> Problem {
    let found = match (meta.kind, meta.encoding()) {
        (_, Some(t)) => format!("encoding-type '{t}'"),
        (NodeKind::Group, None) => "a group without encoding-type".into(),
        (NodeKind::Array, None) => match meta.shape() {
            Some(s) => format!("a {}-D array", s.len()),
            None => "an array".into(),
        },
    };
    anndata::unsupported(path, &found)
}

/// Opens X or a layer and checks its structure (by the rules of [`crate::store::anndata`]).
pub(crate) fn open_matrix(input: &ZarrInput, path: &str) -> Result<ZarrSource> {
    let file = input.path().to_path_buf();
    let Some(meta) = input.node(path)? else {
        return Err(anndata::missing_matrix(path, "store").into_input(&file));
    };
    let storage = input.storage();
    let result = match meta.kind {
        NodeKind::Group => open_sparse(input, storage, path, &meta),
        NodeKind::Array => open_dense(storage, path, &meta),
    };
    let (meta, arrays) = result.map_err(|p| p.into_input(&file))?;
    Ok(ZarrSource {
        file,
        element: path.to_string(),
        meta,
        arrays,
    })
}

fn open_sparse(
    input: &ZarrInput,
    storage: &Storage,
    path: &str,
    meta: &NodeMeta,
) -> std::result::Result<(MatrixMeta, Arrays), Problem> {
    // zarr never had anndata's legacy `h5sparse_format`.
    let encoding = anndata::sparse_encoding(path, meta.encoding(), None)?
        .ok_or_else(|| unsupported(path, meta))?;
    let shape = anndata::sparse_shape(
        path,
        encoding,
        match meta.attrs.get("shape") {
            Some(Value::Array(v)) if v.len() == 2 && v.iter().all(|x| x.as_u64().is_some()) => {
                ShapeAttr::Pair(v[0].as_u64().unwrap_or(0), v[1].as_u64().unwrap_or(0))
            }
            Some(other) => ShapeAttr::Other(other.to_string()),
            None => ShapeAttr::Missing,
        },
    )?;
    let member = |name: &str| -> std::result::Result<(ZArray, Member), Problem> {
        let elem = format!("{path}/{name}");
        let m = match input.node(&elem) {
            Ok(Some(m)) => m,
            Ok(None) => return Err(anndata::missing_member(path, name)),
            Err(Error::Input {
                element, problem, ..
            }) => return Err(Problem::new(element, problem)),
            Err(e) => return Err(Problem::new(&elem, e.to_string())),
        };
        if m.kind != NodeKind::Array {
            return Err(Problem::new(&elem, "is a group, expected a 1-D array"));
        }
        let Some(dims) = m.shape() else {
            return Err(Problem::new(&elem, "malformed metadata: no valid 'shape'"));
        };
        let found = Member {
            dims: Some(dims),
            dtype: numeric_dtype(&m),
            big_endian: v2_big_endian(&m),
        };
        let mut a = ZArray::open(storage, &elem, &m, true)?;
        if let Some(prefetch) = input.prefetcher() {
            a.read_ahead(prefetch.clone(), &m);
        }
        Ok((a, found))
    };
    let (data, data_found) = member("data")?;
    let (indices, indices_found) = member("indices")?;
    let (indptr, indptr_found) = member("indptr")?;
    let matrix = anndata::sparse_meta(
        path,
        encoding.layout,
        shape,
        [&data_found, &indices_found, &indptr_found],
    )?;
    Ok((
        matrix,
        Arrays::Sparse {
            data: Box::new(data),
            indices: Box::new(indices),
            indptr: Box::new(indptr),
        },
    ))
}

fn open_dense(
    storage: &Storage,
    path: &str,
    meta: &NodeMeta,
) -> std::result::Result<(MatrixMeta, Arrays), Problem> {
    if !anndata::is_dense_encoding(meta.encoding()) {
        return Err(unsupported(path, meta));
    }
    let shape = match meta.shape().as_deref() {
        Some([a, b]) => (*a, *b),
        _ => return Err(unsupported(path, meta)),
    };
    let matrix = anndata::dense_meta(path, shape, numeric_dtype(meta))?;
    if let Some(a) = &meta.array {
        if let Some(order) = a.get("order").and_then(Value::as_str) {
            if order != "C" {
                return Err(Problem::new(
                    path,
                    format!("unsupported: memory order '{order}' (expected C)"),
                ));
            }
        }
    }
    let array = ZArray::open(storage, path, meta, false)?;
    Ok((matrix, Arrays::Dense(Box::new(array))))
}

impl ZarrSource {
    fn fail(&self, problem: impl Into<String>) -> Error {
        Error::input(&self.file, &self.element, problem)
    }

    fn sparse(&self, what: &str) -> Result<(&ZArray, &ZArray, &ZArray)> {
        match &self.arrays {
            Arrays::Sparse {
                data,
                indices,
                indptr,
            } => Ok((data, indices, indptr)),
            Arrays::Dense(_) => Err(self.fail(format!("is dense: it has no {what}"))),
        }
    }
}

impl StoredMatrix for ZarrSource {
    fn meta(&self) -> &MatrixMeta {
        &self.meta
    }
}

impl SparseSource for ZarrSource {
    fn read_indptr(&self, range: Range<u64>) -> Result<Vec<i64>> {
        let (_, _, indptr) = self.sparse("indptr")?;
        let v = indptr
            .read_num(range.clone())
            .map_err(|p| p.into_input(&self.file))?;
        v.to_i64().ok_or_else(|| {
            Error::input(
                &self.file,
                &indptr.path,
                format!(
                    "elements {}..{} hold a value above 2^63",
                    range.start, range.end
                ),
            )
        })
    }

    fn read_indices(&self, range: Range<u64>) -> Result<NumVec> {
        let (_, indices, _) = self.sparse("indices")?;
        indices
            .read_num(range)
            .map_err(|p| p.into_input(&self.file))
    }

    fn read_data(&self, range: Range<u64>) -> Result<NumVec> {
        let (data, _, _) = self.sparse("data")?;
        data.read_num(range).map_err(|p| p.into_input(&self.file))
    }
}

impl DenseSource for ZarrSource {
    fn read_rows(&self, rows: Range<u64>) -> Result<NumVec> {
        let Arrays::Dense(a) = &self.arrays else {
            return Err(self.fail("is sparse: read it with read_indptr/read_data"));
        };
        a.read_num(rows).map_err(|p| p.into_input(&self.file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{ZarrCodec, ZarrFormat};
    use crate::store::tree::Attrs;
    use proptest::prelude::*;

    /// A 1-D f32 array of `n` values `i + 0.25` written through zarrs (sharded when `shard`).
    fn array(dir: &std::path::Path, n: u64, chunk: u64, shard: Option<u64>) -> Array<ZStore> {
        let storage: Storage =
            std::sync::Arc::new(zarrs::filesystem::FilesystemStore::new(dir).unwrap());
        let spec = super::super::layout::ArraySpec {
            format: ZarrFormat::V3,
            elem: ElemType::Num(DType::F32),
            shape: vec![n],
            chunk: vec![chunk],
            shard: shard.map(|s| vec![s]),
            codec: ZarrCodec::Zstd(0),
            attrs: Attrs::new(),
        };
        let meta = super::super::layout::zarrs_metadata(&spec).unwrap();
        let array = Array::new_with_metadata(storage, "/a", meta).unwrap();
        array.store_metadata().unwrap();
        let values: Vec<f32> = (0..n).map(|i| i as f32 + 0.25).collect();
        array
            .store_array_subset(
                &ArraySubset::new_with_shape(vec![n]),
                ArrayBytes::new_flen(as_bytes(&values).to_vec()),
            )
            .unwrap();
        array
    }

    fn as_bytes(v: &[f32]) -> &[u8] {
        crate::array::as_bytes(v)
    }

    proptest! {
        /// Reads through the edge cache, in order (as row blocks come) or not, give what a
        /// plain decode gives: ranges that start and end inside units, span several, or lie
        /// inside one.
        #[test]
        fn edge_cache_reads_equal_plain_reads(
            cuts in proptest::collection::vec(0u64..1000, 1..12),
            sharded in any::<bool>(),
            shuffle in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let n = 1000;
            let a = array(dir.path(), n, 64, sharded.then_some(256));
            let edge = EdgeCache { unit_len: 64, last: Mutex::new(None) };
            let mut bounds = cuts.clone();
            bounds.extend([0, n]);
            bounds.sort_unstable();
            bounds.dedup();
            let mut ranges: Vec<Range<u64>> = bounds.windows(2).map(|w| w[0]..w[1]).collect();
            if shuffle {
                ranges.reverse();
            }
            for r in ranges {
                let got = read_through::<f32>(&edge, &a, n, &r, (r.end - r.start) as usize).unwrap();
                let want: Vec<f32> = (r.clone()).map(|i| i as f32 + 0.25).collect();
                prop_assert_eq!(got, want, "{:?}", r);
            }
        }
    }
}
