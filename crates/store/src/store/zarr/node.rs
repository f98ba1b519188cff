//! Reading the metadata of one zarr node (group or array), v2 or v3, from the node's own
//! metadata documents (`zarr.json`; `.zgroup`/`.zarray` + `.zattrs`) — never from
//! consolidated metadata, which may be stale.

use serde_json::Value;
use zarrs::storage::{StoreKey, StorePrefix};

use super::Storage;
use crate::array::DType;
use crate::options::ZarrFormat;
use crate::store::tree::{Attrs, ElemType, NodeKind};

pub(crate) use crate::store::anndata::Problem;

/// How an element is named in messages: `/` for the root.
pub(crate) fn display(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// Key of `name` inside the node at `path`.
pub(crate) fn key(path: &str, name: &str) -> Result<StoreKey, Problem> {
    let text = crate::store::tree::join(path, name);
    StoreKey::new(text.clone())
        .map_err(|e| Problem::new(display(path), format!("invalid store key '{text}': {e}")))
}

pub(crate) fn prefix(path: &str) -> Result<StorePrefix, Problem> {
    let text = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    StorePrefix::new(text.clone())
        .map_err(|e| Problem::new(display(path), format!("invalid store prefix '{text}': {e}")))
}

/// Raw bytes of `path/name`, `None` when absent.
pub(crate) fn get(storage: &Storage, path: &str, name: &str) -> Result<Option<Vec<u8>>, Problem> {
    let k = key(path, name)?;
    storage
        .get(&k)
        .map(|b| b.map(|b| b.to_vec()))
        .map_err(|e| Problem::new(display(path), format!("cannot read '{}': {e}", k.as_str())))
}

/// A JSON document `path/name` (an object), `None` when absent.
pub(crate) fn get_json(
    storage: &Storage,
    path: &str,
    name: &str,
) -> Result<Option<serde_json::Map<String, Value>>, Problem> {
    let Some(bytes) = get(storage, path, name)? else {
        return Ok(None);
    };
    let where_ = crate::store::tree::join(path, name);
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(Problem::new(
            display(path),
            format!("malformed '{where_}': not a JSON object"),
        )),
        Err(e) => Err(Problem::new(
            display(path),
            format!("malformed '{where_}': {e}"),
        )),
    }
}

/// The metadata of one node.
#[derive(Clone, Debug)]
pub(crate) struct NodeMeta {
    pub kind: NodeKind,
    pub attrs: Attrs,
    /// The array metadata document (`zarr.json` or `.zarray`), arrays only.
    pub array: Option<serde_json::Map<String, Value>>,
}

