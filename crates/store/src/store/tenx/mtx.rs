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
//! Here the entries (feature, barcode, value) are parsed in parallel blocks as they stream
//! out of the file ([`Blocks`]: one thread reads, and gunzips, the file into blocks cut at
//! line ends, the rayon workers parse them, in file order, with the errors and line numbers
//! of a line-by-line read), and ordered by (barcode, feature): in memory when they fit in
//! half of `--memory`, otherwise as sorted runs in temporary files merged into the final CSR
//! of cells. The blocks in flight take about a sixth of `--memory` (at most 4 MiB a block). That CSR (int32
//! indices, float32 values) lives in two temporary files next to OUTPUT, read back with
//! `pread`; only its indptr (8 bytes a cell) stays in memory. The files are removed when the
//! input is dropped, on success and on failure.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read as _, Write};

use rayon::prelude::*;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::cells::Cells;
use super::frame::{make_unique, Column, Frame};
use super::h5::Read;
use super::table::{read_table, Values};
use crate::array::{as_bytes_mut, DType, NumVec};
use crate::error::{Error, Result};
use crate::store::{MatrixLayout, MatrixMeta, SparseSource, StoredMatrix};

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

/// A `features.tsv`/`barcodes.tsv` read as pandas reads it ([`table`](super::table)).
fn read_table_file(path: &Path, sep: u8) -> Result<Vec<Values>> {
    let mut bytes = Vec::new();
    lines(path)?
        .read_to_end(&mut bytes)
        .map_err(|e| Error::input(path, "/", format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::input(
            path,
            "/",
            format!(
                "not UTF-8 text (byte {} is invalid; pandas reads these files as UTF-8)",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    read_table(&text, sep).map_err(|e| Error::input(path, "/", e.to_string()))
}

/// The var names `read_10x_mtx` makes of the symbols: `make_index_unique`, then
/// `astype("str")`. anndata can only suffix strings, so a column pandas read as numbers or
/// booleans is refused when it repeats a value (scanpy fails with a TypeError there).
fn var_names(path: &Path, symbols: &Values) -> Result<Vec<Option<String>>> {
    if let Values::Str(names) = symbols {
        let mut names = names.clone();
        make_unique(&mut names);
        return Ok(names);
    }
    let names = symbols.to_strings();
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = names.iter().flatten().find(|n| !seen.insert(n.as_str())) {
        return Err(Error::input(
            path,
            "column 2 (symbols)",
            format!(
                "pandas reads the symbols as numbers or booleans, and {dup} repeats: anndata's \
                 make_index_unique can only suffix strings (scanpy fails with a TypeError)"
            ),
        ));
    }
    Ok(names)
}

/// A features column as `read_10x_mtx` stores it in var: typed as pandas read it.
fn column(path: &Path, element: &str, values: &Values) -> Result<Column> {
    Ok(match values {
        Values::Int(v) => Column::Int(v.clone()),
        Values::UInt(v) => Column::UInt(v.clone()),
        Values::Float(v) => Column::Float(v.clone()),
        Values::Bool(v) => Column::Bool(v.clone()),
        Values::Str(v) => Column::Str(v.clone()),
        Values::Object(_) => {
            return Err(Error::input(
                path,
                element,
                "pandas reads this column as Python objects (integers past 64 bits, or \
                 booleans with missing values), which anndata cannot write (scanpy fails on \
                 writing)",
            ))
        }
    })
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
    /// A dense `array` matrix: one value a line, column by column (the lower triangle of a
    /// symmetric one), instead of `coordinate` entries.
    array: bool,
    field: Field,
    symmetry: Symmetry,
    n_rows: u64,
    n_cols: u64,
    /// The number of entry lines (of values, for an array).
    nnz: u64,
}

/// The field of the banner: how each value is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Integer,
    /// `unsigned-integer`: no sign.
    Unsigned,
    /// `real` or `double`.
    Real,
    /// A real and an imaginary part; `astype("float32")` keeps the real one.
    Complex,
    /// No value: every entry is 1.
    Pattern,
}

/// The symmetry of the banner: an entry off the diagonal stands for its mirror too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Symmetry {
    General,
    Symmetric,
    /// The mirror is negated.
    Skew,
    /// The mirror is the conjugate: for the real part kept, the same value.
    Hermitian,
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
    let features = read_table_file(&files.features, b'\t')?;
    let barcodes = read_table_file(&files.barcodes, b',')?;
    let want_fields = if files.legacy { 2 } else { 3 };
    if features.len() < want_fields {
        return Err(Error::input(
            &files.features,
            "line 1",
            format!(
                "has {} tab-separated fields, expected {want_fields} (id, symbol{}): scanpy \
                 fails on the missing column",
                features.len(),
                if files.legacy { "" } else { ", feature type" }
            ),
        ));
    }
    let n_features = features[0].len();
    let mut var = Frame::with_missing(var_names(&files.features, &features[1])?);
    var.set(
        "gene_ids",
        column(&files.features, "column 1 (ids)", &features[0])?,
    );
    if !files.legacy {
        var.set(
            "feature_types",
            column(&files.features, "column 3 (feature types)", &features[2])?,
        );
    }
    let obs_names = barcodes[0].to_strings();

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
        n_features,
    )?;
    agrees(
        sorted.meta.n_obs,
        "columns (barcodes)",
        &files.barcodes,
        obs_names.len(),
    )?;
    // `var["feature_types"] == "Gene Expression"`: false for missing or non-string types
    let keep: Option<Vec<bool>> = (!files.legacy && gex_only).then(|| match &features[2] {
        Values::Str(types) => types
            .iter()
            .map(|t| t.as_deref() == Some("Gene Expression"))
            .collect(),
        other => vec![false; other.len()],
    });
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
            obs: Frame::with_missing(obs_names),
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
    // as fast_matrix_market (scipy's mmread) reads it: "%%MatrixMarket" as written, the
    // other words in any case
    let words: Vec<&str> = line.split_whitespace().collect();
    let banner: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    if banner.len() != 5 || words[0] != "%%MatrixMarket" || banner[1] != "matrix" {
        return Err(err(
            1,
            format!(
                "not a Matrix Market header (scipy's mmread wants \"%%MatrixMarket matrix \
                 FORMAT FIELD SYMMETRY\"): {:?}",
                line.trim_end()
            ),
        ));
    }
    let array = match banner[2].as_str() {
        "coordinate" => false,
        "array" => true,
        other => return Err(err(1, format!("unknown format {other:?}"))),
    };
    let field = match banner[3].as_str() {
        "integer" => Field::Integer,
        "unsigned-integer" => Field::Unsigned,
        "real" | "double" => Field::Real,
        "complex" => Field::Complex,
        "pattern" => Field::Pattern,
        other => return Err(err(1, format!("unknown field {other:?}"))),
    };
    let symmetry = match banner[4].as_str() {
        "general" => Symmetry::General,
        "symmetric" => Symmetry::Symmetric,
        "skew-symmetric" => Symmetry::Skew,
        "hermitian" => Symmetry::Hermitian,
        other => return Err(err(1, format!("unknown symmetry {other:?}"))),
    };
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
        let (n_rows, n_cols, nnz) = match (array, &v[..]) {
            (false, &[r, c, nnz]) => (r, c, nnz),
            (true, &[r, c]) => {
                let values = match symmetry {
                    Symmetry::General => r.checked_mul(c),
                    _ if r != c => {
                        return Err(err(
                            *line_no,
                            format!("a {symmetry:?} array must be square, not {r} x {c}"),
                        ))
                    }
                    Symmetry::Skew => r.checked_mul(r.saturating_sub(1)).map(|n| n / 2),
                    _ => r.checked_mul(r + 1).map(|n| n / 2),
                };
                let values = values.ok_or_else(|| err(*line_no, "too many values".into()))?;
                (r, c, values)
            }
            _ => {
                return Err(err(
                    *line_no,
                    format!(
                        "size line {t:?} is not {}",
                        if array {
                            "two counts (rows, columns)"
                        } else {
                            "three counts"
                        }
                    ),
                ))
            }
        };
        if n_rows > i32::MAX as u64 || n_cols > i32::MAX as u64 {
            return Err(err(
                *line_no,
                "dimensions past 2^31 are not supported".into(),
            ));
        }
        return Ok(Header {
            array,
            field,
            symmetry,
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

/// Parses one entry line as fast_matrix_market (scipy's `mmread`) does: 1-based feature and
/// barcode, then the value (none for `pattern`, two parts for `complex`; fields after it are
/// ignored), cast to float32 as `astype("float32")` does (an integer through int64, a real
/// through float64). Off the diagonal of a symmetric matrix the mirrored entry comes too.
/// One deviation: mmread reads the number a value starts with (`5.7` in an integer matrix is
/// 5, `1e5x` is 1e5); here such a value is refused, as a value that is not an integer (or
/// not a number).
fn parse_entry(t: &str, h: &Header) -> std::result::Result<(Entry, Option<Entry>), String> {
    if t.starts_with('%') {
        return Err(format!(
            "{t:?}: a comment line among the entries (scipy's mmread refuses it)"
        ));
    }
    let mut rest = t.as_bytes();
    if h.array {
        // the value alone; its place is known from the count of values before it (`place`)
        let value = parse_value(t, &mut rest, h.field)?;
        return Ok((
            Entry {
                cell: 0,
                feature: 0,
                value,
            },
            None,
        ));
    }
    let index = |rest: &mut &[u8], n: u64, what: &str| -> std::result::Result<u32, String> {
        let i = int_prefix(rest).map_err(|p| format!("{t:?}: the {what} {p}"))?;
        if i < 1 || i as u64 > n {
            return Err(format!("{t:?}: {what} {i} out of range 1..={n}"));
        }
        Ok((i - 1) as u32)
    };
    let feature = index(&mut rest, h.n_rows, "row (feature)")?;
    let cell = index(&mut rest, h.n_cols, "column (barcode)")?;
    let value = parse_value(t, &mut rest, h.field)?;
    let entry = Entry {
        cell,
        feature,
        value,
    };
    if h.symmetry == Symmetry::General || cell == feature {
        return Ok((entry, None));
    }
    // the mirror: feature and barcode swapped (within the declared shape)
    let (feature, cell) = (cell, feature);
    if u64::from(feature) >= h.n_rows || u64::from(cell) >= h.n_cols {
        return Err(format!(
            "{t:?}: its mirror in a {:?} matrix, ({}, {}), is out of the {} x {} shape",
            h.symmetry,
            feature + 1,
            cell + 1,
            h.n_rows,
            h.n_cols
        ));
    }
    let value = if h.symmetry == Symmetry::Skew {
        -value
    } else {
        value
    };
    Ok((
        entry,
        Some(Entry {
            cell,
            feature,
            value,
        }),
    ))
}

/// The value of an entry line at `rest`, as [`parse_entry`] describes.
fn parse_value(t: &str, rest: &mut &[u8], field: Field) -> std::result::Result<f32, String> {
    let value_err = |p: String| format!("{t:?}: the value {p}");
    let whole = |rest: &[u8], what: &str| -> std::result::Result<(), String> {
        match rest.first() {
            None | Some(b' ' | b'\t') => Ok(()),
            Some(_) => Err(format!(
                "{t:?}: the value is not {what} (scipy's mmread would keep the number it starts \
                 with and drop the rest; atlasnorm refuses rather than truncate)"
            )),
        }
    };
    Ok(match field {
        Field::Integer => {
            let v = int_prefix(rest).map_err(value_err)?;
            whole(rest, "an integer, but the header declares integer")?;
            v as f32
        }
        Field::Unsigned => {
            let v = uint_prefix(rest).map_err(value_err)?;
            whole(
                rest,
                "an unsigned integer, but the header declares unsigned-integer",
            )?;
            v as f32
        }
        Field::Real => {
            let v = float_prefix(rest).map_err(value_err)?;
            whole(rest, "a number")?;
            v as f32
        }
        Field::Complex => {
            let re = float_prefix(rest).map_err(value_err)?;
            whole(rest, "a number")?;
            float_prefix(rest).map_err(|p| format!("{t:?}: the imaginary part {p}"))?;
            whole(rest, "a number")?;
            re as f32
        }
        Field::Pattern => 1.0,
    })
}

/// Skips the spaces and tabs before a number.
fn skip_blanks(rest: &mut &[u8]) {
    while let [b' ' | b'\t', tail @ ..] = rest {
        *rest = tail;
    }
}

/// The digits at the start of `rest` (consumed).
fn take_digits<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let n = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    let (digits, tail) = rest.split_at(n);
    *rest = tail;
    digits
}

/// An integer as C++'s `from_chars` reads it: an optional `-`, digits (no `+`).
fn int_prefix(rest: &mut &[u8]) -> std::result::Result<i64, String> {
    skip_blanks(rest);
    let before = *rest;
    let neg = if let [b'-', tail @ ..] = rest {
        *rest = tail;
        true
    } else {
        false
    };
    let digits = take_digits(rest);
    if digits.is_empty() {
        *rest = before;
        return Err("is not an integer".into());
    }
    let text = std::str::from_utf8(&before[..digits.len() + usize::from(neg)]).unwrap_or("");
    text.parse::<i64>()
        .map_err(|_| format!("{text} is out of the int64 range"))
}

/// An unsigned integer as `from_chars` reads it: digits only.
fn uint_prefix(rest: &mut &[u8]) -> std::result::Result<u64, String> {
    skip_blanks(rest);
    let digits = take_digits(rest);
    if digits.is_empty() {
        return Err("is not an unsigned integer".into());
    }
    let text = std::str::from_utf8(digits).unwrap_or("");
    text.parse::<u64>()
        .map_err(|_| format!("{text} is out of the uint64 range"))
}

/// A float as `fast_float::from_chars` reads it (the longest prefix): an optional `-`, then
/// `inf`, `infinity` or `nan` in any case, or digits with an optional `.` and fraction (one
/// digit at least) and an optional exponent (taken only with its digits); correctly rounded,
/// out of range to infinity or zero.
fn float_prefix(rest: &mut &[u8]) -> std::result::Result<f64, String> {
    skip_blanks(rest);
    let start = *rest;
    let mut k = usize::from(start.first() == Some(&b'-'));
    let word = |w: &str| {
        start.len() >= k + w.len() && start[k..k + w.len()].eq_ignore_ascii_case(w.as_bytes())
    };
    let special = if word("infinity") {
        Some((8, f64::INFINITY))
    } else if word("inf") {
        Some((3, f64::INFINITY))
    } else if word("nan") {
        Some((3, f64::NAN))
    } else {
        None
    };
    if let Some((len, v)) = special {
        *rest = &start[k + len..];
        return Ok(if k == 1 { -v } else { v });
    }
    let digits = |k: &mut usize| {
        let s = *k;
        while *k < start.len() && start[*k].is_ascii_digit() {
            *k += 1;
        }
        *k - s
    };
    let mut n = digits(&mut k);
    if start.get(k) == Some(&b'.') {
        let mut j = k + 1;
        let frac = digits(&mut j);
        if n + frac > 0 {
            k = j;
            n += frac;
        }
    }
    if n == 0 {
        return Err("is not a number".into());
    }
    if matches!(start.get(k), Some(b'e' | b'E')) {
        let mut j = k + 1;
        if matches!(start.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if digits(&mut j) > 0 {
            k = j;
        }
    }
    *rest = &start[k..];
    let text = std::str::from_utf8(&start[..k]).unwrap_or("");
    text.parse::<f64>()
        .map_err(|_| format!("{text:?} is not a number"))
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

/// Opens the matrix as a byte stream, gunzipped (every member) when its name ends in `.gz`.
fn stream(path: &Path) -> Result<BufReader<Box<dyn std::io::Read + Send>>> {
    let file =
        File::open(path).map_err(|e| Error::input(path, "/", format!("cannot open: {e}")))?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    let inner: Box<dyn std::io::Read + Send> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 20,
            file,
        )))
    } else {
        Box::new(file)
    };
    Ok(BufReader::with_capacity(1 << 16, inner))
}

/// Bytes of text in one parsed block for `threads` workers under `memory`: at most about ten
/// blocks a worker are in flight (read ahead, being parsed, parsed and waiting), text and
/// parsed entries, i.e. about a sixth of `memory`.
fn block_bytes(memory: u64, threads: usize) -> usize {
    (memory / (64 * threads.max(1) as u64)).clamp(16 << 10, 4 << 20) as usize
}

/// Parses `path` and writes its entries as a CSR of cells into `scratch` (see the module
/// doc), with runs of at most half of `memory` sorted in memory.
///
/// Entries already in cell order (Cell Ranger writes them so) go straight to the CSR as they
/// are parsed: no buffer, no run files, no merge. If the order breaks after some were written
/// that way, the file is read again, sorting (at most one extra read, and only for a file
/// whose first block was in order).
fn sort_matrix(path: &Path, scratch: &Scratch, memory: u64) -> Result<SortedMtx> {
    match sort_matrix_with(path, scratch, memory, true)? {
        Some(sorted) => Ok(sorted),
        None => sort_matrix_with(path, scratch, memory, false)?
            .ok_or_else(|| Error::Internal("mtx: entries out of order while sorting".into())),
    }
}

/// [`sort_matrix`] in one read; `None` when `straight` writing met an entry out of order
/// after others had been written.
fn sort_matrix_with(
    path: &Path,
    scratch: &Scratch,
    memory: u64,
    straight: bool,
) -> Result<Option<SortedMtx>> {
    let mut src = stream(path)?;
    let mut line_no = 0u64;
    let h = parse_header(path, &mut src, &mut line_no)?;
    let cap = ((memory / 2) / ENTRY_BYTES).max(1 << 10) as usize;
    let mut out = CsrWriter::new(scratch, h.n_cols)?;
    let mut runs = Runs {
        scratch,
        cap,
        // a symmetric matrix's lines may each bring a mirrored entry
        reserve: cap.min(
            (h.nnz as usize).saturating_mul(if h.symmetry == Symmetry::General {
                1
            } else {
                2
            }) + 1,
        ),
        buf: Vec::new(),
        files: Vec::new(),
        straight: straight.then_some(Straight::default()),
        out: &mut out,
        out_of_order: false,
    };
    let threads = rayon::current_num_threads().max(1);
    let blocks = Blocks {
        path,
        header: &h,
        first_line: line_no,
        block: block_bytes(memory, threads),
        depth: 2 * threads,
    };
    let parsed = blocks.parse(src, |entries| runs.extend(&entries));
    if runs.out_of_order {
        return Ok(None); // the error that stopped the parse was the signal
    }
    parsed?;
    let Runs {
        mut buf,
        files: mut run_files,
        ..
    } = runs;
    sort_entries(&mut buf);
    if run_files.is_empty() {
        for e in &buf {
            out.push(*e)?;
        }
    } else {
        if !buf.is_empty() {
            let run = scratch.file(&format!("run{}", run_files.len()));
            write_run(&run, &buf)?;
            run_files.push(run);
        }
        drop(buf);
        merge(&run_files, &mut out)?;
        for r in &run_files {
            let _ = std::fs::remove_file(r);
        }
    }
    out.finish(path, h.n_rows).map(Some)
}

/// Straight writing: the last key written, if any.
#[derive(Default)]
struct Straight {
    last: Option<(u32, u32)>,
}

/// Entries in file order: written straight to `out` while they come in order
/// (`straight`), else gathered into runs of `cap`, each sorted and written to a file.
struct Runs<'a> {
    scratch: &'a Scratch,
    cap: usize,
    /// The buffer's capacity, reserved once when the first entry is buffered (growing it
    /// would hold two copies for a moment).
    reserve: usize,
    buf: Vec<Entry>,
    files: Vec<PathBuf>,
    straight: Option<Straight>,
    out: &'a mut CsrWriter,
    /// Set when an entry came out of order after others were written straight.
    out_of_order: bool,
}

