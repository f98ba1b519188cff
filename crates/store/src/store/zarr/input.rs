//! Opening an AnnData `.zarr` store (zarr v2 or v3) for reading.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::node::{self, display, NodeMeta, Problem};
use super::source::{open_matrix, ZArray};
use super::storage::{self, Location};
use super::Storage;
use crate::error::{Error, Result};
use crate::options::ZarrFormat;
use crate::store::anndata;
use crate::store::labels;
use crate::store::tree::NodeKind;
use crate::store::{ElementPath, InputStore, MatrixSource, StoredMatrix as _};

/// An AnnData `.zarr` store opened for reading.
pub struct ZarrInput {
    path: PathBuf,
    location: Location,
    storage: Storage,
    format: ZarrFormat,
    obs_len: Option<u64>,
    var_len: Option<u64>,
    /// Object storage's read-ahead, for the matrix's arrays.
    prefetch: Option<std::sync::Arc<dyn super::Prefetch>>,
    /// The array [`TreeReader::read_rows`](crate::store::tree::TreeReader) read last.
    pub(super) last_array: std::sync::Mutex<Option<std::sync::Arc<ZArray>>>,
}

impl ZarrInput {
    /// Opens the store at `path` (a local directory or `s3://...`), tells zarr v2 from v3 by
    /// the root's metadata document and checks that it is AnnData (root `encoding-type:
    /// anndata`, or `obs` and `var` present).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, &storage::S3Config::default())
    }

    /// [`open`](Self::open), reaching object storage with `s3` (environment plus overrides).
    pub fn open_with(path: &Path, s3: &storage::S3Config) -> Result<Self> {
        let location = Location::parse(path)?;
        if let Location::Local(dir) = &location {
            match std::fs::metadata(dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::input(path, "/", "no such directory"))
                }
                Err(e) => return Err(Error::input(path, "/", format!("cannot open: {e}"))),
                Ok(m) if !m.is_dir() => {
                    return Err(Error::input(
                        path,
                        "/",
                        "not a zarr store: a file, not a directory",
                    ))
                }
                Ok(_) => {}
            }
        }
        let (storage, prefetch) = storage::open_input(&location, s3)?;
        let (format, root) = detect(&storage).map_err(|p| p.into_input(path))?;
        check_anndata(&storage, format, &root).map_err(|p| p.into_input(path))?;
        let obs_len = dataframe_len(&storage, format, "obs");
        let var_len = dataframe_len(&storage, format, "var");
        Ok(ZarrInput {
            path: path.to_path_buf(),
            location,
            storage,
            format,
            obs_len,
            var_len,
            prefetch,
            last_array: std::sync::Mutex::new(None),
        })
    }

    /// The storage's read-ahead, when it has one (object storage).
    pub(super) fn prefetcher(&self) -> Option<&std::sync::Arc<dyn super::Prefetch>> {
        self.prefetch.as_ref()
    }

    /// The store handle (for the output side: raw copies of chunks).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// zarr v2 or v3.
    pub fn zarr_format(&self) -> ZarrFormat {
        self.format
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Number of observations when the obs index can be read.
    pub fn n_obs(&self) -> Option<u64> {
        self.obs_len
    }

    /// Number of variables when the var index can be read.
    pub fn n_vars(&self) -> Option<u64> {
        self.var_len
    }

    /// Metadata of the node at `path` (`""`: the root); `None` when absent.
    /// Whether `uns` holds scalars in anndata 0.7's form (no `encoding-type`), which anndata
    /// upgrades when it writes: then a raw copy of the store would not be what anndata writes.
    pub fn has_legacy_uns_scalars(&self) -> Result<bool> {
        if self.node("uns")?.is_none_or(|m| m.kind != NodeKind::Group) {
            return Ok(false);
        }
        node::has_legacy_scalar(&self.storage, self.format, "uns")
            .map_err(|p| p.into_input(&self.path))
    }

    pub(crate) fn node(&self, path: &str) -> Result<Option<NodeMeta>> {
        node::read_node(&self.storage, self.format, path).map_err(|p| p.into_input(&self.path))
    }

    pub(crate) fn fail(&self, element: &str, problem: impl Into<String>) -> Error {
        Error::input(&self.path, display(element), problem)
    }
}

/// Tells the zarr format from the root's metadata document.
fn detect(storage: &Storage) -> Result<(ZarrFormat, NodeMeta), Problem> {
    if let Some(root) = node::read_node(storage, ZarrFormat::V3, "")? {
        return match root.kind {
            NodeKind::Group => Ok((ZarrFormat::V3, root)),
            NodeKind::Array => Err(Problem::new(
                "/",
                "not an AnnData store: the root is a zarr array, not a group",
            )),
        };
    }
    match node::read_node(storage, ZarrFormat::V2, "")? {
        Some(root) if root.kind == NodeKind::Group => Ok((ZarrFormat::V2, root)),
        Some(_) => Err(Problem::new(
            "/",
            "not an AnnData store: the root is a zarr array, not a group",
        )),
        None => Err(Problem::new(
            "/",
            "not a zarr store: no zarr.json (zarr v3) or .zgroup (zarr v2) at the top level",
        )),
    }
}