impl NodeMeta {
    pub fn str_attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).and_then(Value::as_str)
    }

    pub fn encoding(&self) -> Option<&str> {
        self.str_attr("encoding-type")
    }

    /// Shape of an array (`None` for groups or a malformed shape).
    pub fn shape(&self) -> Option<Vec<u64>> {
        let a = self.array.as_ref()?;
        a.get("shape")?
            .as_array()?
            .iter()
            .map(Value::as_u64)
            .collect()
    }

    /// Whether the array holds numpy fixed-width unicode (`<U5` in v2, `fixed_length_utf32`
    /// in v3): UTF-32LE code points, NUL-padded. anndata 0.7 wrote uns string scalars so; the
    /// tree reader presents them as strings (what anndata reads them as).
    pub fn is_utf32(&self) -> bool {
        let Some(a) = self.array.as_ref() else {
            return false;
        };
        match (a.get("dtype"), a.get("data_type")) {
            (Some(Value::String(d)), _) => d.strip_prefix(['<', '|']).is_some_and(|b| {
                b.strip_prefix('U')
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
            }),
            (_, Some(Value::Object(o))) => {
                o.get("name").and_then(Value::as_str) == Some("fixed_length_utf32")
            }
            (_, Some(Value::String(n))) => n == "fixed_length_utf32",
            _ => false,
        }
    }

    /// A scalar (0-d array) without `encoding-type`, as anndata before 0.8 wrote uns values.
    /// anndata reads it as a numpy scalar and writes it back as `numeric-scalar` / `string`.
    pub fn is_legacy_scalar(&self) -> bool {
        self.kind == NodeKind::Array
            && self.encoding().is_none()
            && self.shape().is_some_and(|s| s.is_empty())
    }

    /// Element type of an array, from its `data_type` (v3) or `dtype` (+ filters, v2).
    pub fn elem_type(&self) -> Result<ElemType, String> {
        let a = self.array.as_ref().ok_or("not an array")?;
        if self.is_utf32() {
            return Ok(ElemType::String);
        }
        if let Some(dt) = a.get("data_type") {
            let name = match dt {
                Value::String(s) => s.as_str(),
                Value::Object(o) => o.get("name").and_then(Value::as_str).unwrap_or("?"),
                _ => "?",
            };
            return v3_elem_type(name).ok_or_else(|| format!("data type '{name}'"));
        }
        let dtype = match a.get("dtype") {
            Some(Value::String(s)) => s.as_str(),
            Some(other) => return Err(format!("data type {other}")),
            None => return Err("no data type".into()),
        };
        if dtype == "|O" {
            let filters = a.get("filters").and_then(Value::as_array);
            let utf8 = filters.is_some_and(|f| {
                f.iter()
                    .any(|x| x.get("id").and_then(Value::as_str) == Some("vlen-utf8"))
            });
            return if utf8 {
                Ok(ElemType::String)
            } else {
                Err("object data type without a vlen-utf8 filter".into())
            };
        }
        v2_elem_type(dtype).ok_or_else(|| format!("data type '{dtype}'"))
    }

    /// Chunk shape of an array (the shard shape when sharded).
    pub fn chunk_shape(&self) -> Option<Vec<u64>> {
        let a = self.array.as_ref()?;
        let v = match a.get("chunks") {
            Some(c) => c,
            None => a
                .get("chunk_grid")?
                .get("configuration")?
                .get("chunk_shape")?,
        };
        v.as_array()?.iter().map(Value::as_u64).collect()
    }

    /// Codec names, outermost configuration first, with sharding's inner codecs in brackets.
    pub fn codec_words(&self) -> Vec<String> {
        let Some(a) = self.array.as_ref() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(codecs) = a.get("codecs").and_then(Value::as_array) {
            for c in codecs {
                out.push(codec_word(c));
            }
        } else {
            if let Some(filters) = a.get("filters").and_then(Value::as_array) {
                for f in filters {
                    out.push(v2_codec_word(f));
                }
            }
            match a.get("compressor") {
                Some(Value::Null) | None => {}
                Some(c) => out.push(v2_codec_word(c)),
            }
        }
        out
    }

    /// Whether a stored chunk is one gzip stream (the last v3 codec, or v2's compressor, is
    /// gzip), which zarr-python decodes more strictly than zarrs (store/check.rs).
    pub fn stored_as_gzip(&self) -> bool {
        let Some(a) = self.array.as_ref() else {
            return false;
        };
        let name_of = |c: &Value| {
            c.get("name")
                .or_else(|| c.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        match a.get("codecs").and_then(Value::as_array) {
            Some(codecs) => codecs.last().and_then(name_of).as_deref() == Some("gzip"),
            None => a.get("compressor").and_then(name_of).as_deref() == Some("gzip"),
        }
    }

    /// The sharding configuration (inner chunk shape, inner codecs), when the array is sharded.
    pub fn sharding(&self) -> Option<&Value> {
        let a = self.array.as_ref()?;
        a.get("codecs")?
            .as_array()?
            .iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some("sharding_indexed"))?
            .get("configuration")
    }

    /// Inner chunk shape of a sharded array.
    pub fn inner_chunk_shape(&self) -> Option<Vec<u64>> {
        self.sharding()?
            .get("chunk_shape")?
            .as_array()?
            .iter()
            .map(Value::as_u64)
            .collect()
    }
}

