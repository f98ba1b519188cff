//! How arrays of a zarr output are laid out: chunk and shard shapes, codecs, and the
//! metadata documents (`zarr.json`, `.zarray`/`.zattrs`/`.zgroup`) exactly as
//! zarr-python 3.4 writes them for anndata 0.13.

use serde_json::{json, Map, Value};

use crate::array::DType;
use crate::error::{Error, Result};
use crate::options::{ZarrCodec, ZarrFormat};
use crate::store::tree::{Attrs, ElemType};

/// zarr-python's cap on an inner chunk when sharding (`SHARDED_INNER_CHUNK_MAX_BYTES`).
pub const SHARDED_INNER_MAX_BYTES: u64 = 1 << 20;
/// zarr-python's default cap on an unsharded chunk.
pub const CHUNK_MAX_BYTES: u64 = 64 << 20;
/// anndata's target shard size (`array.target_shard_size_bytes`).
pub const TARGET_SHARD_BYTES: u64 = 1_000_000_000;

/// The codec anndata uses by default in each format.
pub fn default_codec(format: ZarrFormat) -> ZarrCodec {
    match format {
        ZarrFormat::V3 => ZarrCodec::Zstd(0),
        ZarrFormat::V2 => ZarrCodec::BloscLz4(5),
    }
}

/// Everything needed to write one array's metadata and chunks.
#[derive(Clone, Debug, PartialEq)]
pub struct ArraySpec {
    pub format: ZarrFormat,
    pub elem: ElemType,
    pub shape: Vec<u64>,
    /// Inner chunk shape (the chunk shape when unsharded).
    pub chunk: Vec<u64>,
    /// Shard shape (v3 only; a multiple of `chunk` on every axis).
    pub shard: Option<Vec<u64>>,
    pub codec: ZarrCodec,
    pub attrs: Attrs,
}

impl ArraySpec {
    /// The shape of one unit written at once: a shard when sharded, a chunk otherwise.
    pub fn write_unit(&self) -> &[u64] {
        self.shard.as_deref().unwrap_or(&self.chunk)
    }

    /// Item size used by zarr-python's chunk heuristics (1 for strings).
    pub fn item_size(&self) -> u64 {
        item_size(self.elem)
    }
}

pub fn item_size(elem: ElemType) -> u64 {
    match elem {
        ElemType::Num(d) => d.size() as u64,
        ElemType::Bool => 1,
        ElemType::String | ElemType::Bytes => 1,
    }
}

/// zarr-python's `_guess_regular_chunks` (adapted from h5py): halve axes in turn from the full
/// shape until the chunk is near a size target that grows with the array.
pub fn guess_chunks(shape: &[u64], item_size: u64, max_bytes: u64) -> Vec<u64> {
    let increment_bytes = 256.0 * 1024.0;
    let min_bytes = 128.0 * 1024.0;
    let max_bytes = max_bytes as f64;
    let mut chunks: Vec<f64> = shape.iter().map(|&s| s.max(1) as f64).collect();
    if shape.is_empty() {
        return Vec::new();
    }
    let prod = |c: &[f64]| c.iter().product::<f64>();
    let dset_size = prod(&chunks) * item_size as f64;
    let mut target = increment_bytes * 2f64.powf((dset_size / (1024.0 * 1024.0)).log10());
    if target > max_bytes {
        target = max_bytes;
    } else if target < min_bytes {
        target = min_bytes;
    }
    let n = chunks.len();
    let mut idx = 0;
    loop {
        let chunk_bytes = prod(&chunks) * item_size as f64;
        if (chunk_bytes < target || (chunk_bytes - target).abs() / target < 0.5)
            && chunk_bytes < max_bytes
        {
            break;
        }
        if prod(&chunks) == 1.0 {
            break;
        }
        chunks[idx % n] = (chunks[idx % n] / 2.0).ceil();
        idx += 1;
    }
    chunks.iter().map(|&c| c as u64).collect()
}

