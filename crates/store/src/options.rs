//! What the user asked for, checked before any file is touched: the normalization's
//! [`Params`] and what only files need (replacing an OUTPUT, the zarr layout, S3 access).

use crate::error::{Error, Result};
pub use atlasnorm_core::params::{format_bytes, parse_size, Params, DEFAULT_MEMORY, MIN_MEMORY};

/// Options of `atlasnorm normalize`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// What to compute, with which resources.
    pub params: Params,
    /// Replace an existing OUTPUT.
    pub force: bool,
    /// How a `.zarr` OUTPUT is written.
    pub zarr: ZarrOutputOptions,
    /// How `s3://` INPUTs and OUTPUTs are reached (environment plus overrides).
    pub s3: crate::store::zarr::s3::S3Config,
    /// How a 10x INPUT is read (scanpy's `genome=`, `gex_only=`).
    pub tenx: crate::store::tenx::TenxOptions,
}

/// Zarr format version of an output store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZarrFormat {
    V2,
    V3,
}

/// Compression of the arrays of a `.zarr` output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZarrCodec {
    None,
    /// zstd at a level (anndata's v3 default: level 0).
    Zstd(i32),
    /// blosc with lz4 at a clevel, byte shuffle (anndata's v2 default: clevel 5).
    BloscLz4(u8),
    /// blosc with zstd at a clevel, byte shuffle.
    BloscZstd(u8),
    /// gzip at a level.
    Gzip(u32),
}

/// How a `.zarr` OUTPUT is laid out. `None` fields follow the input when it is zarr (same
/// format, codecs and chunking as the input's matrix) and anndata's defaults otherwise
/// (v3, sharded, zstd level 0).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ZarrOutputOptions {
    pub format: Option<ZarrFormat>,
    pub codec: Option<ZarrCodec>,
    /// Elements per chunk of a 1-D array (rows per chunk for 2-D arrays).
    pub chunk: Option<u64>,
    /// Elements per shard of a 1-D array (zarr v3 only); `Some(0)` writes no shards.
    pub shard: Option<u64>,
}

impl ZarrFormat {
    /// `2` or `3` (`--zarr-format`).
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "2" | "v2" => Ok(ZarrFormat::V2),
            "3" | "v3" => Ok(ZarrFormat::V3),
            other => Err(Error::Options(format!(
                "--zarr-format {other:?}: choose 2 or 3"
            ))),
        }
    }
}

impl ZarrCodec {
    /// `none`, `zstd[:LEVEL]`, `blosc-lz4[:CLEVEL]`, `blosc-zstd[:CLEVEL]` or `gzip[:LEVEL]`
    /// (`--zarr-codec`); without a level, anndata's (zstd 0, blosc 5) or gzip's default 6.
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim().to_ascii_lowercase();
        let (name, level) = match t.split_once(':') {
            Some((n, l)) => (n.to_string(), Some(l.to_string())),
            None => (t.clone(), None),
        };
        let bad = || {
            Error::Options(format!(
                "--zarr-codec {text:?}: choose none, zstd[:LEVEL], blosc-lz4[:CLEVEL], \
                 blosc-zstd[:CLEVEL] or gzip[:LEVEL]"
            ))
        };
        let num = |lo: i64, hi: i64, default: i64| -> Result<i64> {
            match &level {
                None => Ok(default),
                Some(l) => {
                    let v: i64 = l.parse().map_err(|_| bad())?;
                    if (lo..=hi).contains(&v) {
                        Ok(v)
                    } else {
                        Err(Error::Options(format!(
                            "--zarr-codec {text:?}: the level must be between {lo} and {hi}"
                        )))
                    }
                }
            }
        };
        let codec = match name.as_str() {
            "none" if level.is_none() => ZarrCodec::None,
            "zstd" => ZarrCodec::Zstd(num(-131072, 22, 0)? as i32),
            "blosc-lz4" => ZarrCodec::BloscLz4(num(0, 9, 5)? as u8),
            "blosc-zstd" => ZarrCodec::BloscZstd(num(0, 9, 5)? as u8),
            "gzip" => ZarrCodec::Gzip(num(0, 9, 6)? as u32),
            _ => return Err(bad()),
        };
        Ok(codec)
    }
}

impl ZarrOutputOptions {
    /// Rejects layouts that cannot be written.
    pub fn validate(&self) -> Result<()> {
        if self.chunk == Some(0) {
            return Err(Error::Options("--zarr-chunk: at least one element".into()));
        }
        if let Some(shard) = self.shard.filter(|&s| s > 0) {
            if self.format == Some(ZarrFormat::V2) {
                return Err(Error::Options(
                    "--zarr-shard: zarr v2 has no shards (use --zarr-format 3 or --zarr-shard 0)"
                        .into(),
                ));
            }
            if let Some(chunk) = self.chunk {
                if shard % chunk != 0 {
                    return Err(Error::Options(format!(
                        "--zarr-shard {shard}: a shard must hold a whole number of chunks \
                         (--zarr-chunk {chunk})"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Options {
    /// [`Params::validate`] (the zarr layout is checked when a zarr OUTPUT is created).
    ///
    /// # Errors
    /// [`Error::Options`] naming the option and the problem.
    pub fn validate(&self) -> Result<()> {
        self.params.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zarr_options_parse_and_validate() {
        assert_eq!(ZarrCodec::parse("none").unwrap(), ZarrCodec::None);
        assert_eq!(ZarrCodec::parse("zstd").unwrap(), ZarrCodec::Zstd(0));
        assert_eq!(ZarrCodec::parse("zstd:3").unwrap(), ZarrCodec::Zstd(3));
        assert_eq!(
            ZarrCodec::parse("blosc-lz4").unwrap(),
            ZarrCodec::BloscLz4(5)
        );
        assert_eq!(
            ZarrCodec::parse("blosc-zstd:9").unwrap(),
            ZarrCodec::BloscZstd(9)
        );
        assert_eq!(ZarrCodec::parse("gzip:4").unwrap(), ZarrCodec::Gzip(4));
        for bad in ["lzma", "gzip:11", "blosc-lz4:x", "none:1", "zstd:99"] {
            assert!(ZarrCodec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ZarrFormat::parse("2").unwrap(), ZarrFormat::V2);
        assert!(ZarrFormat::parse("4").is_err());
        let v2_sharded = ZarrOutputOptions {
            format: Some(ZarrFormat::V2),
            shard: Some(1000),
            ..Default::default()
        };
        assert!(v2_sharded.validate().is_err());
        let uneven = ZarrOutputOptions {
            chunk: Some(300),
            shard: Some(1000),
            ..Default::default()
        };
        assert!(uneven.validate().is_err());
        let ok = ZarrOutputOptions {
            chunk: Some(250),
            shard: Some(1000),
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
    }
}