fn codec_word(c: &Value) -> String {
    let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
    let conf = c.get("configuration");
    match name {
        "sharding_indexed" => {
            let inner: Vec<String> = conf
                .and_then(|c| c.get("codecs"))
                .and_then(Value::as_array)
                .map(|v| v.iter().map(codec_word).collect())
                .unwrap_or_default();
            let index: Vec<String> = conf
                .and_then(|c| c.get("index_codecs"))
                .and_then(Value::as_array)
                .map(|v| v.iter().map(codec_word).collect())
                .unwrap_or_default();
            format!("sharding[{}; index {}]", inner.join("+"), index.join("+"))
        }
        "zstd" | "gzip" => match conf.and_then(|c| c.get("level")) {
            Some(l) => format!("{name} {l}"),
            None => name.to_string(),
        },
        "blosc" => {
            let cname = conf
                .and_then(|c| c.get("cname"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            let level = conf
                .and_then(|c| c.get("clevel"))
                .map(|v| v.to_string())
                .unwrap_or_default();
            let shuffle = conf
                .and_then(|c| c.get("shuffle"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            format!("blosc {cname} {level} {shuffle}")
        }
        "bytes" => match conf.and_then(|c| c.get("endian")).and_then(Value::as_str) {
            Some(e) => format!("bytes {e}"),
            None => "bytes".into(),
        },
        other => other.to_string(),
    }
}

fn v2_codec_word(c: &Value) -> String {
    let id = c.get("id").and_then(Value::as_str).unwrap_or("?");
    match id {
        "blosc" => {
            let cname = c.get("cname").and_then(Value::as_str).unwrap_or("?");
            let level = c.get("clevel").map(|v| v.to_string()).unwrap_or_default();
            let shuffle = match c.get("shuffle").and_then(Value::as_i64) {
                Some(0) => "noshuffle",
                Some(1) => "shuffle",
                Some(2) => "bitshuffle",
                _ => "?",
            };
            format!("blosc {cname} {level} {shuffle}")
        }
        "zstd" | "gzip" | "zlib" => match c.get("level") {
            Some(l) => format!("{id} {l}"),
            None => id.to_string(),
        },
        other => other.to_string(),
    }
}

fn v3_elem_type(name: &str) -> Option<ElemType> {
    Some(ElemType::Num(match name {
        "int8" => DType::I8,
        "int16" => DType::I16,
        "int32" => DType::I32,
        "int64" => DType::I64,
        "uint8" => DType::U8,
        "uint16" => DType::U16,
        "uint32" => DType::U32,
        "uint64" => DType::U64,
        "float32" => DType::F32,
        "float64" => DType::F64,
        "bool" => return Some(ElemType::Bool),
        "string" => return Some(ElemType::String),
        _ => return None,
    }))
}

fn v2_elem_type(dtype: &str) -> Option<ElemType> {
    let body = dtype.trim_start_matches(['<', '>', '|', '=']);
    Some(ElemType::Num(match body {
        "i1" => DType::I8,
        "i2" => DType::I16,
        "i4" => DType::I32,
        "i8" => DType::I64,
        "u1" => DType::U8,
        "u2" => DType::U16,
        "u4" => DType::U32,
        "u8" => DType::U64,
        "f4" => DType::F32,
        "f8" => DType::F64,
        "b1" => return Some(ElemType::Bool),
        _ => return None,
    }))
}

/// Whether the subtree at `path` holds a legacy scalar ([`NodeMeta::is_legacy_scalar`]).
/// A raw copy would keep it as it is, where anndata's read and write upgrade it; such a store
/// is carried through the tree instead, which upgrades it the same way.
pub(crate) fn has_legacy_scalar(
    storage: &Storage,
    format: ZarrFormat,
    path: &str,
) -> Result<bool, Problem> {
    for (name, meta) in children(storage, format, path)? {
        let child = crate::store::tree::join(path, &name);
        let found = match meta.kind {
            NodeKind::Array => meta.is_legacy_scalar(),
            NodeKind::Group => has_legacy_scalar(storage, format, &child)?,
        };
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Reads the metadata of the node at `path`; `None` when there is no node there.
pub(crate) fn read_node(
    storage: &Storage,
    format: ZarrFormat,
    path: &str,
) -> Result<Option<NodeMeta>, Problem> {
    let elem = display(path);
    match format {
        ZarrFormat::V3 => {
            let Some(doc) = get_json(storage, path, "zarr.json")? else {
                return Ok(None);
            };
            let name = crate::store::tree::join(path, "zarr.json");
            let kind = match doc.get("node_type").and_then(Value::as_str) {
                Some("group") => NodeKind::Group,
                Some("array") => NodeKind::Array,
                Some(other) => {
                    return Err(Problem::new(
                        elem,
                        format!(
                            "malformed '{name}': node_type '{other}' (expected group or array)"
                        ),
                    ))
                }
                None => {
                    return Err(Problem::new(
                        elem,
                        format!("malformed '{name}': no 'node_type' key"),
                    ))
                }
            };
            match doc.get("zarr_format") {
                Some(v) if v.as_u64() == Some(3) => {}
                Some(v) => {
                    return Err(Problem::new(
                        elem,
                        format!("malformed '{name}': 'zarr_format' is {v}, expected 3"),
                    ))
                }
                None => {
                    return Err(Problem::new(
                        elem,
                        format!("malformed '{name}': no 'zarr_format' key"),
                    ))
                }
            }
            let attrs = match doc.get("attributes") {
                None | Some(Value::Null) => Attrs::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(_) => {
                    return Err(Problem::new(
                        elem,
                        format!("malformed '{name}': 'attributes' is not an object"),
                    ))
                }
            };
            check_v3_extra_fields(&doc, kind).map_err(|p| {
                Problem::new(
                    elem,
                    format!("malformed '{name}': {p} (zarr-python refuses it)"),
                )
            })?;
            if kind == NodeKind::Array {
                check_array_doc(&doc, elem, &name, &["shape", "data_type", "codecs"])?;
                check_v3_array(&doc).map_err(|p| {
                    Problem::new(
                        elem,
                        format!("malformed '{name}': {p} (zarr-python refuses it)"),
                    )
                })?;
            }
            let array = (kind == NodeKind::Array).then_some(doc);
            let meta = NodeMeta { kind, attrs, array };
            check_chunk_size(&meta).map_err(|p| Problem::new(elem, p))?;
            Ok(Some(meta))
        }
        ZarrFormat::V2 => {
            let array = get_json(storage, path, ".zarray")?;
            let kind = if array.is_some() {
                NodeKind::Array
            } else if let Some(g) = get_json(storage, path, ".zgroup")? {
                if g.get("zarr_format").and_then(Value::as_u64) != Some(2) {
                    return Err(Problem::new(
                        elem,
                        format!(
                            "malformed '{}': 'zarr_format' is not 2 (zarr-python refuses it)",
                            crate::store::tree::join(path, ".zgroup")
                        ),
                    ));
                }
                NodeKind::Group
            } else {
                return Ok(None);
            };
            if let Some(doc) = &array {
                let name = crate::store::tree::join(path, ".zarray");
                check_array_doc(doc, elem, &name, &["shape", "chunks", "dtype"])?;
                check_v2_array(doc).map_err(|p| {
                    Problem::new(
                        elem,
                        format!("malformed '{name}': {p} (zarr-python refuses it)"),
                    )
                })?;
            }
            let attrs = get_json(storage, path, ".zattrs")?.unwrap_or_default();
            let meta = NodeMeta { kind, attrs, array };
            check_chunk_size(&meta).map_err(|p| Problem::new(elem, p))?;
            Ok(Some(meta))
        }
    }
}

/// The v3 `data_type` names zarr-python 3.4 reads (`zarr/core/dtype`, `_zarr_v3_name`).
const ZARR_PYTHON_V3_TYPES: &[&str] = &[
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
    "string",
    "variable_length_utf8",
    "fixed_length_utf32",
    "null_terminated_bytes",
    "raw_bytes",
    "variable_length_bytes",
    "numpy.datetime64",
    "numpy.timedelta64",
    "struct",
    "structured",
];

/// The parts of a zarr v3 array document zarr-python checks and zarrs lets pass: the
/// `data_type` is one zarr-python knows; every
/// `configuration` is an object when present, and each codec chain is array-to-array
/// codecs, then exactly one array-to-bytes codec, then bytes-to-bytes codecs (sharding's
/// inner and index chains too).
fn check_v3_array(doc: &serde_json::Map<String, Value>) -> Result<(), String> {
    let data_type = match doc.get("data_type") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Object(o)) => o.get("name").and_then(Value::as_str),
        _ => None,
    };
    match data_type {
        Some(name) if ZARR_PYTHON_V3_TYPES.contains(&name) => {}
        Some(name) => return Err(format!("data type '{name}' is not one zarr-python knows")),
        None => return Err("'data_type' is neither a name nor an object with one".into()),
    }
    for key in ["chunk_grid", "chunk_key_encoding"] {
        if let Some(v) = doc.get(key) {
            check_named(v, key)?;
        }
    }
    check_chain(doc.get("codecs"), "codecs")
}

fn check_named(v: &Value, what: &str) -> Result<(), String> {
    let Some(o) = v.as_object() else {
        return match v {
            Value::String(_) => Ok(()),
            _ => Err(format!("'{what}' is neither a name nor an object")),
        };
    };
    if !o.get("name").is_some_and(Value::is_string) {
        return Err(format!("'{what}' has no name"));
    }
    match o.get("configuration") {
        None | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(format!("the configuration of '{what}' is not an object")),
    }
}

fn check_chain(codecs: Option<&Value>, what: &str) -> Result<(), String> {
    let Some(list) = codecs.and_then(Value::as_array) else {
        return Err(format!("'{what}' is not a list"));
    };
    // 0: array-to-array codecs so far, 1: after the array-to-bytes codec
    let mut stage = 0;
    for c in list {
        check_named(c, what)?;
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .or_else(|| c.as_str())
            .unwrap_or("");
        check_codec_config(name, c.get("configuration").and_then(Value::as_object))?;
        match name {
            "transpose" => {
                if stage != 0 {
                    return Err(format!(
                        "'{what}': transpose after the array-to-bytes codec"
                    ));
                }
            }
            "bytes" | "sharding_indexed" | "vlen-utf8" | "vlen-bytes" => {
                if stage != 0 {
                    return Err(format!("'{what}': a second array-to-bytes codec ({name})"));
                }
                stage = 1;
                if name == "sharding_indexed" {
                    let conf = c.get("configuration");
                    check_chain(conf.and_then(|c| c.get("codecs")), "sharding codecs")?;
                    check_chain(conf.and_then(|c| c.get("index_codecs")), "index_codecs")?;
                }
            }
            _ => {
                if stage == 0 {
                    return Err(format!(
                        "'{what}': {name} comes before the array-to-bytes codec (bytes)"
                    ));
                }
            }
        }
    }
    if stage == 0 {
        return Err(format!("'{what}' has no array-to-bytes codec"));
    }
    Ok(())
}

/// What a codec configuration value must be for zarr-python, which builds each codec from its
/// configuration as keyword arguments validated strictly (msgspec: an integer is a JSON
/// integer, not `true` or `"0"`).
#[derive(Clone, Copy)]
enum Param {
    /// An integer in the range.
    Int(i64, i64),
    /// `true` or `false`.
    Bool,
    /// One of these names.
    Name(&'static [&'static str]),
    /// One of these names, or `null` (the default).
    NameOrNull(&'static [&'static str]),
    /// A positive integer, or `null` (the default).
    PositiveOrNull,
    /// A list of integers.
    Ints,
}

/// The configuration keys zarr-python accepts for the codecs it builds from a v3 document
/// (`zarr/codecs/*.py`, the `__init__` keywords and their parsers); `None` for a codec whose
/// configuration is checked elsewhere (sharding) or left to zarrs.
fn codec_params(name: &str) -> Option<&'static [(&'static str, Param)]> {
    const CNAMES: &[&str] = &["lz4", "lz4hc", "blosclz", "snappy", "zstd", "zlib"];
    const SHUFFLES: &[&str] = &["noshuffle", "shuffle", "bitshuffle"];
    Some(match name {
        "gzip" => &[("level", Param::Int(0, 9))],
        "zstd" => &[
            ("level", Param::Int(i64::MIN, 22)),
            ("checksum", Param::Bool),
        ],
        "blosc" => &[
            ("typesize", Param::PositiveOrNull),
            ("cname", Param::Name(CNAMES)),
            ("clevel", Param::Int(i64::MIN, i64::MAX)),
            ("shuffle", Param::NameOrNull(SHUFFLES)),
            ("blocksize", Param::Int(i64::MIN, i64::MAX)),
        ],
        "bytes" => &[("endian", Param::NameOrNull(&["little", "big"]))],
        "crc32c" | "vlen-utf8" | "vlen-bytes" => &[],
        "transpose" => &[("order", Param::Ints)],
        _ => return None,
    })
}