/// zarr-python's automatic shard shape (with anndata's 1 GB target): the largest `k` with
/// `chunk_bytes * k^ndim <= max_bytes` and `chunk * k <= shape` on every axis.
pub fn auto_shard(shape: &[u64], chunk: &[u64], item_size: u64, max_bytes: u64) -> Vec<u64> {
    let chunk_bytes: u64 = chunk.iter().product::<u64>() * item_size;
    let mut k = 1u64;
    if !(max_bytes < chunk_bytes || chunk.is_empty() || chunk_bytes == 0) {
        let nd = chunk.len() as u32;
        while (k + 1)
            .checked_pow(nd)
            .and_then(|p| p.checked_mul(chunk_bytes))
            .is_some_and(|b| b <= max_bytes)
            && chunk.iter().zip(shape).all(|(&c, &a)| c * (k + 1) <= a)
        {
            k += 1;
        }
    }
    chunk.iter().map(|&c| c * k).collect()
}

/// What the user asked for (any field may be unset) plus what the input suggests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayoutHint {
    pub codec: Option<ZarrCodec>,
    /// Elements (1-D) or rows (2-D) per chunk.
    pub chunk: Option<u64>,
    /// Elements (1-D) or rows (2-D) per shard; `Some(0)`: unsharded.
    pub shard: Option<u64>,
    /// `chunk` comes from the input's metadata, not from the user: one too large for the
    /// memory budget is made smaller instead of refused as an option.
    pub inherited_chunk: bool,
}

/// Chooses chunk and shard shapes for an array: anndata's defaults, overridden along axis 0 by
/// `hint`, and capped so that one write unit takes at most `unit_budget` bytes.
pub fn plan(
    format: ZarrFormat,
    elem: ElemType,
    shape: &[u64],
    hint: &LayoutHint,
    unit_budget: u64,
    attrs: Attrs,
) -> Result<ArraySpec> {
    let codec = hint.codec.unwrap_or_else(|| default_codec(format));
    let isz = item_size(elem);
    if shape.is_empty() {
        return Ok(ArraySpec {
            format,
            elem,
            shape: Vec::new(),
            chunk: Vec::new(),
            shard: None,
            codec,
            attrs,
        });
    }
    let sharded = format == ZarrFormat::V3 && hint.shard != Some(0);
    let max_chunk = if sharded {
        SHARDED_INNER_MAX_BYTES
    } else {
        CHUNK_MAX_BYTES
    };
    let mut chunk = guess_chunks(shape, isz, max_chunk);
    if let Some(c) = hint.chunk {
        chunk[0] = c.max(1);
    }
    let row_bytes = |rows: u64, dims: &[u64]| {
        rows.saturating_mul(dims[1..].iter().product::<u64>())
            .saturating_mul(isz)
    };
    // A chunk larger than the budget cannot be written at all: fewer rows per chunk.
    if hint.inherited_chunk {
        // An input's chunk longer than its array (a corrupt 2^53) buys nothing.
        chunk[0] = chunk[0].min(shape[0].max(1));
    }
    if row_bytes(chunk[0], &chunk) > unit_budget {
        if hint.chunk.is_some() && !hint.inherited_chunk {
            return Err(Error::Options(format!(
                "--zarr-chunk {}: one chunk takes {} bytes, more than the memory budget for \
                 writing allows ({unit_budget} bytes); use smaller chunks or more --memory",
                chunk[0],
                row_bytes(chunk[0], &chunk)
            )));
        }
        chunk[0] = (unit_budget / row_bytes(1, &chunk).max(1)).max(1);
    }
    let shard = if sharded {
        let mut shard = match hint.shard {
            Some(s) => {
                let mut v = chunk.clone();
                v[0] = s.max(chunk[0]) / chunk[0] * chunk[0];
                v
            }
            None => auto_shard(shape, &chunk, isz, TARGET_SHARD_BYTES),
        };
        // Shards are encoded whole: cap their rows (a multiple of the chunk rows) by the budget.
        let band = row_bytes(chunk[0], &shard).max(1);
        let max_bands = (unit_budget / band).max(1);
        if shard[0] / chunk[0] > max_bands {
            shard[0] = max_bands * chunk[0];
        }
        Some(shard)
    } else {
        None
    };
    Ok(ArraySpec {
        format,
        elem,
        shape: shape.to_vec(),
        chunk,
        shard,
        codec,
        attrs,
    })
}

