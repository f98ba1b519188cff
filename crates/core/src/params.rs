//! The parameters of one normalization: scanpy's `normalize_total` + `log1p` arguments plus
//! the resources it may use. Checked before any data is touched.

use crate::error::{Error, Result};
use crate::kernel::log1p::Log1pKernel;

/// The default memory budget (`--memory`): 1 GiB.
pub const DEFAULT_MEMORY: u64 = 1 << 30;
/// Below this the fixed costs (HDF5 chunk caches, one chunk of carry-over per output array)
/// dominate and blocks would shrink to a handful of rows.
pub const MIN_MEMORY: u64 = 1 << 20;

/// What to compute, mirroring scanpy's `normalize_total` + `log1p` arguments, and with how
/// many threads and how much memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// `target_sum`; `None` means the median of the non-zero cell totals.
    pub target_sum: Option<f64>,
    /// scanpy's `exclude_highly_expressed`.
    pub exclude_highly_expressed: bool,
    /// scanpy's `max_fraction` (checked even when unused, as scanpy does).
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
    /// At most this many stored values per block, below what the budget allows (for tests
    /// and tuning: small blocks exercise the block boundaries).
    pub max_block_values: Option<u64>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
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
            max_block_values: None,
        }
    }
}

impl Params {
    /// Rejects what scanpy rejects (`max_fraction` outside [0, 1], even when unused) and values
    /// that cannot mean anything.
    ///
    /// # Errors
    /// [`Error::Options`] naming the option and the problem.
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
///
/// # Errors
/// [`Error::Options`] when `text` is not a size.
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
        let params = Params {
            max_fraction: 1.5,
            ..Params::default()
        };
        assert!(params.validate().is_err());
        let ok = Params {
            max_fraction: 1.0,
            ..Params::default()
        };
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn base_one_and_negative_bases_are_refused() {
        for base in [1.0, 0.0, -2.0, f64::NAN, f64::INFINITY] {
            let params = Params {
                log1p_base: Some(base),
                ..Params::default()
            };
            assert!(params.validate().is_err(), "base {base}");
        }
    }
}
