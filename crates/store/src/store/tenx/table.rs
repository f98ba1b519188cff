//! The small tab- and comma-separated tables of a 10x matrix directory (`features.tsv`,
//! `genes.tsv`, `barcodes.tsv`), read as pandas' `read_csv(path, header=None, sep=SEP)` reads
//! them with its C parser and default options, which is what scanpy's `read_10x_mtx` calls.
//!
//! That reader is more than a split on the separator, and the differences reach the output:
//! a UTF-8 byte-order mark is dropped; `"` quotes a field (a quoted field may hold the separator
//! or a line break, `""` is one quote, characters after the closing quote are kept); lines that
//! are empty or only spaces and tabs are skipped; the first row fixes the number of columns (a
//! later, longer row is an error, shorter ones are padded with missing values); fields equal to
//! one of pandas' default NA strings are missing; and each column gets a type: int64 (uint64
//! past int64), float64, bool or strings, in that order of preference. No I/O here: the caller
//! reads the bytes.

use super::float_text::python_float_repr;

/// pandas' default `na_values`: a field equal to one of these is missing (NaN).
const NA_STRINGS: [&str; 19] = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// Why a table cannot be read (pandas raises a `ParserError` for each).
#[derive(Clone, Debug, PartialEq)]
pub enum TableError {
    /// The file holds no rows ("No columns to parse from file").
    Empty,
    /// A quote opened on `line` (1-based, physical lines) is never closed.
    UnclosedQuote { line: usize },
    /// Row `row` (1-based) has more fields than the first row.
    TooManyFields {
        line: usize,
        expected: usize,
        saw: usize,
    },
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableError::Empty => write!(f, "holds no rows (pandas: no columns to parse)"),
            TableError::UnclosedQuote { line } => write!(
                f,
                "line {line}: a quote (\") opens a field that is never closed (pandas refuses: \
                 EOF inside string)"
            ),
            TableError::TooManyFields {
                line,
                expected,
                saw,
            } => write!(
                f,
                "line {line}: {saw} fields, more than the {expected} of the first line (pandas \
                 refuses such a table)"
            ),
        }
    }
}

/// One column, typed as pandas infers it.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// Integers that fit int64, none missing.
    Int(Vec<i64>),
    /// Integers that fit uint64 but not all int64, none missing.
    UInt(Vec<u64>),
    /// Numbers (integers with a missing value among them, decimals, exponents, `inf`).
    Float(Vec<f64>),
    /// `True`/`False` (any of pandas' spellings), none missing.
    Bool(Vec<bool>),
    /// Values pandas keeps as Python objects because no numpy dtype holds them: integers past
    /// 64 bits, or `True`/`False` with missing values. Each is Python's `str()` of the object
    /// (`None` = missing); anndata cannot write such a column.
    Object(Vec<Option<String>>),
    /// Strings (`None` = missing).
    Str(Vec<Option<String>>),
}

impl Values {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        match self {
            Values::Int(v) => v.len(),
            Values::UInt(v) => v.len(),
            Values::Float(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Object(v) | Values::Str(v) => v.len(),
        }
    }

    /// The values as `astype(str)` spells them (what anndata makes of a non-string index):
    /// integers in decimal, floats as Python's `repr`, `True`/`False`; missing values stay
    /// missing.
    pub fn to_strings(&self) -> Vec<Option<String>> {
        match self {
            Values::Int(v) => v.iter().map(|x| Some(x.to_string())).collect(),
            Values::UInt(v) => v.iter().map(|x| Some(x.to_string())).collect(),
            Values::Float(v) => v
                .iter()
                .map(|&x| (!x.is_nan()).then(|| python_float_repr(x)))
                .collect(),
            Values::Bool(v) => v
                .iter()
                .map(|&b| Some(if b { "True" } else { "False" }.to_string()))
                .collect(),
            Values::Object(v) | Values::Str(v) => v.clone(),
        }
    }
}

/// Reads `text` as `read_csv(header=None, sep=sep)`: the columns in order, each typed.
pub fn read_table(text: &str, sep: u8) -> Result<Vec<Values>, TableError> {
    let rows = tokenize(text.strip_prefix('\u{feff}').unwrap_or(text), sep)?;
    let Some(width) = rows.first().map(|(_, r)| r.len()) else {
        return Err(TableError::Empty);
    };
    if let Some((line, r)) = rows.iter().find(|(_, r)| r.len() > width) {
        return Err(TableError::TooManyFields {
            line: *line,
            expected: width,
            saw: r.len(),
        });
    }
    Ok((0..width)
        .map(|c| {
            infer(
                rows.iter()
                    .map(|(_, r)| r.get(c).map(String::as_str).filter(|f| !is_na(f)))
                    .collect(),
            )
        })
        .collect())
}

