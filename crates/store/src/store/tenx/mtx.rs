//! 10x matrix directories, read as scanpy 1.12.4's `read_10x_mtx` reads them.
//!
//! Cell Ranger v3+: `matrix.mtx.gz`, `features.tsv.gz` (id, symbol, feature type),
//! `barcodes.tsv.gz`; legacy (a `genes.tsv` present): `matrix.mtx`, `genes.tsv`,
//! `barcodes.tsv`, uncompressed. var names are the symbols made unique (anndata's
//! `make_index_unique`), `gene_ids` the ids, `feature_types` the types (v3+ only; `gex_only`
//! keeps "Gene Expression"). scanpy reads the Matrix Market file with `mmread`, casts it to
//! float32, builds a CSR of features (duplicates summed), transposes it, and
//! `normalize_total` turns that CSC of cells into a CSR with sorted indices.
//!
//! Here the entries (feature, barcode, value) are parsed as they stream out of the file and
//! ordered by (barcode, feature): in memory when they fit in half of `--memory`, otherwise as
//! sorted runs in temporary files merged into the final CSR of cells. That CSR (int32
//! indices, float32 values) lives in two temporary files next to OUTPUT, read back with
//! `pread`; only its indptr (8 bytes a cell) stays in memory. The files are removed when the
//! input is dropped, on success and on failure.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::cells::Cells;
use super::frame::{make_unique, Column, Frame};
use super::h5::Read;
use crate::array::{as_bytes_mut, DType, NumVec};
use crate::error::{Error, Result};
use crate::store::{MatrixLayout, MatrixMeta, MatrixSource};

/// Bytes one entry takes while it is sorted.
const ENTRY_BYTES: u64 = 16;

/// Whether `dir` holds a 10x matrix (`matrix.mtx` or `matrix.mtx.gz`).
pub fn is_10x_dir(dir: &Path) -> bool {
    dir.join("matrix.mtx").is_file() || dir.join("matrix.mtx.gz").is_file()
}

/// The three files scanpy reads, by its rule: legacy when `genes.tsv` exists.
pub struct Files {
    pub legacy: bool,
    pub matrix: PathBuf,
    pub features: PathBuf,
    pub barcodes: PathBuf,
}

impl Files {
    pub fn of(dir: &Path) -> Result<Files> {
        let legacy = dir.join("genes.tsv").is_file();
        let suffix = if legacy { "" } else { ".gz" };
        let f = Files {
            legacy,
            matrix: dir.join(format!("matrix.mtx{suffix}")),
            features: dir.join(format!(
                "{}.tsv{suffix}",
                if legacy { "genes" } else { "features" }
            )),
            barcodes: dir.join(format!("barcodes.tsv{suffix}")),
        };
        for p in [&f.matrix, &f.features, &f.barcodes] {
            if !p.is_file() {
                return Err(Error::input(
                    p,
                    "/",
                    format!(
                        "missing: scanpy's read_10x_mtx reads {} in a {} directory",
                        if legacy {
                            "matrix.mtx, genes.tsv and barcodes.tsv"
                        } else {
                            "matrix.mtx.gz, features.tsv.gz and barcodes.tsv.gz"
                        },
                        if legacy {
                            "legacy (genes.tsv)"
                        } else {
                            "Cell Ranger v3+"
                        }
                    ),
                ));
            }
        }
        Ok(f)
    }
}

/// Lines of a text file, gunzipped when its name ends in `.gz`; read errors (a truncated
/// or corrupt gzip stream) name the file.
fn lines(path: &Path) -> Result<Box<dyn BufRead>> {
    let file =
        File::open(path).map_err(|e| Error::input(path, "/", format!("cannot open: {e}")))?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    Ok(if gz {
        Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(BufReader::new(file)),
        ))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, file))
    })
}

fn read_all_lines(path: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (i, line) in lines(path)?.lines().enumerate() {
        let line = line.map_err(|e| {
            Error::input(path, format!("line {}", i + 1), format!("cannot read: {e}"))
        })?;
        out.push(line);
    }
    // pandas skips blank lines
    out.retain(|l| !l.trim().is_empty());
    Ok(out)
}

/// Temporary files of the sorted matrix: a directory `.NAME.mtx-sort.atlasnorm-PID.tmp` next
/// to OUTPUT, a [`TempFile`](crate::store::temp::TempFile) of its own: removed on drop, on
/// interrupt, and (after a SIGKILL) by the next run that sorts for the same OUTPUT.
pub struct Scratch {
    dir: crate::store::temp::TempFile,
}

