//! zarr → zarr copies of whole elements as encoded bytes: every stored object (metadata
//! document, chunk, shard) is read and written by key, in parallel, never decoded.

use rayon::prelude::*;
use zarrs::storage::byte_range::ByteRange;
use zarrs::storage::{StoreKey, StorePrefix};

use super::Storage;
use crate::error::{Error, Result};

/// Whether `key` lies in the node at `path` (its metadata or its chunks, or anything below).
pub(crate) fn key_in_node(key: &str, path: &str) -> bool {
    key.strip_prefix(path)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Copies every object of `input` to `output` except those under `skip` (node paths) and the
/// consolidated metadata (rewritten at the end). `budget`: bytes in flight; larger objects are
/// copied in pieces where the stores allow it.
pub(crate) fn copy_except(
    input: &Storage,
    output: &Storage,
    skip: &[String],
    budget: u64,
) -> Result<u64> {
    copy_keys(input, output, &keys_except(input, skip)?, budget)
}

/// The keys [`copy_except`] copies.
pub(crate) fn keys_except(input: &Storage, skip: &[String]) -> Result<Vec<StoreKey>> {
    let keys = input
        .list()
        .map_err(|e| Error::Internal(format!("cannot list the input store: {e}")))?;
    let keys: Vec<StoreKey> = keys
        .into_iter()
        .filter(|k| {
            let k = k.as_str();
            k != ".zmetadata" && !skip.iter().any(|s| key_in_node(k, s))
        })
        .collect();
    Ok(keys)
}

/// The objects under the node at `path` (e.g. `X/indices`).
pub(crate) fn node_keys(input: &Storage, path: &str) -> Result<Vec<StoreKey>> {
    let prefix = StorePrefix::new(format!("{path}/"))
        .map_err(|e| Error::Internal(format!("{path}: {e}")))?;
    let keys = input
        .list_prefix(&prefix)
        .map_err(|e| Error::Internal(format!("cannot list {path} in the input: {e}")))?;
    if keys.is_empty() {
        return Err(Error::Internal(format!("{path}: not found in the input")));
    }
    Ok(keys)
}

/// Copies `keys` of `input` to `output` as they are, in parallel; `budget`: bytes in flight.
pub(crate) fn copy_keys(
    input: &Storage,
    output: &Storage,
    keys: &[StoreKey],
    budget: u64,
) -> Result<u64> {
    let threads = rayon::current_num_threads().max(1) as u64;
    let piece = (budget / threads).max(1 << 20);
    let pieces_ok = input.supports_get_partial() && output.supports_set_partial();
    keys.par_iter()
        .map(|key| copy_one(input, output, key, piece, pieces_ok))
        .try_reduce(|| 0, |a, b| Ok(a + b))
}

fn copy_one(
    input: &Storage,
    output: &Storage,
    key: &StoreKey,
    piece: u64,
    pieces_ok: bool,
) -> Result<u64> {
    let read_err = |e: zarrs::storage::StorageError| {
        Error::Internal(format!("cannot read {} from the input: {e}", key.as_str()))
    };
    let write_err = |e: zarrs::storage::StorageError| {
        Error::Internal(format!("cannot write {}: {e}", key.as_str()))
    };
    if pieces_ok {
        let size = input.size_key(key).map_err(read_err)?.unwrap_or(0);
        if size > piece {
            let mut offset = 0;
            while offset < size {
                let len = piece.min(size - offset);
                let bytes = input
                    .get_partial(key, ByteRange::FromStart(offset, Some(len)))
                    .map_err(read_err)?
                    .ok_or_else(|| {
                        Error::Internal(format!("{}: vanished from the input", key.as_str()))
                    })?;
                output.set_partial(key, offset, bytes).map_err(write_err)?;
                offset += len;
            }
            return Ok(size);
        }
    }
    match input.get(key).map_err(read_err)? {
        Some(bytes) => {
            let n = bytes.len() as u64;
            output.set(key, bytes).map_err(write_err)?;
            Ok(n)
        }
        None => Ok(0),
    }
}