impl Runs<'_> {
    fn extend(&mut self, entries: &[Entry]) -> Result<()> {
        if let Some(st) = &mut self.straight {
            let mut prev = st.last;
            let in_order = entries.iter().all(|e| {
                let ok = prev.is_none_or(|p| p <= e.key());
                prev = Some(e.key());
                ok
            });
            if in_order {
                for e in entries {
                    self.out.push(*e)?;
                }
                st.last = prev;
                return Ok(());
            }
            if st.last.is_some() {
                // Written entries a later one may precede: stop the parse, read again.
                self.out_of_order = true;
                return Err(Error::Internal("mtx: entries out of order".into()));
            }
            self.straight = None; // nothing written yet: sort as usual
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.reserve);
        }
        let mut entries = entries;
        while !entries.is_empty() {
            let take = (self.cap - self.buf.len()).min(entries.len());
            self.buf.extend_from_slice(&entries[..take]);
            entries = &entries[take..];
            if self.buf.len() == self.cap {
                let run = self.scratch.file(&format!("run{}", self.files.len()));
                sort_entries(&mut self.buf);
                write_run(&run, &self.buf)?;
                self.files.push(run);
                self.buf.clear();
            }
        }
        Ok(())
    }
}

/// What the reading thread hands to the parsers: text ending at a line end (or at the end of
/// the file), or the read error that ended it (after the complete lines read before it).
enum Piece {
    Text(Vec<u8>),
    Failed(std::io::Error),
}

