//! The bzip2 filter (HDF5 filter 307, PyTables' H5Zbzip2 as shipped by hdf5plugin).
//!
//! `cd_values`: `[block size 1..=9]` (optional, default 9). A stored chunk is one bzip2
//! stream, which does not record its decoded size.

use super::{read_bounded, CodecError};

/// Parameters of one bzip2 filter instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bzip2 {
    pub level: u32,
}

impl Bzip2 {
    pub fn from_cd(cd: &[u32]) -> Self {
        Bzip2 {
            level: cd.first().copied().unwrap_or(9).clamp(1, 9),
        }
    }

    /// Decodes `input` into `out`, which must be exactly the decoded size.
    pub fn decode_into(input: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        let mut d = bzip2::Decompress::new(false);
        match d.decompress(input, out) {
            Ok(bzip2::Status::StreamEnd) if d.total_out() as usize == out.len() => Ok(()),
            _ => Err(CodecError::Corrupt),
        }
    }

    /// Decodes `input` (at most `limit` bytes out).
    pub fn decode_vec(input: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
        read_bounded(bzip2::read::BzDecoder::new(input), limit)
    }

    pub fn encode(&self, input: &[u8]) -> Result<Vec<u8>, CodecError> {
        use std::io::Write;
        let mut enc = bzip2::write::BzEncoder::new(
            Vec::with_capacity(input.len() / 3 + 64),
            bzip2::Compression::new(self.level),
        );
        enc.write_all(input).map_err(|_| CodecError::Corrupt)?;
        enc.finish().map_err(|_| CodecError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let src: Vec<u8> = (0..20_000u32)
            .flat_map(|i| (i % 13).to_le_bytes())
            .collect();
        for cd in [vec![], vec![1], vec![9]] {
            let b = Bzip2::from_cd(&cd);
            let enc = b.encode(&src).unwrap();
            let mut out = vec![0u8; src.len()];
            Bzip2::decode_into(&enc, &mut out).unwrap();
            assert_eq!(out, src);
            assert_eq!(Bzip2::decode_vec(&enc, src.len()).unwrap(), src);
            assert!(Bzip2::decode_vec(&enc, src.len() - 1).is_err());
            assert!(Bzip2::decode_into(&enc[..enc.len() - 2], &mut out).is_err());
        }
    }
}