/// A codec's configuration as zarr-python checks it: only known keys, each of the right type.
fn check_codec_config(
    name: &str,
    conf: Option<&serde_json::Map<String, Value>>,
) -> Result<(), String> {
    let (Some(params), Some(conf)) = (codec_params(name), conf) else {
        return Ok(());
    };
    for (key, value) in conf {
        let Some((_, param)) = params.iter().find(|(k, _)| k == key) else {
            return Err(format!(
                "codec '{name}' has the configuration key '{key}', which zarr-python's codec \
                 does not take"
            ));
        };
        let int = value.as_i64().filter(|_| value.is_i64() || value.is_u64());
        let ok = match *param {
            Param::Int(lo, hi) => int.is_some_and(|v| (lo..=hi).contains(&v)),
            Param::Bool => value.is_boolean(),
            Param::Name(names) => value.as_str().is_some_and(|v| names.contains(&v)),
            Param::NameOrNull(names) => {
                value.is_null() || value.as_str().is_some_and(|v| names.contains(&v))
            }
            Param::PositiveOrNull => value.is_null() || int.is_some_and(|v| v > 0),
            Param::Ints => value
                .as_array()
                .is_some_and(|a| a.iter().all(|v| v.is_i64() || v.is_u64())),
        };
        if !ok {
            let expected = match *param {
                Param::Int(lo, hi) if lo == i64::MIN && hi == i64::MAX => "an integer".to_string(),
                Param::Int(lo, hi) if lo == i64::MIN => format!("an integer up to {hi}"),
                Param::Int(lo, hi) => format!("an integer from {lo} to {hi}"),
                Param::Bool => "true or false".to_string(),
                Param::Name(names) => format!("one of {names:?}"),
                Param::NameOrNull(names) => format!("null or one of {names:?}"),
                Param::PositiveOrNull => "null or a positive integer".to_string(),
                Param::Ints => "a list of integers".to_string(),
            };
            return Err(format!(
                "codec '{name}': configuration '{key}' is {value}, expected {expected}"
            ));
        }
    }
    Ok(())
}