/// The entry lines of a Matrix Market file after its header, parsed in parallel blocks:
/// one thread reads (and gunzips) the file into blocks of about `block` bytes cut at line
/// ends, the rayon workers parse a batch of `depth` blocks while the previous batch is
/// handed on in file order. Errors are those of a line-by-line read, with the same line
/// numbers: a block that fails (or that holds more entries than the header leaves room
/// for) is parsed again, serially, knowing how many entries came before it.
struct Blocks<'a> {
    path: &'a Path,
    header: &'a Header,
    /// The line number of the size line (the last header line).
    first_line: u64,
    block: usize,
    depth: usize,
}

/// A parsed block: its entries (mirrors of a symmetric matrix's included), the number of
/// entry lines (what the header's count counts) and its number of lines.
struct Parsed {
    entries: Vec<Entry>,
    declared: u64,
    lines: u64,
}

impl Blocks<'_> {
    /// Parses `src` (positioned after the header), handing the entries to `each` in file
    /// order, and checks their count against the header.
    fn parse<F>(&self, src: impl std::io::Read + Send, mut each: F) -> Result<()>
    where
        F: FnMut(Vec<Entry>) -> Result<()> + Send,
    {
        let seen = std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel(self.depth);
            let block = self.block;
            s.spawn(move || read_blocks(src, block, tx));
            // `rx` goes with `consume`: on an error the reader's next send fails and it ends.
            self.consume(rx, &mut each)
        })?;
        if seen != self.header.nnz {
            return Err(Error::input(
                self.path,
                "entries",
                format!(
                    "{seen} entries, but the header declares {}",
                    self.header.nnz
                ),
            ));
        }
        Ok(())
    }

    fn consume<F>(&self, rx: std::sync::mpsc::Receiver<Piece>, each: &mut F) -> Result<u64>
    where
        F: FnMut(Vec<Entry>) -> Result<()> + Send,
    {
        let h = self.header;
        let mut line_no = self.first_line;
        let mut seen = 0u64;
        let mut pending: Vec<(Piece, Option<PResult>)> = Vec::new();
        loop {
            let mut batch = Vec::with_capacity(self.depth);
            if let Ok(p) = rx.recv() {
                batch.push(p);
                while batch.len() < self.depth {
                    match rx.recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
            }
            if batch.is_empty() && pending.is_empty() {
                return Ok(seen);
            }
            let ready = std::mem::take(&mut pending);
            let (parsed, handed) = rayon::join(
                || {
                    batch
                        .into_par_iter()
                        .map(|p| {
                            let r = match &p {
                                Piece::Text(t) => Some(parse_block(t, h, h.nnz)),
                                Piece::Failed(_) => None,
                            };
                            (p, r)
                        })
                        .collect::<Vec<_>>()
                },
                || -> Result<()> {
                    for (piece, r) in ready {
                        let text = match piece {
                            Piece::Failed(e) => {
                                return Err(Error::input(
                                    self.path,
                                    format!("line {}", line_no + 1),
                                    format!("cannot read: {e}"),
                                ))
                            }
                            Piece::Text(t) => t,
                        };
                        let block = match r {
                            Some(Ok(p)) if seen + p.declared <= h.nnz => p,
                            // again, serially, with the room the entries before it leave
                            _ => parse_block(&text, h, h.nnz - seen).map_err(|(at, problem)| {
                                Error::input(self.path, format!("line {}", line_no + at), problem)
                            })?,
                        };
                        line_no += block.lines;
                        let entries = if h.array {
                            place(h, seen, block.entries)
                        } else {
                            block.entries
                        };
                        seen += block.declared;
                        each(entries)?;
                    }
                    Ok(())
                },
            );
            handed?;
            pending = parsed;
        }
    }
}