/// Reads chunking and codec from an existing array's metadata (`zarr.json` content for v3,
/// `.zarray` for v2), for an output that mirrors its input.
pub fn hint_from_metadata(meta: &Value) -> LayoutHint {
    let mut hint = LayoutHint::default();
    if let Some(chunks) = meta.get("chunks").and_then(|c| c.as_array()) {
        // v2
        hint.chunk = chunks.first().and_then(|c| c.as_u64());
        hint.codec = codec_from_v2(meta.get("compressor").unwrap_or(&Value::Null));
        return hint;
    }
    let outer = meta
        .pointer("/chunk_grid/configuration/chunk_shape/0")
        .and_then(|c| c.as_u64());
    let codecs = meta.get("codecs").and_then(|c| c.as_array());
    let Some(codecs) = codecs else {
        return hint;
    };
    match codecs.first() {
        Some(c) if c.get("name").and_then(|n| n.as_str()) == Some("sharding_indexed") => {
            hint.shard = outer;
            hint.chunk = c
                .pointer("/configuration/chunk_shape/0")
                .and_then(|v| v.as_u64());
            let inner = c
                .pointer("/configuration/codecs")
                .and_then(|v| v.as_array());
            hint.codec = inner.and_then(|v| codec_from_v3(v));
        }
        _ => {
            hint.shard = Some(0);
            hint.chunk = outer;
            hint.codec = codec_from_v3(codecs);
        }
    }
    hint
}