impl Scratch {
    fn new(next_to: &Path) -> Result<Scratch> {
        let mut target = next_to.as_os_str().to_owned();
        target.push(".mtx-sort");
        let dir = crate::store::temp::TempFile::next_to(Path::new(&target))?;
        dir.create(|p| std::fs::create_dir_all(p)).map_err(|e| {
            Error::output(
                &dir.path,
                format!("cannot create a directory for sorting matrix.mtx: {e}"),
            )
        })?;
        Ok(Scratch { dir })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path.join(name)
    }
}

/// The header of a Matrix Market file.
struct Header {
    integer: bool,
    n_rows: u64,
    n_cols: u64,
    nnz: u64,
}

/// Reads a 10x matrix directory (see the module doc) into its frames and a sorted CSR of
/// cells in a temporary directory next to `scratch_next_to` (OUTPUT).
pub fn read(
    dir: &Path,
    gex_only: bool,
    scratch_next_to: &Path,
    memory: u64,
) -> Result<(Read, Scratch)> {
    let files = Files::of(dir)?;
    let features = read_all_lines(&files.features)?;
    let barcodes: Vec<String> = read_all_lines(&files.barcodes)?
        .into_iter()
        .map(|l| l.split(',').next().unwrap_or("").to_string())
        .collect();
    let want_fields = if files.legacy { 2 } else { 3 };
    let mut ids = Vec::with_capacity(features.len());
    let mut symbols = Vec::with_capacity(features.len());
    let mut types = Vec::with_capacity(features.len());
    for (i, line) in features.iter().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() < want_fields {
            return Err(Error::input(
                &files.features,
                format!("line {}", i + 1),
                format!(
                    "has {} tab-separated fields, expected {want_fields}",
                    fields.len()
                ),
            ));
        }
        ids.push(fields[0].to_string());
        symbols.push(fields[1].to_string());
        if !files.legacy {
            types.push(fields[2].to_string());
        }
    }
    make_unique(&mut symbols);
    let mut var = Frame::new(symbols);
    // pandas' read_csv infers int64 for a column of integers (numeric gene ids)
    let int_ids: Option<Vec<i64>> = ids.iter().map(|i| i.trim().parse::<i64>().ok()).collect();
    match int_ids {
        Some(v) if !v.is_empty() => var.set("gene_ids", Column::Int(v)),
        _ => var.set("gene_ids", Column::Str(ids)),
    }
    if !files.legacy {
        var.set("feature_types", Column::Str(types.clone()));
    }

    let scratch = Scratch::new(scratch_next_to)?;
    let sorted = sort_matrix(&files.matrix, &scratch, memory)?;
    let agrees = |n: u64, what: &str, list: &Path, listed: usize| {
        if n == listed as u64 {
            return Ok(());
        }
        Err(Error::input(
            &files.matrix,
            "header",
            format!("{n} {what}, but {} lists {listed}", list.display()),
        ))
    };
    agrees(
        sorted.meta.n_vars,
        "rows (features)",
        &files.features,
        features.len(),
    )?;
    agrees(
        sorted.meta.n_obs,
        "columns (barcodes)",
        &files.barcodes,
        barcodes.len(),
    )?;
    let keep: Option<Vec<bool>> =
        (!files.legacy && gex_only).then(|| types.iter().map(|t| t == "Gene Expression").collect());
    let matrix = Cells::new(
        &files.matrix,
        "matrix.mtx",
        Box::new(sorted),
        keep.as_deref(),
        false,
    )?;
    let var = match &keep {
        Some(k) => var.select(k),
        None => var,
    };
    Ok((
        Read {
            obs: Frame::new(barcodes),
            var,
            matrix,
            kind: format!(
                "10x matrix directory ({})",
                if files.legacy {
                    "legacy: genes.tsv"
                } else {
                    "Cell Ranger v3+"
                }
            ),
        },
        scratch,
    ))
}