/// The entries of a dense `array` matrix's values (the `values[i]` are the ones after the
/// first `before`): each placed where its count puts it (column by column, rows in order;
/// from the diagonal down in a symmetric one, below it in a skew-symmetric one), mirrored
/// off the diagonal of a symmetric one, and zeros dropped (`csr_matrix` of the dense array
/// keeps non-zeros only).
fn place(h: &Header, before: u64, values: Vec<Entry>) -> Vec<Entry> {
    let n = h.n_rows;
    let strict = u64::from(h.symmetry == Symmetry::Skew);
    let (mut row, mut col) = match h.symmetry {
        Symmetry::General if n > 0 => (before % n, before / n),
        Symmetry::General => (0, 0),
        _ => triangle_position(before, n, strict == 1),
    };
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        let (r, c) = (row, col);
        // the next value's place: down the column, then the next column's first
        row += 1;
        if row == n {
            col += 1;
            row = if h.symmetry == Symmetry::General {
                0
            } else {
                col + strict
            };
        }
        if v.value == 0.0 {
            continue;
        }
        out.push(Entry {
            cell: c as u32,
            feature: r as u32,
            value: v.value,
        });
        if h.symmetry != Symmetry::General && r != c {
            let value = if h.symmetry == Symmetry::Skew {
                -v.value
            } else {
                v.value
            };
            out.push(Entry {
                cell: r as u32,
                feature: c as u32,
                value,
            });
        }
    }
    out
}