/// Chunks (and a shard's inner chunks) of more elements than this, and than the whole
/// array, are refused: decoding one would need that many elements of memory for an array
/// that holds fewer (zarr-python fails with a MemoryError; an allocation that large would
/// abort this process). No writer makes them; a corrupt or hostile document does.
const MAX_CHUNK_ELEMENTS: u128 = 1 << 32;

fn check_chunk_size(meta: &NodeMeta) -> Result<(), String> {
    if meta.kind != NodeKind::Array {
        return Ok(());
    }
    let elements = |s: &[u64]| s.iter().map(|&d| u128::from(d)).product::<u128>();
    let array = meta.shape().map_or(0, |s| elements(&s));
    for (what, shape) in [
        ("chunk", meta.chunk_shape()),
        ("inner chunk", meta.inner_chunk_shape()),
    ] {
        if let Some(shape) = shape {
            let n = elements(&shape);
            if n > MAX_CHUNK_ELEMENTS && n > array {
                return Err(format!(
                    "{what} shape {shape:?} holds {n} elements, for an array of {array}: \
                     decoding one would need memory for all of them"
                ));
            }
        }
    }
    Ok(())
}

/// The keys of a zarr v3 group / array document (zarr-python's `GROUP_METADATA_KEYS`,
/// `ARRAY_METADATA_KEYS`); any other key must hold an object with `"must_understand": false`.
const V3_GROUP_KEYS: &[&str] = &[
    "zarr_format",
    "node_type",
    "attributes",
    "consolidated_metadata",
];
const V3_ARRAY_KEYS: &[&str] = &[
    "zarr_format",
    "node_type",
    "data_type",
    "shape",
    "chunk_grid",
    "chunk_key_encoding",
    "fill_value",
    "codecs",
    "attributes",
    "storage_transformers",
    "dimension_names",
];

