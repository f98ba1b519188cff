//! The Zstandard filter (HDF5 filter 32015, github.com/aparamon/HDF5Plugin-Zstandard).
//!
//! `cd_values`: `[level]` (optional; the reference clamps it to 1..=max). A stored chunk is
//! one zstd frame that records its decoded size.

use super::{read_bounded, CodecError};

/// Parameters of one zstd filter instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Zstd {
    pub level: i32,
}

impl Zstd {
    pub fn from_cd(cd: &[u32]) -> Self {
        let max = *zstd::compression_level_range().end();
        // As the reference: a missing level is zstd's default; the stored value is an
        // unsigned int clamped to 1..=max.
        let level = match cd.first() {
            None => zstd::DEFAULT_COMPRESSION_LEVEL,
            Some(&l) => l.clamp(1, max as u32) as i32,
        };
        Zstd { level }
    }

    /// The decoded size a frame records, if it does.
    pub fn decoded_len(input: &[u8]) -> Option<usize> {
        match zstd::zstd_safe::get_frame_content_size(input) {
            Ok(Some(n)) => usize::try_from(n).ok(),
            _ => None,
        }
    }

    /// Decodes `input` into `out`, which must be exactly the decoded size.
    pub fn decode_into(input: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        match zstd::bulk::decompress_to_buffer(input, out) {
            Ok(n) if n == out.len() => Ok(()),
            _ => Err(CodecError::Corrupt),
        }
    }

    /// Decodes `input` whose size is not known in advance (at most `limit` bytes).
    pub fn decode_vec(input: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
        if let Some(n) = Self::decoded_len(input) {
            if n > limit {
                return Err(CodecError::Corrupt);
            }
            let mut out = super::zeroed(n)?;
            Self::decode_into(input, &mut out)?;
            return Ok(out);
        }
        let dec = zstd::stream::read::Decoder::new(input).map_err(|_| CodecError::Corrupt)?;
        read_bounded(dec, limit)
    }

    pub fn encode(&self, input: &[u8]) -> Result<Vec<u8>, CodecError> {
        zstd::bulk::compress(input, self.level).map_err(|_| CodecError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip() {
        let src: Vec<u8> = (0..50_000u32)
            .flat_map(|i| (i % 31).to_le_bytes())
            .collect();
        for cd in [vec![], vec![1], vec![5], vec![22], vec![100]] {
            let z = Zstd::from_cd(&cd);
            let enc = z.encode(&src).unwrap();
            assert_eq!(Zstd::decoded_len(&enc), Some(src.len()));
            let mut out = vec![0u8; src.len()];
            Zstd::decode_into(&enc, &mut out).unwrap();
            assert_eq!(out, src);
            assert_eq!(Zstd::decode_vec(&enc, src.len()).unwrap(), src);
            assert!(Zstd::decode_vec(&enc, src.len() - 1).is_err());
            assert!(Zstd::decode_into(&enc[..enc.len() - 3], &mut out).is_err());
        }
        assert_eq!(Zstd::from_cd(&[100]).level, 22);
        assert_eq!(Zstd::from_cd(&[0]).level, 1);
    }
}
