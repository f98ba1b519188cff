//! The bitshuffle filter (HDF5 filter 32008, github.com/kiyo-masui/bitshuffle), optionally
//! followed by LZ4 or Zstandard per block.
//!
//! `cd_values`: `[major, minor, elem_size, block_size (elements, 0 = default), compression
//! (0 none, 2 lz4, 3 zstd), zstd level]`. A buffer of `n` elements is cut into blocks of
//! `block_size` elements, then one block of the largest multiple of 8 that is left; the last
//! `n % 8` elements are copied as they are. Within a block the bits are transposed: bit `b`
//! of byte `j` of every element forms bit row `8 j + b`, each row packed LSB first.
//! Compressed, the buffer starts with a 12-byte header (total bytes as big-endian u64, block
//! bytes as big-endian u32) and each block is stored as a big-endian u32 length + the
//! compressed bytes; the trailing elements stay raw.

use super::CodecError;

/// Target block size of the reference's `bshuf_default_block_size`.
const TARGET_BLOCK_BYTES: usize = 8192;
/// Block sizes are multiples of this.
const BLOCKED_MULT: usize = 8;
/// The smallest default block.
const MIN_RECOMMEND_BLOCK: usize = 128;

/// Version written in `cd_values[0..2]` by the reference filter (0.4).
pub(crate) const VERSION: (u32, u32) = (0, 4);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inner {
    None,
    Lz4,
    Zstd(i32),
}

/// Parameters of one bitshuffle filter instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bitshuffle {
    pub elem_size: usize,
    /// Elements per block as configured (0: the default for `elem_size`).
    pub block_size: usize,
    pub inner: Inner,
}

/// `bshuf_default_block_size`: must never change (it is part of the stored format of
/// uncompressed bitshuffle, which has no header).
pub(crate) fn default_block_size(elem_size: usize) -> usize {
    let b = TARGET_BLOCK_BYTES / elem_size.max(1);
    let b = b / BLOCKED_MULT * BLOCKED_MULT;
    b.max(MIN_RECOMMEND_BLOCK)
}

impl Bitshuffle {
    pub fn from_cd(cd: &[u32]) -> Result<Self, CodecError> {
        if cd.len() < 3 || cd[2] == 0 {
            return Err(CodecError::Params("bitshuffle needs an element size"));
        }
        let elem_size = cd[2] as usize;
        let block_size = cd.get(3).copied().unwrap_or(0) as usize;
        if !block_size.is_multiple_of(BLOCKED_MULT) {
            return Err(CodecError::Params(
                "bitshuffle block size is not a multiple of 8",
            ));
        }
        let inner = match cd.get(4).copied().unwrap_or(0) {
            0 => Inner::None,
            2 => Inner::Lz4,
            3 => Inner::Zstd(cd.get(5).copied().unwrap_or(0) as i32),
            _ => return Err(CodecError::Params("unknown bitshuffle compression")),
        };
        Ok(Bitshuffle {
            elem_size,
            block_size,
            inner,
        })
    }

    fn block(&self) -> usize {
        if self.block_size == 0 {
            default_block_size(self.elem_size)
        } else {
            self.block_size
        }
    }

    /// The decoded size of `input`, when the format says it (compressed modes).
    pub fn decoded_len(&self, input: &[u8]) -> Option<usize> {
        match self.inner {
            Inner::None => Some(input.len()),
            _ => {
                let h: [u8; 8] = input.get(..8)?.try_into().ok()?;
                usize::try_from(u64::from_be_bytes(h)).ok()
            }
        }
    }