fn check_v3_extra_fields(
    doc: &serde_json::Map<String, Value>,
    kind: NodeKind,
) -> Result<(), String> {
    let known = match kind {
        NodeKind::Group => V3_GROUP_KEYS,
        NodeKind::Array => V3_ARRAY_KEYS,
    };
    let mut extra: Vec<&str> = doc
        .iter()
        .filter(|(k, v)| {
            !known.contains(&k.as_str()) && v.get("must_understand") != Some(&Value::Bool(false))
        })
        .map(|(k, _)| k.as_str())
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    extra.sort_unstable();
    Err(format!(
        "extra fields {extra:?} (allowed only as objects with \"must_understand\": false)"
    ))
}

/// The parts of a zarr v2 array document zarr-python checks and zarrs lets pass: `dtype` is
/// a string (or a list, for a structured type), and the fill value of a float array is one
/// zarr-python reads ([`check_v2_fill_value`]).
fn check_v2_array(doc: &serde_json::Map<String, Value>) -> Result<(), String> {
    match doc.get("dtype") {
        Some(Value::String(d)) if !is_numpy_dtype_string(d) => {
            return Err(format!("'dtype' \"{d}\" is not a numpy data type"))
        }
        Some(Value::String(_) | Value::Array(_)) => {}
        Some(v) => return Err(format!("'dtype' {v} is not a data type")),
        None => return Err("no 'dtype' key".into()),
    }
    check_v2_fill_value(doc)
}

