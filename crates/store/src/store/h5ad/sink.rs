//! Sequential, chunk-aligned writes of a new matrix ([`MatrixSink`]).

use std::path::PathBuf;

use hdf5::{Dataset, Dataspace, Datatype, Selection};
use hdf5_sys::h5d::H5Dwrite;
use hdf5_sys::h5p::H5P_DEFAULT;

use super::chunks::{ChunkMap, RawChunks};
use super::file::short;
use super::layout::datatype;
use crate::array::{DType, NumVec};
use crate::error::{Error, Result};
use crate::store::MatrixSink;

/// Elements per write when a dataset is contiguous (any write size is fine there; this only
/// keeps the number of HDF5 calls down).
const CONTIGUOUS_UNIT_BYTES: u64 = 1 << 20;

/// Appends values to a 1-D dataset (or rows to a 2-D one) in order, writing only whole
/// chunks (a partial write of a compressed chunk would make HDF5 read, decompress and
/// recompress it). At most one chunk is held back.
pub(crate) struct Appender {
    ds: Dataset,
    /// Element path for messages, e.g. `X/data`.
    name: String,
    dtype: DType,
    mem_type: Datatype,
    /// Elements per row: 1 for 1-D datasets, n_vars for dense matrices.
    row_len: u64,
    /// Elements per write (a multiple of `row_len`).
    unit: u64,
    buf: Vec<u8>,
    /// Elements already in the file.
    written: u64,
    /// The dataset's final length in elements when known (it was created that large);
    /// `None`: it grows as values arrive.
    expected: Option<u64>,
    /// Whole chunks are encoded on rayon threads and written raw (`None`: through HDF5's
    /// filter pipeline).
    raw: Option<RawChunks>,
    /// Unfiltered chunks all allocated up front: written with `pwrite` straight into the
    /// file, one call per run of chunks adjacent in it (`None`: through HDF5).
    direct: Option<ChunkMap>,
}

