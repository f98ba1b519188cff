//! Shards of a 1-D sharded array written as their inner chunks complete.
//!
//! zarrs encodes a shard only once all of its values are in memory, so a writer had to hold
//! a whole shard of raw values (anndata's shards reach 1 GB) and encoded it after the last
//! block was computed, with no overlap. [`ShardStream`] takes encoded inner chunks in index
//! order instead: each goes to the shard object at a running offset (in place where the
//! storage writes at offsets, as a local directory does; held until the shard is complete
//! where it does not, as object storage), and the shard index follows the last one. The
//! bytes are those zarrs' sharding codec writes with inner chunks in C order: the same inner
//! codec chain, inner chunks that hold only the fill value omitted, the index encoded with
//! the index codecs at the end.

use std::num::NonZeroU64;
use std::sync::Arc;

use rayon::prelude::*;
use serde_json::Value;
use zarrs::array::codec::CodecChain;
use zarrs::array::{ArrayBytes, ArrayMetadata, DataType, FillValue};
use zarrs::array::{ArrayToBytesCodecTraits, CodecOptions};
use zarrs::metadata::v3::MetadataV3;
use zarrs::storage::{Bytes, StoreKey};

use super::sharding::ShardLayout;
use crate::error::{Error, Result};

/// Encoded bytes gathered before one write at an offset (where the storage can): bounds the
/// memory held per array and the number of writes (each of which the filesystem store syncs).
const FLUSH_BYTES: usize = 8 << 20;

type ZArray = zarrs::array::Array<dyn zarrs::storage::ReadableWritableListableStorageTraits>;

/// How one array's shards are encoded: what [`ShardStream`] needs from its metadata.
struct ShardCodecs {
    inner: CodecChain,
    index: CodecChain,
    /// Elements per inner chunk.
    inner_len: u64,
    /// Inner chunks per shard.
    per_shard: u64,
}

impl ShardCodecs {
    /// The codecs of `array` when it is 1-D with one `sharding_indexed` codec whose index
    /// sits at the end; `None` for any other array (zarrs writes those whole).
    fn of(array: &ZArray) -> Result<Option<Self>> {
        let ArrayMetadata::V3(meta) = array.metadata() else {
            return Ok(None);
        };
        if meta.shape.len() != 1 || meta.codecs.len() != 1 {
            return Ok(None);
        }
        let codec = serde_json::to_value(&meta.codecs[0]).unwrap_or(Value::Null);
        if codec["name"] != "sharding_indexed" {
            return Ok(None);
        }
        let config = &codec["configuration"];
        let shard_len = array
            .chunk_shape(&[0])
            .ok()
            .and_then(|s| s.first().map(|n| n.get()))
            .unwrap_or(0);
        let Ok(layout) = ShardLayout::parse(config, shard_len) else {
            return Ok(None);
        };
        if layout.index_at_start {
            return Ok(None);
        }
        let chain = |key: &str| -> Result<CodecChain> {
            let fail =
                |e: String| Error::Internal(format!("{}: {key} not understood: {e}", array.path()));
            let list: Vec<MetadataV3> =
                serde_json::from_value(config[key].clone()).map_err(|e| fail(e.to_string()))?;
            CodecChain::from_metadata(&list).map_err(|e| fail(e.to_string()))
        };
        Ok(Some(ShardCodecs {
            inner: chain("codecs")?,
            index: chain("index_codecs")?,
            inner_len: layout.inner_len,
            per_shard: layout.per_shard,
        }))
    }
}

/// The shard being written.
struct OpenShard {
    number: u64,
    key: StoreKey,
    /// `(offset, nbytes)` per inner chunk, `u64::MAX` twice for an omitted one.
    index: Vec<u64>,
    /// Bytes already stored at the start of the shard object.
    stored: u64,
    /// Encoded bytes not yet stored (they follow `stored`).
    held: Vec<u8>,
}

/// Encodes the inner chunks of a 1-D sharded array and writes its shards in order.
pub(crate) struct ShardStream {
    codecs: ShardCodecs,
    storage: Arc<dyn zarrs::storage::ReadableWritableListableStorageTraits>,
    array: Arc<ZArray>,
    data_type: DataType,
    fill: FillValue,
    /// Whether the storage writes at offsets (else a shard is held until complete).
    in_place: bool,
    /// Held bytes that make one write at an offset.
    flush_bytes: usize,
    open: Option<OpenShard>,
}