/// Whether `d` has the shape of a numpy type string as zarr v2 stores it: an optional byte
/// order (`<`, `>`, `|`, `=`), one kind letter, an optional size, an optional `[unit]`
/// (`<f4`, `|b1`, `|O`, `<U12`, `<M8[ns]`).
fn is_numpy_dtype_string(d: &str) -> bool {
    let body = d.strip_prefix(['<', '>', '|', '=']).unwrap_or(d);
    let mut chars = body.chars();
    let Some(kind) = chars.next() else {
        return false;
    };
    let rest = chars.as_str();
    let (size, unit) = match rest.find('[') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    "biufcUSVMmO".contains(kind)
        && size.bytes().all(|b| b.is_ascii_digit())
        && unit.is_none_or(|u| u.len() > 2 && u.ends_with(']'))
}

/// A zarr v2 float array's `fill_value` as zarr-python reads it: null, a number (or boolean), `"NaN"`,
/// `"Infinity"`, `"-Infinity"` or a string Python's `float()` parses. (zarrs also takes v3's
/// hex strings such as `"0x7fc00000"`, which zarr-python refuses in a v2 document.)
fn check_v2_fill_value(doc: &serde_json::Map<String, Value>) -> Result<(), String> {
    let is_float = doc
        .get("dtype")
        .and_then(Value::as_str)
        .is_some_and(|d| d.trim_start_matches(['<', '>', '|', '=']).starts_with('f'));
    if !is_float {
        return Ok(());
    }
    match doc.get("fill_value") {
        // (a JSON boolean too: Python's bool is an int)
        None | Some(Value::Null | Value::Number(_) | Value::Bool(_)) => Ok(()),
        Some(Value::String(s)) if python_parses_float(s) => Ok(()),
        Some(v) => Err(format!("'fill_value' {v} is not a float")),
    }
}

/// Whether Python's `float(s)` accepts `s`: surrounding whitespace, single underscores
/// between digits, `inf`/`infinity`/`nan` in any case, decimal literals (no hex).
fn python_parses_float(s: &str) -> bool {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let b = t.as_bytes();
    let mut plain = String::with_capacity(t.len());
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            let between_digits =
                i > 0 && b[i - 1].is_ascii_digit() && b.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !between_digits {
                return false;
            }
        } else {
            plain.push(c as char);
        }
    }
    let body = plain.trim_start_matches(['+', '-']);
    if plain.len() - body.len() > 1 {
        return false;
    }
    let word = body.to_ascii_lowercase();
    if matches!(word.as_str(), "inf" | "infinity" | "nan") {
        return true;
    }
    // Rust's grammar for the rest is Python's (digits, one '.', an exponent), minus words.
    !body.is_empty()
        && body
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
        && plain.parse::<f64>().is_ok()
}

fn check_array_doc(
    doc: &serde_json::Map<String, Value>,
    elem: &str,
    name: &str,
    required: &[&str],
) -> Result<(), Problem> {
    for key in required {
        if !doc.contains_key(*key) {
            return Err(Problem::new(
                elem,
                format!("malformed '{name}': no '{key}' key"),
            ));
        }
    }
    let shape_ok = doc
        .get("shape")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().all(|d| d.as_u64().is_some()));
    if !shape_ok {
        return Err(Problem::new(
            elem,
            format!("malformed '{name}': 'shape' is not a list of non-negative integers"),
        ));
    }
    Ok(())
}