/// AnnData: root `encoding-type: anndata`, or `obs` present. `var` may be missing (as
/// anndata-rs writes a frame without columns): anndata reads such a store with var names
/// "0", "1", ...; without `obs` anndata 0.13 cannot read it.
fn check_anndata(storage: &Storage, format: ZarrFormat, root: &NodeMeta) -> Result<(), Problem> {
    let missing: Vec<&str> = ["obs"]
        .into_iter()
        .filter(|n| !matches!(node::read_node(storage, format, n), Ok(Some(_))))
        .collect();
    match root.encoding() {
        Some("anndata") if missing.is_empty() => return Ok(()),
        Some("anndata") => {
            return Err(Problem::new(
                "/",
                format!("AnnData store without {}", missing.join(" or ")),
            ))
        }
        Some(other) => {
            return Err(Problem::new(
                "/",
                format!("not an AnnData store: root encoding-type is '{other}'"),
            ))
        }
        None if missing.is_empty() => return Ok(()),
        None => {}
    }
    let found: Vec<String> = node::children(storage, format, "")
        .map(|c| c.into_iter().map(|(n, _)| n).collect())
        .unwrap_or_default();
    Err(Problem::new(
        "/",
        format!(
            "not an AnnData store: no {} (top-level members: {})",
            missing.join(" or "),
            if found.is_empty() {
                "none".to_string()
            } else {
                found.join(", ")
            }
        ),
    ))
}

/// Rows of a dataframe (`obs`/`var`), from its index; `None` when it cannot be told.
fn dataframe_len(storage: &Storage, format: ZarrFormat, name: &str) -> Option<u64> {
    let df = node::read_node(storage, format, name).ok()??;
    let index = df.str_attr("_index")?;
    let path = format!("{name}/{index}");
    let idx = node::read_node(storage, format, &path).ok()??;
    let member = match idx.kind {
        NodeKind::Array => return idx.shape()?.first().copied(),
        NodeKind::Group => match idx.encoding() {
            Some("categorical") => "codes",
            _ => "values",
        },
    };
    let m = node::read_node(storage, format, &format!("{path}/{member}")).ok()??;
    m.shape()?.first().copied()
}

impl ZarrInput {
    /// Opens an array for reading (fill values for missing chunks, as zarr defines).
    pub(crate) fn array(&self, path: &str, meta: &NodeMeta) -> Result<ZArray> {
        ZArray::open(&self.storage, path, meta, false).map_err(|p| p.into_input(&self.path))
    }

    /// All strings of a 1-D string array (or the `values` of a nullable-string-array, with
    /// masked entries as `<NA>`, or a categorical of strings).
    fn strings(&self, path: &str) -> Result<Vec<String>> {
        let Some(meta) = self.node(path)? else {
            return Err(self.fail(path, "cannot read names: missing"));
        };
        match meta.kind {
            NodeKind::Array => {
                let a = self.array(path, &meta)?;
                if !a.elem.is_string() {
                    return Err(self.fail(path, "cannot read names: not a string array"));
                }
                a.read_strings(0..a.n_rows())
                    .map_err(|p| p.into_input(&self.path))
            }
            NodeKind::Group => match meta.encoding() {
                Some("nullable-string-array") => {
                    let values = self.strings(&format!("{path}/values"))?;
                    let mask_path = format!("{path}/mask");
                    let mask = match self.node(&mask_path)? {
                        Some(m) if m.kind == NodeKind::Array => {
                            let a = self.array(&mask_path, &m)?;
                            a.read_bools(0..a.n_rows()).ok()
                        }
                        _ => None,
                    };
                    Ok(labels::masked(values, mask))
                }
                Some("categorical") => {
                    let categories = self.strings(&format!("{path}/categories"))?;
                    let codes_path = format!("{path}/codes");
                    let Some(m) = self.node(&codes_path)? else {
                        return Err(self.fail(&codes_path, "cannot read names: missing"));
                    };
                    let a = self.array(&codes_path, &m)?;
                    let codes = a
                        .read_num(0..a.n_rows())
                        .map_err(|p| p.into_input(&self.path))?
                        .to_i64()
                        .ok_or_else(|| self.fail(&codes_path, "codes are not integers"))?;
                    Ok(labels::decode_categorical(&categories, codes))
                }
                other => Err(self.fail(
                    path,
                    format!(
                        "cannot read names: unsupported index encoding {:?}",
                        other.unwrap_or("none")
                    ),
                )),
            },
        }
    }
}

impl InputStore for ZarrInput {
    fn path(&self) -> &Path {
        &self.path
    }

    fn open_matrix(&self, element: &ElementPath) -> Result<MatrixSource<'_>> {
        let path = element.store_path();
        let source = open_matrix(self, &path)?;
        let meta = source.meta();
        anndata::check_shape(&path, (meta.n_obs, meta.n_vars), self.obs_len, self.var_len)
            .map_err(|p| p.into_input(&self.path))?;
        Ok(MatrixSource::by_layout(source))
    }

    fn has_uns(&self, key: &str) -> Result<bool> {
        Ok(self.node(&format!("uns/{key}"))?.is_some())
    }

    fn var_names(&self, positions: &[u64]) -> Result<Vec<String>> {
        let Some(var) = self.node("var")? else {
            // No var (anndata-rs): anndata names the variables "0", "1", ...
            return Ok(positions.iter().map(u64::to_string).collect());
        };
        let Some(Value::String(index)) = var.attrs.get("_index") else {
            return Err(self.fail("var", "cannot read names: no _index attribute"));
        };
        let names = self.strings(&format!("var/{index}"))?;
        positions
            .iter()
            .map(|&i| {
                names.get(i as usize).cloned().ok_or_else(|| {
                    self.fail(
                        "var",
                        format!("variable {i} requested, but var has {}", names.len()),
                    )
                })
            })
            .collect()
    }
}
