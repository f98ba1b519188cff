//! Sequential writes of a new zarr array, encoded in parallel.
//!
//! Values arrive in order (C order, row after row along axis 0). A [`ChunkedWriter`] holds them
//! back until whole *write units* are complete (shards when sharded, chunks otherwise), then
//! encodes and stores a batch of complete units at once on rayon, one worker per unit, so no
//! two workers ever touch one chunk or shard. At most `batch` bands of units (a band: the
//! units covering the same rows) are held in memory. A 1-D sharded array (a sparse matrix's
//! members) goes through a [`ShardStream`] instead: its inner chunks are encoded as they
//! complete, and at most one inner chunk is held back.

use std::sync::Arc;

use rayon::prelude::*;
use zarrs::array::codec::{ShardingCodecOptions, SubchunkWriteOrder};
use zarrs::array::{Array, ArrayBytes, CodecSpecificOptions};

use super::layout::{self, ArraySpec};
use super::shard_stream::ShardStream;
use super::Storage;
use crate::array::{DType, NumVec};
use crate::error::{Error, Result};
use crate::store::tree::ElemType;
use crate::store::MatrixSink;

type ZArray = Array<dyn zarrs::storage::ReadableWritableListableStorageTraits>;

/// Values held back until whole units are complete.
enum Pending {
    Bytes(Vec<u8>),
    Strings(Vec<String>),
}

/// One array being written in order.
pub(crate) struct ChunkedWriter {
    array: Arc<ZArray>,
    /// Element path for messages, e.g. `X/data`.
    name: String,
    elem: ElemType,
    /// Array shape (`[1]` stands in for a 0-d array).
    shape: Vec<u64>,
    /// Write unit shape (shard or chunk), same rank as `shape`.
    unit: Vec<u64>,
    /// Elements per row (product of `shape[1..]`).
    row_len: u64,
    /// Bytes per element (0 for strings).
    elem_size: usize,
    /// Bands (rows of units) encoded per batch (unless `stream` is set).
    batch: u64,
    /// Set for a 1-D sharded array of fixed-size values: inner chunks are encoded as they
    /// complete, not whole shards.
    stream: Option<ShardStream>,
    pending: Pending,
    /// First row of `pending` (always at a band boundary).
    pending_row: u64,
    /// Elements received so far (from the array's start: a part starts at its first).
    received: u64,
    /// Where the values written end: the array's length, or a part's end.
    end: u64,
    scalar: bool,
}

impl ChunkedWriter {
    /// Creates the array (writes its metadata documents under `path`) and a writer for it.
    /// `budget`: bytes of values this writer may hold back.
    pub fn create(storage: &Storage, path: &str, spec: &ArraySpec, budget: u64) -> Result<Self> {
        for (name, doc) in layout::array_documents(spec) {
            put(storage, &super::key_in(path, name), layout::to_bytes(&doc))?;
        }
        Self::open(storage, path, spec, budget)
    }

    /// A writer for an array whose metadata is already stored.
    pub fn open(storage: &Storage, path: &str, spec: &ArraySpec, budget: u64) -> Result<Self> {
        let meta = layout::zarrs_metadata(spec)?;
        let (handle, node) = super::rebase::array_handle(storage, path);
        let array = Array::new_with_metadata(handle, &node, meta)
            .map_err(|e| Error::Internal(format!("{path}: cannot set up the zarr array: {e}")))?;
        let (shape, unit) = if spec.shape.is_empty() {
            (vec![1], vec![1])
        } else {
            (spec.shape.clone(), spec.write_unit().to_vec())
        };
        Self::with_array(
            array,
            path,
            spec.elem,
            shape,
            unit,
            spec.shape.is_empty(),
            budget,
        )
    }