fn parse_header(path: &Path, src: &mut dyn BufRead, line_no: &mut u64) -> Result<Header> {
    let mut line = String::new();
    let err = |n: u64, p: String| Error::input(path, format!("line {n}"), p);
    let mut next = |line: &mut String, line_no: &mut u64| -> Result<bool> {
        line.clear();
        *line_no += 1;
        let n = src
            .read_line(line)
            .map_err(|e| err(*line_no, format!("cannot read: {e}")))?;
        Ok(n > 0)
    };
    if !next(&mut line, line_no)? {
        return Err(err(1, "empty file: no Matrix Market header".into()));
    }
    let banner: Vec<String> = line
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    if banner.len() != 5 || banner[0] != "%%matrixmarket" || banner[1] != "matrix" {
        return Err(err(
            1,
            format!("not a Matrix Market header: {:?}", line.trim_end()),
        ));
    }
    if banner[2] != "coordinate" {
        return Err(err(
            1,
            format!("format {:?}: a 10x matrix is \"coordinate\"", banner[2]),
        ));
    }
    let integer = match banner[3].as_str() {
        "integer" => true,
        "real" | "double" => false,
        other => {
            return Err(err(
                1,
                format!("field {other:?} is not supported (integer or real)"),
            ))
        }
    };
    if banner[4] != "general" {
        return Err(err(
            1,
            format!("symmetry {:?} is not supported (general)", banner[4]),
        ));
    }
    loop {
        if !next(&mut line, line_no)? {
            return Err(err(*line_no, "no size line".into()));
        }
        let t = line.trim();
        if t.is_empty() || t.starts_with('%') {
            continue;
        }
        let v: Vec<u64> = t
            .split_whitespace()
            .map(|x| x.parse::<u64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| err(*line_no, format!("size line {t:?} is not three counts")))?;
        let [n_rows, n_cols, nnz] = v[..] else {
            return Err(err(
                *line_no,
                format!("size line {t:?} is not three counts"),
            ));
        };
        if n_rows > i32::MAX as u64 || n_cols > i32::MAX as u64 {
            return Err(err(
                *line_no,
                "dimensions past 2^31 are not supported".into(),
            ));
        }
        return Ok(Header {
            integer,
            n_rows,
            n_cols,
            nnz,
        });
    }
}

/// One entry, ordered by (cell, feature).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
struct Entry {
    cell: u32,
    feature: u32,
    value: f32,
}

impl Entry {
    fn key(&self) -> (u32, u32) {
        (self.cell, self.feature)
    }
    fn write(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(&self.cell.to_le_bytes())?;
        w.write_all(&self.feature.to_le_bytes())?;
        w.write_all(&self.value.to_le_bytes())
    }
    fn read(r: &mut impl std::io::Read) -> std::io::Result<Option<Entry>> {
        let mut b = [0u8; 12];
        match r.read_exact(&mut b) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Ok(Some(Entry {
            cell: u(0),
            feature: u(4),
            value: f32::from_bits(u(8)),
        }))
    }
}

/// Parses one entry line: 1-based feature and barcode, the value cast to float32 as
/// `mmread(...).astype("float32")` does (an integer through int64, a real through float64).
fn parse_entry(t: &str, h: &Header) -> std::result::Result<Entry, String> {
    let mut it = t.split_ascii_whitespace();
    let (Some(r), Some(c), Some(v), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(format!("{t:?} is not \"row column value\""));
    };
    let index = |s: &str, n: u64, what: &str| -> std::result::Result<u32, String> {
        let i: u64 = s
            .parse()
            .map_err(|_| format!("{what} {s:?} is not an index"))?;
        if i == 0 || i > n {
            return Err(format!("{what} {i} out of range 1..={n}"));
        }
        Ok((i - 1) as u32)
    };
    let feature = index(r, h.n_rows, "row (feature)")?;
    let cell = index(c, h.n_cols, "column (barcode)")?;
    let value = if h.integer {
        v.parse::<i64>().map_err(|_| {
            format!("value {v:?} is not an integer, but the header declares integer")
        })? as f32
    } else {
        v.parse::<f64>()
            .map_err(|_| format!("value {v:?} is not a number"))? as f32
    };
    Ok(Entry {
        cell,
        feature,
        value,
    })
}

/// Creates a file in the sort directory under the write permit, so that an interrupt's
/// removal of the directory never races with a new file appearing in it.
fn create(path: &Path) -> Result<File> {
    let _permit = crate::store::temp::write_permit();
    File::create(path).map_err(|e| Error::output(path, format!("cannot create: {e}")))
}