fn is_na(field: &str) -> bool {
    NA_STRINGS.contains(&field)
}

/// The rows of fields, each with its first physical line (1-based), as pandas' C tokenizer
/// splits them (quoting, blank lines, `\n`, `\r\n` and a lone `\r` as line ends).
fn tokenize(text: &str, sep: u8) -> Result<Vec<(usize, Vec<String>)>, TableError> {
    let b = text.as_bytes();
    let mut rows = Vec::new();
    let mut line = 1usize;
    let mut i = 0usize;
    while i < b.len() {
        // skip a blank line: nothing, or only spaces and tabs that are not the separator
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') && b[j] != sep {
            j += 1;
        }
        if j == b.len() {
            break;
        }
        if b[j] == b'\n' || b[j] == b'\r' {
            i = j + if b[j] == b'\r' && b.get(j + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            line += 1;
            continue;
        }
        // a record
        let start_line = line;
        let mut fields = Vec::new();
        let mut field: Vec<u8> = Vec::new();
        loop {
            // start of a field
            if i < b.len() && b[i] == b'"' {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(TableError::UnclosedQuote { line: start_line }),
                        Some(b'"') if b.get(i + 1) == Some(&b'"') => {
                            field.push(b'"');
                            i += 2;
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            if c == b'\n' || (c == b'\r' && b.get(i + 1) != Some(&b'\n')) {
                                line += 1;
                            }
                            field.push(c);
                            i += 1;
                        }
                    }
                }
            }
            // unquoted characters (and any after a closing quote, kept as they are)
            while i < b.len() && b[i] != sep && b[i] != b'\n' && b[i] != b'\r' {
                field.push(b[i]);
                i += 1;
            }
            // cut at ASCII bytes of valid UTF-8, so each field is UTF-8 (lossy never replaces)
            fields.push(String::from_utf8_lossy(&std::mem::take(&mut field)).into_owned());
            if i < b.len() && b[i] == sep {
                i += 1;
                continue;
            }
            break;
        }
        if i < b.len() {
            i += if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            line += 1;
        }
        rows.push((start_line, fields));
    }
    Ok(rows)
}

/// pandas' `str_to_int64`: spaces around, an optional sign, digits only.
fn int_text(s: &str) -> Option<&str> {
    let t = s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'));
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    (!digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())).then_some(t)
}