/// The (row, column) of the `k`-th value of the lower triangle of an `n` x `n` matrix
/// stored column by column (`strict`: below the diagonal only).
fn triangle_position(k: u64, n: u64, strict: bool) -> (u64, u64) {
    // column j holds n - j values (n - j - 1 when strict); walked once per block
    let mut k = k;
    for j in 0..n {
        let len = n - j - u64::from(strict);
        if k < len {
            return (j + u64::from(strict) + k, j);
        }
        k -= len;
    }
    (n, n)
}

/// A parsed block, or the first error in it: its line number within the block (from 1).
type PResult = std::result::Result<Parsed, (u64, String)>;

/// Reads `src` into blocks of about `block` bytes ending at a line end (a longer line makes
/// a longer block) and sends them, until the end, a read error, or a closed channel.
fn read_blocks(mut src: impl std::io::Read, block: usize, tx: std::sync::mpsc::SyncSender<Piece>) {
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut buf = std::mem::take(&mut carry);
        let start = buf.len();
        buf.resize(start + block, 0);
        let mut filled = start;
        let mut end = None;
        while filled < buf.len() {
            match src.read(&mut buf[filled..]) {
                Ok(0) => {
                    end = Some(None);
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    end = Some(Some(e));
                    break;
                }
            }
        }
        buf.truncate(filled);
        // `buf[..start]` (the carried partial line) holds no line end
        let cut = buf[start..]
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|i| start + i + 1);
        match end {
            None => {
                if let Some(cut) = cut {
                    carry = buf[cut..].to_vec();
                    buf.truncate(cut);
                    if tx.send(Piece::Text(buf)).is_err() {
                        return;
                    }
                } else {
                    carry = buf;
                }
            }
            Some(None) => {
                if !buf.is_empty() {
                    let _ = tx.send(Piece::Text(buf));
                }
                return;
            }
            Some(Some(e)) => {
                // the complete lines first (their errors come first), then the failure
                if let Some(cut) = cut {
                    buf.truncate(cut);
                    if tx.send(Piece::Text(buf)).is_err() {
                        return;
                    }
                }
                let _ = tx.send(Piece::Failed(e));
                return;
            }
        }
    }
}