impl ShardStream {
    /// A stream for `array` when its layout allows one (see [`ShardCodecs::of`]).
    pub fn for_array(array: &Arc<ZArray>) -> Result<Option<Self>> {
        let Some(codecs) = ShardCodecs::of(array)? else {
            return Ok(None);
        };
        let storage = array.storage();
        Ok(Some(ShardStream {
            codecs,
            in_place: storage.supports_set_partial(),
            flush_bytes: FLUSH_BYTES,
            storage,
            array: array.clone(),
            data_type: array.data_type().clone(),
            fill: array.fill_value().clone(),
            open: None,
        }))
    }

    /// Elements per inner chunk: the unit values are handed over in.
    pub fn inner_len(&self) -> u64 {
        self.codecs.inner_len
    }

    /// Test hook: how shards reach the storage (`None`: held whole until complete; `Some(n)`:
    /// written in place every `n` bytes).
    #[cfg(test)]
    pub fn set_writes(&mut self, in_place: Option<usize>) {
        self.in_place = in_place.is_some();
        self.flush_bytes = in_place.unwrap_or(FLUSH_BYTES);
    }

    /// Bytes per inner chunk.
    pub fn inner_bytes(&self) -> usize {
        self.codecs.inner_len as usize * self.data_type.fixed_size().unwrap_or(1)
    }