    fn with_array(
        array: ZArray,
        path: &str,
        elem: ElemType,
        shape: Vec<u64>,
        unit: Vec<u64>,
        scalar: bool,
        budget: u64,
    ) -> Result<Self> {
        let row_len: u64 = shape[1..].iter().product();
        let elem_size = match elem {
            ElemType::Num(d) => d.size(),
            ElemType::Bool => 1,
            ElemType::String | ElemType::Bytes => 0,
        };
        let array = Arc::new(in_index_order(array));
        let stream = match elem_size {
            0 => None,
            _ => ShardStream::for_array(&array)?,
        };
        let band_bytes = (unit[0] * row_len).max(1) * (elem_size.max(32) as u64);
        let batch = (budget / band_bytes).clamp(1, rayon::current_num_threads().max(1) as u64);
        let end = shape.iter().product();
        Ok(ChunkedWriter {
            array,
            name: path.to_string(),
            elem,
            shape,
            unit,
            row_len,
            elem_size,
            batch,
            stream,
            pending: match elem {
                ElemType::String | ElemType::Bytes => Pending::Strings(Vec::new()),
                _ => Pending::Bytes(Vec::new()),
            },
            pending_row: 0,
            received: 0,
            end,
            scalar,
        })
    }

    /// A writer of the elements `range` only of the numeric array of `dtype` stored at
    /// `path` (its metadata read from `storage`): a task's part, beside other tasks writing
    /// theirs. `range` must start where a band of write units (shards, else chunks) starts
    /// and end where one ends or at the array's end, so that no two parts share an object.
    pub fn open_part(
        storage: &Storage,
        path: &str,
        dtype: DType,
        budget: u64,
        range: std::ops::Range<u64>,
    ) -> Result<Self> {
        let (handle, node) = super::rebase::array_handle(storage, path);
        let fail = |e: String| Error::Internal(format!("{path}: cannot open the zarr array: {e}"));
        let array = Array::open(handle, &node).map_err(|e| fail(e.to_string()))?;
        let shape = array.shape().to_vec();
        if shape.is_empty() {
            return Err(fail("a 0-d array has no parts".into()));
        }
        let unit: Vec<u64> = array
            .chunk_shape(&vec![0; shape.len()])
            .map_err(|e| fail(e.to_string()))?
            .iter()
            .map(|n| n.get())
            .collect();
        let mut w = Self::with_array(
            array,
            path,
            ElemType::Num(dtype),
            shape,
            unit,
            false,
            budget,
        )?;
        let band = w.band_elems().max(1);
        let aligned = |at: u64| at.is_multiple_of(band) || at == w.len();
        if range.start > range.end
            || range.end > w.len()
            || !aligned(range.start)
            || !aligned(range.end)
        {
            return Err(Error::Internal(format!(
                "{path}: elements {}..{} are not whole bands of {band} (array of {})",
                range.start,
                range.end,
                w.len()
            )));
        }
        w.pending_row = range.start / w.row_len.max(1);
        w.received = range.start;
        w.end = range.end;
        Ok(w)
    }

    /// The shard stream, for tests that choose how it writes.
    #[cfg(test)]
    pub(super) fn stream_mut(&mut self) -> Option<&mut ShardStream> {
        self.stream.as_mut()
    }

