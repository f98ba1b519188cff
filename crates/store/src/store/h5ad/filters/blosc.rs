//! The Blosc filter (HDF5 filter 32001, github.com/Blosc/hdf5-blosc), through c-blosc 1.x
//! (the `blosc-src` crate zarrs already builds, with lz4, zlib, zstd and snappy).
//!
//! `cd_values`: `[filter version, blosc format version, typesize, chunk bytes, clevel,
//! shuffle (0 none, 1 byte, 2 bit), compressor (0 blosclz, 1 lz4, 2 lz4hc, 3 snappy,
//! 4 zlib, 5 zstd)]`; the last three are optional (defaults 5, byte shuffle, blosclz). A
//! stored chunk is one Blosc frame, whose header says its decoded size. Only the
//! `_ctx` entry points are used: they take no global state, so chunks are coded on many
//! threads at once.

use std::ffi::{c_int, c_void, CStr};

use super::CodecError;

/// The version the reference filter writes in `cd_values[0]`.
pub(crate) const FILTER_VERSION: u32 = 2;
/// c-blosc's frame format version (`cd_values[1]`).
pub(crate) const FORMAT_VERSION: u32 = blosc_src::BLOSC_VERSION_FORMAT;
/// Bytes a frame may add to its input.
const MAX_OVERHEAD: usize = blosc_src::BLOSC_MAX_OVERHEAD as usize;
/// Largest typesize Blosc shuffles with (larger: treated as 1, as the reference does).
pub(crate) const MAX_TYPESIZE: usize = blosc_src::BLOSC_MAX_TYPESIZE as usize;

/// Parameters of one Blosc filter instance (what encoding needs; decoding reads the frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Blosc {
    pub typesize: usize,
    pub clevel: i32,
    pub shuffle: i32,
    pub compressor: &'static CStr,
}

impl Blosc {
    pub fn from_cd(cd: &[u32]) -> Result<Self, CodecError> {
        if cd.len() < 4 {
            return Err(CodecError::Params("blosc needs at least 4 parameters"));
        }
        let compressor: &'static CStr = match cd.get(6).copied().unwrap_or(0) {
            0 => c"blosclz",
            1 => c"lz4",
            2 => c"lz4hc",
            3 => c"snappy",
            4 => c"zlib",
            5 => c"zstd",
            _ => return Err(CodecError::Params("unknown blosc compressor")),
        };
        let shuffle = cd.get(5).copied().unwrap_or(1);
        if shuffle > 2 {
            return Err(CodecError::Params("unknown blosc shuffle"));
        }
        Ok(Blosc {
            typesize: (cd[2] as usize).clamp(1, MAX_TYPESIZE),
            clevel: cd.get(4).copied().unwrap_or(5).min(9) as i32,
            shuffle: shuffle as i32,
            compressor,
        })
    }

    /// The decoded size a frame announces, after checking that the frame header is sane
    /// (c-blosc's `blosc_cbuffer_validate`: after it, decompression is memory safe).
    pub fn decoded_len(input: &[u8]) -> Option<usize> {
        let mut nbytes = 0usize;
        // SAFETY: `input` is a valid slice of `input.len()` bytes; the function reads at
        // most that many and writes one usize.
        let ok = unsafe {
            blosc_src::blosc_cbuffer_validate(
                input.as_ptr().cast::<c_void>(),
                input.len(),
                &mut nbytes,
            )
        };
        (ok == 0).then_some(nbytes)
    }

    /// Decodes one frame into `out`, which must be exactly its decoded size.
    pub fn decode_into(input: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        if Self::decoded_len(input) != Some(out.len()) {
            return Err(CodecError::Corrupt);
        }
        if out.is_empty() {
            return Ok(());
        }
        // SAFETY: the frame was validated against `input.len()` above; c-blosc writes at
        // most `out.len()` bytes to `out`; the `_ctx` call uses no global state (many
        // threads may call it at once) and one internal thread.
        let n = unsafe {
            blosc_src::blosc_decompress_ctx(
                input.as_ptr().cast::<c_void>(),
                out.as_mut_ptr().cast::<c_void>(),
                out.len(),
                1,
            )
        };
        if n < 0 || n as usize != out.len() {
            return Err(CodecError::Corrupt);
        }
        Ok(())
    }

    /// Encodes `input` as one frame (never fails for lack of room: the output has room for
    /// the frame overhead, and an incompressible input is stored as it is).
    pub fn encode(&self, input: &[u8]) -> Result<Vec<u8>, CodecError> {
        if input.len() > i32::MAX as usize - MAX_OVERHEAD {
            return Err(CodecError::Params("chunk too large for blosc"));
        }
        let mut out = vec![0u8; input.len() + MAX_OVERHEAD];
        // SAFETY: `input` and `out` are valid, non-overlapping buffers of the lengths
        // given; `compressor` is a NUL-terminated static string; the `_ctx` call uses no
        // global state.
        let n: c_int = unsafe {
            blosc_src::blosc_compress_ctx(
                self.clevel,
                self.shuffle,
                self.typesize,
                input.len(),
                input.as_ptr().cast::<c_void>(),
                out.as_mut_ptr().cast::<c_void>(),
                out.len(),
                self.compressor.as_ptr(),
                0,
                1,
            )
        };
        if n <= 0 {
            return Err(CodecError::Corrupt);
        }
        out.truncate(n as usize);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compressor_and_shuffle_round_trips() {
        let src: Vec<u8> = (0..40_000u32)
            .flat_map(|i| ((i % 97) as f32).to_le_bytes())
            .collect();
        for comp in 0..=5u32 {
            for shuffle in 0..=2u32 {
                let b = Blosc::from_cd(&[2, 2, 4, src.len() as u32, 5, shuffle, comp]).unwrap();
                let enc = b.encode(&src).unwrap();
                assert!(enc.len() < src.len(), "{comp} {shuffle} compresses");
                assert_eq!(Blosc::decoded_len(&enc), Some(src.len()));
                let mut out = vec![0u8; src.len()];
                Blosc::decode_into(&enc, &mut out).unwrap();
                assert_eq!(out, src);
                let mut short = vec![0u8; src.len() - 1];
                assert!(Blosc::decode_into(&enc, &mut short).is_err());
                assert!(Blosc::decode_into(&enc[..enc.len() / 2], &mut out).is_err());
            }
        }
        assert!(Blosc::from_cd(&[2, 2, 4, 100, 5, 1, 9]).is_err());
    }
}
