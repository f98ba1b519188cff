//! Consolidated metadata, written last: anndata reads a store through it, so it must cover
//! every node (copied ones, the normalized matrix, the new obs column, `uns/log1p`).
//!
//! The metadata documents are collected by walking the finished store, so whatever wrote a
//! node, it is covered. v3: inline in the root `zarr.json`
//! (`consolidated_metadata: {kind: inline, must_understand: false, metadata: {...}}`);
//! v2: `.zmetadata` (`{metadata: {...}, zarr_consolidated_format: 1}`).

use serde_json::{json, Map, Value};
use zarrs::storage::{StoreKey, StorePrefix};

use super::layout::to_bytes;
use super::sink::put;
use super::Storage;
use crate::error::{Error, Result};
use crate::options::ZarrFormat;

fn storage_err(what: &str) -> impl Fn(zarrs::storage::StorageError) -> Error + '_ {
    move |e| Error::Internal(format!("{what}: {e}"))
}

pub(crate) fn read_json(storage: &Storage, key: &str) -> Result<Option<Value>> {
    let k = StoreKey::new(key).map_err(|e| Error::Internal(format!("{key}: {e}")))?;
    match storage.get(&k).map_err(storage_err(key))? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Internal(format!("{key}: not JSON: {e}"))),
    }
}

/// Writes the consolidated metadata of the whole store (and, for v3, the root `zarr.json`
/// that carries it). Call after everything else is written.
pub(crate) fn write(storage: &Storage, format: ZarrFormat) -> Result<()> {
    let mut metadata = Map::new();
    walk(storage, format, &StorePrefix::root(), &mut metadata)?;
    match format {
        ZarrFormat::V3 => {
            let mut root = read_json(storage, "zarr.json")?.ok_or_else(|| {
                Error::Internal("the output has no root group (zarr.json)".into())
            })?;
            let obj = root
                .as_object_mut()
                .ok_or_else(|| Error::Internal("zarr.json is not an object".into()))?;
            obj.insert(
                "consolidated_metadata".into(),
                json!({"kind": "inline", "must_understand": false, "metadata": metadata}),
            );
            put(storage, "zarr.json", to_bytes(&root))
        }
        ZarrFormat::V2 => {
            let doc = json!({"metadata": metadata, "zarr_consolidated_format": 1});
            put(storage, ".zmetadata", to_bytes(&doc))
        }
    }
}

fn walk(
    storage: &Storage,
    format: ZarrFormat,
    prefix: &StorePrefix,
    out: &mut Map<String, Value>,
) -> Result<()> {
    let listing = storage
        .list_dir(prefix)
        .map_err(storage_err(prefix.as_str()))?;
    let p = prefix.as_str();
    let path = p.trim_end_matches('/');
    let has = |name: &str| {
        listing
            .keys()
            .iter()
            .any(|k| k.as_str().strip_prefix(p) == Some(name))
    };
    let descend = match format {
        ZarrFormat::V3 => {
            if !has("zarr.json") {
                false
            } else {
                let key = format!("{p}zarr.json");
                let mut doc = read_json(storage, &key)?.unwrap_or(Value::Null);
                let is_group = doc.get("node_type").and_then(|v| v.as_str()) == Some("group");
                if let Some(obj) = doc.as_object_mut() {
                    obj.remove("consolidated_metadata");
                }
                if !path.is_empty() {
                    out.insert(path.to_string(), doc);
                }
                is_group
            }
        }
        ZarrFormat::V2 => {
            let node = if has(".zarray") {
                Some(".zarray")
            } else if has(".zgroup") {
                Some(".zgroup")
            } else {
                None
            };
            match node {
                None => false,
                Some(node) => {
                    for name in [node, ".zattrs"] {
                        let key = format!("{p}{name}");
                        if let Some(doc) = read_json(storage, &key)? {
                            out.insert(key, doc);
                        }
                    }
                    node == ".zgroup"
                }
            }
        }
    };
    if descend {
        // Sorted: the same bytes whatever order the storage lists in (directory order on
        // disk, lexicographic on object storage).
        let mut children = listing.prefixes().clone();
        children.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        for child in &children {
            walk(storage, format, child, out)?;
        }
    }
    Ok(())
}