    /// Elements in one band of write units (the units covering the same rows).
    pub fn band_len(&self) -> u64 {
        self.band_elems()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Elements per row along axis 0 (1 for 1-D and 0-d arrays).
    pub fn row_len(&self) -> u64 {
        self.row_len
    }

    /// Elements the array holds in all.
    pub fn len(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Elements received so far.
    pub fn count(&self) -> u64 {
        self.received
    }

    fn band_elems(&self) -> u64 {
        self.unit[0] * self.row_len
    }

    /// Elements encoded at once: `batch` bands.
    fn batch_elems(&self) -> u64 {
        self.batch * self.band_elems()
    }

    fn too_many(&self, n: u64) -> Result<()> {
        if self.received + n > self.end {
            return Err(Error::Internal(format!(
                "{}: more values than the {} expected",
                self.name, self.end
            )));
        }
        Ok(())
    }

    /// Appends native-endian values of the array's numeric (or bool, one byte each) type.
    pub fn append_bytes(&mut self, mut bytes: &[u8]) -> Result<()> {
        let es = self.elem_size;
        if es == 0 || !bytes.len().is_multiple_of(es) {
            return Err(Error::Internal(format!(
                "{}: values of the wrong type",
                self.name
            )));
        }
        self.too_many((bytes.len() / es) as u64)?;
        if self.stream.is_some() {
            return self.append_streamed(bytes);
        }
        let batch_bytes = self.batch_elems() as usize * es;
        loop {
            let Pending::Bytes(buf) = &mut self.pending else {
                unreachable!()
            };
            if !buf.is_empty() {
                let take = (batch_bytes - buf.len()).min(bytes.len());
                buf.extend_from_slice(&bytes[..take]);
                self.received += (take / es) as u64;
                bytes = &bytes[take..];
                if buf.len() < batch_bytes {
                    return Ok(());
                }
                let full = std::mem::take(buf);
                self.store_bands(Src::Bytes(&full))?;
                let Pending::Bytes(buf) = &mut self.pending else {
                    unreachable!()
                };
                *buf = full;
                buf.clear();
            } else if bytes.len() >= batch_bytes {
                self.received += (batch_bytes / es) as u64;
                self.store_bands(Src::Bytes(&bytes[..batch_bytes]))?;
                bytes = &bytes[batch_bytes..];
            } else {
                buf.extend_from_slice(bytes);
                self.received += (bytes.len() / es) as u64;
                return Ok(());
            }
        }
    }

    /// [`append_bytes`](Self::append_bytes) of a streamed array: the whole inner chunks
    /// `bytes` completes are encoded straight from it (and from the one held back, topped
    /// up); only the part of an inner chunk at its end is held back (copied).
    fn append_streamed(&mut self, bytes: &[u8]) -> Result<()> {
        let (Some(stream), Pending::Bytes(held)) = (self.stream.as_mut(), &mut self.pending) else {
            unreachable!("streamed arrays hold bytes")
        };
        let chunk = stream.inner_bytes();
        let mut rest = bytes;
        if !held.is_empty() {
            let take = (chunk - held.len()).min(rest.len());
            held.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        let whole = rest.len() / chunk * chunk;
        let mut chunks: Vec<&[u8]> = Vec::with_capacity(1 + whole / chunk);
        if held.len() == chunk {
            chunks.push(&held[..]);
        }
        chunks.extend(rest[..whole].chunks_exact(chunk));
        if !chunks.is_empty() {
            let first = self.pending_row / stream.inner_len();
            stream.push(first, &chunks, &self.name)?;
            self.pending_row += chunks.len() as u64 * stream.inner_len();
        }
        if held.len() == chunk {
            held.clear();
        }
        held.extend_from_slice(&rest[whole..]);
        self.received += (bytes.len() / self.elem_size) as u64;
        Ok(())
    }

    pub fn append_strings(&mut self, values: &[String]) -> Result<()> {
        self.too_many(values.len() as u64)?;
        let batch = self.batch_elems() as usize;
        let Pending::Strings(buf) = &mut self.pending else {
            return Err(Error::Internal(format!(
                "{}: strings for a numeric array",
                self.name
            )));
        };
        buf.extend_from_slice(values);
        self.received += values.len() as u64;
        while let Pending::Strings(buf) = &mut self.pending {
            if buf.len() < batch {
                break;
            }
            let rest = buf.split_off(batch);
            let full = std::mem::replace(buf, rest);
            self.store_bands(Src::Strings(&full))?;
        }
        Ok(())
    }

    pub fn append_numvec(&mut self, values: &NumVec) -> Result<()> {
        if self.elem != ElemType::Num(values.dtype()) {
            return Err(Error::Internal(format!(
                "{}: got {} values for an array of {:?}",
                self.name,
                values.dtype(),
                self.elem
            )));
        }
        self.append_bytes(values.as_bytes())
    }

    /// Appends integers converted to the array's integer type.
    pub fn append_ints(&mut self, values: &[i64]) -> Result<()> {
        let ElemType::Num(dtype) = self.elem else {
            return Err(Error::Internal(format!(
                "{}: not an integer array",
                self.name
            )));
        };
        let bytes = ints_to_bytes(values, dtype).map_err(|v| {
            Error::Internal(format!("{}: value {v} does not fit in {dtype}", self.name))
        })?;
        self.append_bytes(&bytes)
    }

    /// Stores what is held back; returns the number of elements received. Fails when that is
    /// not the array's length.
    pub fn finish(&mut self) -> Result<u64> {
        match std::mem::replace(&mut self.pending, Pending::Bytes(Vec::new())) {
            Pending::Bytes(b) if !b.is_empty() => self.store_bands(Src::Bytes(&b))?,
            Pending::Strings(s) if !s.is_empty() => self.store_bands(Src::Strings(&s))?,
            _ => {}
        }
        if self.received != self.end {
            return Err(Error::Internal(format!(
                "{}: {} values written, {} expected",
                self.name, self.received, self.end
            )));
        }
        if let Some(stream) = self.stream.as_mut() {
            stream.close(&self.name)?;
        }
        Ok(self.received)
    }

    /// Encodes and stores the bands of units that `src` (whole rows from `pending_row` on)
    /// covers, in parallel; the last band may be partial only at the end of the array.
    fn store_bands(&mut self, src: Src) -> Result<()> {
        let n = src.elems(self.elem_size) as u64;
        if !n.is_multiple_of(self.row_len) {
            return Err(Error::Internal(format!(
                "{}: the last row is incomplete",
                self.name
            )));
        }
        let rows = n / self.row_len;
        if let (Some(stream), Src::Bytes(bytes)) = (self.stream.as_mut(), &src) {
            // 1-D: a row is an element, and `pending_row` is at an inner chunk's start.
            let chunks: Vec<&[u8]> = bytes.chunks(stream.inner_bytes()).collect();
            stream.push(self.pending_row / stream.inner_len(), &chunks, &self.name)?;
            self.pending_row += rows;
            return Ok(());
        }
        let first_band = self.pending_row / self.unit[0];
        let n_bands = rows.div_ceil(self.unit[0]);
        // Unit grid along the other axes.
        let other: Vec<u64> = self.shape[1..]
            .iter()
            .zip(&self.unit[1..])
            .map(|(&s, &u)| s.div_ceil(u).max(1))
            .collect();
        let per_band: u64 = other.iter().product();
        let units: Vec<(u64, u64)> = (0..n_bands)
            .flat_map(|b| (0..per_band).map(move |j| (b, j)))
            .collect();
        let this = &*self;
        units.par_iter().try_for_each(|&(b, j)| {
            let mut idx = vec![first_band + b];
            let mut rest = j;
            let mut tail = Vec::with_capacity(other.len());
            for &g in other.iter().rev() {
                tail.push(rest % g);
                rest /= g;
            }
            tail.reverse();
            idx.extend(tail);
            let band_rows = (rows - b * this.unit[0]).min(this.unit[0]);
            let band_start = (b * this.unit[0] * this.row_len) as usize;
            this.store_unit(&src, band_start, band_rows, &idx)
        })?;
        self.pending_row += rows;
        Ok(())
    }

    /// Builds one unit (padded with the fill value) from a band and stores it.
    fn store_unit(&self, src: &Src, band_start: usize, band_rows: u64, idx: &[u64]) -> Result<()> {
        let unit_elems: u64 = self.unit.iter().product();
        let runs = unit_runs(&self.shape, &self.unit, idx, band_rows);
        let fail = |e: zarrs::array::ArrayError| {
            Error::Internal(format!("{}: cannot write chunk {idx:?}: {e}", self.name))
        };
        let chunk_idx: &[u64] = if self.scalar { &[] } else { idx };
        match src {
            Src::Bytes(bytes) => {
                let es = self.elem_size;
                let whole = runs.len() == 1 && runs[0].2 == unit_elems as usize;
                // A whole unit is passed by reference: no copy of (up to shard-sized) bytes.
                let data: std::borrow::Cow<[u8]> = if whole {
                    let (s, _, l) = runs[0];
                    std::borrow::Cow::Borrowed(
                        &bytes[(band_start + s) * es..(band_start + s + l) * es],
                    )
                } else {
                    let mut out = vec![0u8; unit_elems as usize * es];
                    for &(s, d, l) in &runs {
                        out[d * es..(d + l) * es].copy_from_slice(
                            &bytes[(band_start + s) * es..(band_start + s + l) * es],
                        );
                    }
                    std::borrow::Cow::Owned(out)
                };
                self.array
                    .store_chunk(chunk_idx, ArrayBytes::new_flen(data))
                    .map_err(fail)
            }
            Src::Strings(strings) => {
                let mut out = vec![String::new(); unit_elems as usize];
                for &(s, d, l) in &runs {
                    out[d..d + l].clone_from_slice(&strings[band_start + s..band_start + s + l]);
                }
                self.array.store_chunk(chunk_idx, &out[..]).map_err(fail)
            }
        }
    }
}

/// The array with its sharding codec (if any) placing a shard's inner chunks in index
/// (C) order: zarrs' default places them in the order their parallel encodes finish, so
/// the bytes of a shard would vary from run to run. Inner chunks are still encoded in
/// parallel; only their placement waits for all of them.
pub(super) fn in_index_order(array: ZArray) -> ZArray {
    let order = ShardingCodecOptions::default().with_subchunk_write_order(SubchunkWriteOrder::C);
    array.with_codec_specific_options(&CodecSpecificOptions::default().with_option(order))
}

enum Src<'a> {
    Bytes(&'a [u8]),
    Strings(&'a [String]),
}

/// Contiguous runs `(src_offset, dst_offset, len)` (in elements) copying the part of unit
/// `idx` that lies inside the array from a band of `band_rows` whole rows (C order) into the
/// unit's C-order buffer.
fn unit_runs(
    shape: &[u64],
    unit: &[u64],
    idx: &[u64],
    band_rows: u64,
) -> Vec<(usize, usize, usize)> {
    let nd = shape.len();
    let rows = band_rows.min(unit[0]);
    if nd == 1 {
        return vec![(0, 0, rows as usize)];
    }
    // Whole rows in the unit: one run.
    if shape[1..] == unit[1..] {
        let row_len: u64 = shape[1..].iter().product();
        return vec![(0, 0, (rows * row_len) as usize)];
    }
    let last = nd - 1;
    let start_last = idx[last] * unit[last];
    let len_last = unit[last].min(shape[last] - start_last);
    let mut runs = Vec::new();
    // Iterate over local indices of axes 0..last.
    let mut local = vec![0u64; last];
    loop {
        let inside = (1..last).all(|d| idx[d] * unit[d] + local[d] < shape[d]) && local[0] < rows;
        if inside {
            let mut src = local[0];
            let mut dst = local[0];
            for d in 1..last {
                src = src * shape[d] + idx[d] * unit[d] + local[d];
                dst = dst * unit[d] + local[d];
            }
            runs.push((
                (src * shape[last] + start_last) as usize,
                (dst * unit[last]) as usize,
                len_last as usize,
            ));
        }
        // next local index
        let mut d = last;
        loop {
            if d == 0 {
                return runs;
            }
            d -= 1;
            local[d] += 1;
            if local[d] < unit[d] {
                break;
            }
            local[d] = 0;
        }
    }
}

impl Src<'_> {
    fn elems(&self, elem_size: usize) -> usize {
        match self {
            Src::Bytes(b) => b.len() / elem_size.max(1),
            Src::Strings(s) => s.len(),
        }
    }
}

/// Writes `bytes` at `key`.
pub(crate) fn put(storage: &Storage, key: &str, bytes: Vec<u8>) -> Result<()> {
    let k = zarrs::storage::StoreKey::new(key)
        .map_err(|e| Error::Internal(format!("{key}: not a valid zarr key: {e}")))?;
    storage
        .set(&k, zarrs::storage::Bytes::from(bytes))
        .map_err(|e| Error::Internal(format!("{key}: cannot write: {e}")))
}

/// Integers as little-endian bytes of an integer dtype; `Err(value)` for one that does not fit.
fn ints_to_bytes(values: &[i64], dtype: DType) -> std::result::Result<Vec<u8>, i64> {
    let mut out = Vec::with_capacity(values.len() * dtype.size());
    macro_rules! conv {
        ($t:ty) => {{
            for &v in values {
                let x = <$t>::try_from(v).map_err(|_| v)?;
                out.extend_from_slice(&x.to_le_bytes());
            }
        }};
    }
    match dtype {
        DType::I8 => conv!(i8),
        DType::I16 => conv!(i16),
        DType::I32 => conv!(i32),
        DType::I64 => conv!(i64),
        DType::U8 => conv!(u8),
        DType::U16 => conv!(u16),
        DType::U32 => conv!(u32),
        DType::U64 => conv!(u64),
        DType::F32 | DType::F64 => return Err(values.first().copied().unwrap_or(0)),
    }
    Ok(out)
}

/// A CSR matrix being written: `data` always; `indices` and `indptr` unless they were
/// copied from the input.
pub(crate) struct CsrSink {
    pub file: std::path::PathBuf,
    pub data: ChunkedWriter,
    pub indices: Option<ChunkedWriter>,
    pub indptr: Option<ChunkedWriter>,
    pub last_indptr: Option<i64>,
}

fn output_err(file: &std::path::Path) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::Internal(p) => Error::output(file, p),
        other => other,
    }
}

impl MatrixSink for CsrSink {
    fn append_data(&mut self, values: &NumVec) -> Result<()> {
        self.data
            .append_numvec(values)
            .map_err(output_err(&self.file))
    }