/// Members of the group at `path` that are zarr nodes, sorted by name.
pub(crate) fn children(
    storage: &Storage,
    format: ZarrFormat,
    path: &str,
) -> Result<Vec<(String, NodeMeta)>, Problem> {
    let p = prefix(path)?;
    let listing = storage
        .list_dir(&p)
        .map_err(|e| Problem::new(display(path), format!("cannot list members: {e}")))?;
    let mut out = Vec::new();
    for pre in listing.prefixes() {
        let name = pre
            .as_str()
            .strip_prefix(p.as_str())
            .unwrap_or(pre.as_str())
            .trim_end_matches('/')
            .to_string();
        if name.is_empty() || name.starts_with(".z") || name == "zarr.json" {
            continue;
        }
        let child = crate::store::tree::join(path, &name);
        if let Some(meta) = read_node(storage, format, &child)? {
            out.push((name, meta));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_float_fill_values_as_zarr_python_reads_them() {
        for ok in [
            "NaN",
            "Infinity",
            "-Infinity",
            "1.5",
            " 2 ",
            "1_000.5",
            "-3e-2",
            "inf",
            "+nan",
        ] {
            assert!(python_parses_float(ok), "{ok}");
        }
        for bad in [
            "0x7fc00000",
            "",
            "1__0",
            "_1",
            "1_",
            "--1",
            "abc",
            "1.5f",
            "0x1p3",
        ] {
            assert!(!python_parses_float(bad), "{bad}");
        }
        let doc = |dtype: &str, fill: Value| {
            let mut m = serde_json::Map::new();
            m.insert("dtype".into(), dtype.into());
            m.insert("fill_value".into(), fill);
            m
        };
        for ok in ["<f4", "|b1", "|O", "<U12", "<M8[ns]", ">i8", "|S5"] {
            assert!(is_numpy_dtype_string(ok), "{ok}");
        }
        for bad in ["array", "", "<", "f4x", "<M8[", "7"] {
            assert!(!is_numpy_dtype_string(bad), "{bad}");
        }
        assert!(check_v2_fill_value(&doc("<f4", "0x7fc00000".into())).is_err());
        assert!(check_v2_fill_value(&doc("<f8", Value::Null)).is_ok());
        assert!(check_v2_fill_value(&doc("<f8", 0.into())).is_ok());
        assert!(check_v2_fill_value(&doc("<f8", true.into())).is_ok());
        assert!(check_v2_fill_value(&doc("<f8", serde_json::json!([1]))).is_err());
        // other types are zarrs' business
        assert!(check_v2_fill_value(&doc("<i4", "0x1".into())).is_ok());
    }

    #[test]
    fn codec_configurations_as_zarr_python_parses_them() {
        use serde_json::json;
        let check = |name: &str, conf: Value| check_codec_config(name, conf.as_object());
        // what anndata 0.13 / zarr-python write
        assert!(check("zstd", json!({"level": 0, "checksum": false})).is_ok());
        assert!(check("gzip", json!({"level": 5})).is_ok());
        assert!(check("bytes", json!({"endian": "little"})).is_ok());
        assert!(check("bytes", json!({"endian": null})).is_ok());
        assert!(check(
            "blosc",
            json!({"typesize": 4, "cname": "lz4", "clevel": 5, "shuffle": "shuffle", "blocksize": 0})
        )
        .is_ok());
        assert!(check("transpose", json!({"order": [1, 0]})).is_ok());
        // msgspec's strict parsing: no strings or booleans for integers, ranges, names
        let err = check("zstd", json!({"level": "0"})).unwrap_err();
        assert!(err.contains("'level' is \"0\""), "{err}");
        assert!(check("gzip", json!({"level": true})).is_err());
        assert!(check("gzip", json!({"level": 10})).is_err());
        assert!(check("gzip", json!({"level": 1.0})).is_err());
        assert!(check("zstd", json!({"level": 23})).is_err());
        assert!(check("zstd", json!({"checksum": 0})).is_err());
        assert!(check("blosc", json!({"cname": "lzma"})).is_err());
        assert!(check("blosc", json!({"typesize": 0})).is_err());
        assert!(check("bytes", json!({"endian": "middle"})).is_err());
        assert!(check("transpose", json!({"order": ["1", 0]})).is_err());
        // an unknown key is a keyword argument zarr-python's codec does not take
        assert!(check("gzip", json!({"level": 1, "lvl": 1})).is_err());
        assert!(check("crc32c", json!({"x": 1})).is_err());
        // codecs checked elsewhere, or unknown to this table
        assert!(check("sharding_indexed", json!({"chunk_shape": [4]})).is_ok());
        assert!(check("numcodecs.lzma", json!({"preset": "x"})).is_ok());
    }
}