/// Writes `entries` (sorted) as a run file.
fn write_run(path: &Path, entries: &[Entry]) -> Result<()> {
    let f = create(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    for e in entries {
        e.write(&mut w)
            .map_err(|e| Error::output(path, e.to_string()))?;
    }
    w.flush().map_err(|e| Error::output(path, e.to_string()))
}

/// Parses `path` and writes its entries as a CSR of cells into `scratch` (see the module
/// doc), with runs of at most half of `memory` sorted in memory.
fn sort_matrix(path: &Path, scratch: &Scratch, memory: u64) -> Result<SortedMtx> {
    let mut src = lines(path)?;
    let mut line_no = 0u64;
    let h = parse_header(path, src.as_mut(), &mut line_no)?;
    let cap = ((memory / 2) / ENTRY_BYTES).max(1 << 10) as usize;
    let mut buf: Vec<Entry> = Vec::with_capacity(cap.min(h.nnz as usize + 1));
    let mut runs: Vec<PathBuf> = Vec::new();
    let mut seen = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        line_no += 1;
        let n = src.read_line(&mut line).map_err(|e| {
            Error::input(path, format!("line {line_no}"), format!("cannot read: {e}"))
        })?;
        if n == 0 {
            break;
        }
        let t = line.trim();
        if t.is_empty() || t.starts_with('%') {
            continue;
        }
        let e = parse_entry(t, &h).map_err(|p| Error::input(path, format!("line {line_no}"), p))?;
        seen += 1;
        if seen > h.nnz {
            return Err(Error::input(
                path,
                format!("line {line_no}"),
                format!("more entries than the {} the header declares", h.nnz),
            ));
        }
        buf.push(e);
        if buf.len() == cap {
            let run = scratch.file(&format!("run{}", runs.len()));
            sort_entries(&mut buf);
            write_run(&run, &buf)?;
            runs.push(run);
            buf.clear();
        }
    }
    if seen != h.nnz {
        return Err(Error::input(
            path,
            "entries",
            format!("{seen} entries, but the header declares {}", h.nnz),
        ));
    }
    sort_entries(&mut buf);
    let mut out = CsrWriter::new(scratch, h.n_cols)?;
    if runs.is_empty() {
        for e in &buf {
            out.push(*e)?;
        }
    } else {
        if !buf.is_empty() {
            let run = scratch.file(&format!("run{}", runs.len()));
            write_run(&run, &buf)?;
            runs.push(run);
        }
        drop(buf);
        merge(&runs, &mut out)?;
        for r in &runs {
            let _ = std::fs::remove_file(r);
        }
    }
    out.finish(path, h.n_rows)
}

/// Sorts by (cell, feature), stable, so duplicates keep their file order.
fn sort_entries(v: &mut [Entry]) {
    if !v.windows(2).all(|w| w[0].key() <= w[1].key()) {
        v.sort_by_key(Entry::key);
    }
}

/// K-way merge of sorted runs (ties: the earlier run first, keeping file order).
fn merge(runs: &[PathBuf], out: &mut CsrWriter) -> Result<()> {
    let mut readers = Vec::with_capacity(runs.len());
    for r in runs {
        let f = File::open(r).map_err(|e| Error::output(r, format!("cannot open: {e}")))?;
        readers.push(BufReader::with_capacity(1 << 16, f));
    }
    let mut heap = BinaryHeap::new();
    for (i, r) in readers.iter_mut().enumerate() {
        if let Some(e) = Entry::read(r).map_err(|e| Error::output(&runs[i], e.to_string()))? {
            heap.push(std::cmp::Reverse((e.key(), i, e.value.to_bits())));
        }
    }
    while let Some(std::cmp::Reverse(((cell, feature), i, bits))) = heap.pop() {
        out.push(Entry {
            cell,
            feature,
            value: f32::from_bits(bits),
        })?;
        if let Some(e) =
            Entry::read(&mut readers[i]).map_err(|e| Error::output(&runs[i], e.to_string()))?
        {
            heap.push(std::cmp::Reverse((e.key(), i, e.value.to_bits())));
        }
    }
    Ok(())
}

/// Appends sorted entries as CSR files (duplicates summed in float32, as scipy does after
/// `astype("float32")`).
struct CsrWriter {
    indices_path: PathBuf,
    data_path: PathBuf,
    indices: BufWriter<File>,
    data: BufWriter<File>,
    indptr: Vec<i64>,
    n_cells: u64,
    pending: Option<Entry>,
    nnz: i64,
}