/// pandas' `xstrtod` grammar (spaces around, sign, digits with an optional `.`, an optional
/// exponent with digits) or one of its spellings of infinity.
fn float_of(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let t = s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'));
    let b = t.as_bytes();
    let mut k = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |k: &mut usize| {
        let s = *k;
        while *k < b.len() && b[*k].is_ascii_digit() {
            *k += 1;
        }
        *k - s
    };
    let mut n = digits(&mut k);
    if b.get(k) == Some(&b'.') {
        k += 1;
        n += digits(&mut k);
    }
    if n == 0 {
        return None;
    }
    if matches!(b.get(k), Some(b'e' | b'E')) {
        k += 1;
        if matches!(b.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        if digits(&mut k) == 0 {
            return None;
        }
    }
    if k != b.len() {
        return None;
    }
    t.parse::<f64>().ok()
}

fn bool_of(s: &str) -> Option<bool> {
    match s {
        "True" | "TRUE" | "true" => Some(true),
        "False" | "FALSE" | "false" => Some(false),
        _ => None,
    }
}

/// pandas' inference for one column (`None` = missing): int64, then uint64 (and Python ints
/// past that), float64, bool, strings.
fn infer(fields: Vec<Option<&str>>) -> Values {
    let any_missing = fields.iter().any(Option::is_none);
    let ints: Option<Vec<&str>> = fields.iter().map(|f| f.and_then(int_text)).collect();
    if let (false, Some(ints)) = (any_missing, &ints) {
        if let Some(v) = ints.iter().map(|t| t.parse::<i64>().ok()).collect() {
            return Values::Int(v);
        }
        if let Some(v) = ints
            .iter()
            .map(|t| t.strip_prefix('+').unwrap_or(t).parse::<u64>().ok())
            .collect()
        {
            return Values::UInt(v);
        }
        return Values::Object(ints.iter().map(|t| Some(python_int(t))).collect());
    }
    if let Some(v) = fields
        .iter()
        .map(|f| f.map_or(Some(f64::NAN), float_of))
        .collect()
    {
        return Values::Float(v);
    }
    if let Some(v) = fields
        .iter()
        .map(|f| f.map(bool_of).unwrap_or(Some(false)))
        .collect::<Option<Vec<bool>>>()
    {
        if !any_missing {
            return Values::Bool(v);
        }
        return Values::Object(
            fields
                .iter()
                .zip(v)
                .map(|(f, b)| f.map(|_| if b { "True" } else { "False" }.to_string()))
                .collect(),
        );
    }
    Values::Str(fields.iter().map(|f| f.map(str::to_string)).collect())
}

/// Python's `str(int(t))` of an integer text: no sign for zero or `+`, no leading zeros.
fn python_int(t: &str) -> String {
    let (neg, digits) = match t.as_bytes()[0] {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let digits = digits.trim_start_matches('0');
    match (digits.is_empty(), neg) {
        (true, _) => "0".to_string(),
        (false, true) => format!("-{digits}"),
        (false, false) => digits.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[Option<&str>]) -> Values {
        Values::Str(v.iter().map(|x| x.map(String::from)).collect())
    }

    #[test]
    fn quotes_as_pandas_reads_them() {
        let t = read_table("\"a\tb\"\t\"x\"\"y\"\n\"p\"q\"r\"\tm\"n\n", b'\t').unwrap();
        assert_eq!(t[0], s(&[Some("a\tb"), Some("pq\"r\"")]));
        assert_eq!(t[1], s(&[Some("x\"y"), Some("m\"n")]));
        let t = read_table("\"G\n0\"\t1\nH\t2\n", b'\t').unwrap();
        assert_eq!(t[0], s(&[Some("G\n0"), Some("H")]));
        assert_eq!(
            read_table("a\n\"b\n", b'\t'),
            Err(TableError::UnclosedQuote { line: 2 })
        );
    }

    #[test]
    fn lines_blank_lines_and_widths() {
        // BOM, CRLF, lone CR, blank and whitespace-only lines
        let t = read_table("\u{feff}a,1\r\n\r\n  \t\nb,2\rc,3", b',').unwrap();
        assert_eq!(t[0], s(&[Some("a"), Some("b"), Some("c")]));
        assert_eq!(t[1], Values::Int(vec![1, 2, 3]));
        // a line of one tab is a row of two missing fields when tab separates
        let t = read_table("a\tb\n\t\n", b'\t').unwrap();
        assert_eq!(t[0], s(&[Some("a"), None]));
        // shorter rows are padded, longer ones refused
        let t = read_table("a,b,c\nd,e\n", b',').unwrap();
        assert_eq!(t[2], s(&[Some("c"), None]));
        assert_eq!(
            read_table("a,b\nc,d,e\n", b','),
            Err(TableError::TooManyFields {
                line: 2,
                expected: 2,
                saw: 3
            })
        );
        assert_eq!(read_table("\n\n", b','), Err(TableError::Empty));
    }

    #[test]
    fn types_as_pandas_infers_them() {
        let col = |v: &str| read_table(v, b',').unwrap().remove(0);
        assert_eq!(
            col("007\n+2\n 3\n4 \n-5\n"),
            Values::Int(vec![7, 2, 3, 4, -5])
        );
        assert_eq!(
            col("18446744073709551615\n2\n"),
            Values::UInt(vec![u64::MAX, 2])
        );
        assert_eq!(
            col("-9223372036854775809\n+007\n"),
            Values::Object(vec![Some("-9223372036854775809".into()), Some("7".into())])
        );
        assert_eq!(
            col("1\nNA\n3\n").to_strings(),
            [Some("1.0".into()), None, Some("3.0".into())]
        );
        assert_eq!(
            col("1.\n.5\n+1.5\n1E3\n-0.0\ninf\n-Infinity\n"),
            Values::Float(vec![
                1.0,
                0.5,
                1.5,
                1000.0,
                -0.0,
                f64::INFINITY,
                f64::NEG_INFINITY
            ])
        );
        assert_eq!(col("1e\n2\n"), s(&[Some("1e"), Some("2")]));
        assert_eq!(col("0x1\n2\n"), s(&[Some("0x1"), Some("2")]));
        assert_eq!(
            col("True\nfalse\nTRUE\n"),
            Values::Bool(vec![true, false, true])
        );
        assert_eq!(
            col("True\nNA\nFalse\n"),
            Values::Object(vec![Some("True".into()), None, Some("False".into())])
        );
        assert_eq!(
            col("NA\nnan\nNULL\nNAN\n\"NA\"\n"),
            s(&[None, None, None, Some("NAN"), None])
        );
        assert_eq!(col("NA\nNA\n").clone_nan(), Values::Float(vec![-7.0; 2]));
    }

    impl Values {
        /// All-NaN columns compare unequal; map NaN to a sentinel for the test.
        fn clone_nan(&self) -> Values {
            match self {
                Values::Float(v) => Values::Float(
                    v.iter()
                        .map(|x| if x.is_nan() { -7.0 } else { *x })
                        .collect(),
                ),
                o => o.clone(),
            }
        }
    }
}