fn codec_from_v3(codecs: &[Value]) -> Option<ZarrCodec> {
    let rest: Vec<&Value> = codecs
        .iter()
        .filter(|c| {
            !matches!(
                c.get("name").and_then(|n| n.as_str()),
                Some("bytes") | Some("vlen-utf8")
            )
        })
        .collect();
    match rest.as_slice() {
        [] => Some(ZarrCodec::None),
        [c] => {
            let conf = c.get("configuration").cloned().unwrap_or(json!({}));
            match c.get("name")?.as_str()? {
                "zstd" => Some(ZarrCodec::Zstd(conf.get("level")?.as_i64()? as i32)),
                "gzip" => Some(ZarrCodec::Gzip(conf.get("level")?.as_u64()? as u32)),
                "blosc" => {
                    let clevel = conf.get("clevel")?.as_u64()? as u8;
                    match conf.get("cname")?.as_str()? {
                        "lz4" => Some(ZarrCodec::BloscLz4(clevel)),
                        "zstd" => Some(ZarrCodec::BloscZstd(clevel)),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn codec_from_v2(c: &Value) -> Option<ZarrCodec> {
    if c.is_null() {
        return Some(ZarrCodec::None);
    }
    match c.get("id")?.as_str()? {
        "zstd" => Some(ZarrCodec::Zstd(c.get("level")?.as_i64()? as i32)),
        "gzip" | "zlib" => Some(ZarrCodec::Gzip(c.get("level")?.as_u64()? as u32)),
        "blosc" => {
            let clevel = c.get("clevel")?.as_u64()? as u8;
            match c.get("cname")?.as_str()? {
                "lz4" => Some(ZarrCodec::BloscLz4(clevel)),
                "zstd" => Some(ZarrCodec::BloscZstd(clevel)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// v3 `data_type` / v2 `dtype` name.
fn v3_dtype(elem: ElemType) -> &'static str {
    match elem {
        ElemType::Bool => "bool",
        ElemType::String | ElemType::Bytes => "string",
        ElemType::Num(d) => d.numpy_name(),
    }
}

fn v2_dtype(elem: ElemType) -> String {
    match elem {
        ElemType::Bool => "|b1".into(),
        ElemType::String | ElemType::Bytes => "|O".into(),
        ElemType::Num(d) => {
            let kind = match d {
                DType::F32 | DType::F64 => 'f',
                DType::I8 | DType::I16 | DType::I32 | DType::I64 => 'i',
                _ => 'u',
            };
            let order = if d.size() == 1 { '|' } else { '<' };
            format!("{order}{kind}{}", d.size())
        }
    }
}

fn fill_value(elem: ElemType) -> Value {
    match elem {
        ElemType::Bool => json!(false),
        ElemType::String | ElemType::Bytes => json!(""),
        ElemType::Num(d) if d.is_float() => json!(0.0),
        ElemType::Num(_) => json!(0),
    }
}

fn v3_compressors(codec: ZarrCodec, isz: u64) -> Vec<Value> {
    match codec {
        ZarrCodec::None => vec![],
        ZarrCodec::Zstd(level) => {
            vec![json!({"name": "zstd", "configuration": {"level": level, "checksum": false}})]
        }
        ZarrCodec::Gzip(level) => vec![json!({"name": "gzip", "configuration": {"level": level}})],
        ZarrCodec::BloscLz4(c) | ZarrCodec::BloscZstd(c) => {
            let cname = if matches!(codec, ZarrCodec::BloscLz4(_)) {
                "lz4"
            } else {
                "zstd"
            };
            vec![json!({"name": "blosc", "configuration": {
                "typesize": isz, "cname": cname, "clevel": c, "shuffle": "shuffle", "blocksize": 0
            }})]
        }
    }
}

fn v2_compressor(codec: ZarrCodec) -> Value {
    match codec {
        ZarrCodec::None => Value::Null,
        ZarrCodec::Zstd(level) => json!({"id": "zstd", "level": level, "checksum": false}),
        ZarrCodec::Gzip(level) => json!({"id": "gzip", "level": level}),
        ZarrCodec::BloscLz4(c) => {
            json!({"id": "blosc", "cname": "lz4", "clevel": c, "shuffle": 1, "blocksize": 0})
        }
        ZarrCodec::BloscZstd(c) => {
            json!({"id": "blosc", "cname": "zstd", "clevel": c, "shuffle": 1, "blocksize": 0})
        }
    }
}

fn v3_serializer(elem: ElemType) -> Value {
    match elem {
        ElemType::String | ElemType::Bytes => json!({"name": "vlen-utf8", "configuration": {}}),
        ElemType::Bool => json!({"name": "bytes"}),
        ElemType::Num(d) if d.size() == 1 => json!({"name": "bytes"}),
        ElemType::Num(_) => json!({"name": "bytes", "configuration": {"endian": "little"}}),
    }
}

/// The metadata documents of an array: `(relative key, JSON)` pairs, e.g. `("zarr.json", ..)`
/// for v3 or `(".zarray", ..)`, `(".zattrs", ..)` for v2.
pub fn array_documents(spec: &ArraySpec) -> Vec<(&'static str, Value)> {
    let isz = item_size(spec.elem);
    match spec.format {
        ZarrFormat::V3 => {
            let mut inner = vec![v3_serializer(spec.elem)];
            inner.extend(v3_compressors(spec.codec, isz));
            let (grid, codecs) = match &spec.shard {
                Some(shard) => (
                    shard.clone(),
                    vec![json!({"name": "sharding_indexed", "configuration": {
                        "chunk_shape": spec.chunk,
                        "codecs": inner,
                        "index_codecs": [
                            {"name": "bytes", "configuration": {"endian": "little"}},
                            {"name": "crc32c"}
                        ],
                        "index_location": "end"
                    }})],
                ),
                None => (spec.chunk.clone(), inner),
            };
            let mut m = Map::new();
            m.insert("shape".into(), json!(spec.shape));
            m.insert("data_type".into(), json!(v3_dtype(spec.elem)));
            m.insert(
                "chunk_grid".into(),
                json!({"name": "regular", "configuration": {"chunk_shape": grid}}),
            );
            m.insert(
                "chunk_key_encoding".into(),
                json!({"name": "default", "configuration": {"separator": "/"}}),
            );
            m.insert("fill_value".into(), fill_value(spec.elem));
            m.insert("codecs".into(), json!(codecs));
            m.insert("attributes".into(), Value::Object(spec.attrs.clone()));
            m.insert("zarr_format".into(), json!(3));
            m.insert("node_type".into(), json!("array"));
            m.insert("storage_transformers".into(), json!([]));
            vec![("zarr.json", Value::Object(m))]
        }
        ZarrFormat::V2 => {
            let mut m = Map::new();
            m.insert("shape".into(), json!(spec.shape));
            m.insert("chunks".into(), json!(spec.chunk));
            m.insert("dtype".into(), json!(v2_dtype(spec.elem)));
            m.insert("fill_value".into(), fill_value(spec.elem));
            m.insert("order".into(), json!("C"));
            m.insert(
                "filters".into(),
                match spec.elem {
                    ElemType::String | ElemType::Bytes => json!([{"id": "vlen-utf8"}]),
                    _ => Value::Null,
                },
            );
            m.insert("dimension_separator".into(), json!("."));
            m.insert("compressor".into(), v2_compressor(spec.codec));
            m.insert("zarr_format".into(), json!(2));
            vec![
                (".zarray", Value::Object(m)),
                (".zattrs", Value::Object(spec.attrs.clone())),
            ]
        }
    }
}

/// The metadata documents of a group.
pub fn group_documents(format: ZarrFormat, attrs: &Attrs) -> Vec<(&'static str, Value)> {
    match format {
        ZarrFormat::V3 => vec![(
            "zarr.json",
            json!({"attributes": attrs, "zarr_format": 3, "node_type": "group"}),
        )],
        ZarrFormat::V2 => vec![
            (".zgroup", json!({"zarr_format": 2})),
            (".zattrs", Value::Object(attrs.clone())),
        ],
    }
}

/// zarrs metadata for the array, to encode its chunks.
pub fn zarrs_metadata(spec: &ArraySpec) -> Result<zarrs::array::ArrayMetadata> {
    let docs = array_documents(spec);
    let bad = |e: serde_json::Error| {
        Error::Internal(format!("zarr metadata {:?} not understood: {e}", docs[0].1))
    };
    match spec.format {
        ZarrFormat::V3 => {
            let meta: zarrs::array::ArrayMetadataV3 =
                serde_json::from_value(docs[0].1.clone()).map_err(bad)?;
            Ok(zarrs::array::ArrayMetadata::V3(meta))
        }
        ZarrFormat::V2 => {
            let mut v = docs[0].1.clone();
            v["node_type"] = json!("array");
            let meta: zarrs::array::ArrayMetadataV2 = serde_json::from_value(v).map_err(bad)?;
            Ok(zarrs::array::ArrayMetadata::V2(meta))
        }
    }
}

/// Pretty-printed JSON bytes of a metadata document (zarr-python indents by 2).
pub fn to_bytes(doc: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(doc).expect("JSON values always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shapes zarr-python 3.4.2 chose (anndata's settings: shards="auto", 1 GB target).
    #[test]
    fn chunks_and_shards_match_zarr_python() {
        type Case = (
            &'static [u64],
            u64,
            &'static [u64],
            &'static [u64],
            &'static [u64],
        );
        let cases: &[Case] = &[
            // shape, itemsize, v3 inner chunk, v3 shard, v2 chunk
            (&[30000], 4, &[30000], &[30000], &[30000]),
            (&[1001], 4, &[1001], &[1001], &[1001]),
            (&[1461140], 4, &[91322], &[1369830], &[91322]),
            (&[2_000_000_000], 4, &[244141], &[249756243], &[976563]),
            (&[10_000_000], 8, &[78125], &[10_000_000], &[156250]),
            (&[1000, 5], 4, &[1000, 5], &[1000, 5], &[1000, 5]),
            (&[200000, 50], 4, &[25000, 7], &[175000, 49], &[25000, 7]),
            (&[100], 1, &[100], &[100], &[100]),
            (&[0], 4, &[1], &[1], &[1]),
            (&[3_000_000], 8, &[93750], &[3_000_000], &[93750]),
        ];
        for &(shape, isz, inner, shard, v2) in cases {
            let c = guess_chunks(shape, isz, SHARDED_INNER_MAX_BYTES);
            assert_eq!(c, inner, "inner {shape:?}");
            assert_eq!(
                auto_shard(shape, &c, isz, TARGET_SHARD_BYTES),
                shard,
                "shard {shape:?}"
            );
            assert_eq!(
                guess_chunks(shape, isz, CHUNK_MAX_BYTES),
                v2,
                "v2 {shape:?}"
            );
        }
    }

    #[test]
    fn metadata_is_understood_by_zarrs() {
        for format in [ZarrFormat::V2, ZarrFormat::V3] {
            for elem in [
                ElemType::Num(DType::F32),
                ElemType::Num(DType::U8),
                ElemType::Bool,
                ElemType::String,
            ] {
                for shape in [vec![], vec![1000], vec![100, 3]] {
                    let spec = plan(
                        format,
                        elem,
                        &shape,
                        &LayoutHint::default(),
                        1 << 30,
                        Attrs::new(),
                    )
                    .unwrap();
                    zarrs_metadata(&spec).unwrap_or_else(|e| panic!("{format:?} {elem:?}: {e}"));
                }
            }
        }
    }
}