    fn append_indices(&mut self, indices: &[i64]) -> Result<()> {
        match self.indices.as_mut() {
            Some(w) => w.append_ints(indices).map_err(output_err(&self.file)),
            None => Err(Error::output(
                &self.file,
                format!(
                    "{}: indices are copied from the input, not written",
                    self.data.name()
                ),
            )),
        }
    }

    fn append_indptr(&mut self, indptr: &[i64]) -> Result<()> {
        if let Some(&last) = indptr.last() {
            self.last_indptr = Some(last);
        }
        match self.indptr.as_mut() {
            Some(w) => w.append_ints(indptr).map_err(output_err(&self.file)),
            None => Err(Error::output(
                &self.file,
                format!(
                    "{}: indptr is copied from the input, not written",
                    self.data.name()
                ),
            )),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let file = self.file.clone();
        let n_data = self.data.finish().map_err(output_err(&file))?;
        if let Some(indices) = self.indices.as_mut() {
            indices.finish().map_err(output_err(&file))?;
        }
        if let Some(indptr) = self.indptr.as_mut() {
            indptr.finish().map_err(output_err(&file))?;
            if self.last_indptr != Some(n_data as i64) {
                return Err(Error::output(
                    &file,
                    format!(
                        "{}: ends at {:?}, but {n_data} values were written",
                        indptr.name(),
                        self.last_indptr
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A dense matrix being written row by row.
pub(crate) struct DenseSink {
    pub file: std::path::PathBuf,
    pub data: ChunkedWriter,
}

impl MatrixSink for DenseSink {
    fn append_data(&mut self, values: &NumVec) -> Result<()> {
        self.data
            .append_numvec(values)
            .map_err(output_err(&self.file))
    }

    fn append_indices(&mut self, _indices: &[i64]) -> Result<()> {
        Err(Error::output(
            &self.file,
            format!("{}: a dense matrix has no indices", self.data.name()),
        ))
    }

    fn append_indptr(&mut self, _indptr: &[i64]) -> Result<()> {
        Err(Error::output(
            &self.file,
            format!("{}: a dense matrix has no indptr", self.data.name()),
        ))
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.data.finish().map_err(output_err(&self.file))?;
        Ok(())
    }
}