    /// Decodes `input` into `out` (exactly the decoded size).
    pub fn decode_into(&self, input: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        let es = self.elem_size;
        if !out.len().is_multiple_of(es) {
            return Err(CodecError::Corrupt);
        }
        match self.inner {
            Inner::None => {
                if input.len() != out.len() {
                    return Err(CodecError::Corrupt);
                }
                let tail = blocked(out.len() / es, es, self.block(), |lo, hi| {
                    untranspose(&input[lo..hi], &mut out[lo..hi], es);
                });
                out[tail..].copy_from_slice(&input[tail..]);
                Ok(())
            }
            inner => {
                if input.len() < 12 || self.decoded_len(input) != Some(out.len()) {
                    return Err(CodecError::Corrupt);
                }
                let block_bytes = u32::from_be_bytes(input[8..12].try_into().unwrap()) as usize;
                if block_bytes == 0 || !block_bytes.is_multiple_of(es) {
                    return Err(CodecError::Corrupt);
                }
                let block = block_bytes / es;
                if !block.is_multiple_of(BLOCKED_MULT) {
                    return Err(CodecError::Corrupt);
                }
                let mut at = 12usize;
                let mut tmp = Vec::new();
                let mut bad = false;
                let tail = blocked(out.len() / es, es, block, |lo, hi| {
                    if bad {
                        return;
                    }
                    let Some(len) = input
                        .get(at..at + 4)
                        .map(|h| u32::from_be_bytes(h.try_into().unwrap()) as usize)
                    else {
                        bad = true;
                        return;
                    };
                    let Some(body) = input.get(at + 4..at + 4 + len) else {
                        bad = true;
                        return;
                    };
                    at += 4 + len;
                    tmp.resize(hi - lo, 0);
                    let ok = match inner {
                        Inner::Lz4 => lz4_flex::block::decompress_into(body, &mut tmp)
                            .is_ok_and(|n| n == hi - lo),
                        _ => zstd::bulk::decompress_to_buffer(body, &mut tmp[..])
                            .is_ok_and(|n| n == hi - lo),
                    };
                    if !ok {
                        bad = true;
                        return;
                    }
                    untranspose(&tmp, &mut out[lo..hi], es);
                });
                if bad {
                    return Err(CodecError::Corrupt);
                }
                // The trailing `n % 8` elements were copied raw.
                let rest = out.len() - tail;
                if input.len() != at + rest {
                    return Err(CodecError::Corrupt);
                }
                out[tail..].copy_from_slice(&input[at..]);
                Ok(())
            }
        }
    }

    /// Encodes `input` (a whole number of elements).
    pub fn encode(&self, input: &[u8]) -> Result<Vec<u8>, CodecError> {
        let es = self.elem_size;
        if !input.len().is_multiple_of(es) {
            return Err(CodecError::Params(
                "chunk is not a whole number of elements",
            ));
        }
        let n = input.len() / es;
        let block = self.block();
        match self.inner {
            Inner::None => {
                let mut out = vec![0u8; input.len()];
                let tail = blocked(n, es, block, |lo, hi| {
                    transpose(&input[lo..hi], &mut out[lo..hi], es)
                });
                out[tail..].copy_from_slice(&input[tail..]);
                Ok(out)
            }
            inner => {
                let mut out = Vec::with_capacity(input.len() / 2 + 64);
                out.extend_from_slice(&(input.len() as u64).to_be_bytes());
                out.extend_from_slice(&((block * es) as u32).to_be_bytes());
                let mut tmp = Vec::new();
                let mut failed = false;
                let tail = blocked(n, es, block, |lo, hi| {
                    tmp.resize(hi - lo, 0);
                    transpose(&input[lo..hi], &mut tmp, es);
                    let body = match inner {
                        Inner::Lz4 => lz4_flex::block::compress(&tmp),
                        Inner::Zstd(level) => match zstd::bulk::compress(&tmp, level) {
                            Ok(b) => b,
                            Err(_) => {
                                failed = true;
                                return;
                            }
                        },
                        Inner::None => unreachable!(),
                    };
                    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                    out.extend_from_slice(&body);
                });
                if failed {
                    return Err(CodecError::Corrupt);
                }
                out.extend_from_slice(&input[tail..]);
                Ok(out)
            }
        }
    }
}

/// Calls `f(lo, hi)` with the byte range of every block of `n` elements (`block` elements,
/// then the largest multiple of 8 left) and returns the byte offset where the raw trailing
/// elements start (the caller copies them).
fn blocked(n: usize, es: usize, block: usize, mut f: impl FnMut(usize, usize)) -> usize {
    let mut at = 0usize;
    for _ in 0..n / block {
        f(at * es, (at + block) * es);
        at += block;
    }
    let last = (n % block) / BLOCKED_MULT * BLOCKED_MULT;
    if last > 0 {
        f(at * es, (at + last) * es);
        at += last;
    }
    at * es
}

