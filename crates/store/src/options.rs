//! What the user asked for, checked before any file is touched.

use crate::error::{Error, Result};
use crate::kernel::log1p::Log1pKernel;

/// The default memory budget (`--memory`): 1 GiB.
pub const DEFAULT_MEMORY: u64 = 1 << 30;
/// Below this the fixed costs (HDF5 chunk caches, one chunk of carry-over per output array)
/// dominate and blocks would shrink to a handful of rows.
pub const MIN_MEMORY: u64 = 1 << 20;

/// Options of `atlasnorm normalize`, mirroring scanpy's `normalize_total` + `log1p` arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// `target_sum`; `None` means the median of the non-zero cell totals.
    pub target_sum: Option<f64>,
    pub exclude_highly_expressed: bool,
    pub max_fraction: f64,
    /// Store the per-cell factor (total / target) as `obs[key_added]`.
    pub key_added: Option<String>,
    /// Normalize `layers[layer]` instead of X.
    pub layer: Option<String>,
    /// Apply log1p after normalizing (scanpy's `sc.pp.log1p`).
    pub log1p: bool,
    /// log1p base; `None` is the natural logarithm (and is recorded as null in `uns/log1p`).
    pub log1p_base: Option<f64>,
    /// Which log1p implementation: by default the one numpy picks on this CPU.
    pub log1p_kernel: Log1pKernel,
    /// Worker threads; `None` is all cores.
    pub threads: Option<usize>,
    /// Memory budget in bytes for in-flight blocks (per-cell vectors come on top: ≤ 16 B a cell).
    pub memory: u64,
    /// Replace an existing OUTPUT.
    pub force: bool,
    /// At most this many stored values per block, below what the budget allows (for tests
    /// and tuning: small blocks exercise the block boundaries).
    pub max_block_values: Option<u64>,
    /// How a `.zarr` OUTPUT is written.
    pub zarr: ZarrOutputOptions,
    /// How `s3://` INPUTs and OUTPUTs are reached (environment plus overrides).
    pub s3: crate::store::zarr::s3::S3Config,
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

impl Default for Options {
    fn default() -> Self {
        Options {
            target_sum: None,
            exclude_highly_expressed: false,
            max_fraction: 0.05,
            key_added: None,
            layer: None,
            log1p: true,
            log1p_base: None,
            log1p_kernel: Log1pKernel::numpy_default(),
            threads: None,
            memory: DEFAULT_MEMORY,
            force: false,
            max_block_values: None,
            zarr: ZarrOutputOptions::default(),
            s3: crate::store::zarr::s3::S3Config::default(),
        }
    }
}

impl Options {
    /// Rejects what scanpy rejects (max_fraction outside [0, 1], even when unused) and values
    /// that cannot mean anything.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.max_fraction) {
            return Err(Error::Options(format!(
                "--max-fraction {}: choose max_fraction between 0 and 1",
                self.max_fraction
            )));
        }
        if let Some(t) = self.target_sum {
            if t.is_nan() {
                return Err(Error::Options("--target-sum: NaN is not a target".into()));
            }
        }
        if let Some(b) = self.log1p_base {
            if b.is_nan() || b <= 0.0 || b == 1.0 || b.is_infinite() {
                return Err(Error::Options(format!(
                    "--log1p-base {b}: the base must be positive, finite and not 1"
                )));
            }
        }
        if self.max_block_values == Some(0) {
            return Err(Error::Options("--block-values: at least one value".into()));
        }
        if self.threads == Some(0) {
            return Err(Error::Options("--threads: at least one thread".into()));
        }
        if self.memory < MIN_MEMORY {
            return Err(Error::Options(format!(
                "--memory {}: at least {} is needed",
                format_bytes(self.memory),
                format_bytes(MIN_MEMORY)
            )));
        }
        if let Some(key) = &self.key_added {
            if key.is_empty() || key.contains('/') {
                return Err(Error::Options(format!(
                    "--key-added {key:?}: an obs column name must be non-empty and contain no '/'"
                )));
            }
        }
        if let Some(layer) = &self.layer {
            if layer.is_empty() || layer.contains('/') {
                return Err(Error::Options(format!(
                    "--layer {layer:?}: a layer name must be non-empty and contain no '/'"
                )));
            }
        }
        if !self.log1p && self.log1p_base.is_some() {
            return Err(Error::Options(
                "--log1p-base has no effect with --no-log1p".into(),
            ));
        }
        Ok(())
    }
}

/// Parses a size such as `512MiB`, `2GiB`, `1.5G`, `100MB` or a plain byte count.
/// Binary (KiB, MiB, GiB, TiB) and decimal (KB, MB, GB, TB) units; K/M/G/T alone are binary.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| Error::Options(format!("{text:?} is not a size (e.g. 512MiB, 2GiB)")))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        other => {
            return Err(Error::Options(format!(
                "{text:?}: unknown size unit {other:?} (use KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            )))
        }
    };
    Ok((value * scale).round() as u64)
}

/// `1536` -> `1.5 KiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("100MB").unwrap(), 100_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn max_fraction_is_checked_even_when_unused() {
        let opts = Options {
            max_fraction: 1.5,
            ..Options::default()
        };
        assert!(opts.validate().is_err());
        let ok = Options {
            max_fraction: 1.0,
            ..Options::default()
        };
        assert!(ok.validate().is_ok());
    }

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

    #[test]
    fn base_one_and_negative_bases_are_refused() {
        for base in [1.0, 0.0, -2.0, f64::NAN, f64::INFINITY] {
            let opts = Options {
                log1p_base: Some(base),
                ..Options::default()
            };
            assert!(opts.validate().is_err(), "base {base}");
        }
    }
}