/// What `BufRead::read_line` reports for a line that is not UTF-8.
const NOT_UTF8: &str = "stream did not contain valid UTF-8";

/// Parses the lines of `text` (blank lines skipped) as [`parse_entry`] does, refusing an
/// entry past the first `room`.
fn parse_block(text: &[u8], h: &Header, room: u64) -> PResult {
    let (valid, bad) = match std::str::from_utf8(text) {
        Ok(s) => (s, false),
        Err(e) => {
            // the lines before the one holding the first invalid byte
            let upto = e.valid_up_to();
            let cut = text[..upto]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            (std::str::from_utf8(&text[..cut]).unwrap_or_default(), true)
        }
    };
    let mut entries = Vec::with_capacity(valid.len() / 12 + 1);
    let mut declared = 0u64;
    let mut lines = 0u64;
    let mut rest = valid;
    while !rest.is_empty() {
        let (line, tail) = match rest.find('\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        rest = tail;
        lines += 1;
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let (e, mirror) = parse_entry(t, h).map_err(|p| (lines, p))?;
        if declared >= room {
            return Err((
                lines,
                format!("more entries than the {} the header declares", h.nnz),
            ));
        }
        declared += 1;
        entries.push(e);
        entries.extend(mirror);
    }
    if bad {
        return Err((lines + 1, format!("cannot read: {NOT_UTF8}")));
    }
    Ok(Parsed {
        entries,
        declared,
        lines,
    })
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
    /// An error unless `range` lies within `len` elements of `member`.
    fn within(&self, member: &str, range: &Range<u64>, len: u64) -> Result<()> {
        if range.start > range.end || range.end > len {
            return Err(Error::input(
                &self.file,
                "matrix.mtx",
                format!(
                    "{member}: elements {}..{} requested, but it has {len}",
                    range.start, range.end
                ),
            ));
        }
        Ok(())
    }

    fn pread<T: crate::array::Plain>(&self, f: &File, range: Range<u64>) -> Result<Vec<T>> {
        self.within("values", &range, self.meta.nnz)?;
        let mut v = vec![T::default(); (range.end - range.start) as usize];
        let size = std::mem::size_of::<T>() as u64;
        f.read_exact_at(as_bytes_mut(&mut v), range.start * size)
            .map_err(|e| Error::input(&self.file, "matrix.mtx", format!("sorted copy: {e}")))?;
        Ok(v)
    }
}

impl StoredMatrix for SortedMtx {
    fn meta(&self) -> &MatrixMeta {
        &self.meta
    }
}

impl SparseSource for SortedMtx {
    fn read_indptr(&self, range: Range<u64>) -> Result<Vec<i64>> {
        self.within("indptr", &range, self.indptr.len() as u64)?;
        Ok(self.indptr[range.start as usize..range.end as usize].to_vec())
    }

    fn read_indices(&self, range: Range<u64>) -> Result<NumVec> {
        Ok(NumVec::I32(self.pread(&self.indices, range)?))
    }

    fn read_data(&self, range: Range<u64>) -> Result<NumVec> {
        Ok(NumVec::F32(self.pread(&self.data, range)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: entries read line by line, as before blocks (the serial reader).
    fn serial(src: &mut dyn BufRead, h: &Header, first_line: u64) -> Result<Vec<Entry>> {
        let path = Path::new("m.mtx");
        let mut out = Vec::new();
        let mut declared = 0u64;
        let mut line_no = first_line;
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
            if t.is_empty() {
                continue;
            }
            let (e, mirror) =
                parse_entry(t, h).map_err(|p| Error::input(path, format!("line {line_no}"), p))?;
            if declared >= h.nnz {
                return Err(Error::input(
                    path,
                    format!("line {line_no}"),
                    format!("more entries than the {} the header declares", h.nnz),
                ));
            }
            declared += 1;
            out.push(e);
            out.extend(mirror);
        }
        if declared != h.nnz {
            return Err(Error::input(
                path,
                "entries",
                format!("{declared} entries, but the header declares {}", h.nnz),
            ));
        }
        Ok(out)
    }

    fn blocks(
        src: impl std::io::Read + Send,
        h: &Header,
        block: usize,
        depth: usize,
    ) -> Result<Vec<Entry>> {
        let b = Blocks {
            path: Path::new("m.mtx"),
            header: h,
            first_line: 2,
            block,
            depth,
        };
        let mut out = Vec::new();
        b.parse(src, |e| {
            out.extend(e);
            Ok(())
        })?;
        Ok(out)
    }

    fn text(lines: &[String]) -> Vec<u8> {
        lines.concat().into_bytes()
    }

    /// A reader that fails after `at` bytes (a truncated or corrupt gzip stream).
    struct FailAt {
        data: Vec<u8>,
        pos: usize,
        at: usize,
    }

    impl std::io::Read for FailAt {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.pos >= self.at {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "corrupt deflate stream",
                ));
            }
            // short reads of a few bytes, so failures land anywhere in a line
            let n = buf.len().min(self.at - self.pos).min(7);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn outcome(r: Result<Vec<Entry>>) -> std::result::Result<Vec<Entry>, String> {
        r.map_err(|e| e.to_string())
    }

    /// Every block size from 1 byte up, on valid and invalid matrices: the same entries, in
    /// the same order, or the same first error with the same line number, as line by line.
    #[test]
    fn blocks_agree_with_a_line_by_line_read() {
        let h = |nnz, integer: bool| Header {
            array: false,
            field: if integer { Field::Integer } else { Field::Real },
            symmetry: Symmetry::General,
            n_rows: 30,
            n_cols: 20,
            nnz,
        };
        let mut good: Vec<String> = Vec::new();
        for i in 0..60u32 {
            good.push(match i % 9 {
                3 => "\t \n".to_string(),
                5 => "   \n".to_string(),
                7 => format!("{} {} {}\r\n", i % 30 + 1, i % 20 + 1, i * 7),
                _ => format!("{}  {}\t{}\n", (i * 11) % 30 + 1, (i * 3) % 20 + 1, i + 1),
            });
        }
        let nnz = good
            .iter()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('%'))
            .count() as u64;
        let mut no_final_newline = good.clone();
        let last = no_final_newline.pop().unwrap();
        no_final_newline.push(last.trim_end().to_string());
        let mut cases: Vec<(Vec<u8>, Header)> = vec![
            (text(&good), h(nnz, true)),
            (text(&no_final_newline), h(nnz, true)),
            (text(&good), h(nnz - 1, true)), // one too many
            (text(&good), h(nnz + 1, true)), // one too few
            (text(&good), h(3, true)),       // too many, long before the end
            (Vec::new(), h(0, true)),
            (b"\n\n% c\n".to_vec(), h(0, true)),
            (text(&good), h(nnz, false)),
        ];
        for (at, bad) in [
            (10, "2 3 +5\n"),
            (40, "31 1 1\n"),
            (59, "1 0 1\n"),
            (25, "1 2\n"),
            (33, "x 2 3\n"),
            (45, "% a comment\n"),
            (50, "1 1 99999999999999999999\n"),
        ] {
            let mut l = good.clone();
            l[at] = bad.to_string();
            cases.push((text(&l), h(nnz, true)));
            cases.push((text(&l), h(at as u64 / 3, true))); // overflow first
        }
        let mut not_utf8 = text(&good[..20]);
        not_utf8.extend_from_slice(b"3 4 \xff\xfe\n");
        not_utf8.extend(text(&good[20..]));
        cases.push((not_utf8.clone(), h(nnz + 1, true)));
        not_utf8.truncate(not_utf8.len() - 1);
        not_utf8.push(0xc3); // a multi-byte character cut by the end of the file
        cases.push((not_utf8, h(nnz + 1, true)));
        let long = format!("1 1 {}\n", "1".repeat(200));
        cases.push((text(&[good[..5].concat(), long]), h(6, true)));
        // a symmetric matrix: mirrors come with the entries, the count is of lines
        let mut sym = h(nnz, true);
        sym.symmetry = Symmetry::Symmetric;
        sym.n_rows = 30;
        sym.n_cols = 30;
        cases.push((text(&good), sym));

        let mut kinds = std::collections::BTreeSet::new();
        for (i, (t, h)) in cases.iter().enumerate() {
            let want = outcome(serial(&mut &t[..], h, 2));
            if let Err(e) = &want {
                for k in [
                    "more entries",
                    "not an integer",
                    "out of range",
                    "comment line",
                    "int64 range",
                    "UTF-8",
                    "but the header declares",
                ] {
                    if e.contains(k) {
                        kinds.insert(k);
                    }
                }
            }
            for block in (1..=48).chain([100, 1000, 1 << 16]) {
                for depth in [1, 3] {
                    let got = outcome(blocks(&t[..], h, block, depth));
                    assert_eq!(got, want, "case {i}, block {block}, depth {depth}");
                }
            }
            // a read error anywhere: the same message at the same line, unless a parse
            // error comes first
            for at in (0..t.len()).step_by(5) {
                let fail = || FailAt {
                    data: t.clone(),
                    pos: 0,
                    at,
                };
                let want = outcome(serial(&mut BufReader::with_capacity(16, fail()), h, 2));
                if want
                    .as_ref()
                    .is_err_and(|e| e.contains("cannot read: corrupt"))
                {
                    kinds.insert("read error");
                }
                for block in [1, 9, 64] {
                    let got = outcome(blocks(fail(), h, block, 2));
                    assert_eq!(got, want, "case {i}, failing at {at}, block {block}");
                }
            }
        }
        assert_eq!(
            kinds.len(),
            8,
            "every kind of error is among the cases: {kinds:?}"
        );
    }

    /// The sorted CSR of the entries: stable order by (cell, feature), duplicates summed in
    /// float32 in file order.
    fn reference_csr(
        entries: &[(u32, u32, f32)],
        n_cells: usize,
    ) -> (Vec<i64>, Vec<i32>, Vec<u32>) {
        let mut v = entries.to_vec();
        v.sort_by_key(|&(c, f, _)| (c, f));
        let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::<f32>::new());
        let mut last = None;
        for (c, f, x) in v {
            if last == Some((c, f)) {
                *data.last_mut().unwrap() += x;
                continue;
            }
            while indptr.len() <= c as usize {
                indptr.push(indices.len() as i64);
            }
            indices.push(f as i32);
            data.push(x);
            last = Some((c, f));
        }
        while indptr.len() <= n_cells {
            indptr.push(indices.len() as i64);
        }
        (indptr, indices, data.iter().map(|x| x.to_bits()).collect())
    }

    fn read_back(m: &SortedMtx) -> (Vec<i64>, Vec<i32>, Vec<u32>) {
        let nnz = m.meta.nnz;
        let NumVec::I32(indices) = m.read_indices(0..nnz).unwrap() else {
            panic!("int32 indices")
        };
        let NumVec::F32(data) = m.read_data(0..nnz).unwrap() else {
            panic!("float32 data")
        };
        let indptr = m.read_indptr(0..m.meta.n_obs + 1).unwrap();
        (indptr, indices, data.iter().map(|x| x.to_bits()).collect())
    }

    #[test]
    fn entries_in_order_go_straight_and_any_order_gives_the_sorted_csr() {
        let dir = tempfile::tempdir().unwrap();
        let (n_features, n_cells) = (50u32, 400u32);
        // In cell order with duplicates; out of order only near the end; reversed; shuffled.
        let mut sorted = Vec::new();
        for c in 0..n_cells {
            for f in (0..n_features).filter(|f| (c * 7 + f * 3) % 5 == 0) {
                sorted.push((c, f, (1 + (c + f) % 9) as f32 * 0.37));
                if f % 11 == 0 {
                    sorted.push((c, f, 2.0)); // a duplicate, summed
                }
            }
        }
        let mut late = sorted.clone();
        let n = late.len();
        late.swap(n / 2, n - 3); // in order up to the middle
        let mut reversed = sorted.clone();
        reversed.reverse();
        let mut shuffled = sorted.clone();
        let mut state = 12345u64;
        for i in (1..shuffled.len()).rev() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            shuffled.swap(i, (state >> 33) as usize % (i + 1));
        }
        for (name, entries, straight_ok) in [
            ("sorted", &sorted, true),
            ("out of order late", &late, false),
            ("reversed", &reversed, true),
            ("shuffled", &shuffled, true),
        ] {
            let path = dir.path().join(format!("{}.mtx", name.replace(' ', "_")));
            let mut text = format!(
                "%%MatrixMarket matrix coordinate real general\n{n_features} {n_cells} {}\n",
                entries.len()
            );
            for (c, f, x) in entries.iter() {
                text.push_str(&format!("{} {} {x}\n", f + 1, c + 1));
            }
            std::fs::write(&path, &text).unwrap();
            let want = reference_csr(entries, n_cells as usize);
            // 16 KiB: runs of 1,024 entries (several, so the merge runs too), 16 KiB blocks.
            for memory in [16 << 10, 1 << 30] {
                let scratch =
                    Scratch::new(&dir.path().join(format!("{name}-{memory}.out"))).unwrap();
                let got = sort_matrix(&path, &scratch, memory).unwrap();
                assert_eq!(read_back(&got), want, "{name}, memory {memory}");
                let once = sort_matrix_with(&path, &scratch, memory, true).unwrap();
                // A file out of order only after its first block was written straight needs
                // a second read; the others are done in one.
                let one_block = text.len() <= block_bytes(memory, rayon::current_num_threads());
                assert_eq!(
                    once.is_some(),
                    straight_ok || one_block,
                    "{name}, memory {memory}"
                );
            }
        }
    }
}