impl Appender {
    /// `chunk_rows`: the dataset's chunk length along the first axis (`None`: contiguous).
    pub fn new(
        ds: Dataset,
        name: String,
        dtype: DType,
        row_len: u64,
        chunk_rows: Option<u64>,
        expected: Option<u64>,
    ) -> hdf5::Result<Self> {
        let row_len = row_len.max(1);
        let unit = match chunk_rows {
            Some(c) => c.max(1) * row_len,
            None => {
                let rows = (CONTIGUOUS_UNIT_BYTES / (row_len * dtype.size() as u64)).max(1);
                rows * row_len
            }
        };
        // Raw chunks hold the file's bytes: native ones only. A big-endian dataset goes
        // through H5Dwrite, which converts from the native memory type.
        let raw = RawChunks::of(&ds, dtype)
            .filter(|_| !super::layout::foreign_order(&ds))
            .filter(|r| chunk_rows.is_some_and(|c| c.max(1) * row_len == r.chunk_elems()));
        let direct = match (&raw, expected) {
            // Created at its final size (the direct path never grows a dataset).
            (Some(r), Some(n))
                if r.is_plain() && ds.shape().iter().map(|&d| d as u64).product::<u64>() == n =>
            {
                ChunkMap::of_output(&ds, r, std::path::Path::new(&ds.filename()))
            }
            _ => None,
        };
        Ok(Appender {
            raw,
            direct,
            mem_type: datatype(dtype)?,
            ds,
            name,
            dtype,
            row_len,
            unit,
            buf: Vec::new(),
            written: 0,
            expected,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Elements received so far.
    pub fn count(&self) -> u64 {
        self.written + (self.buf.len() / self.dtype.size()) as u64
    }

    /// Appends raw native-endian values of this appender's dtype.
    pub fn append_bytes(&mut self, mut bytes: &[u8]) -> std::result::Result<(), String> {
        let es = self.dtype.size();
        debug_assert_eq!(bytes.len() % es, 0);
        let n = (bytes.len() / es) as u64;
        if let Some(expected) = self.expected {
            if self.count() + n > expected {
                return Err(format!(
                    "{}: more values than the {expected} expected",
                    self.name
                ));
            }
        }
        let unit_bytes = self.unit as usize * es;
        if !self.buf.is_empty() {
            let take = (unit_bytes - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() < unit_bytes {
                return Ok(());
            }
            let buf = std::mem::take(&mut self.buf);
            self.write(&buf)?;
            self.buf = buf;
            self.buf.clear();
        }
        let whole = bytes.len() / unit_bytes * unit_bytes;
        if whole > 0 {
            self.write(&bytes[..whole])?;
        }
        self.buf.extend_from_slice(&bytes[whole..]);
        if self.buf.capacity() > unit_bytes * 2 {
            self.buf.shrink_to(unit_bytes);
        }
        Ok(())
    }

    pub fn append(&mut self, values: &NumVec) -> std::result::Result<(), String> {
        if values.dtype() != self.dtype {
            return Err(format!(
                "{}: got {} values, the array holds {}",
                self.name,
                values.dtype(),
                self.dtype
            ));
        }
        self.append_bytes(values.as_bytes())
    }

    /// Appends integers converted to this appender's (integer) dtype.
    pub fn append_ints(&mut self, values: &[i64]) -> std::result::Result<(), String> {
        let bytes = ints_to_bytes(values, self.dtype)
            .map_err(|v| format!("{}: value {v} does not fit in {}", self.name, self.dtype))?;
        self.append_bytes(&bytes)
    }

    /// Writes what is held back; returns the number of elements in the dataset.
    pub fn finish(&mut self) -> std::result::Result<u64, String> {
        if !self.buf.is_empty() {
            if !((self.buf.len() / self.dtype.size()) as u64).is_multiple_of(self.row_len) {
                return Err(format!("{}: the last row is incomplete", self.name));
            }
            let buf = std::mem::take(&mut self.buf);
            self.write(&buf)?;
        }
        Ok(self.written)
    }

    /// Writes whole rows at the current end.
    fn write(&mut self, bytes: &[u8]) -> std::result::Result<(), String> {
        let n = (bytes.len() / self.dtype.size()) as u64;
        let start = self.written;
        let fail = |e: hdf5::Error| {
            format!(
                "{}: cannot write elements {}..{}: {}",
                self.name,
                start,
                start + n,
                short(&e)
            )
        };
        let rows0 = start / self.row_len;
        let rows = n / self.row_len;
        let shape = self.ds.shape();
        if (shape[0] as u64) < rows0 + rows {
            let mut new_shape = shape.clone();
            new_shape[0] = (rows0 + rows) as usize;
            self.ds.resize(new_shape).map_err(fail)?;
        }
        if let (Some(raw), Some(map)) = (&self.raw, &self.direct) {
            let ce = raw.chunk_elems();
            let last = self.expected == Some(start + n);
            if start.is_multiple_of(ce) && (n.is_multiple_of(ce) || last) {
                raw.pwrite_plain(map, start / ce, bytes).map_err(|p| {
                    format!(
                        "{}: cannot write elements {}..{}: {p}",
                        self.name,
                        start,
                        start + n
                    )
                })?;
                self.written += n;
                return Ok(());
            }
        }
        if let Some(raw) = &self.raw {
            let ce = raw.chunk_elems();
            if start.is_multiple_of(ce) && n.is_multiple_of(ce) {
                raw.write(&self.ds, start / ce, bytes).map_err(|p| {
                    format!(
                        "{}: cannot write elements {}..{}: {p}",
                        self.name,
                        start,
                        start + n
                    )
                })?;
                self.written += n;
                return Ok(());
            }
        }
        let r = rows0 as usize..(rows0 + rows) as usize;
        let selection: Selection = if shape.len() == 1 {
            r.into()
        } else {
            (r, ..).into()
        };
        let result = (|| -> hdf5::Result<()> {
            let fspace = self.ds.space()?.select(selection)?;
            let mspace = Dataspace::try_new(n as usize)?;
            // SAFETY: mem_type has dtype.size() bytes per element and the memory space n =
            // bytes.len() / dtype.size() elements, so HDF5 reads at most bytes.len() bytes;
            // the ids are open for the call (a selection of another size makes it fail).
            let status = hdf5::sync::sync(|| unsafe {
                H5Dwrite(
                    self.ds.id(),
                    self.mem_type.id(),
                    mspace.id(),
                    fspace.id(),
                    H5P_DEFAULT,
                    bytes.as_ptr().cast(),
                )
            });
            if status < 0 {
                return Err(hdf5::Error::query().unwrap_or_else(|e| e));
            }
            Ok(())
        })();
        result.map_err(fail)?;
        self.written += n;
        Ok(())
    }
}

/// Integers as native-endian bytes of `dtype`; `Err(value)` for the first one that does
/// not fit.
fn ints_to_bytes(values: &[i64], dtype: DType) -> std::result::Result<Vec<u8>, i64> {
    macro_rules! conv {
        ($t:ty) => {{
            let mut out = Vec::with_capacity(values.len() * std::mem::size_of::<$t>());
            for &v in values {
                let x = <$t>::try_from(v).map_err(|_| v)?;
                out.extend_from_slice(&x.to_ne_bytes());
            }
            Ok(out)
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
        DType::F32 | DType::F64 => Err(values.first().copied().unwrap_or(0)),
    }
}

/// A CSR matrix being written: `data` always; `indices` and `indptr` unless they were
/// copied from the input.
pub(crate) struct CsrSink {
    pub file: PathBuf,
    pub data: Appender,
    pub indices: Option<Appender>,
    pub indptr: Option<Appender>,
    /// n_obs + 1 (`None`: unknown, as in the writer before the last row).
    pub indptr_len: Option<u64>,
    /// Last indptr value seen (the writer checks it against the number of values).
    pub last_indptr: Option<i64>,
}

impl CsrSink {
    fn err(&self, problem: String) -> Error {
        Error::output(&self.file, problem)
    }
}

impl MatrixSink for CsrSink {
    fn append_data(&mut self, values: &NumVec) -> Result<()> {
        self.data.append(values).map_err(|p| self.err(p))
    }

    fn append_indices(&mut self, indices: &[i64]) -> Result<()> {
        match self.indices.as_mut() {
            Some(a) => a
                .append_ints(indices)
                .map_err(|p| Error::output(&self.file, p)),
            None => Err(self.err(format!(
                "{}: indices are copied from the input, not written",
                self.data.name()
            ))),
        }
    }

    fn append_indptr(&mut self, indptr: &[i64]) -> Result<()> {
        if let Some(&last) = indptr.last() {
            self.last_indptr = Some(last);
        }
        match self.indptr.as_mut() {
            Some(a) => a
                .append_ints(indptr)
                .map_err(|p| Error::output(&self.file, p)),
            None => Err(self.err(format!(
                "{}: indptr is copied from the input, not written",
                self.data.name()
            ))),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let file = self.file.clone();
        let fail = |p: String| Error::output(&file, p);
        let n_data = self.data.finish().map_err(fail)?;
        if let Some(expected) = self.data.expected {
            if n_data != expected {
                return Err(fail(format!(
                    "{}: {n_data} values written, {expected} expected",
                    self.data.name()
                )));
            }
        }
        if let Some(indices) = self.indices.as_mut() {
            let n = indices.finish().map_err(fail)?;
            if n != n_data {
                return Err(fail(format!(
                    "{}: {n} indices written for {n_data} values",
                    indices.name()
                )));
            }
        }
        if let Some(indptr) = self.indptr.as_mut() {
            let n = indptr.finish().map_err(fail)?;
            if let Some(expected) = self.indptr_len {
                if n != expected {
                    return Err(fail(format!(
                        "{}: {n} entries written, {expected} expected (n_obs + 1)",
                        indptr.name()
                    )));
                }
            }
            if n == 0 {
                return Err(fail(format!("{}: no entries written", indptr.name())));
            }
            if self.last_indptr != Some(n_data as i64) {
                return Err(fail(format!(
                    "{}: ends at {:?}, but {n_data} values were written",
                    indptr.name(),
                    self.last_indptr
                )));
            }
        }
        Ok(())
    }
}

/// A dense matrix being written row by row.
pub(crate) struct DenseSink {
    pub file: PathBuf,
    pub data: Appender,
}

impl MatrixSink for DenseSink {
    fn append_data(&mut self, values: &NumVec) -> Result<()> {
        self.data
            .append(values)
            .map_err(|p| Error::output(&self.file, p))
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
        let n = self
            .data
            .finish()
            .map_err(|p| Error::output(&self.file, p))?;
        let expected = self.data.expected.unwrap_or(n);
        if n != expected {
            return Err(Error::output(
                &self.file,
                format!(
                    "{}: {n} values written, {expected} expected",
                    self.data.name()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::file::create_write;
    use super::super::layout::{create_dataset, Storage};
    use super::*;
    use hdf5::filters::Filter;

    /// Writes happen at chunk boundaries, in whole chunks; at most one chunk is held back,
    /// whatever the sizes of the appends.
    #[test]
    fn appends_write_whole_chunks_and_hold_back_less_than_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = create_write(&dir.path().join("t.h5")).unwrap();
        let n = 10_000u64;
        let storage = Storage {
            chunk: Some(vec![128]),
            filters: vec![Filter::Deflate(1)],
        };
        let ds = create_dataset(&file, "v", DType::F64, &[n], &storage).unwrap();
        let mut app =
            Appender::new(ds.clone(), "v".into(), DType::F64, 1, Some(128), Some(n)).unwrap();
        let mut next = 0u64;
        let mut step = 1u64;
        while next < n {
            let end = (next + step).min(n);
            let v: Vec<f64> = (next..end).map(|x| x as f64).collect();
            app.append(&NumVec::F64(v)).unwrap();
            assert_eq!(
                app.written % 128,
                0,
                "writes start and end at chunk boundaries"
            );
            assert!(app.buf.len() < 128 * 8, "less than one chunk held back");
            assert_eq!(app.count(), end);
            next = end;
            step = (step * 7 + 3) % 500 + 1;
        }
        assert!(app.append(&NumVec::F64(vec![1.0])).is_err());
        assert_eq!(app.finish().unwrap(), n);
        let back: Vec<f64> = ds.read_raw().unwrap();
        assert_eq!(back, (0..n).map(|x| x as f64).collect::<Vec<_>>());
    }

    #[test]
    fn dense_rows_and_growing_datasets() {
        let dir = tempfile::tempdir().unwrap();
        let file = create_write(&dir.path().join("t.h5")).unwrap();
        // 2-D, chunks of 4 rows x 3 columns: units of 4 whole rows
        let storage = Storage {
            chunk: Some(vec![4, 3]),
            filters: vec![Filter::Shuffle, Filter::Deflate(1)],
        };
        let ds = create_dataset(&file, "m", DType::F32, &[10, 3], &storage).unwrap();
        let mut app =
            Appender::new(ds.clone(), "m".into(), DType::F32, 3, Some(4), Some(30)).unwrap();
        for r in 0..10 {
            let row: Vec<f32> = (0..3).map(|c| (r * 3 + c) as f32).collect();
            app.append(&NumVec::F32(row)).unwrap();
            assert_eq!(app.written % 12, 0);
        }
        assert_eq!(app.finish().unwrap(), 30);
        let back: Vec<f32> = ds.read_raw().unwrap();
        assert_eq!(back, (0..30).map(|x| x as f32).collect::<Vec<_>>());
        // a dataset that grows as values arrive (length unknown ahead)
        let storage = Storage {
            chunk: Some(vec![5]),
            filters: vec![],
        };
        let ds = create_dataset(&file, "g", DType::I32, &[0], &storage).unwrap();
        let mut app = Appender::new(ds.clone(), "g".into(), DType::I32, 1, Some(5), None).unwrap();
        app.append_ints(&(0..23).collect::<Vec<i64>>()).unwrap();
        assert!(app.append_ints(&[1 << 40]).is_err());
        assert_eq!(app.finish().unwrap(), 23);
        assert_eq!(ds.shape(), vec![23]);
        let back: Vec<i32> = ds.read_raw().unwrap();
        assert_eq!(back, (0..23).collect::<Vec<i32>>());
    }

    #[test]
    fn guessed_chunks_match_h5py() {
        use super::super::layout::guess_chunk;
        // h5py.filters.guess_chunk((n,), None, itemsize) for anndata's arrays
        assert_eq!(guess_chunk(&[200], 4), vec![200]);
        assert_eq!(guess_chunk(&[51], 4), vec![51]);
        assert_eq!(guess_chunk(&[1_069_459], 4), vec![8356]);
        assert_eq!(guess_chunk(&[2_702_861], 4), vec![10559]);
        assert_eq!(guess_chunk(&[3775], 4), vec![1888]);
    }
}