    /// Encodes consecutive inner chunks, the first of them number `first` (counted from the
    /// array's start), each given as its native-endian bytes (the last may be short only at
    /// the array's end: it is padded with the fill value), in parallel; then writes them in
    /// order.
    pub fn push(&mut self, first: u64, chunks: &[&[u8]], name: &str) -> Result<()> {
        // A few chunks per thread at a time: the encoded bytes held stay bounded however
        // many chunks one call brings.
        let group = 4 * rayon::current_num_threads().max(1);
        for (g, part) in chunks.chunks(group).enumerate() {
            let encoded = self.encode(part, name)?;
            for (i, chunk) in encoded.into_iter().enumerate() {
                self.add(first + (g * group + i) as u64, chunk, name)?;
            }
            if self.in_place {
                if let Some(open) = self.open.as_mut() {
                    if open.held.len() >= self.flush_bytes {
                        store(&*self.storage, open, name)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The inner chunks encoded in parallel, `None` for one of fill values only.
    fn encode(&self, chunks: &[&[u8]], name: &str) -> Result<Vec<Option<Vec<u8>>>> {
        let chunk_bytes = self.inner_bytes();
        let shape = [NonZeroU64::new(self.codecs.inner_len).expect("inner chunks are not empty")];
        let fill = self.fill.as_ne_bytes();
        let options = CodecOptions::default();
        chunks
            .par_iter()
            .map(|&raw| -> Result<Option<Vec<u8>>> {
                let padded;
                let raw = if raw.len() < chunk_bytes {
                    let mut p = Vec::with_capacity(chunk_bytes);
                    p.extend_from_slice(raw);
                    while p.len() < chunk_bytes {
                        p.extend_from_slice(fill);
                    }
                    padded = p;
                    &padded[..]
                } else {
                    raw
                };
                if is_fill(raw, fill) {
                    return Ok(None);
                }
                let out = self
                    .codecs
                    .inner
                    .encode(
                        ArrayBytes::new_flen(raw),
                        &shape,
                        &self.data_type,
                        &self.fill,
                        &options,
                    )
                    .map_err(|e| Error::Internal(format!("{name}: cannot encode: {e}")))?;
                Ok(Some(out.into_owned()))
            })
            .collect()
    }

    /// Places inner chunk `number` (encoded, or `None` when omitted) after the previous one.
    fn add(&mut self, number: u64, chunk: Option<Vec<u8>>, name: &str) -> Result<()> {
        let per = self.codecs.per_shard;
        let shard = number / per;
        if self.open.as_ref().is_some_and(|o| o.number != shard) {
            self.close(name)?;
        }
        let open = match &mut self.open {
            Some(open) => open,
            None => self.open.insert(OpenShard {
                number: shard,
                key: self.array.chunk_key(&[shard]),
                index: vec![u64::MAX; 2 * per as usize],
                stored: 0,
                held: Vec::new(),
            }),
        };
        if let Some(bytes) = chunk {
            let at = 2 * (number % per) as usize;
            open.index[at] = open.stored + open.held.len() as u64;
            open.index[at + 1] = bytes.len() as u64;
            open.held.extend_from_slice(&bytes);
        }
        if number % per == per - 1 {
            self.close(name)?;
        }
        Ok(())
    }

    /// Ends the shard being written: its index after its chunks. A shard whose inner chunks
    /// were all omitted is not written at all (as zarrs leaves out a chunk of fill values).
    pub fn close(&mut self, name: &str) -> Result<()> {
        let Some(mut open) = self.open.take() else {
            return Ok(());
        };
        if open.stored == 0 && open.held.is_empty() {
            return Ok(());
        }
        let shape = [
            NonZeroU64::new(self.codecs.per_shard).expect("shards hold inner chunks"),
            NonZeroU64::new(2).expect("two"),
        ];
        let raw: Vec<u8> = open.index.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let index = self
            .codecs
            .index
            .encode(
                ArrayBytes::new_flen(&raw[..]),
                &shape,
                &zarrs::array::data_type::uint64(),
                &FillValue::from(u64::MAX),
                &CodecOptions::default(),
            )
            .map_err(|e| Error::Internal(format!("{name}: cannot encode a shard index: {e}")))?;
        open.held.extend_from_slice(&index);
        store(&*self.storage, &mut open, name)
    }
}

/// Writes the held bytes of `open` after those already stored.
fn store(
    storage: &dyn zarrs::storage::ReadableWritableListableStorageTraits,
    open: &mut OpenShard,
    name: &str,
) -> Result<()> {
    let bytes = Bytes::from(std::mem::take(&mut open.held));
    let len = bytes.len() as u64;
    let done = if open.stored == 0 {
        // `set` replaces whatever the key held, so no stale tail survives.
        storage.set(&open.key, bytes)
    } else {
        storage.set_partial(&open.key, open.stored, bytes)
    };
    done.map_err(|e| Error::Internal(format!("{name}: cannot write {}: {e}", open.key.as_str())))?;
    open.stored += len;
    Ok(())
}

/// Whether `raw` is `fill` repeated (bytewise, as zarrs compares: -0.0 is not 0.0).
fn is_fill(raw: &[u8], fill: &[u8]) -> bool {
    match fill {
        [] => raw.is_empty(),
        [b] => raw.iter().all(|x| x == b),
        _ => raw.chunks_exact(fill.len()).all(|c| c == fill),
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::ArraySpec;
    use super::super::sink::{in_index_order, ChunkedWriter};
    use super::super::Storage;
    use crate::array::DType;
    use crate::options::{ZarrCodec, ZarrFormat};
    use crate::store::tree::{Attrs, ElemType};
    use zarrs::array::Array;
    use zarrs::storage::{ListableStorageTraits, ReadableStorageTraits};

    fn store(dir: &std::path::Path) -> Storage {
        std::sync::Arc::new(zarrs::filesystem::FilesystemStore::new(dir).unwrap())
    }

    fn spec(elem: ElemType, n: u64, chunk: u64, shard: u64, codec: ZarrCodec) -> ArraySpec {
        ArraySpec {
            format: ZarrFormat::V3,
            elem,
            shape: vec![n],
            chunk: vec![chunk],
            shard: Some(vec![shard]),
            codec,
            attrs: Attrs::new(),
        }
    }

    /// Every key under the store with its bytes.
    fn contents(storage: &Storage) -> Vec<(String, Vec<u8>)> {
        let mut keys = storage.list().unwrap();
        keys.sort();
        keys.iter()
            .map(|k| {
                (
                    k.as_str().to_string(),
                    storage.get(k).unwrap().unwrap().to_vec(),
                )
            })
            .collect()
    }

    /// The shards zarrs itself writes (whole shards, inner chunks in C order).
    fn zarrs_reference(spec: &ArraySpec, bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let dir = tempfile::tempdir().unwrap();
        let storage = store(dir.path());
        for (name, doc) in super::super::layout::array_documents(spec) {
            super::super::sink::put(
                &storage,
                &format!("a/{name}"),
                super::super::layout::to_bytes(&doc),
            )
            .unwrap();
        }
        let meta = super::super::layout::zarrs_metadata(spec).unwrap();
        let array = in_index_order(Array::new_with_metadata(storage.clone(), "/a", meta).unwrap());
        let n = spec.shape[0];
        let subset = zarrs::array::ArraySubset::new_with_shape(vec![n]);
        array
            .store_array_subset(&subset, zarrs::array::ArrayBytes::new_flen(bytes))
            .unwrap();
        contents(&storage)
    }

    fn ours(
        spec: &ArraySpec,
        bytes: &[u8],
        es: usize,
        writes: Option<usize>,
    ) -> Vec<(String, Vec<u8>)> {
        let dir = tempfile::tempdir().unwrap();
        let storage = store(dir.path());
        // A small budget: few inner chunks per batch, so batches end inside shards.
        let mut w =
            ChunkedWriter::create(&storage, "a", spec, 3 * spec.chunk[0] * es as u64).unwrap();
        w.stream_mut()
            .expect("a 1-D sharded array streams")
            .set_writes(writes);
        // Appends of uneven sizes, crossing inner chunk and shard boundaries.
        let mut at = 0;
        for step in [1usize, 7, 100, 333, 64, 5000].iter().cycle() {
            if at >= bytes.len() {
                break;
            }
            let end = (at + step * es).min(bytes.len());
            w.append_bytes(&bytes[at..end]).unwrap();
            at = end;
        }
        assert_eq!(w.finish().unwrap(), spec.shape[0]);
        contents(&storage)
    }

    /// Values with what changes a shard's bytes: an omitted inner chunk (all zero), a shard
    /// of zeros (not written at all), a -0.0 alone among zeros (kept: zarrs compares bits),
    /// a short last inner chunk and a short last shard.
    fn values(n: usize, chunk: usize, shard: usize) -> Vec<f64> {
        (0..n)
            .map(|i| {
                if (chunk..2 * chunk).contains(&i) || (shard..2 * shard).contains(&i) {
                    0.0
                } else if i == 2 * shard + chunk + 3 {
                    -0.0
                } else if (2 * shard + chunk..2 * shard + 2 * chunk).contains(&i) {
                    0.0
                } else {
                    ((i * 7919) % 113) as f64 / 3.0
                }
            })
            .collect()
    }

    #[test]
    fn shards_are_byte_identical_to_zarrs() {
        let (chunk, shard) = (64usize, 256usize);
        let n = 4 * shard + 3 * chunk + 40;
        let v = values(n, chunk, shard);
        let cases: Vec<(ElemType, Vec<u8>, usize)> = vec![
            (
                ElemType::Num(DType::F32),
                v.iter().flat_map(|&x| (x as f32).to_ne_bytes()).collect(),
                4,
            ),
            (
                ElemType::Num(DType::F64),
                v.iter().flat_map(|&x| x.to_ne_bytes()).collect(),
                8,
            ),
            (
                ElemType::Num(DType::I32),
                v.iter().flat_map(|&x| (x as i32).to_ne_bytes()).collect(),
                4,
            ),
            (
                ElemType::Num(DType::U8),
                v.iter().map(|&x| x as u8).collect(),
                1,
            ),
        ];
        let codecs = [
            ZarrCodec::Zstd(0),
            ZarrCodec::Zstd(3),
            ZarrCodec::BloscLz4(5),
            ZarrCodec::Gzip(6),
            ZarrCodec::None,
        ];
        for (elem, bytes, es) in &cases {
            for codec in codecs {
                let spec = spec(*elem, n as u64, chunk as u64, shard as u64, codec);
                let want = zarrs_reference(&spec, bytes);
                assert!(
                    want.iter().all(|(k, _)| !k.ends_with("c/1")),
                    "shard 1 is all fill"
                );
                for writes in [Some(1), Some(1000), Some(super::FLUSH_BYTES), None] {
                    let got = ours(&spec, bytes, *es, writes);
                    let keys = |c: &[(String, Vec<u8>)]| {
                        c.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()
                    };
                    assert_eq!(keys(&got), keys(&want), "{elem:?} {codec:?} {writes:?}");
                    for ((k, g), (_, w)) in got.iter().zip(&want) {
                        assert!(g == w, "{k}: {elem:?} {codec:?} {writes:?}: bytes differ");
                    }
                }
            }
        }
    }

    /// One inner chunk per shard, and a shard of one inner chunk that is the array.
    #[test]
    fn degenerate_shard_shapes() {
        for (n, chunk, shard) in [
            (10usize, 10usize, 10usize),
            (100, 10, 10),
            (95, 10, 10),
            (7, 10, 20),
        ] {
            let bytes: Vec<u8> = (0..n)
                .flat_map(|i| (i as f32 + 0.5).to_ne_bytes())
                .collect();
            let spec = spec(
                ElemType::Num(DType::F32),
                n as u64,
                chunk as u64,
                shard as u64,
                ZarrCodec::Zstd(0),
            );
            assert_eq!(
                ours(&spec, &bytes, 4, Some(1)),
                zarrs_reference(&spec, &bytes),
                "{n} {chunk} {shard}"
            );
        }
    }
}