impl CsrWriter {
    fn new(scratch: &Scratch, n_cells: u64) -> Result<CsrWriter> {
        let open = |p: &Path| create(p).map(|f| BufWriter::with_capacity(1 << 20, f));
        let (ip, dp) = (scratch.file("indices"), scratch.file("data"));
        let mut indptr = Vec::with_capacity(n_cells as usize + 1);
        indptr.push(0);
        Ok(CsrWriter {
            indices: open(&ip)?,
            data: open(&dp)?,
            indices_path: ip,
            data_path: dp,
            indptr,
            n_cells,
            pending: None,
            nnz: 0,
        })
    }

    fn push(&mut self, e: Entry) -> Result<()> {
        match &mut self.pending {
            Some(p) if p.key() == e.key() => p.value += e.value,
            _ => {
                if let Some(p) = self.pending.take() {
                    self.emit(p)?;
                }
                self.pending = Some(e);
            }
        }
        Ok(())
    }

    fn emit(&mut self, e: Entry) -> Result<()> {
        while (self.indptr.len() as u64) <= e.cell as u64 {
            self.indptr.push(self.nnz);
        }
        let io = |p: &Path, e: std::io::Error| Error::output(p, e.to_string());
        self.indices
            .write_all(&(e.feature as i32).to_le_bytes())
            .map_err(|x| io(&self.indices_path, x))?;
        self.data
            .write_all(&e.value.to_le_bytes())
            .map_err(|x| io(&self.data_path, x))?;
        self.nnz += 1;
        Ok(())
    }

    fn finish(mut self, path: &Path, n_features: u64) -> Result<SortedMtx> {
        if let Some(p) = self.pending.take() {
            self.emit(p)?;
        }
        while (self.indptr.len() as u64) <= self.n_cells {
            self.indptr.push(self.nnz);
        }
        let io = |p: &Path, e: std::io::Error| Error::output(p, e.to_string());
        self.indices
            .flush()
            .map_err(|e| io(&self.indices_path, e))?;
        self.data.flush().map_err(|e| io(&self.data_path, e))?;
        let open = |p: &Path| File::open(p).map_err(|e| io(p, e));
        Ok(SortedMtx {
            file: path.to_path_buf(),
            indices: open(&self.indices_path)?,
            data: open(&self.data_path)?,
            meta: MatrixMeta {
                layout: MatrixLayout::Csr,
                n_obs: self.n_cells,
                n_vars: n_features,
                data_dtype: DType::F32,
                nnz: self.nnz as u64,
                indices_dtype: Some(DType::I32),
                indptr_dtype: Some(DType::I32),
            },
            indptr: self.indptr,
        })
    }
}

/// The sorted CSR of cells in the scratch files.
pub struct SortedMtx {
    file: PathBuf,
    indices: File,
    data: File,
    meta: MatrixMeta,
    indptr: Vec<i64>,
}

impl SortedMtx {
    fn pread<T: crate::array::Plain>(&self, f: &File, range: Range<u64>) -> Result<Vec<T>> {
        let mut v = vec![T::default(); (range.end - range.start) as usize];
        let size = std::mem::size_of::<T>() as u64;
        f.read_exact_at(as_bytes_mut(&mut v), range.start * size)
            .map_err(|e| Error::input(&self.file, "matrix.mtx", format!("sorted copy: {e}")))?;
        Ok(v)
    }
}

impl MatrixSource for SortedMtx {
    fn meta(&self) -> &MatrixMeta {
        &self.meta
    }
    fn read_indptr(&self, range: Range<u64>) -> Result<Vec<i64>> {
        Ok(self.indptr[range.start as usize..range.end as usize].to_vec())
    }
    fn read_indices(&self, range: Range<u64>) -> Result<NumVec> {
        Ok(NumVec::I32(self.pread(&self.indices, range)?))
    }
    fn read_data(&self, range: Range<u64>) -> Result<NumVec> {
        Ok(NumVec::F32(self.pread(&self.data, range)?))
    }
    fn read_rows(&self, _rows: Range<u64>) -> Result<NumVec> {
        Err(Error::input(
            &self.file,
            "matrix.mtx",
            "a sparse matrix has no dense rows",
        ))
    }
}