/// Transposes the 8x8 bit matrix held in `x` (byte `m` = row `m`, bit `k` = column `k`):
/// afterwards byte `k` holds bit `k` of every input byte, input byte `m` at bit `m`.
#[inline]
fn transpose8x8(mut x: u64) -> u64 {
    let t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA;
    x ^= t ^ (t << 7);
    let t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC;
    x ^= t ^ (t << 14);
    let t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0;
    x ^= t ^ (t << 28);
    x
}

/// Bit-transposes one block (`src.len() / es` elements, a multiple of 8) into `dst`.
fn transpose(src: &[u8], dst: &mut [u8], es: usize) {
    let n = src.len() / es;
    let row = n / 8; // bytes per bit row
    for q in 0..row {
        let base = q * 8 * es;
        for j in 0..es {
            let mut x = 0u64;
            for m in 0..8 {
                x |= u64::from(src[base + m * es + j]) << (8 * m);
            }
            let x = transpose8x8(x);
            for k in 0..8 {
                dst[(j * 8 + k) * row + q] = (x >> (8 * k)) as u8;
            }
        }
    }
    // The trailing (n % 8) elements never reach here: blocks are multiples of 8.
    let done = row * 8 * es;
    dst[done..].copy_from_slice(&src[done..]);
}

/// The inverse of [`transpose`].
fn untranspose(src: &[u8], dst: &mut [u8], es: usize) {
    let n = src.len() / es;
    let row = n / 8;
    for q in 0..row {
        let base = q * 8 * es;
        for j in 0..es {
            let mut x = 0u64;
            for k in 0..8 {
                x |= u64::from(src[(j * 8 + k) * row + q]) << (8 * k);
            }
            // The 8x8 transpose is its own inverse.
            let x = transpose8x8(x);
            for m in 0..8 {
                dst[base + m * es + j] = (x >> (8 * m)) as u8;
            }
        }
    }
    let done = row * 8 * es;
    dst[done..].copy_from_slice(&src[done..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one bit at a time.
    fn naive(src: &[u8], es: usize) -> Vec<u8> {
        let n = src.len() / es;
        let row = n / 8;
        let mut out = vec![0u8; src.len()];
        for i in 0..n {
            for j in 0..es {
                for b in 0..8 {
                    let bit = (src[i * es + j] >> b) & 1;
                    out[(j * 8 + b) * row + i / 8] |= bit << (i % 8);
                }
            }
        }
        out
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
            .collect()
    }

    #[test]
    fn transpose_matches_the_definition_and_inverts() {
        for es in [1, 2, 4, 8, 3] {
            let src = data(64 * es);
            let mut t = vec![0u8; src.len()];
            transpose(&src, &mut t, es);
            assert_eq!(t, naive(&src, es), "elem size {es}");
            let mut back = vec![0u8; src.len()];
            untranspose(&t, &mut back, es);
            assert_eq!(back, src);
        }
    }

    #[test]
    fn blocks_and_tail_round_trip_in_every_mode() {
        for inner in [Inner::None, Inner::Lz4, Inner::Zstd(3)] {
            for (es, n) in [(4, 3000), (8, 1029), (2, 7), (4, 0), (1, 9000)] {
                for block in [0, 64] {
                    let b = Bitshuffle {
                        elem_size: es,
                        block_size: block,
                        inner,
                    };
                    let src = data(n * es);
                    let enc = b.encode(&src).unwrap();
                    let mut out = vec![0u8; b.decoded_len(&enc).unwrap()];
                    b.decode_into(&enc, &mut out).unwrap();
                    assert_eq!(out, src, "{inner:?} es {es} n {n} block {block}");
                    // Truncation is an error, never a panic.
                    if enc.len() > 1 && inner != Inner::None {
                        let cut = &enc[..enc.len() - 1];
                        let mut out = vec![0u8; src.len()];
                        assert!(b.decode_into(cut, &mut out).is_err());
                    }
                }
            }
        }
    }

    #[test]
    fn default_block_sizes() {
        assert_eq!(default_block_size(4), 2048);
        assert_eq!(default_block_size(8), 1024);
        assert_eq!(default_block_size(1), 8192);
        assert_eq!(default_block_size(100), 128);
    }
}
