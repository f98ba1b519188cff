//! The LZ4 filter (HDF5 filter 32004, the HDF Group's registered LZ4 filter as shipped by
//! hdf5plugin).
//!
//! `cd_values`: `[block size]` (optional; 0 or absent: 1 GiB). A stored chunk is a 12-byte
//! header (decoded size as big-endian u64, block size as big-endian u32), then per block a
//! big-endian u32 stored length and the LZ4 block; a block whose stored length equals its
//! decoded length is stored uncompressed.

use super::CodecError;

/// The reference's default block size.
const DEFAULT_BLOCK: usize = 1 << 30;

/// Parameters of one LZ4 filter instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lz4 {
    pub block_size: usize,
}

impl Lz4 {
    pub fn from_cd(cd: &[u32]) -> Self {
        let block_size = match cd.first() {
            Some(&b) if b > 0 => b as usize,
            _ => DEFAULT_BLOCK,
        };
        Lz4 { block_size }
    }

    /// The decoded size the header records.
    pub fn decoded_len(input: &[u8]) -> Option<usize> {
        let h: [u8; 8] = input.get(..8)?.try_into().ok()?;
        usize::try_from(u64::from_be_bytes(h)).ok()
    }

    /// Decodes `input` into `out`, which must be exactly the decoded size.
    pub fn decode_into(input: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        if input.len() < 12 || Self::decoded_len(input) != Some(out.len()) {
            return Err(CodecError::Corrupt);
        }
        let mut block = u32::from_be_bytes(input[8..12].try_into().unwrap()) as usize;
        if block > out.len() {
            block = out.len();
        }
        if block == 0 && !out.is_empty() {
            return Err(CodecError::Corrupt);
        }
        let mut at = 12usize;
        let mut done = 0usize;
        while done < out.len() {
            let this = block.min(out.len() - done);
            let len = input
                .get(at..at + 4)
                .map(|h| u32::from_be_bytes(h.try_into().unwrap()) as usize)
                .ok_or(CodecError::Corrupt)?;
            let body = input.get(at + 4..at + 4 + len).ok_or(CodecError::Corrupt)?;
            let dst = &mut out[done..done + this];
            if len == this {
                dst.copy_from_slice(body);
            } else {
                match lz4_flex::block::decompress_into(body, dst) {
                    Ok(n) if n == this => {}
                    _ => return Err(CodecError::Corrupt),
                }
            }
            at += 4 + len;
            done += this;
        }
        if at != input.len() {
            return Err(CodecError::Corrupt);
        }
        Ok(())
    }

    pub fn encode(&self, input: &[u8]) -> Result<Vec<u8>, CodecError> {
        if input.len() > i32::MAX as usize {
            return Err(CodecError::Params("chunk too large for lz4"));
        }
        let block = self.block_size.min(input.len()).max(1);
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        out.extend_from_slice(&(input.len() as u64).to_be_bytes());
        out.extend_from_slice(&(block as u32).to_be_bytes());
        for piece in input.chunks(block) {
            let body = lz4_flex::block::compress(piece);
            if body.len() >= piece.len() {
                out.extend_from_slice(&(piece.len() as u32).to_be_bytes());
                out.extend_from_slice(piece);
            } else {
                out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                out.extend_from_slice(&body);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip() {
        let mut src: Vec<u8> = (0..30_000u32).flat_map(|i| (i % 7).to_le_bytes()).collect();
        // an incompressible stretch is stored raw
        src.extend((0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
        for cd in [vec![], vec![0], vec![1000], vec![4096]] {
            let l = Lz4::from_cd(&cd);
            let enc = l.encode(&src).unwrap();
            assert_eq!(Lz4::decoded_len(&enc), Some(src.len()));
            let mut out = vec![0u8; src.len()];
            Lz4::decode_into(&enc, &mut out).unwrap();
            assert_eq!(out, src, "{cd:?}");
            assert!(Lz4::decode_into(&enc[..enc.len() - 1], &mut out).is_err());
        }
    }
}
